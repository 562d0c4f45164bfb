package sim

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestPacing(t *testing.T) {
	const ttft, tps, n = 40 * time.Millisecond, 25.0, 5 // 40ms between tokens
	for _, kind := range []string{Ollama, OpenAI} {
		t.Run(kind, func(t *testing.T) {
			s := startT(t, Config{Kind: kind, Models: []string{"m"}, TTFT: ttft, TokensPerSecond: tps, Tokens: n})
			path := "/api/chat"
			if kind != Ollama {
				path = "/v1/chat/completions"
			}
			start := time.Now()
			res := openStream(t, context.Background(), s.URL+path, `{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true}`)
			defer res.Body.Close()
			fr := newFrameReader(res)
			if _, err := fr.next(); err != nil {
				t.Fatal(err)
			}
			// The first event arrives while the server is still generating.
			if s.Stats().Active != 1 {
				t.Errorf("first event arrived after the stream ended")
			}
			frames := 1
			for {
				if _, err := fr.next(); err != nil {
					break
				}
				frames++
			}
			min := ttft + time.Duration(n-1)*time.Second/time.Duration(tps)
			if el := time.Since(start); el < min {
				t.Errorf("stream took %v, less than TTFT + (n-1)/tps = %v", el, min)
			}
			if frames < n {
				t.Errorf("%d frames", frames)
			}
		})
	}

	// Non-stream answers come when the stream would have ended.
	s := startT(t, Config{Kind: VLLM, Models: []string{"m"}, TTFT: ttft, TokensPerSecond: tps, Tokens: n})
	start := time.Now()
	post(t, s.URL+"/v1/completions", `{"model":"m","prompt":"hi"}`)
	if el, min := time.Since(start), ttft+4*40*time.Millisecond; el < min {
		t.Errorf("non-stream answer after %v, want at least %v", el, min)
	}
	// Runtime change of the pacing.
	s.SetTiming(0, 0, 2)
	_, b := post(t, s.URL+"/v1/completions", `{"model":"m","prompt":"hi"}`)
	if text, _, _ := openAIText(decode(t, b)); len(strings.Fields(text)) != 2 {
		t.Errorf("after SetTiming: %q", text)
	}
}

// TestSetTimingReachesStreamsUnderWay holds a stream at one token per
// hour, then lifts the pacing: the stream finishes, so a test can keep
// streams open for as long as it needs and then end them. Were the rate
// fixed at the request's start, the read would hang until the deadline.
func TestSetTimingReachesStreamsUnderWay(t *testing.T) {
	s := startT(t, Config{Kind: Ollama, Models: []string{"m"}, TokensPerSecond: 1.0 / 3600, Tokens: 5})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	res := openStream(t, ctx, s.URL+"/api/chat", `{"model":"m","messages":[{"role":"user","content":"hi"}]}`)
	defer res.Body.Close()
	fr := newFrameReader(res)
	if _, err := fr.next(); err != nil { // the first token is not paced
		t.Fatal(err)
	}
	s.SetTiming(0, 0, 5)
	n, last := 1, ""
	for {
		f, err := fr.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("after %d frames: %v", n, err)
		}
		n, last = n+1, f
	}
	if n != 6 || !strings.Contains(last, `"done":true`) {
		t.Errorf("%d frames, last %s; want 5 tokens and the final frame", n, last)
	}
}

func TestClientDisconnectStopsStream(t *testing.T) {
	s := startT(t, Config{Kind: LlamaCpp, Models: []string{"m"}, TokensPerSecond: 20, Tokens: 100000})
	ctx, cancel := context.WithCancel(context.Background())
	res := openStream(t, ctx, s.URL+"/v1/chat/completions", `{"messages":[{"role":"user","content":"hi"}],"stream":true}`)
	fr := newFrameReader(res)
	for i := 0; i < 3; i++ {
		if _, err := fr.next(); err != nil {
			t.Fatal(err)
		}
	}
	cancel()
	res.Body.Close()
	waitFor(t, "the stream handler to stop", func() bool { return s.Stats().Active == 0 })
	if tok := s.Stats().Tokens; tok < 2 || tok > 100 {
		t.Errorf("%d tokens counted for an abandoned stream", tok)
	}
}

func TestCloseAndRestart(t *testing.T) {
	s := startT(t, Config{Kind: Ollama, Models: []string{"m"}, TokensPerSecond: 50, Tokens: 1000})
	url := s.URL
	if res, _ := get(t, url+"/"); res.StatusCode != 200 {
		t.Fatal("not up")
	}
	res := openStream(t, context.Background(), url+"/api/chat", chatStream)
	fr := newFrameReader(res)
	if _, err := fr.next(); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if s.Running() {
		t.Errorf("Running after Close")
	}
	var err error
	for err == nil {
		_, err = fr.next()
	}
	res.Body.Close()
	if err == io.EOF {
		t.Errorf("stream ended cleanly when the server died")
	}
	if _, err := http.Get(url + "/"); err == nil {
		t.Errorf("GET after Close succeeded")
	}
	s.Close() // idempotent

	if err := s.Restart(); err != nil {
		t.Fatalf("Restart: %v", err)
	}
	if s.URL != url {
		t.Errorf("URL changed: %s -> %s", url, s.URL)
	}
	if res, b := get(t, url+"/"); res.StatusCode != 200 || string(b) != "Ollama is running" {
		t.Errorf("after Restart: %d %s", res.StatusCode, b)
	}
	if s.Requests("/") != 2 {
		t.Errorf("counters not kept across Restart: %d", s.Requests("/"))
	}
	if err := s.Restart(); err == nil {
		t.Errorf("Restart of a running server succeeded")
	}
}

func TestStartAtFixedAddress(t *testing.T) {
	a := startT(t, Config{Kind: VLLM})
	if _, err := StartAt(a.Addr, Config{Kind: VLLM}); err == nil {
		t.Errorf("second StartAt on a busy address succeeded")
	}
	if !strings.HasPrefix(a.URL, "http://127.0.0.1:") {
		t.Errorf("URL %s", a.URL)
	}
}

// TestManyConcurrentStreams drives 200 paced streams at once (the
// thousand-stream run belongs to the load harness).
func TestManyConcurrentStreams(t *testing.T) {
	s := startT(t, Config{Kind: Ollama, Models: []string{"m"}, NoRecord: true, TokensPerSecond: 500, Tokens: 10})
	tr := &http.Transport{MaxIdleConnsPerHost: 200}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	var wg sync.WaitGroup
	const n = 200
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			path, body := "/api/chat", chatStream
			if i%2 == 1 {
				path, body = "/v1/chat/completions", `{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true}`
			}
			res, err := client.Post(s.URL+path, "application/json", strings.NewReader(body))
			if err != nil {
				t.Error(err)
				return
			}
			b, err := io.ReadAll(res.Body)
			res.Body.Close()
			if err != nil {
				t.Error(err)
				return
			}
			if i%2 == 0 && bytes.Count(b, []byte("\n")) != 11 || i%2 == 1 && !bytes.HasSuffix(b, []byte("data: [DONE]\n\n")) {
				t.Errorf("incomplete stream: %s", b)
			}
		}()
	}
	wg.Wait()
	if st := s.Stats(); st.Streams != n || st.Tokens != 10*n || st.Active != 0 {
		t.Errorf("stats %+v", st)
	}
}
