package integration

// The hostile-client suite: each finding is one row of a table, run through
// real Caddy against the simulator, in both engines. What the backend
// received is read back from the simulator, so a rule that only looks right
// from the client's side still fails.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/caddy-olla/olla/internal/sim"
)

// errorShape says which API's error envelope a body is in: "ollama"
// ({"error":"..."}), "openai" ({"error":{"message","type"}}), "anthropic"
// ({"type":"error",...}) or "" when it is none of them.
func errorShape(body string) string {
	var anthropic struct {
		Type  string `json:"type"`
		Error struct {
			Type    string `json:"type"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal([]byte(body), &anthropic) == nil && anthropic.Type == "error" && anthropic.Error.Message != "" {
		return "anthropic"
	}
	var ollama struct {
		Error string `json:"error"`
	}
	if json.Unmarshal([]byte(body), &ollama) == nil && ollama.Error != "" {
		return "ollama"
	}
	var openAI struct {
		Error struct {
			Message string `json:"message"`
			Type    string `json:"type"`
		} `json:"error"`
	}
	if json.Unmarshal([]byte(body), &openAI) == nil && openAI.Error.Message != "" && openAI.Error.Type != "" {
		return "openai"
	}
	return ""
}

// errorMessage is the human-readable message of an error body in any of
// the three envelopes.
func errorMessage(body string) string {
	var ollama struct {
		Error json.RawMessage `json:"error"`
	}
	if json.Unmarshal([]byte(body), &ollama) != nil {
		return ""
	}
	var msg string
	if json.Unmarshal(ollama.Error, &msg) == nil {
		return msg
	}
	var inner struct {
		Message string `json:"message"`
	}
	_ = json.Unmarshal(ollama.Error, &inner)
	return inner.Message
}

// sendAsWritten makes one request with the path exactly as written: Go's client
// sends a parsed URL's escaped path unchanged, dot segments, doubled
// slashes and percent-escapes included.
func sendAsWritten(t testing.TB, method, path, body string, header ...string) *http.Response {
	t.Helper()
	var rd *strings.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	var req *http.Request
	var err error
	if rd != nil {
		req, err = http.NewRequest(method, base+path, rd)
	} else {
		req, err = http.NewRequest(method, base+path, nil)
	}
	if err != nil {
		t.Fatal(err)
	}
	if got := req.URL.RequestURI(); got != path {
		t.Fatalf("the client would send %q, not %q", got, path)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	res, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return res
}

// anyRefusal in a table's status column accepts any 4xx or 5xx answer.
const anyRefusal = -1

// managementWords name Ollama's model-management routes: no request of the
// suite may reach a backend path containing one.
var managementWords = []string{"pull", "push", "create", "copy", "delete", "blobs"}

func assertNoManagementReached(t *testing.T, sims ...*sim.Server) {
	t.Helper()
	for _, s := range sims {
		for key := range s.Stats().ByPath {
			for _, w := range managementWords {
				if strings.Contains(strings.ToLower(key), w) {
					t.Errorf("backend %s received %q", s.Stats().Name, key)
				}
			}
		}
	}
}

// TestSecurityPaths: every path rule (the model-management guard, the
// proxy route's API narrowing, the error format, listings) applies to the
// normalised path the engines forward, on every prefix; a path that
// normalises outside its route is refused.
func TestSecurityPaths(t *testing.T) {
	for _, engine := range engineNames {
		t.Run(engine, func(t *testing.T) {
			o := startSim(t, sim.Config{Kind: sim.Ollama, Name: "o", Models: []string{"m"}})
			lms := startSim(t, sim.Config{Kind: sim.LMStudio, Name: "lms", Models: []string{"lms-only"}})
			load(t, site("engine "+engine+"\n"+endpointBlock("o", o.URL, "ollama")+endpointBlock("lms", lms.URL, "lm-studio")))
			waitRoutable(t, "o", "lms")
			const pullBody = `{"model":"m","name":"m"}`
			for _, tc := range []struct {
				method, path, body string
				status             int
				shape              string // error envelope expected
			}{
				// the management guard, on the raw and on every spelling
				{"POST", "/olla/ollama/api/pull", pullBody, 501, "ollama"},
				{"POST", "/olla/ollama/api//pull", pullBody, 501, "ollama"},
				{"POST", "/olla/ollama//api/pull", pullBody, 501, "ollama"},
				{"POST", "/olla/ollama/api/./pull", pullBody, 501, "ollama"},
				{"POST", "/olla/ollama/x/../api/pull", pullBody, 501, "ollama"},
				{"POST", "/olla/ollama/api/pull/", pullBody, 501, "ollama"},
				{"POST", "/olla/ollama/api/pull/.", pullBody, 501, "ollama"},
				{"POST", "/olla/ollama/api%2Fpull", pullBody, 501, "ollama"},
				{"POST", "/olla/%6fllama/api/pull", pullBody, 501, "ollama"},
				{"POST", "/olla/ollama/api/push", pullBody, 501, "ollama"},
				{"POST", "/olla/ollama/api/create", pullBody, 501, "ollama"},
				{"POST", "/olla/ollama/api/copy", `{"source":"m","destination":"n"}`, 501, "ollama"},
				{"DELETE", "/olla/ollama/api/delete", pullBody, 501, "ollama"},
				{"DELETE", "/olla/ollama/api/./delete", pullBody, 501, "ollama"},
				// the same routes under every other prefix
				{"POST", "/olla/proxy/api/pull", pullBody, 501, "ollama"},
				{"POST", "/olla/proxy/api//pull", pullBody, 501, "ollama"},
				{"POST", "/olla/openai/api/pull", pullBody, 501, "openai"},
				{"POST", "/olla/openai/api/./pull", pullBody, 501, "openai"},
				{"POST", "/olla/openai/x/../api/create", pullBody, 501, "openai"},
				{"POST", "/olla/lmstudio/api/pull", pullBody, 501, "openai"},
				// blobs: uploading a model file to one backend at random
				{"POST", "/olla/ollama/api/blobs/sha256:abc", "x", 501, "ollama"},
				{"HEAD", "/olla/ollama/api/blobs/sha256:abc", "", 501, ""},
				{"POST", "/olla/ollama/api//blobs/sha256:abc", "x", 501, "ollama"},
				{"POST", "/olla/openai/api/blobs/sha256:abc", "x", 501, "openai"},
				// a path that climbs out of its route, or whose escapes
				// would turn into dot segments or extra slashes
				{"POST", "/olla/ollama/../openai/v1/chat/completions", chatBodyM, 400, "openai"},
				{"POST", "/olla/ollama/api/../../openai/api/pull", pullBody, 400, "ollama"},
				{"POST", "/olla/openai/../ollama/api/pull", pullBody, 400, "openai"},
				{"POST", "/olla/ollama/api/%2e/pull", pullBody, 400, "ollama"},
				{"POST", "/olla/ollama/api/%2e%2e/api/pull", pullBody, 400, "ollama"},
				{"POST", "/olla/ollama/api%2F..%2Fapi%2Fpull", pullBody, 400, "ollama"},
				{"POST", "/olla/ollama/api/%2Fpull", pullBody, 400, "ollama"},
				// the error format follows the normalised path
				{"POST", "/olla/ollama//api/chat", `{"model":`, 400, "ollama"},
				{"POST", "/olla/ollama/x/../v1/messages", `{"model":`, 400, "anthropic"},
				// the proxy route's narrowing to the types that serve the
				// API path: Ollama's /api/chat never goes to LM Studio
				// (which refusal a model of another type gets is routing's business)
				{"POST", "/olla/proxy//api/chat", `{"model":"lms-only","stream":false}`, anyRefusal, "ollama"},
				{"POST", "/olla/proxy/api/./chat", `{"model":"lms-only","stream":false}`, anyRefusal, "ollama"},
			} {
				res := sendAsWritten(t, tc.method, tc.path, tc.body)
				b := readAll(t, res)
				if res.StatusCode != tc.status && !(tc.status == anyRefusal && res.StatusCode >= 400) {
					t.Errorf("%s %s: status %d, want %d: %s", tc.method, tc.path, res.StatusCode, tc.status, b)
					continue
				}
				if tc.method != "HEAD" && errorShape(b) != tc.shape {
					t.Errorf("%s %s: error body in %q format, want %q: %s", tc.method, tc.path, errorShape(b), tc.shape, b)
				}
				if ep := res.Header.Get("X-Olla-Endpoint"); ep != "" {
					t.Errorf("%s %s: answered by backend %s", tc.method, tc.path, ep)
				}
			}
			assertNoManagementReached(t, o, lms)
			if n := lms.Requests("/api/chat"); n != 0 {
				t.Errorf("LM Studio received %d Ollama /api/chat requests", n)
			}

			// what passes is forwarded exactly as it was checked
			for _, tc := range []struct{ path, upstream string }{
				{"/olla/ollama/api//chat", "/api/chat"},
				{"/olla/ollama/x/../api/./chat", "/api/chat"},
				{"/olla/proxy//api/chat", "/api/chat"},
				{"/olla/openai/v1//chat/./completions", "/v1/chat/completions"},
			} {
				o.ResetStats()
				res := sendAsWritten(t, "POST", tc.path, chatBodyM)
				b := readAll(t, res)
				if res.StatusCode != 200 || res.Header.Get("X-Olla-Endpoint") != "o" {
					t.Errorf("%s: %d from %q: %s", tc.path, res.StatusCode, res.Header.Get("X-Olla-Endpoint"), b)
					continue
				}
				// only the POSTs count: health probes and load polls (GETs) go on
				// in the background
				if got := postsOf(o.Stats().ByPath); got["POST "+tc.upstream] != 1 || len(got) != 1 {
					t.Errorf("%s: the backend saw %v, want only POST %s", tc.path, got, tc.upstream)
				}
			}
			// listings answer on the normalised path too
			for _, p := range []string{"/olla/ollama/api//tags", "/olla/ollama/x/../api/tags", "/olla/openai/v1/./models"} {
				res := sendAsWritten(t, "GET", p, "")
				if b := readAll(t, res); res.StatusCode != 200 || !strings.Contains(b, `"m`) {
					t.Errorf("GET %s: %d %s", p, res.StatusCode, b)
				}
			}
		})
	}
}

// TestSecurityModelKeys: a body that routes on one model must not run
// another. Go backends such as Ollama read keys in any case and keep the
// last, so every other spelling of "model" beside it is refused, naming
// the keys, and an alias rewrites the one key the backend reads.
func TestSecurityModelKeys(t *testing.T) {
	for _, engine := range engineNames {
		t.Run(engine, func(t *testing.T) {
			o := startSim(t, sim.Config{Kind: sim.Ollama, Name: "o", Models: []string{"m", "other"}})
			load(t, site("engine "+engine+"\n"+endpointBlock("o", o.URL, "ollama")+"\naliases {\n fast m\n}\n"))
			waitRoutable(t, "o")
			for _, tc := range []struct {
				path, body string
				names      []string // keys the error must name
				shape      string
			}{
				{"/olla/ollama/api/chat", `{"model":"m","MODEL":"other","stream":false}`, []string{`"model"`, `"MODEL"`}, "ollama"},
				{"/olla/ollama/api/chat", `{"Model":"other","model":"m","stream":false}`, []string{`"Model"`, `"model"`}, "ollama"},
				{"/olla/ollama/api/generate", `{"model":"m","mOdEl":"other"}`, []string{`"mOdEl"`}, "ollama"},
				{"/olla/ollama/api/chat", `{"model":"m","\u004dODEL":"other"}`, []string{`"\u004dODEL"`}, "ollama"},
				{"/olla/ollama/api/chat", `{"model":"m","mod\u0065l":"other"}`, []string{`"mod\u0065l"`}, "ollama"},
				{"/olla/ollama/v1/chat/completions", `{"model":"fast","MODEL":"other"}`, []string{`"MODEL"`}, "openai"},
				{"/olla/openai/v1/chat/completions", `{"model":"m","Model":"other"}`, []string{`"Model"`}, "openai"},
				{"/olla/ollama/v1/messages", `{"model":"m","MODEL":"other","max_tokens":5}`, []string{`"MODEL"`}, "anthropic"},
				{"/olla/ollama/api/chat", `{"Model":"other"}`, []string{`"Model"`}, "ollama"},
			} {
				res := sendAsWritten(t, "POST", tc.path, tc.body)
				b := readAll(t, res)
				if res.StatusCode != 400 || errorShape(b) != tc.shape {
					t.Errorf("%s %s: %d in %q format, want 400 in %q: %s", tc.path, tc.body, res.StatusCode, errorShape(b), tc.shape, b)
					continue
				}
				for _, n := range tc.names {
					if !strings.Contains(errorMessage(b), n) {
						t.Errorf("%s %s: the error does not name the key %s: %s", tc.path, tc.body, n, b)
					}
				}
			}
			if got := postsOf(o.Stats().ByPath); len(got) != 0 {
				t.Errorf("the backend received refused requests: %v", got)
			}

			// an alias rewrites the one key the backend reads, however spelt
			res := sendAsWritten(t, "POST", "/olla/ollama/api/chat", `{"mod\u0065l":"fast","stream":false,"messages":[{"role":"user","content":"hi"}]}`)
			if b := readAll(t, res); res.StatusCode != 200 {
				t.Fatalf("aliased request: %d %s", res.StatusCode, b)
			}
			got, ok := o.LastRequestTo("/api/chat")
			var seen struct {
				Model string `json:"model"`
			}
			if !ok || json.Unmarshal(got.Body, &seen) != nil || seen.Model != "m" {
				t.Errorf("the backend read model %q from %s, want the alias's target m", seen.Model, got.Body)
			}
		})
	}
}

// clientCredentials are headers a client may send the proxy with its own
// key for the proxy; none may reach a backend that does not forward client
// auth.
var clientCredentials = []string{
	"Authorization", "Proxy-Authorization", "Cookie", "X-Api-Key", "Api-Key", "X-Goog-Api-Key",
	"X-Auth-Token", "X-Custom-Token", "Openai-Secret", "X-Team-Apikey",
}

// TestSecurityCredentials: one rule decides which client headers are
// credentials, in both engines; they reach only endpoints that forward
// client auth, and the endpoint's own credential always wins. Expect is not
// forwarded: the body is already buffered, so a backend's 100 Continue
// would only add a round trip.
func TestSecurityCredentials(t *testing.T) {
	for _, engine := range engineNames {
		t.Run(engine, func(t *testing.T) {
			strict := startSim(t, sim.Config{Kind: sim.Ollama, Name: "strict", Models: []string{"m-strict"}})
			fwd := startSim(t, sim.Config{Kind: sim.Ollama, Name: "fwd", Models: []string{"m-fwd"}})
			load(t, site("engine "+engine+"\n"+
				endpointBlock("strict", strict.URL, "ollama", "auth bearer backend-secret")+
				endpointBlock("fwd", fwd.URL, "ollama", "forward_client_auth")))
			waitRoutable(t, "strict", "fwd")
			header := []string{"X-Trace", "kept", "Expect", "100-continue"}
			for _, name := range clientCredentials {
				header = append(header, name, "client-"+strings.ToLower(name))
			}
			for _, tc := range []struct {
				model string
				s     *sim.Server
			}{{"m-strict", strict}, {"m-fwd", fwd}} {
				res := sendAsWritten(t, "POST", "/olla/ollama/api/chat", `{"model":"`+tc.model+`","stream":false}`, header...)
				if b := readAll(t, res); res.StatusCode != 200 {
					t.Fatalf("%s: %d %s", tc.model, res.StatusCode, b)
				}
				got, ok := tc.s.LastRequestTo("/api/chat")
				if !ok {
					t.Fatalf("%s: the backend saw no request", tc.model)
				}
				if got.Header.Get("X-Trace") != "kept" {
					t.Errorf("%s: an ordinary header was dropped: %v", tc.model, got.Header)
				}
				if v := got.Header.Get("Expect"); v != "" {
					t.Errorf("%s: Expect %q was forwarded with a buffered body", tc.model, v)
				}
				for _, name := range clientCredentials {
					v := got.Header.Get(name)
					switch {
					case name == "Proxy-Authorization" && v != "":
						t.Errorf("%s: the hop-by-hop %s reached the backend", tc.model, name)
					case tc.s == strict && name == "Authorization":
						if v != "Bearer backend-secret" {
							t.Errorf("strict: Authorization is %q, want the endpoint's own", v)
						}
					case tc.s == strict && v != "":
						t.Errorf("strict: the client's %s reached the backend: %q", name, v)
					case tc.s == fwd && name != "Proxy-Authorization" && v != "client-"+strings.ToLower(name):
						t.Errorf("fwd (forward_client_auth): %s is %q, want the client's", name, v)
					}
				}
			}
		})
	}
}

// TestSecurityConfigErrors: a config whose endpoint URL holds a password is
// refused by a JSON load too (the Caddyfile cases are golden files in
// testdata/caddyfile_adapt), and the error never prints the password,
// however it is written, also when it comes from a placeholder.
func TestSecurityConfigErrors(t *testing.T) {
	s := startSim(t, sim.Config{Kind: sim.Ollama, Name: "a", Models: []string{"m"}})
	load(t, site(endpointBlock("a", s.URL, "ollama")))
	waitRoutable(t, "a")
	t.Setenv("OLLA_TEST_SECRET_URL", "http://admin:env-s3cret@127.0.0.1:1")
	for _, tc := range []struct{ url, secret string }{
		{"http://admin:s3cret-pa55@127.0.0.1:1", "s3cret-pa55"},
		{"admin:s3cret-pa55@127.0.0.1:1", "s3cret-pa55"},
		{"http://admin:s3cret%zzpa55@127.0.0.1:1", "s3cret%zzpa55"},
		{"http://admin:s3cret/pa55@127.0.0.1:1", "s3cret"},
		{"http://127.0.0.1:1/v1?api_key=s3cret-pa55", "s3cret-pa55"},
		{"{env.OLLA_TEST_SECRET_URL}", "env-s3cret"},
	} {
		cfg, _ := json.Marshal(map[string]any{
			"admin": map[string]any{"listen": "localhost:2999"},
			"apps": map[string]any{"http": map[string]any{"servers": map[string]any{"s": map[string]any{
				"listen": []string{":40181"},
				"routes": []any{map[string]any{"handle": []any{map[string]any{
					"handler": "olla", "endpoints": []any{map[string]any{"name": "x", "url": tc.url, "type": "ollama"}},
				}}}},
			}}}},
		})
		res, err := adminClient.Post("http://localhost:2999/load", "application/json", strings.NewReader(string(cfg)))
		if err != nil {
			t.Fatal(err)
		}
		b := readAll(t, res)
		if res.StatusCode == 200 {
			t.Errorf("url %s: the config loaded", tc.url)
			continue
		}
		if strings.Contains(b, tc.secret) || !strings.Contains(b, "REDACTED") {
			t.Errorf("url %s: the error does not hide the secret: %s", tc.url, b)
		}
	}
	// the running config is untouched
	if res := post(t, "/olla/ollama/api/chat", chatBodyM); readAll(t, res) == "" || res.StatusCode != 200 {
		t.Errorf("after the refused loads: %d", res.StatusCode)
	}
}

// paddedChat is a valid Ollama chat body of exactly n bytes.
func paddedChat(n int) string {
	const head, tail = `{"model":"m","stream":false,"messages":[{"role":"user","content":"hi"}],"pad":"`, `"}`
	return head + strings.Repeat("x", n-len(head)-len(tail)) + tail
}

// holdBody starts a request on a raw connection and sends only part of its
// body, so the proxy is left reading it. chunked sends the part as one
// chunk of a chunked body instead of declaring a length.
func holdBody(t *testing.T, path string, declared int, part string, chunked bool) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", fmt.Sprintf("localhost:%d", httpPort))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	head := "POST " + path + " HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
	if chunked {
		head += "Transfer-Encoding: chunked\r\n\r\n" + fmt.Sprintf("%x\r\n%s\r\n", len(part), part)
	} else {
		head += fmt.Sprintf("Content-Length: %d\r\n\r\n%s", declared, part)
	}
	if _, err := io.WriteString(c, head); err != nil {
		t.Fatal(err)
	}
	return c
}

// rawResponse reads one response from a raw connection.
func rawResponse(t *testing.T, c net.Conn) (*http.Response, string) {
	t.Helper()
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("reading the response: %v", err)
	}
	return res, readAll(t, res)
}

// TestSecurityBodyBudget: buffered request bodies share one process-wide
// budget (request_limits max_buffered_bytes). A request that does not fit
// while others hold it gets 503 with Retry-After in its API's format, before
// a byte of its body is read; the share comes back when a request ends,
// however it ends. A body over a limit is refused from its Content-Length,
// unread; a chunked one is read no further than the limit.
func TestSecurityBodyBudget(t *testing.T) {
	for _, engine := range engineNames {
		t.Run(engine, func(t *testing.T) {
			s := startSim(t, sim.Config{Kind: sim.Ollama, Name: "a", Models: []string{"m"}, Tokens: 2})
			load(t, site("engine "+engine+"\n"+endpointBlock("a", s.URL, "ollama")+
				"\nrequest_limits {\n max_body_size 1MiB\n max_buffered_bytes 64KiB\n}\n"))
			waitRoutable(t, "a")
			const held = 60000
			body := paddedChat(held)
			// buffered reads the process-wide budget's use; waiting on it
			// orders the holder's reservation before a probe
			buffered := func(what string, want int64) {
				t.Helper()
				var got int64
				waitFor(t, what, 10*time.Second, func() bool {
					var p struct {
						RequestBodies struct {
							BufferedBytes int64 `json:"buffered_bytes"`
						} `json:"request_bodies"`
					}
					getJSON(t, "/internal/process", &p)
					got = p.RequestBodies.BufferedBytes
					return got == want
				})
			}
			chat := func(n int) (*http.Response, string) {
				t.Helper()
				res := post(t, "/olla/ollama/api/chat", paddedChat(n))
				return res, readAll(t, res)
			}
			busy := func(what string, n int) {
				t.Helper()
				res, b := chat(n)
				if res.StatusCode != 503 || res.Header.Get("Retry-After") == "" || errorShape(b) != "ollama" || !strings.Contains(b, "max_buffered_bytes") {
					t.Errorf("%s: a %d-byte request got %d, Retry-After %q: %s", what, n, res.StatusCode, res.Header.Get("Retry-After"), b)
				}
			}
			fits := func(what string, n int) {
				t.Helper()
				if res, b := chat(n); res.StatusCode != 200 {
					t.Errorf("%s: a %d-byte request got %d: %s", what, n, res.StatusCode, b)
				}
			}
			buffered("nothing buffered at the start", 0)

			// one request holds most of the budget while its body trickles in
			c := holdBody(t, "/olla/ollama/api/chat", held, body[:100], false)
			buffered("the declared length reserved before it arrives", held)
			busy("beside 60000 held bytes", 10000)
			// every API answers busy in its own format
			for _, tc := range []struct{ path, shape string }{
				{"/olla/openai/v1/chat/completions", "openai"},
				{"/olla/ollama/v1/messages", "anthropic"},
			} {
				res := post(t, tc.path, paddedChat(10000))
				if b := readAll(t, res); res.StatusCode != 503 || errorShape(b) != tc.shape || res.Header.Get("Retry-After") == "" {
					t.Errorf("%s while busy: %d %q %s", tc.path, res.StatusCode, errorShape(b), b)
				}
			}
			// refused before its body is read: with Expect: 100-continue the
			// answer comes without the body ever being sent
			e, err := net.Dial("tcp", fmt.Sprintf("localhost:%d", httpPort))
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(e, "POST /olla/ollama/api/chat HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue\r\nContent-Length: 10000\r\n\r\n")
			if res, b := rawResponse(t, e); res.StatusCode != 503 {
				t.Errorf("Expect: 100-continue while busy: %d %s", res.StatusCode, b)
			}
			e.Close()
			// a small one still fits beside it
			fits("beside 60000 held bytes", 4000)
			// the held request completes, and its share comes back
			if _, err := io.WriteString(c, body[100:]); err != nil {
				t.Fatal(err)
			}
			if res, b := rawResponse(t, c); res.StatusCode != 200 {
				t.Errorf("the held request: %d %s", res.StatusCode, b)
			}
			buffered("the share given back when the request ended", 0)
			fits("after the held one ended", 10000)

			// a client that hangs up mid-body gives its share back
			c = holdBody(t, "/olla/ollama/api/chat", held, body[:100], false)
			buffered("a second body held", held)
			busy("beside a second held body", 10000)
			c.Close()
			buffered("the share given back when the client hung up", 0)
			fits("after the holder hung up", 10000)

			// a chunked body reserves as it grows: 40000 bytes read take
			// buffers of 16, 32 and 64 KiB, never more than the limit
			c = holdBody(t, "/olla/ollama/api/chat", 0, body[:40000], true)
			buffered("a chunked body growing to 40000 bytes", 64<<10)
			busy("beside a chunked body being read", 1000)
			c.Close()
			buffered("the chunked body's share given back", 0)
			fits("after the chunked holder hung up", 30000)

			// over a limit: refused from Content-Length, the body never sent
			for _, tc := range []struct {
				declared int
				limit    string
			}{{2 << 20, "max_body_size"}, {100000, "max_buffered_bytes"}} {
				c := holdBody(t, "/olla/ollama/api/chat", tc.declared, "", false)
				res, b := rawResponse(t, c)
				if res.StatusCode != 413 || errorShape(b) != "ollama" || !strings.Contains(b, tc.limit) {
					t.Errorf("Content-Length %d: %d %s", tc.declared, res.StatusCode, b)
				}
			}
			// a chunked body over max_body_size is cut at the limit: the
			// answer comes while the client is still sending
			c = holdBody(t, "/olla/ollama/api/chat", 0, strings.Repeat("x", 70000), true)
			if res, b := rawResponse(t, c); res.StatusCode != 413 || !strings.Contains(b, "max_buffered_bytes") {
				t.Errorf("chunked body over the limit: %d %s", res.StatusCode, b)
			}
			if n := s.Requests("/api/chat"); n == 0 {
				t.Errorf("nothing reached the backend at all")
			}
		})
	}
}

// bufferedBytes is the process-wide body budget's use, from /internal/process.
func bufferedBytes(t testing.TB) int64 {
	t.Helper()
	var p struct {
		RequestBodies struct {
			BufferedBytes int64 `json:"buffered_bytes"`
		} `json:"request_bodies"`
	}
	getJSON(t, "/internal/process", &p)
	return p.RequestBodies.BufferedBytes
}

// TestSecurityAliasCopyCounted: a body rewritten for an alias is a second
// copy in memory; it is made once per name (not per attempt) and counted
// against the body budget until the request ends.
func TestSecurityAliasCopyCounted(t *testing.T) {
	for _, engine := range engineNames {
		t.Run(engine, func(t *testing.T) {
			// streams hold at one token a minute until released
			s := startSim(t, sim.Config{Kind: sim.Ollama, Name: "a", Models: []string{"a-much-longer-name"}, Tokens: 3, TokensPerSecond: 1.0 / 60})
			load(t, site("engine "+engine+"\n"+endpointBlock("a", s.URL, "ollama")+"\naliases {\n fast a-much-longer-name\n}\n"))
			waitRoutable(t, "a")
			waitFor(t, "nothing buffered", 10*time.Second, func() bool { return bufferedBytes(t) == 0 })
			body := `{"model":"fast","stream":true,"messages":[{"role":"user","content":"` + strings.Repeat("x", 20000) + `"}]}`
			want := int64(2*len(body) + len("a-much-longer-name") - len("fast"))
			done := make(chan string, 1)
			go func() {
				res, err := client.Post(base+"/olla/ollama/api/chat", "application/json", strings.NewReader(body))
				if err != nil {
					done <- err.Error()
					return
				}
				b, _ := io.ReadAll(res.Body)
				res.Body.Close()
				done <- fmt.Sprintf("%d %s", res.StatusCode, b)
			}()
			var got int64
			waitFor(t, "the body and its rewritten copy counted", 10*time.Second, func() bool {
				got = bufferedBytes(t)
				return got == want
			})
			s.SetTiming(0, 0, 3)
			if r := <-done; !strings.HasPrefix(r, "200 ") || !strings.Contains(r, `"done":true`) {
				t.Errorf("the aliased stream: %.200s", r)
			}
			waitFor(t, "both copies given back", 10*time.Second, func() bool { return bufferedBytes(t) == 0 })
			if rec, ok := s.LastRequestTo("/api/chat"); !ok || !strings.Contains(string(rec.Body), `"model":"a-much-longer-name"`) {
				t.Errorf("the backend did not get the rewritten body")
			}
		})
	}
}

// postsOf keeps the POST requests of a simulator's per-path counts: what a
// client sent through us, not the probes and polls we send on our own.
func postsOf(byPath map[string]int64) map[string]int64 {
	out := map[string]int64{}
	for k, n := range byPath {
		if strings.HasPrefix(k, "POST ") && n > 0 {
			out[k] = n
		}
	}
	return out
}
