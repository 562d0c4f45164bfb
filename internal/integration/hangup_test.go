package integration

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-olla/olla/internal/sim"
)

// TestClientHangUpsDoNotTripBreaker resets many client connections in the
// middle of their streams: a client's hang-up is not the backend's failure,
// so the endpoint's failure count stays at zero, its breaker (5 failures by
// default, far fewer than the hang-ups) stays closed, and it keeps serving.
// With one endpoint, an open breaker would leave nothing to route to.
func TestClientHangUpsDoNotTripBreaker(t *testing.T) {
	const hangUps, parallel = 80, 8
	for _, engine := range engineNames {
		t.Run(engine, func(t *testing.T) {
			// paced: every stream is still running when its client resets
			a := startSim(t, sim.Config{Kind: sim.Ollama, Name: "a", Models: []string{"m"}, TokensPerSecond: 50, Tokens: 2000})
			load(t, site("engine "+engine+"\n"+endpointBlock("a", a.URL, "ollama")))
			waitRoutable(t, "a")

			var wg sync.WaitGroup
			errs := make(chan error, hangUps)
			next := make(chan int)
			for range parallel {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range next {
						if err := resetMidStream(i%2 == 0); err != nil {
							errs <- err
						}
					}
				}()
			}
			for i := range hangUps {
				next <- i
			}
			close(next)
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatalf("a client did not get its stream (did earlier hang-ups open the breaker?): %v", err)
			}

			// every hang-up has been noticed once no attempt is in flight
			waitFor(t, "the reset streams to end", 30*time.Second, func() bool {
				return endpointsStatus(t)["a"].ActiveConnections == 0
			})
			if fails := failureCount(t, "a"); fails != 0 {
				t.Errorf("%d client hang-ups counted as %d backend failures", hangUps, fails)
			}
			if e := endpointsStatus(t)["a"]; e.CircuitBreaker != "closed" || !e.Routable {
				t.Errorf("after %d client hang-ups: breaker %q, routable %v", hangUps, e.CircuitBreaker, e.Routable)
			}
			res := post(t, "/olla/ollama/api/chat", `{"model":"m","stream":false,"options":{"num_predict":3},"messages":[{"role":"user","content":"hi"}]}`)
			body := readAll(t, res)
			if res.StatusCode != 200 || res.Header.Get("X-Olla-Endpoint") != "a" {
				t.Errorf("request after the hang-ups: %d from %q: %s", res.StatusCode, res.Header.Get("X-Olla-Endpoint"), body)
			}
		})
	}
}

// resetMidStream opens a streamed chat, reads until the first token, and
// resets the connection (SO_LINGER 0), as a killed client does.
//
// With pipelined set, the client also sends the first byte of a next
// request. net/http then stops watching the connection, so the reset does
// not end the request's context: the proxy learns of it from a failed
// write instead. Both paths must come to the same.
func resetMidStream(pipelined bool) error {
	conn, err := net.Dial("tcp", fmt.Sprintf("localhost:%d", httpPort))
	if err != nil {
		return err
	}
	defer conn.Close()
	body := `{"model":"m","messages":[{"role":"user","content":"hi"}]}`
	fmt.Fprintf(conn, "POST /olla/ollama/api/chat HTTP/1.1\r\nHost: localhost:%d\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
		httpPort, len(body), body)
	if err := conn.SetReadDeadline(time.Now().Add(20 * time.Second)); err != nil {
		return err
	}
	br := bufio.NewReader(conn)
	tokens := 1
	if pipelined {
		tokens = 2
	}
	for tokens > 0 {
		line, err := br.ReadString('\n')
		if err != nil {
			return err
		}
		if strings.HasPrefix(line, "HTTP/1.1 ") && !strings.HasPrefix(line, "HTTP/1.1 200") {
			return fmt.Errorf("status %s", strings.TrimSpace(line))
		}
		if strings.Contains(line, `"message"`) {
			tokens--
			if pipelined && tokens == 1 {
				// the request is being answered, its body long read: the
				// server's watch on the connection takes this byte; one
				// more token gives it time to
				fmt.Fprint(conn, "G")
			}
		}
	}
	return conn.(*net.TCPConn).SetLinger(0)
}

// failureCount reads an endpoint's failure count from the status route.
func failureCount(t *testing.T, name string) int64 {
	t.Helper()
	res, err := client.Get(base + "/internal/status/endpoints")
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	defer res.Body.Close()
	var body struct {
		Endpoints []struct {
			Name         string `json:"name"`
			FailureCount int64  `json:"failure_count"`
		} `json:"endpoints"`
	}
	if err := json.NewDecoder(res.Body).Decode(&body); err != nil {
		t.Fatalf("status body: %v", err)
	}
	for _, e := range body.Endpoints {
		if e.Name == name {
			return e.FailureCount
		}
	}
	t.Fatalf("no endpoint %q in the status", name)
	return 0
}
