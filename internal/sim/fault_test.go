package sim

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

const chatStream = `{"model":"m","messages":[{"role":"user","content":"hi"}]}`
const chatOnceBody = `{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":false}`

// healthPath and modelsPath of each kind.
var probePaths = map[string][2]string{
	Ollama:   {"/", "/api/tags"},
	OpenAI:   {"/v1/models", "/v1/models"},
	LMStudio: {"/v1/models", "/api/v0/models"},
	VLLM:     {"/health", "/v1/models"},
	LlamaCpp: {"/health", "/v1/models"},
	VLLMMLX:  {"/health", "/v1/models"},
	OMLX:     {"/health", "/v1/models"},
	// Docker Model Runner mounts the OpenAI API under /engines
	DockerModelRunner: {"/", "/engines/v1/models"},
	Lemonade:          {"/api/v1/health", "/api/v1/models"},
	SGLang:            {"/health", "/v1/models"},
	LMDeploy:          {"/health", "/v1/models"},
	LiteLLM:           {"/health/liveliness", "/v1/models"},
}

// apiBase is where a kind mounts the OpenAI API.
func apiBase(kind string) string {
	if kind == DockerModelRunner {
		return "/engines"
	}
	return ""
}

func TestFaultErrorAndStatus(t *testing.T) {
	for _, kind := range Kinds() {
		t.Run(kind, func(t *testing.T) {
			s := startT(t, Config{Kind: kind, Models: []string{"m"}})
			s.SetFault(Fault{Mode: FaultError})
			res, b := post(t, s.URL+apiBase(kind)+"/v1/chat/completions", chatOnceBody)
			if res.StatusCode != 500 || res.Header.Get("Retry-After") != "" || !json.Valid(b) || !strings.Contains(string(b), "error") {
				t.Errorf("error fault: %d %q %s", res.StatusCode, res.Header.Get("Retry-After"), b)
			}
			// Health and model lists are not hit by inference faults.
			for _, p := range probePaths[kind] {
				if res, _ := get(t, s.URL+p); res.StatusCode != 200 {
					t.Errorf("GET %s = %d during an inference fault", p, res.StatusCode)
				}
			}
			s.SetFault(Fault{Mode: FaultStatus, Status: 429, RetryAfter: 7})
			res, b = post(t, s.URL+apiBase(kind)+"/v1/chat/completions", `{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true}`)
			if res.StatusCode != 429 || res.Header.Get("Retry-After") != "7" || !json.Valid(b) {
				t.Errorf("status fault: %d %q %s", res.StatusCode, res.Header.Get("Retry-After"), b)
			}
			s.SetFault(Fault{Mode: FaultStatus})
			if res, _ := post(t, s.URL+apiBase(kind)+"/v1/embeddings", `{"model":"m","input":"x"}`); res.StatusCode != 503 {
				t.Errorf("status fault default: %d, want 503", res.StatusCode)
			}
			s.SetFault(Fault{})
			if res, _ := post(t, s.URL+apiBase(kind)+"/v1/chat/completions", chatOnceBody); res.StatusCode != 200 {
				t.Errorf("after clearing: %d", res.StatusCode)
			}
		})
	}
	s := startT(t, Config{Kind: Ollama, Models: []string{"m"}})
	s.SetFault(Fault{Mode: FaultStatus, Status: 502})
	if res, b := post(t, s.URL+"/api/chat", chatStream); res.StatusCode != 502 || !strings.HasPrefix(string(b), `{"error":"`) {
		t.Errorf("ollama native fault: %d %s", res.StatusCode, b)
	}
}

func TestFaultFailHealthAndMalformedModels(t *testing.T) {
	for _, kind := range Kinds() {
		t.Run(kind, func(t *testing.T) {
			s := startT(t, Config{Kind: kind, Models: []string{"m"}})
			health, models := probePaths[kind][0], probePaths[kind][1]

			s.SetFault(Fault{Mode: FaultFailHealth, RetryAfter: 2})
			if res, _ := get(t, s.URL+health); res.StatusCode != 503 || res.Header.Get("Retry-After") != "2" {
				t.Errorf("fail_health: GET %s = %d", health, res.StatusCode)
			}
			if models != health {
				if res, _ := get(t, s.URL+models); res.StatusCode != 200 {
					t.Errorf("fail_health hit the model list: %d", res.StatusCode)
				}
			}
			if res, _ := post(t, s.URL+apiBase(kind)+"/v1/chat/completions", chatOnceBody); res.StatusCode != 200 {
				t.Errorf("fail_health hit inference: %d", res.StatusCode)
			}

			s.SetFault(Fault{Mode: FaultMalformedModels})
			res, b := get(t, s.URL+models)
			var v any
			if res.StatusCode != 200 || json.Unmarshal(b, &v) == nil {
				t.Errorf("malformed_models: %d %s", res.StatusCode, b)
			}
			if models != health {
				if res, _ := get(t, s.URL+health); res.StatusCode != 200 {
					t.Errorf("malformed_models hit health: %d", res.StatusCode)
				}
			}
			if res, _ := post(t, s.URL+apiBase(kind)+"/v1/chat/completions", chatOnceBody); res.StatusCode != 200 {
				t.Errorf("malformed_models hit inference: %d", res.StatusCode)
			}
		})
	}
}

func TestFaultPathAndTimes(t *testing.T) {
	s := startT(t, Config{Kind: Ollama, Models: []string{"m"}})
	s.SetFault(Fault{Mode: FaultStatus, Status: 503, Path: "/api/tags"})
	if res, _ := get(t, s.URL+"/api/tags"); res.StatusCode != 503 {
		t.Errorf("path fault on /api/tags: %d", res.StatusCode)
	}
	if res, _ := post(t, s.URL+"/api/chat", chatOnceBody); res.StatusCode != 200 {
		t.Errorf("path fault leaked to /api/chat: %d", res.StatusCode)
	}
	s.SetFault(Fault{Mode: FaultMalformedModels, Path: "/api/ps"})
	if res, b := get(t, s.URL+"/api/ps"); res.StatusCode != 200 || json.Valid(b) {
		t.Errorf("malformed on a targeted path: %s", b)
	}

	s.SetFault(Fault{Mode: FaultError, Times: 2})
	var codes []int
	for i := 0; i < 4; i++ {
		res, _ := post(t, s.URL+"/api/chat", chatOnceBody)
		codes = append(codes, res.StatusCode)
	}
	if codes[0] != 500 || codes[1] != 500 || codes[2] != 200 || codes[3] != 200 {
		t.Errorf("Times 2: statuses %v", codes)
	}
	if s.Stats().Faults != 4 { // 1 + 1 + 2
		t.Errorf("Faults = %d", s.Stats().Faults)
	}

	s.SetFault(Fault{Mode: "explode"})
	if res, b := post(t, s.URL+"/api/chat", chatOnceBody); res.StatusCode != 500 || !strings.Contains(string(b), "explode") {
		t.Errorf("unknown mode: %d %s", res.StatusCode, b)
	}
}

func TestFaultHang(t *testing.T) {
	s := startT(t, Config{Kind: Ollama, Models: []string{"m"}})
	s.SetFault(Fault{Mode: FaultHang})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.URL+"/api/chat", strings.NewReader(chatStream))
	_, err := http.DefaultClient.Do(req)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("hang: err %v, want deadline exceeded", err)
	}
	waitFor(t, "the hung handler to return", func() bool { return s.Stats().Active == 0 })
	if res, _ := get(t, s.URL+"/"); res.StatusCode != 200 {
		t.Errorf("health during hang fault: %d", res.StatusCode)
	}

	// Close releases hung requests too.
	errc := make(chan error, 1)
	go func() {
		res, err := http.Post(s.URL+"/api/chat", "application/json", strings.NewReader(chatStream))
		if err == nil {
			res.Body.Close()
		}
		errc <- err
	}()
	waitFor(t, "the request to hang", func() bool { return s.Stats().Active == 1 })
	s.Close()
	if err := <-errc; err == nil {
		t.Errorf("hung request got an answer after Close")
	}
}

func TestFaultSlowHeaders(t *testing.T) {
	s := startT(t, Config{Kind: VLLM, Models: []string{"m"}})
	s.SetFault(Fault{Mode: FaultSlowHeaders, Delay: 60 * time.Millisecond})
	start := time.Now()
	res, b := post(t, s.URL+"/v1/chat/completions", chatOnceBody)
	if el := time.Since(start); el < 60*time.Millisecond {
		t.Errorf("answered after %v, before the %v delay", el, 60*time.Millisecond)
	}
	if res.StatusCode != 200 || !json.Valid(b) {
		t.Errorf("slow_headers answer: %d %s", res.StatusCode, b)
	}
}

// TestFaultSlowHealth checks slow_health holds the kind's health route (and
// nothing else) until the delay passes: a loaded backend whose probe is
// late while it keeps serving. The delay is an hour, so a route it hit by
// mistake would not answer before the client's timeout.
func TestFaultSlowHealth(t *testing.T) {
	for _, kind := range Kinds() {
		t.Run(kind, func(t *testing.T) {
			s := startT(t, Config{Kind: kind, Models: []string{"m"}})
			health, models := probePaths[kind][0], probePaths[kind][1]
			s.SetFault(Fault{Mode: FaultSlowHealth, Delay: time.Hour})

			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+health, nil)
			probe := make(chan error, 1)
			go func() {
				res, err := http.DefaultClient.Do(req)
				if err == nil {
					res.Body.Close()
					err = errors.New("answered " + res.Status)
				}
				probe <- err
			}()
			if res, _ := post(t, s.URL+apiBase(kind)+"/v1/chat/completions", chatOnceBody); res.StatusCode != 200 {
				t.Errorf("slow_health hit inference: %d", res.StatusCode)
			}
			if models != health {
				if res, _ := get(t, s.URL+models); res.StatusCode != 200 {
					t.Errorf("slow_health hit the model list: %d", res.StatusCode)
				}
			}
			select {
			case err := <-probe:
				t.Fatalf("health route did not wait for the delay: %v", err)
			default:
			}
			cancel()
			if err := <-probe; !errors.Is(err, context.Canceled) {
				t.Errorf("health probe ended with %v, want the client's cancellation", err)
			}
		})
	}
	s := startT(t, Config{Kind: Ollama, Models: []string{"m"}})
	s.SetFault(Fault{Mode: FaultSlowHealth, Delay: 60 * time.Millisecond})
	start := time.Now()
	if res, b := get(t, s.URL+"/"); res.StatusCode != 200 || !strings.Contains(string(b), "Ollama is running") {
		t.Errorf("slow_health answer: %d %s", res.StatusCode, b)
	}
	if el := time.Since(start); el < 60*time.Millisecond {
		t.Errorf("answered after %v, before the %v delay", el, 60*time.Millisecond)
	}
}

func TestFaultDropMidStream(t *testing.T) {
	for _, tc := range []struct {
		kind, path  string
		after, want int
	}{
		{Ollama, "/api/chat", 2, 2},
		{Ollama, "/v1/chat/completions", 3, 3},
		{VLLM, "/v1/chat/completions", 1, 1},
		{LlamaCpp, "/v1/chat/completions", 0, 0},
		{OpenAI, "/v1/completions", 100, 6}, // clamped: 5 tokens + finish, never [DONE]
	} {
		t.Run(tc.kind+tc.path, func(t *testing.T) {
			s := startT(t, Config{Kind: tc.kind, Models: []string{"m"}})
			s.SetFault(Fault{Mode: FaultDropMidStream, AfterChunks: tc.after})
			res := openStream(t, context.Background(), s.URL+tc.path, `{"model":"m","messages":[{"role":"user","content":"hi"}],"prompt":"x","stream":true}`)
			defer res.Body.Close()
			if res.StatusCode != 200 {
				t.Fatalf("status %d", res.StatusCode)
			}
			fr := newFrameReader(res)
			n := 0
			var err error
			for {
				var f string
				if f, err = fr.next(); err != nil {
					break
				}
				if f == "[DONE]" {
					t.Fatalf("got [DONE] from a dropped stream")
				}
				n++
			}
			if n != tc.want {
				t.Errorf("%d frames before the drop, want %d", n, tc.want)
			}
			if !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Errorf("read error %v, want unexpected EOF (no terminating chunk)", err)
			}
		})
	}

	// Non-stream: nothing at all, or half a body.
	s := startT(t, Config{Kind: OpenAI, Models: []string{"m"}})
	s.SetFault(Fault{Mode: FaultDropMidStream})
	if res, err := http.Post(s.URL+"/v1/chat/completions", "application/json", strings.NewReader(chatOnceBody)); err == nil {
		res.Body.Close()
		t.Errorf("AfterChunks 0 on a non-stream answer: got status %d", res.StatusCode)
	}
	s.SetFault(Fault{Mode: FaultDropMidStream, AfterChunks: 1})
	res, err := http.Post(s.URL+"/v1/chat/completions", "application/json", strings.NewReader(chatOnceBody))
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(res.Body)
	res.Body.Close()
	if !errors.Is(err, io.ErrUnexpectedEOF) || len(b) == 0 || int64(len(b)) >= res.ContentLength {
		t.Errorf("truncated body: %d of %d bytes, err %v", len(b), res.ContentLength, err)
	}
}

func TestFaultStallMidStream(t *testing.T) {
	s := startT(t, Config{Kind: Ollama, Models: []string{"m"}})
	s.SetFault(Fault{Mode: FaultStallMidStream, AfterChunks: 2})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	res := openStream(t, ctx, s.URL+"/api/generate", `{"model":"m","prompt":"hi"}`)
	defer res.Body.Close()
	fr := newFrameReader(res)
	for i := 0; i < 2; i++ {
		if _, err := fr.next(); err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
	}
	got := make(chan error, 1)
	go func() {
		_, err := fr.next()
		got <- err
	}()
	select {
	case err := <-got:
		t.Fatalf("stalled stream delivered more: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	if s.Stats().Active != 1 {
		t.Errorf("stalled handler not active")
	}
	cancel()
	if err := <-got; err == nil || errors.Is(err, io.EOF) {
		t.Errorf("read after cancel: %v, want a cancellation error", err)
	}
	waitFor(t, "the stalled handler to return", func() bool { return s.Stats().Active == 0 })
}

func TestFaultJSON(t *testing.T) {
	f := Fault{Mode: FaultSlowHeaders, Delay: 2 * time.Second, Path: "/x", Times: 3}
	b, err := json.Marshal(f)
	if err != nil || string(b) != `{"mode":"slow_headers","delay":"2s","path":"/x","times":3}` {
		t.Fatalf("marshal %s %v", b, err)
	}
	var g Fault
	if err := json.Unmarshal(b, &g); err != nil || g != f {
		t.Errorf("round trip %+v %v", g, err)
	}
	for _, bad := range []Fault{{Mode: "x"}, {Mode: FaultStatus, Status: 42}, {Mode: FaultError, RetryAfter: -1}, {Mode: FaultError, Path: "api"}} {
		if bad.Validate() == nil {
			t.Errorf("%+v validated", bad)
		}
	}
}

func TestSetFaultConcurrentWithRequests(t *testing.T) {
	s := startT(t, Config{Kind: OpenAI, Models: []string{"m"}, Tokens: 3})
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		modes := []Fault{{}, {Mode: FaultError}, {Mode: FaultStatus, Status: 429}, {Mode: FaultSlowHeaders, Delay: time.Millisecond}}
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			s.SetFault(modes[i%len(modes)])
			s.SetModels([]string{"m", "n"})
			time.Sleep(100 * time.Microsecond)
		}
	}()
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 20; j++ {
				res, err := http.Post(s.URL+"/v1/chat/completions", "application/json", strings.NewReader(chatOnceBody))
				if err != nil {
					t.Error(err)
					return
				}
				io.Copy(io.Discard, res.Body)
				res.Body.Close()
				if res.StatusCode != 200 && res.StatusCode != 500 && res.StatusCode != 429 {
					t.Errorf("status %d", res.StatusCode)
				}
			}
		}()
	}
	time.Sleep(50 * time.Millisecond)
	close(stop)
	wg.Wait()
}
