package discovery

import (
	"sort"

	"github.com/caddy-olla/olla/profiles"
)

// EndpointModels is one endpoint's discovered models, with what the
// catalogue needs to know of the endpoint.
type EndpointModels struct {
	Endpoint string
	Type     string
	Status   Status
	Routable bool
	Models   []profiles.Model
}

// Source is one endpoint serving a catalogue entry.
type Source struct {
	Endpoint string `json:"endpoint"`
	Type     string `json:"type"`
	// Status is the endpoint's health.
	Status Status `json:"status"`
	// State is the model's state on the endpoint where it reports one
	// (LM Studio: loaded, not-loaded); "available" otherwise.
	State    string `json:"state"`
	Routable bool   `json:"routable"`
	Digest   string `json:"digest,omitempty"`
	Size     int64  `json:"size,omitempty"`
}

// Entry is one model in a catalogue view, merged over the endpoints that
// serve it.
type Entry struct {
	ID      string
	Sources []Source
	// DigestMismatch flags sources of one type that report different
	// digests for the same name: merged, but worth a look.
	DigestMismatch bool
	// Model holds the merged details: the first source's, with gaps filled
	// from the others.
	Model profiles.Model
}

// Routable reports whether at least one source can take requests now.
func (e *Entry) Routable() bool {
	for _, s := range e.Sources {
		if s.Routable {
			return true
		}
	}
	return false
}

// Types lists the backend types serving the entry.
func (e *Entry) Types() []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range e.Sources {
		if !seen[s.Type] {
			seen[s.Type] = true
			out = append(out, s.Type)
		}
	}
	return out
}

// Unify merges endpoints' models into one entry per model name, sorted by
// name, each listing every endpoint that serves it. Names are matched
// exactly: clients see names as the servers spell them. Within one backend
// type, differing digests for one name are flagged, not split.
//
// Per-type views (an Ollama /api/tags) pass only that type's endpoints;
// cross-type views (/olla/models) pass all of them.
func Unify(eps []EndpointModels) []Entry {
	index := map[string]int{}
	var out []Entry
	for _, ep := range eps {
		for _, m := range ep.Models {
			i, ok := index[m.Name]
			if !ok {
				i = len(out)
				index[m.Name] = i
				out = append(out, Entry{ID: m.Name, Model: m})
			}
			e := &out[i]
			state := m.State
			if state == "" {
				state = "available"
			}
			src := Source{Endpoint: ep.Endpoint, Type: ep.Type, Status: ep.Status, State: state,
				Routable: ep.Routable, Digest: m.Digest, Size: m.Size}
			for _, prev := range e.Sources {
				if prev.Type == src.Type && prev.Digest != "" && src.Digest != "" && prev.Digest != src.Digest {
					e.DigestMismatch = true
				}
			}
			e.Sources = append(e.Sources, src)
			fillGaps(&e.Model, m)
		}
	}
	sort.Slice(out, func(a, b int) bool { return out[a].ID < out[b].ID })
	return out
}

// fillGaps copies details the merged model lacks from another source.
func fillGaps(dst *profiles.Model, src profiles.Model) {
	if dst.Family == "" {
		dst.Family = src.Family
	}
	if len(dst.Families) == 0 {
		dst.Families = src.Families
	}
	if dst.Format == "" {
		dst.Format = src.Format
	}
	if dst.ParameterSize == "" {
		dst.ParameterSize = src.ParameterSize
	}
	if dst.Quantization == "" {
		dst.Quantization = src.Quantization
	}
	if dst.Type == "" {
		dst.Type = src.Type
	}
	if dst.Publisher == "" {
		dst.Publisher = src.Publisher
	}
	if dst.MaxContextLength == 0 {
		dst.MaxContextLength = src.MaxContextLength
	}
	if dst.Digest == "" {
		dst.Digest = src.Digest
	}
	if dst.Size == 0 {
		dst.Size = src.Size
	}
	if dst.ModifiedAt == "" {
		dst.ModifiedAt = src.ModifiedAt
	}
}
