// Package testbody builds the request bodies that tests, benchmarks and
// measurements (internal/amplify) share, so that each shape is written once.
package testbody

import (
	"bytes"
	"strconv"
)

// AnthropicBlocks is a Messages (or count_tokens) body for model whose one
// user message holds n one-letter text blocks: the shape that makes the
// most decoded tree per byte. maxTokens 0 leaves max_tokens out, as a
// count_tokens body does.
func AnthropicBlocks(model string, n, maxTokens int) []byte {
	const block = `{"type":"text","text":"a"}`
	var b bytes.Buffer
	b.Grow(64 + len(model) + n*(len(block)+1))
	b.WriteString(`{"model":`)
	b.WriteString(strconv.Quote(model))
	b.WriteByte(',')
	if maxTokens > 0 {
		b.WriteString(`"max_tokens":`)
		b.WriteString(strconv.Itoa(maxTokens))
		b.WriteByte(',')
	}
	b.WriteString(`"messages":[{"role":"user","content":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(block)
	}
	b.WriteString(`]}]}`)
	return b.Bytes()
}
