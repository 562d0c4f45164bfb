package sim

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// ---- helpers ----

func startT(t testing.TB, cfg Config) *Server {
	t.Helper()
	s, err := Start(cfg)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

func do(t testing.TB, method, url, body string) (*http.Response, []byte) {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, r)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, url, err)
	}
	return res, b
}

func get(t testing.TB, url string) (*http.Response, []byte) { return do(t, http.MethodGet, url, "") }

func post(t testing.TB, url, body string) (*http.Response, []byte) {
	return do(t, http.MethodPost, url, body)
}

func decode(t testing.TB, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("not a JSON object: %v\n%s", err, b)
	}
	return m
}

// frameReader reads a stream one NDJSON line or SSE event at a time.
type frameReader struct {
	r   *bufio.Reader
	sse bool
}

func newFrameReader(res *http.Response) *frameReader {
	return &frameReader{r: bufio.NewReader(res.Body), sse: strings.HasPrefix(res.Header.Get("Content-Type"), "text/event-stream")}
}

// next returns the payload of the next frame (the JSON, or "[DONE]").
func (f *frameReader) next() (string, error) {
	if !f.sse {
		l, err := f.r.ReadString('\n')
		if err != nil {
			return "", err
		}
		return strings.TrimSuffix(l, "\n"), nil
	}
	var data string
	for {
		l, err := f.r.ReadString('\n')
		if err != nil {
			return "", err
		}
		if l == "\n" {
			return data, nil
		}
		data += strings.TrimPrefix(strings.TrimSuffix(l, "\n"), "data: ")
	}
}

func openStream(t testing.TB, ctx context.Context, url, body string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	return res
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// ---- generation across kinds ----

// openAIText extracts the text of a chunk or answer (chat delta, chat
// message or completion text) and its finish_reason.
func openAIText(m map[string]any) (text string, finish any, nChoices int) {
	ch, _ := m["choices"].([]any)
	for _, c := range ch {
		c := c.(map[string]any)
		for _, k := range []string{"delta", "message"} {
			if d, ok := c[k].(map[string]any); ok {
				if s, ok := d["content"].(string); ok {
					text += s
				}
			}
		}
		if s, ok := c["text"].(string); ok {
			text += s
		}
		finish = c["finish_reason"]
	}
	return text, finish, len(ch)
}

func TestOpenAIStreamsAllKinds(t *testing.T) {
	for _, kind := range Kinds() {
		for _, path := range []string{"/v1/chat/completions", "/v1/completions"} {
			for _, usage := range []bool{false, true} {
				name := kind + path
				if usage {
					name += "+usage"
				}
				t.Run(name, func(t *testing.T) {
					t.Parallel()
					s := startT(t, Config{Kind: kind, Models: []string{"m1", "m2"}, Tokens: 6})
					body := `{"model":"m2","messages":[{"role":"user","content":"hi"}],"prompt":"hi","stream":true`
					if usage {
						body += `,"stream_options":{"include_usage":true}`
					}
					res := openStream(t, context.Background(), s.URL+apiBase(kind)+path, body+"}")
					defer res.Body.Close()
					if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/event-stream") {
						t.Fatalf("status %d, Content-Type %q", res.StatusCode, res.Header.Get("Content-Type"))
					}
					fr := newFrameReader(res)
					var text string
					finishes, usageSeen := 0, 0
					var last string
					for {
						data, err := fr.next()
						if err == io.EOF {
							break
						}
						if err != nil {
							t.Fatal(err)
						}
						last = data
						if data == "[DONE]" {
							continue
						}
						m := decode(t, []byte(data))
						if m["model"] != "m2" {
							t.Errorf("model %v, want the request's m2", m["model"])
						}
						tx, fin, n := openAIText(m)
						text += tx
						if fin != nil {
							finishes++
						}
						if u, ok := m["usage"].(map[string]any); ok && u["completion_tokens"] != nil && u["completion_tokens"].(float64) > 0 {
							usageSeen++
							if u["completion_tokens"].(float64) != 6 {
								t.Errorf("usage %v", u)
							}
							if n != 0 && !(kind == LlamaCpp && path == "/v1/completions") {
								t.Errorf("usage event has choices: %s", data)
							}
						}
					}
					if last != "[DONE]" {
						t.Errorf("stream ended with %q, want [DONE]", last)
					}
					if got := len(strings.Fields(text)); got != 6 {
						t.Errorf("%d words %q, want 6", got, text)
					}
					if finishes != 1 {
						t.Errorf("%d events with finish_reason, want 1", finishes)
					}
					if want := map[bool]int{false: 0, true: 1}[usage]; usageSeen != want {
						t.Errorf("%d usage events, want %d", usageSeen, want)
					}
				})
			}
		}
	}
}

func TestOpenAINonStreamAllKinds(t *testing.T) {
	for _, kind := range Kinds() {
		for _, path := range []string{"/v1/chat/completions", "/v1/completions"} {
			t.Run(kind+path, func(t *testing.T) {
				t.Parallel()
				s := startT(t, Config{Kind: kind, Models: []string{"m1"}, Tokens: 10})
				res, b := post(t, s.URL+apiBase(kind)+path, `{"model":"m1","messages":[{"role":"user","content":"hi"}],"prompt":"hi","max_tokens":4}`)
				if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), "application/json") {
					t.Fatalf("status %d, Content-Type %q: %s", res.StatusCode, res.Header.Get("Content-Type"), b)
				}
				m := decode(t, b)
				text, finish, _ := openAIText(m)
				if n := len(strings.Fields(text)); n != 4 {
					t.Errorf("%d words, want max_tokens 4: %q", n, text)
				}
				if finish != "length" {
					t.Errorf("finish_reason %v, want length (capped by max_tokens)", finish)
				}
				u := m["usage"].(map[string]any)
				if u["completion_tokens"].(float64) != 4 || u["total_tokens"].(float64) != u["prompt_tokens"].(float64)+4 {
					t.Errorf("usage %v", u)
				}
			})
		}
	}
}

func TestOllamaNative(t *testing.T) {
	s := startT(t, Config{Kind: Ollama, Models: []string{"llama3.2:latest", "Phi"}, Tokens: 3})

	// Stream by default; the model name is matched without tag and case.
	res := openStream(t, context.Background(), s.URL+"/api/chat", `{"model":"LLAMA3.2","messages":[{"role":"user","content":"hi"}]}`)
	fr := newFrameReader(res)
	var lines []map[string]any
	for {
		l, err := fr.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, decode(t, []byte(l)))
	}
	res.Body.Close()
	if len(lines) != 4 {
		t.Fatalf("%d lines, want 3 tokens + done", len(lines))
	}
	final := lines[3]
	if final["done"] != true || final["done_reason"] != "stop" || final["eval_count"].(float64) != 3 || final["model"] != "LLAMA3.2" {
		t.Errorf("final line %v", final)
	}
	for _, l := range lines[:3] {
		if l["done"] != false || l["message"].(map[string]any)["content"] == "" {
			t.Errorf("token line %v", l)
		}
	}

	// generate, non-stream
	_, b := post(t, s.URL+"/api/generate", `{"model":"phi","prompt":"hi","stream":false}`)
	m := decode(t, b)
	if m["done"] != true || len(strings.Fields(m["response"].(string))) != 3 || len(m["context"].([]any)) == 0 {
		t.Errorf("generate: %s", b)
	}

	// load-only requests
	_, b = post(t, s.URL+"/api/generate", `{"model":"phi"}`)
	if m := decode(t, b); m["done_reason"] != "load" {
		t.Errorf("empty generate: %s", b)
	}

	// tags list the full names; ps lists the used models
	_, b = get(t, s.URL+"/api/tags")
	var tags struct {
		Models []struct{ Name, Digest string }
	}
	_ = json.Unmarshal(b, &tags)
	if len(tags.Models) != 2 || tags.Models[0].Name != "llama3.2:latest" || tags.Models[1].Name != "Phi:latest" || len(tags.Models[0].Digest) != 64 {
		t.Errorf("tags: %s", b)
	}
	if tags.Models[0].Digest != New(Config{Kind: Ollama, Models: []string{"llama3.2:latest"}}).models.Load().list[0].digest {
		t.Errorf("digest is not deterministic")
	}
	_, b = get(t, s.URL+"/api/ps")
	if !strings.Contains(string(b), `"name":"llama3.2:latest"`) || !strings.Contains(string(b), `"expires_at"`) {
		t.Errorf("ps: %s", b)
	}

	// embeddings
	_, b = post(t, s.URL+"/api/embed", `{"model":"phi","input":["a","b"]}`)
	var emb struct{ Embeddings [][]float64 }
	_ = json.Unmarshal(b, &emb)
	if len(emb.Embeddings) != 2 || len(emb.Embeddings[0]) != DefaultEmbeddingDims {
		t.Fatalf("embed: %s", b)
	}
	var norm float64
	for _, v := range emb.Embeddings[0] {
		norm += v * v
	}
	if norm < 0.999 || norm > 1.001 {
		t.Errorf("embed vector not normalised: |v|^2 = %v", norm)
	}
	_, b2 := post(t, s.URL+"/api/embed", `{"model":"phi","input":["a","b"]}`)
	if string(b[:200]) != string(b2[:200]) {
		t.Errorf("embeddings not deterministic")
	}

	// errors
	if res, b := post(t, s.URL+"/api/chat", `{"messages":[]}`); res.StatusCode != 400 || string(b) != `{"error":"model is required"}` {
		t.Errorf("no model: %d %s", res.StatusCode, b)
	}
	if res, b := post(t, s.URL+"/api/chat", ``); res.StatusCode != 400 || string(b) != `{"error":"missing request body"}` {
		t.Errorf("no body: %d %s", res.StatusCode, b)
	}
	if res, b := post(t, s.URL+"/api/chat", `{"model":"x"}`); res.StatusCode != 404 || string(b) != `{"error":"model 'x' not found"}` {
		t.Errorf("unknown model: %d %s", res.StatusCode, b)
	}
	if res, b := post(t, s.URL+"/v1/chat/completions", `{"model":"x","messages":[{"role":"user","content":"hi"}],"stream":true}`); res.StatusCode != 404 ||
		string(b) != "{\"error\":{\"message\":\"model 'x' not found\",\"type\":\"api_error\",\"param\":null,\"code\":null}}\n" {
		t.Errorf("unknown model /v1: %d %q", res.StatusCode, b)
	}
	if res, b := get(t, s.URL+"/v1/models/llama3.2:latest"); res.StatusCode != 200 || decode(t, b)["id"] != "llama3.2:latest" {
		t.Errorf("/v1/models/{id}: %d %s", res.StatusCode, b)
	}
}

func TestUnknownModelShapes(t *testing.T) {
	for _, kind := range []string{OpenAI, LMStudio, VLLM} {
		t.Run(kind, func(t *testing.T) {
			s := startT(t, Config{Kind: kind, Models: []string{"a"}})
			res, b := post(t, s.URL+"/v1/chat/completions", `{"model":"nope","messages":[{"role":"user","content":"hi"}],"stream":true}`)
			if res.StatusCode != 404 || !strings.HasPrefix(res.Header.Get("Content-Type"), "application/json") {
				t.Fatalf("%d %s", res.StatusCode, b)
			}
			e := decode(t, b)["error"].(map[string]any)
			if !strings.Contains(e["message"].(string), "nope") || e["type"] == nil {
				t.Errorf("error %v", e)
			}
			res, b = post(t, s.URL+"/v1/chat/completions", `{"model":"a","messages":`)
			if res.StatusCode != 400 {
				t.Errorf("invalid JSON: %d %s", res.StatusCode, b)
			}
			res, b = get(t, s.URL+"/no/such/path")
			if res.StatusCode != 404 || !json.Valid(b) {
				t.Errorf("unknown path: %d %s", res.StatusCode, b)
			}
		})
	}
}

func TestContextLength(t *testing.T) {
	long := `{"model":"m","messages":[{"role":"user","content":"` + strings.Repeat("hi ", 3000) + `"}]}`
	for kind, want := range map[string]int{LlamaCpp: 400, VLLM: 400, OpenAI: 400, Ollama: 200, LMStudio: 200} {
		s := startT(t, Config{Kind: kind, Models: []string{"m"}, ContextLength: 1000})
		res, b := post(t, s.URL+"/v1/chat/completions", long)
		if res.StatusCode != want {
			t.Errorf("%s: %d, want %d: %s", kind, res.StatusCode, want, b)
		}
		if want == 200 {
			if pt := decode(t, b)["usage"].(map[string]any)["prompt_tokens"].(float64); pt != 1000 {
				t.Errorf("%s: prompt_tokens %v, want truncation to 1000", kind, pt)
			}
		}
	}
}

func TestLlamaCppIgnoresModel(t *testing.T) {
	s := startT(t, Config{Kind: LlamaCpp, Models: []string{"tiny"}})
	for _, body := range []string{`{"model":"nope","messages":[{"role":"user","content":"hi"}]}`, `{"messages":[{"role":"user","content":"hi"}]}`} {
		res, b := post(t, s.URL+"/v1/chat/completions", body)
		if res.StatusCode != 200 || decode(t, b)["model"] != "tiny" {
			t.Errorf("%s -> %d %s", body, res.StatusCode, b)
		}
	}
	res, b := post(t, s.URL+"/v1/embeddings", `{"input":"hi"}`)
	if res.StatusCode != 200 || len(decode(t, b)["data"].([]any)) != 1 {
		t.Errorf("embeddings: %d %s", res.StatusCode, b)
	}
}

func TestVLLMAndLMStudioRoutes(t *testing.T) {
	v := startT(t, Config{Kind: VLLM, Models: []string{"Qwen/Qwen2.5-7B-Instruct"}, ContextLength: 32768})
	res, b := get(t, v.URL+"/health")
	if res.StatusCode != 200 || len(b) != 0 {
		t.Errorf("vllm /health: %d %q", res.StatusCode, b)
	}
	_, b = get(t, v.URL+"/v1/models")
	d := decode(t, b)["data"].([]any)[0].(map[string]any)
	if d["id"] != "Qwen/Qwen2.5-7B-Instruct" || d["max_model_len"].(float64) != 32768 {
		t.Errorf("vllm models: %s", b)
	}
	if res, _ := post(t, v.URL+"/health", "{}"); res.StatusCode != 405 {
		t.Errorf("vllm POST /health: %d", res.StatusCode)
	}

	l := startT(t, Config{Kind: LMStudio, Models: []string{"qwen2.5-7b-instruct", "nomic-embed-text"}})
	_, b = get(t, l.URL+"/api/v0/models")
	var v0 struct {
		Object string
		Data   []map[string]any
	}
	_ = json.Unmarshal(b, &v0)
	if v0.Object != "list" || len(v0.Data) != 2 || v0.Data[0]["state"] != "loaded" || v0.Data[1]["state"] != "not-loaded" ||
		v0.Data[1]["type"] != "embeddings" || v0.Data[0]["max_context_length"].(float64) != DefaultContextLength {
		t.Errorf("lmstudio v0 models: %s", b)
	}
	post(t, l.URL+"/v1/embeddings", `{"model":"nomic-embed-text","input":"x"}`)
	_, b = get(t, l.URL+"/api/v0/models")
	if !strings.Contains(string(b), `"id":"nomic-embed-text","object":"model","type":"embeddings","publisher":"lmstudio-community","arch":"nomic-bert","compatibility_type":"gguf","quantization":"Q4_K_M","state":"loaded"`) {
		t.Errorf("lmstudio model not loaded after use: %s", b)
	}
	if res, b := get(t, l.URL+"/api/v0/models/nomic-embed-text"); res.StatusCode != 200 || decode(t, b)["id"] != "nomic-embed-text" {
		t.Errorf("v0 model: %d %s", res.StatusCode, b)
	}
}

func TestSimNameHeaderStatsAndRecording(t *testing.T) {
	s := startT(t, Config{Kind: Ollama, Name: "backend-a", Models: []string{"m"}})
	res, _ := get(t, s.URL+"/")
	if res.Header.Get("X-Sim-Name") != "backend-a" {
		t.Errorf("X-Sim-Name = %q", res.Header.Get("X-Sim-Name"))
	}
	get(t, s.URL+"/api/tags")
	req, _ := http.NewRequest(http.MethodPost, s.URL+"/api/chat?x=1", strings.NewReader(`{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":false}`))
	req.Header.Set("X-Trace", "t1")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if res.Header.Get("X-Sim-Name") != "backend-a" {
		t.Errorf("chat X-Sim-Name = %q", res.Header.Get("X-Sim-Name"))
	}
	get(t, s.URL+"/") // a probe after the chat must not replace LastRequest
	get(t, s.URL+"/nope")

	st := s.Stats()
	if st.Total != 5 || st.ByPath["GET /"] != 2 || st.ByPath["POST /api/chat"] != 1 || st.ByPath["GET /nope"] != 1 || st.Name != "backend-a" || st.Kind != Ollama {
		t.Errorf("stats %+v", st)
	}
	if s.Requests("/") != 2 || s.Requests("/api/chat") != 1 || s.Requests("/nope") != 1 || s.Requests("/x") != 0 {
		t.Errorf("Requests: / %d, chat %d", s.Requests("/"), s.Requests("/api/chat"))
	}
	if last := s.LastRequest(); last.Path != "/nope" {
		t.Errorf("LastRequest %+v, want /nope", last)
	}
	rec, ok := s.LastRequestTo("/api/chat")
	if !ok || rec.Method != "POST" || rec.RawQuery != "x=1" || rec.Header.Get("X-Trace") != "t1" || !strings.Contains(string(rec.Body), `"model":"m"`) {
		t.Errorf("LastRequestTo %+v", rec)
	}
	if _, ok := s.LastRequestTo("/api/ps"); ok {
		t.Errorf("LastRequestTo for an unused path")
	}
	s.ResetStats()
	if st := s.Stats(); st.Total != 0 || len(st.ByPath) != 0 || s.Requests("/") != 0 {
		t.Errorf("after reset %+v", st)
	}
	if _, ok := s.LastRequestTo("/api/chat"); ok {
		t.Errorf("recorded request survived ResetStats")
	}
}

func TestSetModels(t *testing.T) {
	s := startT(t, Config{Kind: OpenAI})
	_, b := get(t, s.URL+"/v1/models")
	if !strings.Contains(string(b), `"id":"tiny"`) {
		t.Errorf("default model: %s", b)
	}
	s.SetModels([]string{"a", "b"})
	_, b = get(t, s.URL+"/v1/models")
	if strings.Contains(string(b), "tiny") || !strings.Contains(string(b), `"id":"b"`) {
		t.Errorf("after SetModels: %s", b)
	}
	if res, _ := post(t, s.URL+"/v1/chat/completions", `{"model":"tiny","messages":[{"role":"user","content":"x"}]}`); res.StatusCode != 404 {
		t.Errorf("removed model still served: %d", res.StatusCode)
	}
}

func TestControlRoutes(t *testing.T) {
	s := startT(t, Config{Kind: Ollama, Models: []string{"m"}})
	chat := `{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":false}`

	res, b := post(t, s.URL+"/_sim/fault", `{"mode":"status","status":429,"retry_after":3,"path":"/api/chat"}`)
	if res.StatusCode != 200 || decode(t, b)["status"].(float64) != 429 {
		t.Fatalf("set fault: %d %s", res.StatusCode, b)
	}
	if f := s.Fault(); f.Mode != FaultStatus || f.RetryAfter != 3 || f.Path != "/api/chat" {
		t.Errorf("Fault() = %+v", f)
	}
	res, b = post(t, s.URL+"/api/chat", chat)
	if res.StatusCode != 429 || res.Header.Get("Retry-After") != "3" || !strings.HasPrefix(string(b), `{"error":`) {
		t.Errorf("faulted chat: %d %q %s", res.StatusCode, res.Header.Get("Retry-After"), b)
	}
	_, b = get(t, s.URL+"/_sim/fault")
	if decode(t, b)["mode"] != "status" {
		t.Errorf("GET fault: %s", b)
	}
	post(t, s.URL+"/_sim/fault", `{}`)
	if res, _ := post(t, s.URL+"/api/chat", chat); res.StatusCode != 200 {
		t.Errorf("after clearing: %d", res.StatusCode)
	}
	post(t, s.URL+"/_sim/fault", `{"mode":"slow_headers","delay":"1ms"}`)
	if f := s.Fault(); f.Delay != time.Millisecond {
		t.Errorf("delay %v", f.Delay)
	}
	post(t, s.URL+"/_sim/fault", ``)
	if s.Fault().Mode != "" {
		t.Errorf("empty body did not clear")
	}
	for _, bad := range []string{`{"mode":"explode"}`, `{"mode":"slow_headers","delay":"soon"}`, `{"mode":"status","status":9999}`, `{"mode":"error","bogus":1}`, `[`} {
		if res, b := post(t, s.URL+"/_sim/fault", bad); res.StatusCode != 400 || decode(t, b)["error"] == nil {
			t.Errorf("fault %s: %d %s", bad, res.StatusCode, b)
		}
	}

	res, b = post(t, s.URL+"/_sim/models", `["x","y:1b"]`)
	if res.StatusCode != 200 {
		t.Fatalf("models: %d %s", res.StatusCode, b)
	}
	_, b = get(t, s.URL+"/api/tags")
	if !strings.Contains(string(b), `"name":"x:latest"`) || !strings.Contains(string(b), `"name":"y:1b"`) || !strings.Contains(string(b), `"parameter_size":"1.0B"`) {
		t.Errorf("tags after /_sim/models: %s", b)
	}
	if res, _ := post(t, s.URL+"/_sim/models", `{"a":1}`); res.StatusCode != 400 {
		t.Errorf("bad models body: %d", res.StatusCode)
	}

	post(t, s.URL+"/_sim/timing", `{"ttft":"5ms","tokens":7}`)
	if ttft, _, n := s.Timing(); ttft != 5*time.Millisecond || n != 7 {
		t.Errorf("timing %v %d", ttft, n)
	}

	_, b = get(t, s.URL+"/_sim/stats")
	var st Stats
	if err := json.Unmarshal(b, &st); err != nil || st.Total != 3 || st.ByPath["POST /api/chat"] != 2 || st.Faults != 1 {
		t.Errorf("stats %s", b)
	}
	_, b = get(t, s.URL+"/_sim/last?path=/api/chat")
	if !strings.Contains(string(b), `"body": "{\"model\":\"m\"`) {
		t.Errorf("last: %s", b)
	}
	post(t, s.URL+"/_sim/reset", "")
	if s.Stats().Total != 0 {
		t.Errorf("reset did not zero stats")
	}
	if res, _ := get(t, s.URL+"/_sim/nope"); res.StatusCode != 404 {
		t.Errorf("unknown control route: %d", res.StatusCode)
	}
	if res, _ := do(t, http.MethodPatch, s.URL+"/_sim/stats", ""); res.StatusCode != 405 {
		t.Errorf("wrong method: %d", res.StatusCode)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	for _, c := range []Config{{Kind: "nope"}, {Kind: Ollama, Tokens: -1}, {Kind: Ollama, TTFT: -1}, {Kind: Ollama, Models: []string{" "}}} {
		if _, err := Start(c); err == nil {
			t.Errorf("Start(%+v) succeeded", c)
		}
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("New(%+v) did not panic", c)
				}
			}()
			New(c)
		}()
	}
	if k, ok := NormalizeKind("LM-Studio"); !ok || k != LMStudio {
		t.Errorf("NormalizeKind(LM-Studio) = %q %v", k, ok)
	}
}

func TestServeHTTPWithoutServer(t *testing.T) {
	// Usable as a plain handler (e.g. with httptest.NewRecorder).
	s := New(Config{Kind: OpenAI, Models: []string{"m"}, Tokens: 2})
	rec := &recorder{h: http.Header{}}
	req, _ := http.NewRequest(http.MethodPost, "/v1/chat/completions", strings.NewReader(`{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true}`))
	s.ServeHTTP(rec, req)
	if rec.status != 200 || !strings.HasSuffix(rec.body.String(), "data: [DONE]\n\n") || rec.flushes < 5 {
		t.Errorf("status %d, %d flushes, body %s", rec.status, rec.flushes, rec.body.String())
	}
}

// TestForcedTools: a request that forces a tool gets a call to it, on the
// Messages API and on chat completions; one that does not gets text.
func TestForcedTools(t *testing.T) {
	for _, tc := range []struct {
		kind, path, body, want string
	}{
		{Ollama, "/v1/messages", `{"model":"m","max_tokens":9,"tools":[{"name":"get_weather","input_schema":{}}],"tool_choice":{"type":"tool","name":"get_weather"},"messages":[{"role":"user","content":"hi"}]}`,
			`"content":[{"type":"tool_use","id":"toolu_`},
		{LlamaCpp, "/v1/messages", `{"model":"m","max_tokens":9,"tools":[{"name":"a"},{"name":"b"}],"tool_choice":{"type":"any"},"messages":[{"role":"user","content":"hi"}]}`,
			`"name":"a","input":{}}],"model":"m","stop_reason":"tool_use"`},
		{Ollama, "/v1/messages", `{"model":"m","max_tokens":9,"tools":[{"name":"a"}],"messages":[{"role":"user","content":"hi"}]}`,
			`"content":[{"type":"text"`},
		{OpenAI, "/v1/chat/completions", `{"model":"m","tools":[{"type":"function","function":{"name":"get_weather"}}],"tool_choice":{"type":"function","function":{"name":"get_weather"}},"messages":[{"role":"user","content":"hi"}]}`,
			`"function":{"name":"get_weather","arguments":"{}"}}]},"logprobs":null,"finish_reason":"tool_calls"`},
		{VLLM, "/v1/chat/completions", `{"model":"m","tools":[{"type":"function","function":{"name":"x"}}],"tool_choice":"required","messages":[{"role":"user","content":"hi"}]}`,
			`"finish_reason":"tool_calls"`},
		{OpenAI, "/v1/chat/completions", `{"model":"m","tools":[{"type":"function","function":{"name":"x"}}],"tool_choice":"auto","messages":[{"role":"user","content":"hi"}]}`,
			`"finish_reason":"stop"`},
	} {
		s, err := Start(Config{Kind: tc.kind, Models: []string{"m"}})
		if err != nil {
			t.Fatal(err)
		}
		res, err := http.Post(s.URL+tc.path, "application/json", strings.NewReader(tc.body))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		s.Close()
		if res.StatusCode != 200 || !strings.Contains(string(b), tc.want) || !json.Valid(b) {
			t.Errorf("%s %s: %d %s; want it to contain %s", tc.kind, tc.path, res.StatusCode, b, tc.want)
		}
	}
}

func TestResponsesAPI(t *testing.T) {
	for _, kind := range []string{Ollama, VLLM, LMStudio, LlamaCpp, OpenAI} {
		s, err := Start(Config{Kind: kind, Models: []string{"m"}, Tokens: 4})
		if err != nil {
			t.Fatal(err)
		}
		res, err := http.Post(s.URL+"/v1/responses", "application/json", strings.NewReader(`{"model":"m","input":"hi","max_output_tokens":3}`))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		s.Close()
		served := kind == Ollama || kind == VLLM || kind == LMStudio
		var r struct {
			Object string `json:"object"`
			Output []struct {
				Content []struct {
					Text string `json:"text"`
				} `json:"content"`
			} `json:"output"`
		}
		switch {
		case served && (res.StatusCode != 200 || json.Unmarshal(b, &r) != nil || r.Object != "response" ||
			len(r.Output) != 1 || len(strings.Fields(r.Output[0].Content[0].Text)) != 3):
			t.Errorf("%s: %d %s", kind, res.StatusCode, b)
		case !served && res.StatusCode != 404:
			t.Errorf("%s serves /v1/responses: %d", kind, res.StatusCode)
		}
	}
}

// TestResponsesStream: a streamed /v1/responses is the event stream, in the
// order OpenAI's server sends it, sequence numbers counting up from 0.
func TestResponsesStream(t *testing.T) {
	s, err := Start(Config{Kind: VLLM, Models: []string{"m"}, Tokens: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	res, err := http.Post(s.URL+"/v1/responses", "application/json", strings.NewReader(`{"model":"m","input":"hi","stream":true}`))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	var names []string
	var text string
	for i, block := range strings.Split(strings.TrimSpace(string(b)), "\n\n") {
		name, data, ok := strings.Cut(block, "\ndata: ")
		var e struct {
			Type  string `json:"type"`
			Seq   int    `json:"sequence_number"`
			Delta string `json:"delta"`
			Text  string `json:"text"`
		}
		if !ok || json.Unmarshal([]byte(data), &e) != nil || "event: "+e.Type != name || e.Seq != i {
			t.Fatalf("event %d is not a Responses event: %q", i, block)
		}
		names = append(names, e.Type)
		text += e.Delta
		if e.Type == "response.output_text.done" && e.Text != text {
			t.Errorf("output_text.done text %q, deltas %q", e.Text, text)
		}
	}
	want := "response.created response.in_progress response.output_item.added response.content_part.added " +
		"response.output_text.delta response.output_text.delta response.output_text.delta response.output_text.done " +
		"response.content_part.done response.output_item.done response.completed"
	if got := strings.Join(names, " "); got != want || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/event-stream") {
		t.Errorf("events %s (%s)\nwant %s", got, res.Header.Get("Content-Type"), want)
	}
}
