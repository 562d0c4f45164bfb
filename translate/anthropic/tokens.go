package anthropic

import "encoding/json"

// imageTokens is what one image counts for in EstimateTokens: its size is not
// known without decoding it, and Anthropic bills a mid-sized image at about
// this much.
const imageTokens = 1024

// EstimateTokens estimates the input tokens of r: about four characters per
// token over the system prompt, the messages and the tool definitions, plus a
// flat count per image; at least 1. It is an estimate, and the caller should
// say so (count_tokens from a backend that has none).
func EstimateTokens(r *Request) int {
	chars, images := 0, 0
	count := func(blocks []Block) {
		for _, b := range blocks {
			chars += len(b.Text) + len(b.Thinking) + len(b.Name) + len(b.Input)
			switch b.Type {
			case "image":
				images++
			case "document":
				if b.Source != nil {
					chars += len(b.Source.Data)
				}
			case "tool_result":
				chars += toolResultChars(b.Content, &images)
			}
		}
	}
	count(r.System)
	for _, m := range r.Messages {
		count(m.Content)
	}
	for _, t := range r.Tools {
		chars += len(t.Name) + len(t.Description) + len(t.InputSchema)
	}
	n := (chars+3)/4 + images*imageTokens
	if n < 1 {
		n = 1
	}
	return n
}

func toolResultChars(raw json.RawMessage, images *int) int {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return len(s)
	}
	var blocks []Block
	if json.Unmarshal(raw, &blocks) != nil {
		return len(raw)
	}
	n := 0
	for _, b := range blocks {
		n += len(b.Text)
		if b.Type == "image" {
			*images++
		}
	}
	return n
}

// CountTokensBody is the count_tokens answer, {"input_tokens":N}.
func CountTokensBody(n int) []byte {
	b, _ := json.Marshal(struct {
		InputTokens int `json:"input_tokens"`
	}{n})
	return b
}
