package testbody

import (
	"encoding/json"
	"testing"
)

// TestAnthropicBlocks: the body is JSON with the model, max_tokens only
// when asked, and n one-letter text blocks.
func TestAnthropicBlocks(t *testing.T) {
	for _, tc := range []struct{ n, maxTokens int }{{0, 0}, {1, 8}, {7, 0}, {1000, 5}} {
		var body struct {
			Model     string `json:"model"`
			MaxTokens *int   `json:"max_tokens"`
			Messages  []struct {
				Role    string `json:"role"`
				Content []struct{ Type, Text string }
			} `json:"messages"`
		}
		raw := AnthropicBlocks(`m"1`, tc.n, tc.maxTokens)
		if err := json.Unmarshal(raw, &body); err != nil {
			t.Fatalf("%d blocks: %v: %s", tc.n, err, raw)
		}
		if body.Model != `m"1` || (body.MaxTokens != nil) != (tc.maxTokens > 0) ||
			(body.MaxTokens != nil && *body.MaxTokens != tc.maxTokens) ||
			len(body.Messages) != 1 || body.Messages[0].Role != "user" || len(body.Messages[0].Content) != tc.n {
			t.Fatalf("%+v: %s", tc, raw)
		}
		for _, b := range body.Messages[0].Content {
			if b.Type != "text" || b.Text != "a" {
				t.Fatalf("block %+v", b)
			}
		}
	}
}
