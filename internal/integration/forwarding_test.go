package integration

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
)

// TestForwardedHeadersAndServer checks, through real Caddy, what a backend
// and a client see of the proxy, in both engines and beside Caddy's own
// reverse_proxy on the same server: a client's X-Forwarded-* are replaced
// unless the server's trusted_proxies trust its peer (then its
// X-Forwarded-For is appended to), and the response carries one Server
// header, the backend's, never Caddy's beside it.
func TestForwardedHeadersAndServer(t *testing.T) {
	be := startHeaderBackend(t)
	for _, trusted := range []bool{false, true} {
		for _, engine := range append([]string{"reverse_proxy"}, engineNames...) {
			t.Run(fmt.Sprintf("%s/trusted=%v", engine, trusted), func(t *testing.T) {
				load(t, forwardingSite(engine, be.URL, trusted))
				if engine != "reverse_proxy" {
					waitRoutable(t, "a")
				}
				path := "/olla/openai/v1/chat/completions"
				if engine == "reverse_proxy" {
					path = "/rp/v1/chat/completions"
				}
				be.reset()
				res := post(t, path, `{"model":"m","messages":[{"role":"user","content":"hi"}]}`,
					"X-Forwarded-For", "6.6.6.6", "X-Forwarded-Host", "evil.example", "X-Forwarded-Proto", "https")
				body := readAll(t, res)
				if res.StatusCode != 200 {
					t.Fatalf("%d: %s", res.StatusCode, body)
				}
				if got := res.Header.Values("Server"); len(got) != 1 || got[0] != "backend/1.0" {
					t.Errorf("Server headers %q, want only the backend's", got)
				}
				h := be.last(t)
				wantXFF, wantHost, wantProto := "127.0.0.1", fmt.Sprintf("localhost:%d", httpPort), "http"
				if trusted {
					wantXFF, wantHost, wantProto = "6.6.6.6, 127.0.0.1", "evil.example", "https"
				}
				if got := h.Values("X-Forwarded-For"); len(got) != 1 || got[0] != wantXFF {
					t.Errorf("backend saw X-Forwarded-For %q, want [%s]", got, wantXFF)
				}
				if h.Get("X-Forwarded-Host") != wantHost || h.Get("X-Forwarded-Proto") != wantProto {
					t.Errorf("backend saw X-Forwarded-Host %q Proto %q, want %q %q",
						h.Get("X-Forwarded-Host"), h.Get("X-Forwarded-Proto"), wantHost, wantProto)
				}
			})
		}
	}
}

// forwardingSite is a site with olla (engine) or reverse_proxy in front of
// one backend; trusted makes the server trust loopback peers.
func forwardingSite(engine, backendURL string, trusted bool) string {
	servers := ""
	if trusted {
		servers = "\n\tservers {\n\t\ttrusted_proxies static 127.0.0.0/8 ::1\n\t}"
	}
	handler := fmt.Sprintf("handle_path /rp/* {\n\t\treverse_proxy %s\n\t}", strings.TrimPrefix(backendURL, "http://"))
	if engine != "reverse_proxy" {
		handler = "olla {\n\t\tengine " + engine + "\n" + endpointBlock("a", backendURL, "openai-compatible") + "\t}"
	}
	return fmt.Sprintf(`{
	admin localhost:2999
	http_port %d
	https_port %d
	auto_https off
	grace_period 1s%s
}
http://localhost:%d {
	%s
	respond "next handler" 200
}
`, httpPort, httpsPort, servers, httpPort, handler)
}

// headerBackend is an OpenAI-compatible backend that names itself in a
// Server header and records the headers of every chat request.
type headerBackend struct {
	URL  string
	mu   sync.Mutex
	seen []http.Header
}

func startHeaderBackend(t *testing.T) *headerBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	be := &headerBackend{URL: "http://" + ln.Addr().String()}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Server", "backend/1.0")
		w.Header().Set("Content-Type", "application/json")
		if strings.HasSuffix(r.URL.Path, "/v1/models") {
			io.WriteString(w, `{"object":"list","data":[{"id":"m","object":"model","created":1,"owned_by":"x"}]}`)
			return
		}
		be.mu.Lock()
		be.seen = append(be.seen, r.Header.Clone())
		be.mu.Unlock()
		io.WriteString(w, `{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}]}`)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return be
}

func (b *headerBackend) reset() {
	b.mu.Lock()
	b.seen = nil
	b.mu.Unlock()
}

func (b *headerBackend) last(t *testing.T) http.Header {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.seen) != 1 {
		t.Fatalf("backend got %d chat requests, want 1", len(b.seen))
	}
	return b.seen[0]
}
