package prefix

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

func parse(t testing.TB, body, model string) Chain {
	t.Helper()
	var c Chain
	if err := c.Parse([]byte(body), model); err != nil {
		t.Fatalf("Parse(%.80q): %v", body, err)
	}
	return c
}

// words is n bytes of text drawn from seed, so prompts span several blocks.
func words(seed uint64, n int) string {
	rng := rand.New(rand.NewPCG(seed, 1))
	w := strings.Fields("the model answers each question with care routing prompts cache tokens blocks prefix server queue")
	var b strings.Builder
	for b.Len() < n {
		b.WriteString(w[rng.IntN(len(w))])
		b.WriteByte(' ')
	}
	return b.String()[:n]
}

func chat(system string, turns ...string) string {
	msgs := []map[string]string{{"role": "system", "content": system}}
	for i, t := range turns {
		role := "user"
		if i%2 == 1 {
			role = "assistant"
		}
		msgs = append(msgs, map[string]string{"role": role, "content": t})
	}
	b, _ := json.Marshal(map[string]any{"model": "m", "stream": true, "messages": msgs})
	return string(b)
}

func TestSpellingDoesNotSplitAConversation(t *testing.T) {
	sys, q := words(1, 1000), words(2, 700)
	compact := chat(sys, q)
	spellings := map[string]string{
		"indented and reordered":  fmt.Sprintf("{\n  \"stream\" : true,\n  \"messages\" : [ { \"content\" : %q ,\n \"role\":\"system\" },\n\t{\"content\": %q, \"role\": \"user\"} ],\n  \"model\": \"m\"\n}", sys, q),
		"content as text parts":   fmt.Sprintf(`{"model":"m","messages":[{"role":"system","content":[{"type":"text","text":%q}]},{"role":"user","content":[{"text":%q,"type":"text"}]}]}`, sys, q),
		"escaped characters":      fmt.Sprintf(`{"model":"m","messages":[{"role":"system","content":%q},{"role":"user","content":"\u0074%s"}]}`, sys, q[1:]),
		"anthropic cache_control": fmt.Sprintf(`{"model":"m","max_tokens":5,"messages":[{"role":"system","content":[{"type":"text","text":%q,"cache_control":{"type":"ephemeral"}}]},{"role":"user","content":%q}]}`, sys, q),
	}
	want := parse(t, compact, "m")
	if len(want.Blocks) < 6 {
		t.Fatalf("want several blocks, got %d", len(want.Blocks))
	}
	for name, body := range spellings {
		got := parse(t, body, "m")
		if !slices.Equal(got.Blocks, want.Blocks) || got.Anchor != want.Anchor || got.Shared != want.Shared {
			t.Errorf("%s: chain %d blocks anchor %x shared %d, want %d blocks anchor %x shared %d", name,
				len(got.Blocks), got.Anchor, got.Shared, len(want.Blocks), want.Anchor, want.Shared)
		}
	}
	// and what the backend would tokenise differently does not hash alike
	for name, body := range map[string]string{
		"another role":     strings.Replace(compact, `"role":"user"`, `"role":"assistant"`, 1),
		"another model":    compact,
		"one byte changed": strings.Replace(compact, q[:20], "X"+q[1:20], 1),
	} {
		model := "m"
		if name == "another model" {
			model = "m2"
		}
		got := parse(t, body, model)
		if slices.Equal(got.Blocks, want.Blocks) {
			t.Errorf("%s: same chain as the original", name)
		}
	}
}

func TestChainCoversItsPrefix(t *testing.T) {
	sys := words(3, 2000)
	turn1 := parse(t, chat(sys, words(4, 500)), "m")
	turn2 := parse(t, chat(sys, words(4, 500), words(5, 600), words(6, 300)), "m")
	if len(turn2.Blocks) <= len(turn1.Blocks) {
		t.Fatalf("turn 2 has %d blocks, turn 1 %d", len(turn2.Blocks), len(turn1.Blocks))
	}
	if !slices.Equal(turn2.Blocks[:len(turn1.Blocks)], turn1.Blocks) {
		t.Fatal("turn 2's chain does not begin with turn 1's")
	}
	if turn1.Anchor == 0 || turn1.Anchor != turn2.Anchor {
		t.Fatalf("anchors %x and %x: one conversation must keep its anchor", turn1.Anchor, turn2.Anchor)
	}
	other := parse(t, chat(sys, words(7, 500)), "m")
	if other.Anchor == turn1.Anchor {
		t.Fatal("two conversations sharing only the system prompt have one anchor")
	}
	// the shared head is the system prompt: 2,000 bytes fill 7 blocks
	if turn1.Shared != 7 || other.Shared != 7 || !slices.Equal(other.Blocks[:7], turn1.Blocks[:7]) {
		t.Fatalf("shared %d / %d blocks, want 7 equal ones", turn1.Shared, other.Shared)
	}
	if slices.Equal(other.Blocks[:8], turn1.Blocks[:8]) {
		t.Fatal("the first block holding the user's message is equal across conversations")
	}
	if !turn1.Useful() {
		t.Fatal("a chain past its shared head is not useful")
	}
	only := parse(t, chat(sys), "m")
	if only.Anchor != 0 || only.Shared != len(only.Blocks) || only.Useful() {
		t.Fatalf("a system prompt alone: anchor %x shared %d of %d", only.Anchor, only.Shared, len(only.Blocks))
	}
}

func TestAPIShapes(t *testing.T) {
	sys, q := words(8, 900), words(9, 900)
	tools := `[{"type":"function","function":{"name":"read","parameters":{"type":"object","properties":{"path":{"type":"string"}}}}}]`
	toolsReordered := `[{"function":{"parameters":{"properties":{"path":{"type":"string"}},"type":"object"},"name":"read"},"type":"function"}]`
	cases := []struct {
		name, a, b string
	}{
		{"tools in any key order",
			fmt.Sprintf(`{"model":"m","tools":%s,"messages":[{"role":"user","content":%q}]}`, tools, q),
			fmt.Sprintf(`{"messages":[{"role":"user","content":%q}],"tools":%s,"model":"m"}`, q, toolsReordered)},
		{"responses input string and message",
			fmt.Sprintf(`{"model":"m","instructions":%q,"input":%q}`, sys, q),
			fmt.Sprintf(`{"model":"m","instructions":%q,"input":[{"role":"user","content":[{"type":"input_text","text":%q}]}]}`, sys, q)},
		{"anthropic system string and blocks",
			fmt.Sprintf(`{"model":"m","system":%q,"messages":[{"role":"user","content":%q}]}`, sys, q),
			fmt.Sprintf(`{"model":"m","system":[{"type":"text","text":%q,"cache_control":{"type":"ephemeral"}}],"messages":[{"role":"user","content":[{"type":"text","text":%q}]}]}`, sys, q)},
		{"completions prompt string and array",
			fmt.Sprintf(`{"model":"m","prompt":%q}`, q),
			fmt.Sprintf(`{"model":"m","prompt":[%q]}`, q)},
	}
	for _, tc := range cases {
		a, b := parse(t, tc.a, "m"), parse(t, tc.b, "m")
		if len(a.Blocks) < 3 || !slices.Equal(a.Blocks, b.Blocks) || a.Anchor != b.Anchor || a.Anchor == 0 {
			t.Errorf("%s: %d vs %d blocks, anchors %x %x", tc.name, len(a.Blocks), len(b.Blocks), a.Anchor, b.Anchor)
		}
	}
	// tools and instructions are the shared head; a prompt has none
	withTools := parse(t, fmt.Sprintf(`{"model":"m","tools":[{"description":%q}],"messages":[{"role":"user","content":%q}]}`, sys, q), "m")
	if withTools.Shared != 3 {
		t.Errorf("tools of ~900 bytes: shared %d blocks, want 3", withTools.Shared)
	}
	prompt := parse(t, fmt.Sprintf(`{"model":"m","prompt":%q}`, q), "m")
	if prompt.Shared != 0 || !prompt.Useful() {
		t.Errorf("a completion prompt: shared %d", prompt.Shared)
	}
	if err := (&Chain{}).Parse([]byte(`[1,2]`), "m"); err != ErrNotObject {
		t.Errorf("an array body: %v, want ErrNotObject", err)
	}
}

// TestGoldenHash pins the hash: it has no per-process seed, so two proxies
// (or two versions) agree on where a conversation lives.
func TestGoldenHash(t *testing.T) {
	c := parse(t, chat(strings.Repeat("s", 300), strings.Repeat("u", 300)), "llama3")
	got := fmt.Sprintf("%d %x %x %d", len(c.Blocks), c.Blocks[0], c.Anchor, c.Shared)
	const want = "2 a87d4a118438287b b975f7ab0b7d2b2 1"
	if got != want {
		t.Fatalf("golden chain %q, want %q: a change of the canonical form moves every conversation", got, want)
	}
}

func TestHostilePrompts(t *testing.T) {
	t.Run("10 MB prompt", func(t *testing.T) {
		big := strings.Repeat("a", 10<<20)
		c := parse(t, fmt.Sprintf(`{"model":"m","messages":[{"role":"user","content":%q}]}`, big), "m")
		if len(c.Blocks) != MaxBlocks || !c.Truncated || c.Bytes != MaxBlocks*BlockBytes {
			t.Fatalf("%d blocks, truncated %v, %d bytes", len(c.Blocks), c.Truncated, c.Bytes)
		}
		if c.Anchor == 0 {
			t.Fatal("a truncated first message still anchors")
		}
	})
	t.Run("100,000 messages", func(t *testing.T) {
		var b bytes.Buffer
		b.WriteString(`{"model":"m","messages":[`)
		for i := range 100_000 {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `{"role":"user","content":"m%d"}`, i)
		}
		b.WriteString("]}")
		c := parse(t, b.String(), "m")
		if len(c.Blocks) == 0 || len(c.Blocks) > MaxBlocks {
			t.Fatalf("%d blocks", len(c.Blocks))
		}
	})
	t.Run("deep nesting", func(t *testing.T) {
		deep := strings.Repeat("[", 5000) + strings.Repeat("]", 5000)
		parse(t, `{"model":"m","messages":[{"role":"user","content":"x","tool_calls":`+deep+`}]}`, "m")
	})
	t.Run("wide object", func(t *testing.T) {
		var b strings.Builder
		b.WriteString(`{"role":"user"`)
		for i := range 1000 {
			fmt.Fprintf(&b, `,"k%d":%d`, i, i)
		}
		b.WriteString("}")
		parse(t, `{"model":"m","messages":[`+b.String()+`]}`, "m")
	})
	for _, bad := range []string{``, `{`, `{"messages":[{"role":"user","content":"x}]}`, `{"messages":[1,}`, `{"prompt":"\`, `{"a":1 "b":2}`, `"str"`} {
		var c Chain
		if err := c.Parse([]byte(bad), "m"); err == nil {
			t.Errorf("Parse(%q) accepted invalid JSON", bad)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(chat("you are helpful", "hi", "hello", "how are you")))
	f.Add([]byte(`{"model":"m","system":[{"type":"text","text":"s\u00e9\ud83d\ude00"}],"messages":[{"role":"user","content":[{"type":"image","source":{"data":"x"}}]}]}`))
	f.Add([]byte(`{"model":"m","input":[{"type":"function_call","name":"f","arguments":"{}"}],"instructions":"i"}`))
	f.Add([]byte(`{"prompt":[1,2,3],"context":[4,5]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var c Chain
		err := c.Parse(body, "m")
		if !json.Valid(body) || err != nil {
			return
		}
		// whitespace never matters
		var ind bytes.Buffer
		if json.Indent(&ind, body, " ", "\t") != nil {
			return
		}
		var d Chain
		if err := d.Parse(ind.Bytes(), "m"); err != nil {
			t.Fatalf("indented body refused: %v", err)
		}
		if !slices.Equal(c.Blocks, d.Blocks) || c.Anchor != d.Anchor || c.Shared != d.Shared {
			t.Fatalf("indenting changed the chain: %d/%d blocks", len(c.Blocks), len(d.Blocks))
		}
	})
}

func benchBody(size int) []byte {
	var turns []string
	for i, n := 0, 0; n < size-4000; i++ {
		turns = append(turns, words(uint64(i+10), 400)+"\n\"quoted\"")
		n += 420
	}
	return []byte(chat(words(1, 4000), turns...))
}

func BenchmarkParse(b *testing.B) {
	for _, size := range []int{4 << 10, 64 << 10, 1 << 20} {
		body := benchBody(size)
		b.Run(fmt.Sprintf("%dKB", size>>10), func(b *testing.B) {
			var c Chain
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			cpu := processCPU()
			for b.Loop() {
				if err := c.Parse(body, "Qwen/Qwen2.5-7B-Instruct"); err != nil {
					b.Fatal(err)
				}
			}
			kb := float64(len(body)) / 1024 * float64(b.N)
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/kb/1000, "µs/KB")
			b.ReportMetric(float64((processCPU()-cpu).Nanoseconds())/kb/1000, "cpu-µs/KB")
		})
	}
}

// BenchmarkBaselineValid is the same bodies through encoding/json's Valid,
// which the proxy runs on every body already: Parse's cost against it, in
// the same run, is the figure to quote on a busy machine.
func BenchmarkBaselineValid(b *testing.B) {
	for _, size := range []int{4 << 10, 64 << 10, 1 << 20} {
		body := benchBody(size)
		b.Run(fmt.Sprintf("%dKB", size>>10), func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			cpu := processCPU()
			for b.Loop() {
				if !json.Valid(body) {
					b.Fatal("invalid")
				}
			}
			kb := float64(len(body)) / 1024 * float64(b.N)
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/kb/1000, "µs/KB")
			b.ReportMetric(float64((processCPU()-cpu).Nanoseconds())/kb/1000, "cpu-µs/KB")
		})
	}
}

// processCPU is the CPU time this process used: on a machine shared with
// other jobs, wall time per operation measures the queue for a core, CPU
// time the work.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
