// Package integration runs the olla module inside a real Caddy, in process,
// against simulated backends. caddytest binds one admin port
// (localhost:2999), so every in-process Caddy test lives in this package
// and they run one after another.
package integration

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddytest"

	_ "github.com/caddy-olla/olla"
	"github.com/caddy-olla/olla/internal/sim"
)

// The ports the test sites listen on lie below Linux's ephemeral range
// (32768-60999), as in Caddy's own tests: inside it, any outgoing connection
// on the machine may hold one for a moment, and the site fails to bind.
const (
	httpPort  = 9180
	httpsPort = 9443
)

var base = fmt.Sprintf("http://localhost:%d", httpPort)

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		fmt.Println("integration: skipped in -short mode")
		os.Exit(0)
	}
	if err := caddyLogs.open(); err != nil {
		fmt.Println("integration:", err)
		os.Exit(1)
	}
	code := m.Run()
	caddyLogs.close(code == 0)
	os.Exit(code)
}

// caddyLogs takes Caddy's log off the test output: one file per test that
// loads a config, named at the top of that test's output (shown when it
// fails), so a failure ends with its own assertion rather than hundreds of
// log lines. The files are deleted when every test passed.
//
// Caddy opens "stderr" anew at each config load, so pointing os.Stderr at
// a pipe (before any test starts a goroutine) carries its whole log here;
// the race detector and panics still write to the real stderr (fd 2).
var caddyLogs logSink

type logSink struct {
	dir    string
	pipe   *os.File
	copied chan struct{}

	mu    sync.Mutex
	to    *os.File
	named map[string]string // test name -> its file
}

func (l *logSink) open() error {
	dir, err := os.MkdirTemp("", "olla-integration-logs-")
	if err != nil {
		return err
	}
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	l.dir, l.pipe, l.copied, l.named = dir, w, make(chan struct{}), map[string]string{}
	if l.to, err = os.Create(filepath.Join(dir, "startup.log")); err != nil {
		return err
	}
	os.Stderr = w
	// Caddy's first default logger was made at init, on the real stderr:
	// an empty config makes a new one, on the pipe, before caddytest
	// starts Caddy and logs its startup.
	if err := caddy.Load([]byte(`{"admin":{"disabled":true,"config":{"persist":false}}}`), true); err != nil {
		return err
	}
	go func() {
		defer close(l.copied)
		buf := make([]byte, 32<<10)
		for {
			n, err := r.Read(buf)
			if n > 0 {
				l.mu.Lock()
				_, _ = l.to.Write(buf[:n])
				l.mu.Unlock()
			}
			if err != nil {
				return
			}
		}
	}()
	return nil
}

// switchTo sends the log to t's file from now on, and names the file in
// t's output once.
func (l *logSink) switchTo(t testing.TB) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	path, seen := l.named[t.Name()]
	if !seen {
		name := strings.Map(func(r rune) rune {
			if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.' {
				return r
			}
			return '_'
		}, t.Name())
		path = filepath.Join(l.dir, name+".log")
		l.named[t.Name()] = path
		t.Logf("Caddy's log for this test: %s", path)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatalf("opening Caddy's log file: %v", err)
	}
	l.to.Close()
	l.to = f
}

// file returns a file in the log directory for another process's log
// (the caller closes it).
func (l *logSink) file(t testing.TB, name string) (*os.File, string) {
	t.Helper()
	path := filepath.Join(l.dir, name)
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	return f, path
}

// note adds a line of the harness's own to t's file.
func (l *logSink) note(t testing.TB, s string) {
	l.mu.Lock()
	path, ok := l.named[t.Name()]
	l.mu.Unlock()
	if !ok {
		return
	}
	if f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0); err == nil {
		_, _ = fmt.Fprintln(f, s)
		f.Close()
	}
}

// close stops the copy, and deletes the files when every test passed.
func (l *logSink) close(passed bool) {
	l.pipe.Close()
	<-l.copied
	l.to.Close()
	if passed {
		os.RemoveAll(l.dir)
	}
}

// startSim starts a simulator and stops it with the test.
func startSim(t testing.TB, cfg sim.Config) *sim.Server {
	t.Helper()
	s, err := sim.Start(cfg)
	if err != nil {
		t.Fatalf("starting simulator: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

// site wraps olla directive lines in a full Caddyfile for caddytest.
func site(ollaBlock string) string {
	return fmt.Sprintf(`{
	admin localhost:2999
	http_port %d
	https_port %d
	auto_https off
	grace_period 1s
}
http://localhost:%d {
	olla {
%s
	}
	respond "next handler" 200
}
`, httpPort, httpsPort, httpPort, ollaBlock)
}

// endpointBlock declares one endpoint with fast checks. A probe may take
// 450 ms: on a busy machine a healthy simulator misses 150 ms three times
// in a row often enough to be taken out mid-test.
func endpointBlock(name, url, typ string, extra ...string) string {
	return fmt.Sprintf(`		endpoint %s {
			url %s
			type %s
			check_interval 500ms
			check_timeout 450ms
%s
		}
`, name, url, typ, strings.Join(extra, "\n"))
}

// load starts (or reconfigures) the in-process Caddy; its log goes to t's
// file from now on.
func load(t testing.TB, caddyfile string) *caddytest.Tester {
	t.Helper()
	caddyLogs.switchTo(t)
	tester := caddytest.NewTester(&caddyTB{TB: t}).WithDefaultOverrides(caddytest.Config{
		// caddytest's 5 s for a config load is short on a busy machine
		LoadRequestTimeout: 60 * time.Second,
	})
	tester.InitServer(caddyfile, "caddyfile")
	return tester
}

// caddyTB is the testing.TB caddytest sees. Its notes (each config it
// loads, and the whole running config it prints after a failed test) go
// to Caddy's log file rather than the test's output. caddytest reports a
// failed load as a note followed by Fail, so Fail makes the last note the
// test's error.
type caddyTB struct {
	testing.TB
	last string
}

func (c *caddyTB) Logf(format string, args ...any) {
	c.last = fmt.Sprintf(format, args...)
	caddyLogs.note(c.TB, c.last)
}

func (c *caddyTB) Log(args ...any) {
	c.last = fmt.Sprint(args...)
	caddyLogs.note(c.TB, c.last)
}

func (c *caddyTB) Fail() {
	c.TB.Helper()
	c.TB.Error(c.last)
}

// client talks to the test site without connection reuse surprises. Its
// timeout only bounds a hung request: it is no budget, and a busy machine
// must not reach it (building the 100,000-model catalogue under -race
// beside two CPU hogs per core took over 30 s).
var client = &http.Client{Timeout: patientTimeout}

// patientTimeout bounds one request of a test: long enough for any answer
// on a machine under load, short of the test binary's own timeout.
const patientTimeout = 3 * time.Minute

// endpointInfo is the part of /internal/status/endpoints tests read.
type endpointInfo struct {
	Name              string `json:"name"`
	Type              string `json:"type"`
	Status            string `json:"status"`
	Reason            string `json:"reason"`
	Routable          bool   `json:"routable"`
	ModelCount        int    `json:"model_count"`
	RequestCount      int64  `json:"request_count"`
	ActiveConnections int64  `json:"active_connections"`
	CircuitBreaker    string `json:"circuit_breaker"`
	BreakerOpens      int64  `json:"circuit_breaker_opens"`
}

func endpointsStatus(t testing.TB) map[string]endpointInfo {
	t.Helper()
	return endpointsStatusVia(t, client)
}

// endpointsStatusVia is endpointsStatus through hc.
//
// A connection the read goes out on may be accepted by the server a config
// load is just stopping, and closed under it (Caddy stops the old servers
// in the background); the read is idempotent, so a transport error is
// retried for up to 30 s.
func endpointsStatusVia(t testing.TB, hc *http.Client) map[string]endpointInfo {
	t.Helper()
	var res *http.Response
	var err error
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(25 * time.Millisecond) {
		if res, err = hc.Get(base + "/internal/status/endpoints"); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	defer res.Body.Close()
	var body struct {
		Endpoints []endpointInfo `json:"endpoints"`
	}
	if err := json.NewDecoder(res.Body).Decode(&body); err != nil {
		t.Fatalf("status body: %v", err)
	}
	out := map[string]endpointInfo{}
	for _, e := range body.Endpoints {
		out[e.Name] = e
	}
	return out
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(25 * time.Millisecond)
	}
	t.Fatalf("timed out after %s waiting for %s", timeout, what)
}

// waitRoutable waits until every named endpoint is routable with models.
func waitRoutable(t testing.TB, names ...string) {
	t.Helper()
	waitFor(t, "endpoints "+strings.Join(names, ", ")+" routable", 30*time.Second, func() bool {
		st := endpointsStatus(t)
		for _, n := range names {
			if e, ok := st[n]; !ok || !e.Routable || e.ModelCount == 0 {
				return false
			}
		}
		return true
	})
}

// post sends a JSON body and returns the response (body unread).
func post(t testing.TB, path, body string, header ...string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	res, err := client.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	return res
}

// readAll reads and closes a body.
func readAll(t testing.TB, res *http.Response) string {
	t.Helper()
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("reading body: %v", err)
	}
	return string(b)
}

// lines reads a stream line by line, noting when each line arrived.
func lines(t testing.TB, res *http.Response) (out []string, arrived []time.Time) {
	t.Helper()
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		if sc.Text() == "" {
			continue
		}
		out = append(out, sc.Text())
		arrived = append(arrived, time.Now())
	}
	return out, arrived
}

// recorder is a plain OpenAI-compatible backend that records every request,
// for checks of what exactly reached the upstream.
type recorder struct {
	mu   sync.Mutex
	reqs []recorded
	srv  *http.Server
	URL  string
}

type recorded struct {
	Path   string
	Header http.Header
	Body   string
}

func startRecorder(t testing.TB, models ...string) *recorder {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{URL: "http://" + ln.Addr().String()}
	rec.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rec.mu.Lock()
		rec.reqs = append(rec.reqs, recorded{Path: r.URL.Path, Header: r.Header.Clone(), Body: string(body)})
		rec.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Olla-Endpoint", "spoofed-by-backend")
		if strings.HasSuffix(r.URL.Path, "/v1/models") {
			data := make([]string, 0, len(models))
			for _, m := range models {
				data = append(data, fmt.Sprintf(`{"id":%q,"object":"model","created":1,"owned_by":"rec"}`, m))
			}
			fmt.Fprintf(w, `{"object":"list","data":[%s]}`, strings.Join(data, ","))
			return
		}
		fmt.Fprint(w, `{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}]}`)
	})}
	go rec.srv.Serve(ln)
	t.Cleanup(func() { rec.srv.Close() })
	return rec
}

// requestsTo returns the recorded requests whose path ends with suffix.
func (rec *recorder) requestsTo(suffix string) []recorded {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	var out []recorded
	for _, r := range rec.reqs {
		if strings.HasSuffix(r.Path, suffix) {
			out = append(out, r)
		}
	}
	return out
}
