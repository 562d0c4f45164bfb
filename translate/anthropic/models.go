package anthropic

import (
	"encoding/json"
	"time"
)

type modelEntry struct {
	Type        string `json:"type"`
	ID          string `json:"id"`
	DisplayName string `json:"display_name"`
	CreatedAt   string `json:"created_at"`
}

type modelList struct {
	Data    []modelEntry `json:"data"`
	HasMore bool         `json:"has_more"`
	FirstID *string      `json:"first_id"`
	LastID  *string      `json:"last_id"`
}

// ModelsBody is GET /v1/models in Anthropic's list shape for ids, in the
// given order. Local backends know no creation date, so every entry carries
// created (for example the process start), in RFC 3339.
func ModelsBody(ids []string, created time.Time) []byte {
	list := modelList{Data: make([]modelEntry, 0, len(ids))}
	at := created.UTC().Format(time.RFC3339)
	for _, id := range ids {
		list.Data = append(list.Data, modelEntry{Type: "model", ID: id, DisplayName: id, CreatedAt: at})
	}
	if len(ids) > 0 {
		list.FirstID, list.LastID = &ids[0], &ids[len(ids)-1]
	}
	b, _ := json.Marshal(list)
	return b
}
