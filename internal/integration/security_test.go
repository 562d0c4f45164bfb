package integration

// The hostile-client suite: each finding is one row of a table, run through
// real Caddy against the simulator, in both engines. What the backend
// received is read back from the simulator, so a rule that only looks right
// from the client's side still fails.

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddy-olla/olla/internal/sim"
	"github.com/caddy-olla/olla/internal/testbody"
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
	"Authentication", "X-Password", "X-Passwd", "X-Session-Id", "Cookie2", "X-Backend-Auth",
}

// TestSecurityCredentials: one rule decides which client headers are
// credentials, in both engines; they reach only endpoints that forward
// client auth, and the endpoint's own credential always wins. A client's
// Idempotency-Key names its request, not the client, and reaches both (the
// engines' own valueless one, which marks a request replayable, never
// replaces it). Expect is not
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
			header := []string{"X-Trace", "kept", "Expect", "100-continue", "Idempotency-Key", "req-7f3a"}
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
				if v := got.Header.Values("Idempotency-Key"); len(v) != 1 || v[0] != "req-7f3a" {
					t.Errorf("%s: the client's Idempotency-Key reached the backend as %q, want [req-7f3a]", tc.model, v)
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
				"listen": []string{fmt.Sprintf(":%d", secondPort)},
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
// budget (request_limits max_buffered_bytes), which holds the bytes that
// arrived (in buffers that double up to the declared length). A request
// that does not fit while others hold it gets 503 with Retry-After in its
// API's format, before a byte of its body is read; the share comes back
// when a request ends, however it ends. A body over a limit is refused from
// its Content-Length, unread; a chunked one is read no further than the
// limit.
func TestSecurityBodyBudget(t *testing.T) {
	for _, engine := range engineNames {
		t.Run(engine, func(t *testing.T) {
			s := startSim(t, sim.Config{Kind: sim.Ollama, Name: "a", Models: []string{"m"}, Tokens: 2})
			load(t, site("engine "+engine+"\n"+endpointBlock("a", s.URL, "ollama")+
				"\nrequest_limits {\n max_body_size 1MiB\n max_buffered_bytes 64KiB\n body_read_timeout 5m\n}\n"))
			waitRoutable(t, "a")
			const held = 60000
			body := paddedChat(held)
			// buffered reads the process-wide budget's use; waiting on it
			// orders the holder's reservation before a probe
			buffered := func(what string, want int64) {
				t.Helper()
				var got int64
				waitFor(t, what, 30*time.Second, func() bool {
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

			// a declared length is not held before it arrives: the first
			// 4 KiB buffer is
			c := holdBody(t, "/olla/ollama/api/chat", held, body[:100], false)
			buffered("only the first buffer held for 100 bytes in", 4096)
			fits("beside a body that declared 60000 bytes and sent 100", 10000)
			// one request holds most of the budget once most of its body is in
			if _, err := io.WriteString(c, body[100:59000]); err != nil {
				t.Fatal(err)
			}
			buffered("59000 bytes in: a buffer of the declared length", held)
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
			if _, err := io.WriteString(c, body[59000:]); err != nil {
				t.Fatal(err)
			}
			if res, b := rawResponse(t, c); res.StatusCode != 200 {
				t.Errorf("the held request: %d %s", res.StatusCode, b)
			}
			buffered("the share given back when the request ended", 0)
			fits("after the held one ended", 10000)

			// a client that hangs up mid-body gives its share back
			c = holdBody(t, "/olla/ollama/api/chat", held, body[:59000], false)
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
			waitFor(t, "nothing buffered", 30*time.Second, func() bool { return bufferedBytes(t) == 0 })
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
			waitFor(t, "the body and its rewritten copy counted", 30*time.Second, func() bool {
				got = bufferedBytes(t)
				return got == want
			})
			s.SetTiming(0, 0, 3)
			if r := <-done; !strings.HasPrefix(r, "200 ") || !strings.Contains(r, `"done":true`) {
				t.Errorf("the aliased stream: %.200s", r)
			}
			waitFor(t, "both copies given back", 30*time.Second, func() bool { return bufferedBytes(t) == 0 })
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

// siteWith is site() with extra global server options (trusted_proxies)
// and extra site directives before the olla block.
func siteWith(serverOptions, siteDirectives, ollaBlock string) string {
	return fmt.Sprintf(`{
	admin localhost:2999
	http_port %d
	https_port %d
	auto_https off
	grace_period 1s
	servers {
%s
	}
}
http://localhost:%d {
%s
	olla {
%s
	}
	respond "next handler" 200
}
`, httpPort, httpsPort, serverOptions, httpPort, siteDirectives, ollaBlock)
}

// clientFrom is an HTTP client whose connections come from a loopback
// address of its own (127.0.0.2, ...): another client to the proxy.
func clientFrom(ip string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	return &http.Client{Timeout: patientTimeout, Transport: &http.Transport{DialContext: d.DialContext}}
}

// hostileBackend is an OpenAI-compatible backend that misbehaves by model:
// "big-headers" answers with 1.2 MB of headers, "busy" a 429 asking for
// 999999999999 s, "creds" a 200 carrying credential headers beside
// rate-limit token counts. It lists the three models.
func hostileBackend(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/v1/models") {
			fmt.Fprint(w, `{"object":"list","data":[{"id":"big-headers","object":"model"},{"id":"busy","object":"model"},{"id":"creds","object":"model"}]}`)
			return
		}
		body, _ := io.ReadAll(r.Body)
		h := w.Header()
		h.Set("Content-Type", "application/json")
		switch {
		case strings.Contains(string(body), `"big-headers"`):
			pad := strings.Repeat("p", 1000)
			for i := range 1200 {
				h.Set(fmt.Sprintf("X-Pad-%d", i), pad)
			}
		case strings.Contains(string(body), `"busy"`):
			h.Set("Retry-After", "999999999999")
			w.WriteHeader(http.StatusTooManyRequests)
			fmt.Fprint(w, `{"error":{"message":"slow down","type":"rate_limit"}}`)
			return
		case strings.Contains(string(body), `"creds"`):
			h.Set("Set-Cookie", "sid=backend-secret")
			h.Set("X-Session-Token", "backend-secret")
			h.Set("Authentication-Info", "backend-secret")
			h.Set("X-Password", "backend-secret")
			h.Set("X-Backend-Auth", "backend-secret")
			h.Set("X-Ratelimit-Remaining-Tokens", "9000")
			h.Set("Anthropic-Ratelimit-Tokens-Remaining", "8000")
			h.Set("X-Trace", "kept")
		}
		fmt.Fprint(w, `{"id":"x","object":"chat.completion","model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}`)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String()
}

// TestSecurityBackendHeaders: what a backend answers with is bounded and
// scrubbed in both engines: credential headers never reach the client
// (rate-limit token counts do), a Retry-After is capped at 5 minutes on
// every route (the Anthropic one too), and a response header block over
// request_limits max_response_header_size (64 KiB by default) fails the
// attempt instead of passing 1.2 MB through.
func TestSecurityBackendHeaders(t *testing.T) {
	for _, engine := range engineNames {
		t.Run(engine, func(t *testing.T) {
			url := hostileBackend(t)
			load(t, site("engine "+engine+"\n"+endpointBlock("h", url, "openai-compatible")))
			waitRoutable(t, "h")
			chat := func(model string) string {
				return `{"model":"` + model + `","messages":[{"role":"user","content":"hi"}]}`
			}

			res := post(t, "/olla/openai/v1/chat/completions", chat("creds"))
			if b := readAll(t, res); res.StatusCode != 200 {
				t.Fatalf("creds: %d %s", res.StatusCode, b)
			}
			for _, name := range []string{"Set-Cookie", "X-Session-Token", "Authentication-Info", "X-Password", "X-Backend-Auth"} {
				if v := res.Header.Get(name); v != "" {
					t.Errorf("the backend's %s reached the client: %q", name, v)
				}
			}
			for name, want := range map[string]string{"X-Ratelimit-Remaining-Tokens": "9000", "Anthropic-Ratelimit-Tokens-Remaining": "8000", "X-Trace": "kept"} {
				if v := res.Header.Get(name); v != want {
					t.Errorf("%s is %q, want the backend's %q", name, v, want)
				}
			}

			res = post(t, "/olla/openai/v1/chat/completions", chat("big-headers"))
			b := readAll(t, res)
			if res.StatusCode != 502 || errorShape(b) != "openai" || res.Header.Get("X-Pad-1") != "" {
				t.Errorf("1.2 MB of backend headers: %d, X-Pad-1 %d bytes: %s", res.StatusCode, len(res.Header.Get("X-Pad-1")), b)
			}
			// the cap is configurable
			load(t, site("engine "+engine+"\n"+endpointBlock("h", url, "openai-compatible")+"\nrequest_limits {\n max_response_header_size 2MiB\n}\n"))
			waitRoutable(t, "h")
			res = post(t, "/olla/openai/v1/chat/completions", chat("big-headers"))
			if b := readAll(t, res); res.StatusCode != 200 || len(res.Header.Get("X-Pad-1")) != 1000 {
				t.Errorf("with max_response_header_size 2MiB: %d: %.200s", res.StatusCode, b)
			}
			// a 429 parks its endpoint: each route gets a fresh one
			for i, tc := range []struct{ path, body, shape string }{
				{"/olla/openai/v1/chat/completions", chat("busy"), "openai"},
				{"/olla/anthropic/v1/messages", `{"model":"busy","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`, "anthropic"},
			} {
				name := fmt.Sprintf("busy%d", i)
				load(t, site("engine "+engine+"\n"+endpointBlock(name, url, "openai-compatible")))
				waitRoutable(t, name)
				res := post(t, tc.path, tc.body)
				b := readAll(t, res)
				ra, err := strconv.Atoi(res.Header.Get("Retry-After"))
				if res.StatusCode != 429 || err != nil || ra < 1 || ra > 300 {
					t.Errorf("%s: %d Retry-After %q, want 429 with at most 300: %s", tc.path, res.StatusCode, res.Header.Get("Retry-After"), b)
				}
				if errorShape(b) != tc.shape {
					t.Errorf("%s: the error is not in the %s format: %s", tc.path, tc.shape, b)
				}
			}
		})
	}
}

// TestSecurityEndpointPort: a URL whose port is not 1-65535 is refused at
// load, from a Caddyfile and from JSON alike.
func TestSecurityEndpointPort(t *testing.T) {
	s := startSim(t, sim.Config{Kind: sim.Ollama, Name: "a", Models: []string{"m"}})
	load(t, site(endpointBlock("a", s.URL, "ollama")))
	waitRoutable(t, "a")
	for _, u := range []string{"http://127.0.0.1:99999", "http://127.0.0.1:0", "http://127.0.0.1:65536/v1"} {
		caddyfile := site(endpointBlock("x", u, "ollama"))
		res, err := adminClient.Post("http://localhost:2999/load", "text/caddyfile", strings.NewReader(caddyfile))
		if err != nil {
			t.Fatal(err)
		}
		if b := readAll(t, res); res.StatusCode == 200 || !strings.Contains(b, "expected 1 to 65535") {
			t.Errorf("Caddyfile url %s: %d %s", u, res.StatusCode, b)
		}
		cfg, _ := json.Marshal(map[string]any{
			"admin": map[string]any{"listen": "localhost:2999"},
			"apps": map[string]any{"http": map[string]any{"servers": map[string]any{"s": map[string]any{
				"listen": []string{fmt.Sprintf(":%d", secondPort)},
				"routes": []any{map[string]any{"handle": []any{map[string]any{
					"handler": "olla", "endpoints": []any{map[string]any{"name": "x", "url": u, "type": "ollama"}},
				}}}},
			}}}},
		})
		res, err = adminClient.Post("http://localhost:2999/load", "application/json", strings.NewReader(string(cfg)))
		if err != nil {
			t.Fatal(err)
		}
		if b := readAll(t, res); res.StatusCode == 200 || !strings.Contains(b, "expected 1 to 65535") {
			t.Errorf("JSON url %s: %d %s", u, res.StatusCode, b)
		}
	}
	if res := post(t, "/olla/ollama/api/chat", chatBodyM); readAll(t, res) == "" || res.StatusCode != 200 {
		t.Errorf("after the refused loads: %d", res.StatusCode)
	}
}

// TestSecurityPinShare: a client minting fresh session ids replaces only
// its own pins (a tenth of max_sessions by default); another client's
// session stays pinned.
func TestSecurityPinShare(t *testing.T) {
	for _, engine := range engineNames {
		t.Run(engine, func(t *testing.T) {
			a := startSim(t, sim.Config{Kind: sim.Ollama, Name: "a", Models: []string{"m"}})
			b := startSim(t, sim.Config{Kind: sim.Ollama, Name: "b", Models: []string{"m"}})
			load(t, site("engine "+engine+"\n"+endpointBlock("a", a.URL, "ollama")+endpointBlock("b", b.URL, "ollama")+
				"\nsticky_sessions {\n max_sessions 100\n}\n"))
			waitRoutable(t, "a", "b")
			victim := clientFrom("127.0.0.2")
			ask := func(hc *http.Client, session string) string {
				t.Helper()
				req, _ := http.NewRequest("POST", base+"/olla/ollama/api/chat", strings.NewReader(chatBodyM))
				req.Header.Set(sessionHeaderName, session)
				res, err := hc.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				if b := readAll(t, res); res.StatusCode != 200 {
					t.Fatalf("session %s: %d %s", session, res.StatusCode, b)
				}
				return res.Header.Get("X-Olla-Sticky-Session")
			}
			if got := ask(victim, "victim-conversation"); got != "miss" {
				t.Fatalf("the victim's first turn: %q", got)
			}
			for i := range 110 {
				ask(client, fmt.Sprintf("minted-%d", i))
			}
			if got := ask(victim, "victim-conversation"); got != "hit" {
				t.Errorf("after 110 minted sessions from another client the victim's pin is %q, want hit", got)
			}
			var st struct {
				Active    int `json:"active_sessions"`
				PerClient int `json:"max_sessions_per_client"`
			}
			getJSON(t, "/internal/stats/sticky", &st)
			if st.PerClient != 10 || st.Active != 11 {
				t.Errorf("pin store: %+v, want 10 per client and 11 held (10 minted, the victim's)", st)
			}
		})
	}
}

const sessionHeaderName = "X-Olla-Session-ID"

// TestSecurityIPv6Prefix: per-IP keys group IPv6 clients by /64 (here the
// address Caddy takes from a trusted proxy's X-Forwarded-For), so fresh
// addresses in one /64 share one rate-limit bucket; client_ipv6_prefix 128
// counts them apart.
func TestSecurityIPv6Prefix(t *testing.T) {
	for _, engine := range engineNames {
		t.Run(engine, func(t *testing.T) {
			s := startSim(t, sim.Config{Kind: sim.Ollama, Name: "a", Models: []string{"m"}})
			limits := "\nrate_limits {\n per_ip_requests_per_minute 1\n burst_size 3\n}\n"
			for _, tc := range []struct {
				extra string
				want  []int
			}{
				{"", []int{200, 200, 200, 429, 429}},
				{"client_ipv6_prefix 128\n", []int{200, 200, 200, 200, 200}},
			} {
				load(t, siteWith("trusted_proxies static 127.0.0.1/32 ::1/128", "",
					"engine "+engine+"\n"+tc.extra+endpointBlock("a", s.URL, "ollama")+limits))
				waitRoutable(t, "a")
				var got []int
				for i := range 5 {
					res := post(t, "/olla/ollama/api/chat", chatBodyM, "X-Forwarded-For", fmt.Sprintf("2001:db8:1:2::%x", 100+i))
					readAll(t, res)
					got = append(got, res.StatusCode)
				}
				if fmt.Sprint(got) != fmt.Sprint(tc.want) {
					t.Errorf("%q: five addresses of one /64 got %v, want %v", tc.extra, got, tc.want)
				}
			}
		})
	}
}

// TestSecurityInternalAccess: the status routes, the dashboard and
// /version answer only internal_clients (loopback by default). A client
// counts by its connection and by Caddy's client address: a trusted
// proxy's X-Forwarded-For naming a public address is refused, also when
// it starts with a loopback one, and a forwarded header from an untrusted
// client is never read. internal_clients any opens them; /internal/health
// answers everyone; answered polls stay out of the access log.
func TestSecurityInternalAccess(t *testing.T) {
	s := startSim(t, sim.Config{Kind: sim.Ollama, Name: "a", Models: []string{"m"}})
	routes := []string{"/internal/ui", "/internal/ui/data", "/internal/status", "/internal/status/endpoints", "/internal/metrics", "/version"}
	get := func(hc *http.Client, path string, header ...string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", base+path, nil)
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		res, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return res.StatusCode, readAll(t, res)
	}
	expect := func(what string, hc *http.Client, want int, header ...string) {
		t.Helper()
		for _, p := range routes {
			if code, b := get(hc, p, header...); code != want || want == 403 && (errorShape(b) != "openai" || !strings.Contains(b, "internal_clients")) {
				t.Errorf("%s: %s got %d, want %d: %.200s", what, p, code, want, b)
			}
		}
		if code, _ := get(hc, "/internal/health", header...); code != 200 {
			t.Errorf("%s: /internal/health got %d, want 200 for everyone", what, code)
		}
	}
	other := clientFrom("127.0.0.2")

	// default: loopback; the server trusts a proxy on 127.0.0.1
	load(t, siteWith("trusted_proxies static 127.0.0.1/32", "", endpointBlock("a", s.URL, "ollama")))
	waitRoutable(t, "a")
	expect("loopback by default", client, 200)
	expect("a trusted proxy forwarding a public client", client, 403, "X-Forwarded-For", "203.0.113.7")
	expect("a trusted proxy forwarding a forged loopback first", client, 403, "X-Forwarded-For", "127.0.0.1, 203.0.113.7")

	// only 127.0.0.1 is local: 127.0.0.2 stands for a remote client
	load(t, siteWith("trusted_proxies static 127.0.0.1/32", "", "internal_clients 127.0.0.1\n"+endpointBlock("a", s.URL, "ollama")))
	waitRoutable(t, "a")
	expect("a client outside internal_clients", other, 403)
	expect("an untrusted client claiming a local address", other, 403, "X-Forwarded-For", "127.0.0.1")
	expect("a local client", clientFrom("127.0.0.1"), 200)

	// opened
	load(t, siteWith("trusted_proxies static 127.0.0.1/32", "", "internal_clients any\n"+endpointBlock("a", s.URL, "ollama")))
	waitRoutable(t, "a")
	expect("internal_clients any", other, 200)
	expect("internal_clients any, forwarded", client, 200, "X-Forwarded-For", "203.0.113.7")
}

// The README's queue example: the priority comes from who signed in
// (basic_auth, then a map on {http.auth.user.id}), never from a header, and
// the fairness lanes are users. TestSecurityQueuePriority checks that the
// README still says this, and runs it.
const (
	readmeQueueMap = "map {http.auth.user.id} {olla_priority} {\n\t\talice   10\n\t\tdefault 0\n\t}"
	readmeQueue    = "queue {\n\t\t\tmax_wait 60s\n\t\t\tpriority {olla_priority}       # -100..100, higher first\n\t\t\tfair_by  {http.auth.user.id}   # one lane per signed-in user\n\t\t}"
	// bcrypt (cost 4) of alice-pw and bob-pw
	aliceHash = "$2a$04$U5MSOJgjEs/Q7SFL0AmODe0A1A7nM/opAHpJ10n9urhPnN7y/OYK6"
	bobHash   = "$2a$04$VFZ3mdUCnR9.aIHALQXU5e5/mXpSYM45.uuYBHUD7vgLbCetv.Kr6"
)

// TestSecurityQueuePriority: with the README's configuration, a signed-in
// client that sends X-Olla-Priority: 1000000 waits its turn like any other
// (served after the 12 that queued before it), an unauthenticated one never
// reaches the queue, and the user the map gives priority 10 goes first.
func TestSecurityQueuePriority(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, snippet := range []string{readmeQueueMap, readmeQueue} {
		if !strings.Contains(string(readme), snippet) {
			t.Fatalf("the README no longer holds the tested queue example:\n%s", snippet)
		}
	}
	s := startSim(t, sim.Config{Kind: sim.Ollama, Models: []string{"m"}, TTFT: 50 * time.Millisecond, TokensPerSecond: 10, Tokens: 600})
	auth := "\tbasic_auth {\n\t\talice " + aliceHash + "\n\t\tbob   " + bobHash + "\n\t}\n\t" + readmeQueueMap + "\n"
	load(t, siteWith("", auth, endpointBlock("solo", s.URL, "ollama", "max_concurrency 1")+"\t\t"+readmeQueue+"\n"))
	basic := func(user string) []string {
		return []string{"Authorization", "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+user+"-pw"))}
	}
	depth := func() int {
		req, _ := http.NewRequest("GET", base+"/internal/status", nil)
		req.Header.Set(basic("bob")[0], basic("bob")[1])
		res, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var st struct {
			Queue struct {
				Depth int `json:"depth"`
			} `json:"queue"`
		}
		if err := json.Unmarshal([]byte(readAll(t, res)), &st); err != nil || res.StatusCode != 200 {
			t.Fatalf("status: %d %v", res.StatusCode, err)
		}
		return st.Queue.Depth
	}
	waitFor(t, "solo routable", 10*time.Second, func() bool {
		req, _ := http.NewRequest("POST", base+"/olla/ollama/api/chat", strings.NewReader(quick))
		req.Header.Set(basic("bob")[0], basic("bob")[1])
		res, err := client.Do(req)
		if err != nil {
			return false
		}
		readAll(t, res)
		return res.StatusCode == 200
	})

	// unauthenticated: refused before the queue, whatever it asks for
	res := post(t, "/olla/ollama/api/chat", quick, "X-Olla-Priority", "1000000")
	if b := readAll(t, res); res.StatusCode != 401 {
		t.Errorf("unauthenticated with X-Olla-Priority: %d %s", res.StatusCode, b)
	}

	holder, err := http.NewRequest("POST", base+"/olla/ollama/api/chat", strings.NewReader(long))
	if err != nil {
		t.Fatal(err)
	}
	holder.Header.Set(basic("bob")[0], basic("bob")[1])
	hres, err := client.Do(holder)
	if err != nil || hres.StatusCode != 200 {
		t.Fatalf("holder: %v", err)
	}
	out := make(chan queued, 14)
	var ids []string
	for i := 1; i <= 12; i++ {
		ids = append(ids, fmt.Sprintf("b%d", i))
	}
	ids = append(ids, "forger", "alice")
	for _, id := range ids {
		header := basic("bob")
		switch id {
		case "forger":
			header = append(header, "X-Olla-Priority", "1000000")
		case "alice":
			header = basic("alice")
		}
		before := depth()
		send(context.Background(), id, "/olla/ollama/api/chat", quick, out, header...)
		waitFor(t, id+" queued", 10*time.Second, func() bool { return depth() == before+1 })
	}
	hres.Body.Close()
	got := collect(t, out, len(ids))
	for _, q := range got {
		if q.err != nil || q.status != 200 {
			t.Errorf("%s: %d %v %.200s", q.id, q.status, q.err, q.body)
		}
	}
	want := "alice " + strings.Join(ids[:12], " ") + " forger"
	if order(got) != want {
		t.Errorf("served %q, want %q", order(got), want)
	}
}

// routeChats are a normal chat on every API route, for a site with the
// Ollama simulator "o" (model m) and the OpenAI one "t" (model t, reached
// on /olla/anthropic/ by translation).
var routeChats = []struct{ path, body string }{
	{"/olla/ollama/api/chat", `{"model":"m","stream":false,"messages":[{"role":"user","content":"hi"}]}`},
	{"/olla/ollama/api/generate", `{"model":"m","stream":false,"prompt":"hi"}`},
	{"/olla/proxy/api/chat", `{"model":"m","stream":false,"messages":[{"role":"user","content":"hi"}]}`},
	{"/olla/ollama/v1/chat/completions", `{"model":"m","messages":[{"role":"user","content":"hi"}]}`},
	{"/olla/openai/v1/chat/completions", `{"model":"t","messages":[{"role":"user","content":"hi"}]}`},
	{"/olla/openai/v1/embeddings", `{"model":"t","input":"hi"}`},
	{"/olla/ollama/v1/responses", `{"model":"m","input":"hi"}`},
	{"/olla/anthropic/v1/messages", `{"model":"m","max_tokens":8,"messages":[{"role":"user","content":"hi"}]}`},
	{"/olla/anthropic/v1/messages", `{"model":"t","max_tokens":8,"messages":[{"role":"user","content":"hi"}]}`},
	{"/olla/anthropic/v1/messages/count_tokens", `{"model":"t","messages":[{"role":"user","content":"hi"}]}`},
}

// TestSecuritySlowBodies: sockets that declare a large body, send nine
// bytes and stop hold only what arrived (a 4 KiB buffer each), so while 3
// and then 303 of them are open a normal client's chat gets 200 on every
// route; each ends with 408 in its route's format once body_read_timeout
// (here 10 s) passes with nothing more arriving. Both engines.
func TestSecuritySlowBodies(t *testing.T) {
	for _, engine := range engineNames {
		t.Run(engine, func(t *testing.T) {
			o := startSim(t, sim.Config{Kind: sim.Ollama, Name: "o", Models: []string{"m"}, Tokens: 2})
			ts := startSim(t, sim.Config{Kind: sim.OpenAI, Name: "t", Models: []string{"t"}, Tokens: 2})
			const budget = 2 << 20
			load(t, site("engine "+engine+"\n"+endpointBlock("o", o.URL, "ollama")+endpointBlock("t", ts.URL, "openai-compatible")+
				"\nrequest_limits {\n max_body_size 1MiB\n max_buffered_bytes 2MiB\n body_read_timeout 10s\n}\n"))
			waitRoutable(t, "o", "t")
			waitFor(t, "nothing buffered", 10*time.Second, func() bool { return bufferedBytes(t) == 0 })
			slow := []struct{ path, shape string }{
				{"/olla/ollama/api/chat", "ollama"},
				{"/olla/openai/v1/chat/completions", "openai"},
				{"/olla/anthropic/v1/messages", "anthropic"},
			}
			// three declare a million bytes each, past the 2 MiB budget
			// together; then 300 more declare 700,000 (a declared length
			// must fit beside what is held when the request starts)
			var conns []net.Conn
			for _, tc := range []struct{ n, declared int }{{3, 1_000_000}, {300, 700_000}} {
				for range tc.n {
					i := len(conns)
					conns = append(conns, holdBody(t, slow[i%len(slow)].path, tc.declared, `{"model":`, false))
				}
				n := len(conns)
				// each is being read, holding its first buffer, not its
				// declared length
				waitFor(t, fmt.Sprintf("%d slow bodies read", n), 10*time.Second, func() bool { return bufferedBytes(t) == int64(n)*4096 })
				for _, c := range routeChats {
					res := post(t, c.path, c.body)
					if b := readAll(t, res); res.StatusCode != 200 {
						t.Errorf("%d slow sockets open: %s (%.40s): %d %.300s", n, c.path, c.body, res.StatusCode, b)
					}
				}
				if got := bufferedBytes(t); got > budget {
					t.Errorf("%d slow sockets hold %d bytes, past the %d-byte budget", n, got, budget)
				}
			}
			for i, c := range conns {
				_ = c.SetReadDeadline(time.Now().Add(90 * time.Second))
				res, b := rawResponse(t, c)
				want := slow[i%len(slow)].shape
				if res.StatusCode != 408 || errorShape(b) != want || !strings.Contains(b, "body_read_timeout") {
					t.Errorf("slow socket %d of %d: %d %q, want 408 in the %s format: %.300s", i, len(conns), res.StatusCode, errorShape(b), want, b)
					break
				}
				c.Close()
			}
			waitFor(t, "the slow bodies' shares given back", 10*time.Second, func() bool { return bufferedBytes(t) == 0 })
		})
	}
}

// TestSecurityAnthropicBounds: a Messages or count_tokens body is counted
// before it is decoded: over a bound on messages, content blocks, tools or
// nesting it is a 400 in Anthropic's format naming the limit; a 100,001
// block body (the shape of the 29 MB count_tokens amplification) is refused
// by the default; count_tokens is estimated from the scan and spends the
// same rate-limit tokens as any route; a translated request's decoded size
// is charged to max_buffered_bytes, so a body that fits but whose tree does
// not gets 503 proxy_busy. Both engines.
func TestSecurityAnthropicBounds(t *testing.T) {
	for _, engine := range engineNames {
		t.Run(engine, func(t *testing.T) {
			ts := startSim(t, sim.Config{Kind: sim.OpenAI, Name: "t", Models: []string{"t"}, Tokens: 2})
			endpoint := endpointBlock("t", ts.URL, "openai-compatible")
			load(t, site("engine "+engine+"\n"+endpoint+
				"\nrequest_limits {\n max_messages 4\n max_content_blocks 6\n max_tools 2\n max_nesting 10\n}\n"))
			waitRoutable(t, "t")
			deep := `{"model":"t","max_tokens":8,"messages":[{"role":"user","content":[{"type":"tool_use","id":"x","name":"n","input":` +
				strings.Repeat(`{"a":`, 8) + `1` + strings.Repeat(`}`, 8) + `}]}]}`
			msgs := `{"model":"t","max_tokens":8,"messages":[` + strings.TrimSuffix(strings.Repeat(`{"role":"user","content":"a"},`, 5), ",") + `]}`
			tools := `{"model":"t","max_tokens":8,"tools":[{"name":"a"},{"name":"b"},{"name":"c"}],"messages":[{"role":"user","content":"a"}]}`
			for _, tc := range []struct{ name, body, option string }{
				{"messages", msgs, "max_messages"},
				{"content blocks", string(testbody.AnthropicBlocks("t", 7, 8)), "max_content_blocks"},
				{"tools", tools, "max_tools"},
				{"nesting", deep, "max_nesting"},
			} {
				for _, path := range []string{"/olla/anthropic/v1/messages", "/olla/anthropic/v1/messages/count_tokens"} {
					res := post(t, path, tc.body)
					b := readAll(t, res)
					if res.StatusCode != 400 || errorShape(b) != "anthropic" || !strings.Contains(b, tc.option) || !strings.Contains(b, "invalid_request_error") {
						t.Errorf("%s on %s: %d %s", tc.name, path, res.StatusCode, b)
					}
				}
			}
			if n := ts.Requests("/v1/chat/completions"); n != 0 {
				t.Errorf("%d refused requests reached the backend", n)
			}
			// within the bounds: served, and count_tokens estimated
			if res := post(t, "/olla/anthropic/v1/messages", string(testbody.AnthropicBlocks("t", 6, 8))); readAll(t, res) == "" || res.StatusCode != 200 {
				t.Errorf("6 blocks: %d", res.StatusCode)
			}
			res := post(t, "/olla/anthropic/v1/messages/count_tokens", string(testbody.AnthropicBlocks("t", 6, 0)))
			if b := readAll(t, res); res.StatusCode != 200 || b != "{\"input_tokens\":2}\n" || res.Header.Get("X-Olla-Token-Count") != "estimate" {
				t.Errorf("count_tokens of 6 one-letter blocks: %d %q", res.StatusCode, b)
			}

			// the defaults refuse the amplification body
			load(t, site("engine "+engine+"\n"+endpoint+"\nrate_limits {\n per_ip_requests_per_minute 1\n burst_size 3\n}\n"))
			waitRoutable(t, "t")
			res = post(t, "/olla/anthropic/v1/messages/count_tokens", string(testbody.AnthropicBlocks("t", 100_001, 0)))
			if b := readAll(t, res); res.StatusCode != 400 || !strings.Contains(b, "50000") || !strings.Contains(b, "max_content_blocks") {
				t.Errorf("100,001 blocks: %d %.300s", res.StatusCode, b)
			}
			// count_tokens spends the client's rate-limit tokens like any route
			var codes []int
			for range 3 {
				res := post(t, "/olla/anthropic/v1/messages/count_tokens", `{"model":"t","messages":[{"role":"user","content":"hi"}]}`)
				b := readAll(t, res)
				codes = append(codes, res.StatusCode)
				if res.StatusCode == 429 && errorShape(b) != "anthropic" {
					t.Errorf("429 not in Anthropic's format: %s", b)
				}
			}
			if fmt.Sprint(codes) != "[200 200 429]" {
				t.Errorf("count_tokens after one spent token of a burst of 3: %v, want [200 200 429]", codes)
			}

			// the decoded tree is charged: a 12 KB translated body whose
			// tree is several times that does not fit in 48 KiB
			text := `{"model":"t","max_tokens":8,"messages":[{"role":"user","content":"` + strings.Repeat("x", 12_000) + `"}]}`
			load(t, site("engine "+engine+"\n"+endpoint+"\nrequest_limits {\n max_buffered_bytes 48KiB\n}\n"))
			waitRoutable(t, "t")
			res = post(t, "/olla/anthropic/v1/messages", text)
			if b := readAll(t, res); res.StatusCode != 503 || errorShape(b) != "anthropic" || !strings.Contains(b, "max_buffered_bytes") {
				t.Errorf("a 12 KB body with a larger tree in a 48 KiB budget: %d %.300s", res.StatusCode, b)
			}
			load(t, site("engine "+engine+"\n"+endpoint+"\nrequest_limits {\n max_buffered_bytes 1MiB\n}\n"))
			waitRoutable(t, "t")
			res = post(t, "/olla/anthropic/v1/messages", text)
			if b := readAll(t, res); res.StatusCode != 200 {
				t.Errorf("the same body in a 1 MiB budget: %d %.300s", res.StatusCode, b)
			}
			waitFor(t, "the tree's charge given back", 10*time.Second, func() bool { return bufferedBytes(t) == 0 })
		})
	}
}
