package anthropic

import (
	"errors"
	"runtime"
	"strings"
	"testing"

	"github.com/caddy-olla/olla/internal/testbody"
)

// TestScanLimits: each bound is a *LimitError naming it, found before the
// body is decoded; a body within them scans to its counts.
func TestScanLimits(t *testing.T) {
	lim := Limits{Messages: 3, Blocks: 4, Tools: 2, Depth: 8}
	for _, tc := range []struct{ name, body, limit string }{
		{"messages", `{"model":"m","messages":[{"role":"user","content":"a"},{"role":"assistant","content":"b"},{"role":"user","content":"c"},{"role":"assistant","content":"d"}]}`, "messages"},
		{"blocks", string(testbody.AnthropicBlocks("m", 5, 5)), "content blocks"},
		{"blocks in system and results", `{"model":"m","system":[{"type":"text","text":"s"},{"type":"text","text":"s"}],"messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"t","content":[{"type":"text","text":"r"},{"type":"text","text":"r"}]}]}]}`, "content blocks"},
		{"tools", `{"model":"m","tools":[{"name":"a"},{"name":"b"},{"name":"c"}],"messages":[{"role":"user","content":"x"}]}`, "tools"},
		{"nesting", `{"model":"m","messages":[{"role":"user","content":[{"type":"tool_use","id":"t","name":"n","input":{"a":{"b":{"c":{"d":{}}}}}}]}]}`, "nesting depth"},
	} {
		_, err := Scan([]byte(tc.body), lim)
		var le *LimitError
		if !errors.As(err, &le) || le.Limit != tc.limit || !strings.Contains(le.Error(), tc.limit) {
			t.Errorf("%s: %v, want a %s limit", tc.name, err, tc.limit)
		}
	}
	sh, err := Scan([]byte(`{"model":"m","system":"be brief","tools":[{"name":"get","description":"gets","input_schema":{"type":"object"}}],"messages":[{"role":"user","content":[{"type":"text","text":"hello"},{"type":"image","source":{"type":"base64","media_type":"image/png","data":"AAAA"}}]}]}`), DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	if sh.Model != "m" || sh.Messages != 1 || sh.Blocks != 3 || sh.Tools != 1 || sh.Depth != 6 {
		t.Errorf("shape %+v", sh)
	}
}

// TestScanCountTokensShape: what count_tokens needs is checked by the scan,
// naming the field as ParseRequest does.
func TestScanCountTokensShape(t *testing.T) {
	for body, want := range map[string]string{
		`[1]`:                          "not a JSON object",
		`{"model":"m"`:                 "not a JSON object",
		`{"messages":[{}]}`:            "model: field required",
		`{"model":1,"messages":[]}`:    "model: must be a string",
		`{"model":"","messages":[{}]}`: "model: must not be empty",
		`{"model":"m"}`:                "messages: field required",
		`{"model":"m","messages":{}}`:  "messages: field required",
		`{"model":"m","messages":[]}`:  "messages: must contain at least one message",
	} {
		if _, err := Scan([]byte(body), DefaultLimits); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", body, err, want)
		}
	}
}

// TestScanEstimate: the scan's estimate is EstimateTokens' within a few
// tokens on ordinary requests.
func TestScanEstimate(t *testing.T) {
	for _, body := range []string{
		`{"model":"m","max_tokens":9,"messages":[{"role":"user","content":"how many tokens is this"}]}`,
		`{"model":"m","max_tokens":9,"system":[{"type":"text","text":"You are terse."}],"messages":[{"role":"user","content":[{"type":"text","text":"Look:"},{"type":"image","source":{"type":"base64","media_type":"image/png","data":"iVBORw0KGgo="}}]},{"role":"assistant","content":[{"type":"tool_use","id":"tu_1","name":"search","input":{"q":"weather in Paris"}}]},{"role":"user","content":[{"type":"tool_result","tool_use_id":"tu_1","content":"sunny, 21 degrees"}]}],"tools":[{"name":"search","description":"Searches the web","input_schema":{"type":"object","properties":{"q":{"type":"string"}}}}]}`,
	} {
		r, err := ParseRequest([]byte(body))
		if err != nil {
			t.Fatal(err)
		}
		sh, err := Scan([]byte(body), DefaultLimits)
		if err != nil {
			t.Fatal(err)
		}
		full, scanned := EstimateTokens(r), sh.EstimateTokens()
		if d := full - scanned; d < -10 || d > 10 {
			t.Errorf("scan estimate %d, EstimateTokens %d: %s", scanned, full, body)
		}
	}
}

// TestScanBuildsNothing: scanning a 1,000,000-block body allocates only
// the Shape, however many blocks it counts.
func TestScanBuildsNothing(t *testing.T) {
	body := testbody.AnthropicBlocks("m", 1_000_000, 5)
	allocs := testing.AllocsPerRun(3, func() {
		sh, err := Scan(body, Limits{})
		if err != nil || sh.Blocks != 1_000_000 || sh.EstimateTokens() != 250_000 {
			t.Fatalf("%+v %v", sh, err)
		}
	})
	if allocs > 4 {
		t.Errorf("%v allocations per scan", allocs)
	}
}

// TestDecodedSizeCovers: DecodedSize is at least what ParseRequest
// allocates for block-heavy, message-heavy and text-heavy bodies.
func TestDecodedSizeCovers(t *testing.T) {
	var msgs strings.Builder
	msgs.WriteString(`{"model":"m","max_tokens":5,"messages":[`)
	for i := range 20_000 {
		if i > 0 {
			msgs.WriteByte(',')
		}
		msgs.WriteString(`{"role":"user","content":"hi"}`)
	}
	msgs.WriteString(`]}`)
	text := `{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"` + strings.Repeat("x", 4<<20) + `"}]}`
	for name, body := range map[string][]byte{"blocks": testbody.AnthropicBlocks("m", 50_000, 5), "messages": []byte(msgs.String()), "text": []byte(text)} {
		sh, err := Scan(body, Limits{})
		if err != nil {
			t.Fatal(err)
		}
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		r, err := ParseRequest(body)
		runtime.ReadMemStats(&after)
		if err != nil {
			t.Fatal(err)
		}
		runtime.KeepAlive(r)
		allocated := int64(after.TotalAlloc - before.TotalAlloc)
		if charged := sh.DecodedSize(len(body)); charged < allocated {
			t.Errorf("%s: %d bytes charged for a parse that allocated %d", name, charged, allocated)
		}
	}
}

func BenchmarkScanBlocks(b *testing.B) {
	body := testbody.AnthropicBlocks("m", 100_000, 5)
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, err := Scan(body, Limits{}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseRequestBlocks(b *testing.B) {
	body := testbody.AnthropicBlocks("m", 100_000, 5)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseRequest(body); err != nil {
			b.Fatal(err)
		}
	}
}
