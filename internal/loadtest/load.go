package main

// The load client: one goroutine per client, each looping requests
// back-to-back on a shared keep-alive pool, reading every body to its end
// and recording latencies into its own preallocated slices.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// Stream terminators: the last NDJSON line of an Ollama answer (also present
// in a non-streamed one) and the last SSE event of an OpenAI stream.
const (
	ndjsonDone = `"done":true`
	sseDone    = `data: [DONE]`
)

// loadSpec is what the clients send and how many of them there are.
type loadSpec struct {
	url     string
	body    []byte
	clients int
}

// window is the timeline of one run: clients start spread over the first
// second after start; requests that start in [measureFrom, stopAt) are
// measured; no request starts after stopAt.
type window struct {
	start, measureFrom, stopAt time.Time
}

// newWindow lays out a run beginning at start.
func newWindow(start time.Time, warmup, duration time.Duration) window {
	from := start.Add(warmup)
	return window{start: start, measureFrom: from, stopAt: from.Add(duration)}
}

// drainLimit bounds how long requests still in flight at stopAt may take
// before they are cancelled (and counted as errors).
const drainLimit = 15 * time.Second

// maxErrorSamples is how many distinct failure descriptions a run keeps.
const maxErrorSamples = 4

// loadOutcome is what the clients of one run measured, merged.
type loadOutcome struct {
	ok        int64           // complete 200 answers started in the window
	errors    int64           // transport errors and non-200 answers
	truncated int64           // 200 answers whose body lacked the terminator
	ttfb      []time.Duration // per ok request: send to first body byte
	total     []time.Duration // per ok request: send to last body byte
	samples   []string        // a few distinct failure descriptions
}

// clientRecord is one client's measurements; only its goroutine writes it.
type clientRecord struct {
	ttfb, total       []time.Duration
	errors, truncated int64
	sample            string
}

// drive runs spec's clients over w and returns the merged measurements.
func drive(ctx context.Context, spec loadSpec, w window) loadOutcome {
	ctx, cancel := context.WithDeadline(ctx, w.stopAt.Add(drainLimit))
	defer cancel()

	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        0, // no overall cap
		MaxIdleConnsPerHost: max(1100, spec.clients+100),
		MaxConnsPerHost:     0,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true, // the body bytes are what the proxy sent
	}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr}

	// Room for every measured latency without growing: a generous guess at
	// the aggregate rate, shared out among the clients.
	measured := w.stopAt.Sub(w.measureFrom).Seconds()
	capacity := max(64, int(measured*40000)/spec.clients)

	records := make([]clientRecord, spec.clients)
	var wg sync.WaitGroup
	for i := range records {
		rec := &records[i]
		rec.ttfb = make([]time.Duration, 0, capacity)
		rec.total = make([]time.Duration, 0, capacity)
		begin := w.start.Add(time.Duration(i) * time.Second / time.Duration(spec.clients))
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &client{hc: hc, spec: spec, header: http.Header{"Content-Type": {"application/json"}},
				buf: make([]byte, 16<<10)}
			c.loop(ctx, begin, w, rec)
		}()
	}
	wg.Wait()
	return merge(records)
}

// client is one looping client. Not safe for concurrent use.
type client struct {
	hc     *http.Client
	spec   loadSpec
	header http.Header // shared by this client's requests, never modified
	buf    []byte      // body read buffer
	term   terminatorScan
}

// result is the outcome of one request.
type result struct {
	kind        resultKind
	ttfb, total time.Duration
	detail      string // for failures
}

// resultKind classifies a request.
type resultKind uint8

const (
	resultOK        resultKind = iota // 200, body complete with its terminator
	resultError                       // transport error or non-200 status
	resultTruncated                   // 200, but the terminator never came
)

// loop sends requests back-to-back from begin until w.stopAt, recording
// those that started inside the measured window.
func (c *client) loop(ctx context.Context, begin time.Time, w window, rec *clientRecord) {
	if !sleepUntil(ctx, begin) {
		return
	}
	for {
		start := time.Now()
		if !start.Before(w.stopAt) || ctx.Err() != nil {
			return
		}
		r := c.once(ctx, start)
		if start.Before(w.measureFrom) {
			continue
		}
		switch r.kind {
		case resultOK:
			rec.ttfb = append(rec.ttfb, r.ttfb)
			rec.total = append(rec.total, r.total)
		case resultError:
			rec.errors++
			if rec.sample == "" {
				rec.sample = "error: " + r.detail
			}
		case resultTruncated:
			rec.truncated++
			if rec.sample == "" {
				rec.sample = "truncated: " + r.detail
			}
		}
		if r.kind == resultError && ctx.Err() == nil {
			// A failing contender must not turn into a busy loop that
			// starves the others of CPU.
			sleepUntil(ctx, time.Now().Add(10*time.Millisecond))
		}
	}
}

// once sends one request and reads its answer to the end.
func (c *client) once(ctx context.Context, start time.Time) result {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.spec.url, bytes.NewReader(c.spec.body))
	if err != nil {
		return result{kind: resultError, detail: err.Error()}
	}
	req.Header = c.header
	res, err := c.hc.Do(req)
	if err != nil {
		return result{kind: resultError, detail: err.Error()}
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		n, _ := io.ReadFull(res.Body, c.buf[:min(len(c.buf), 200)])
		_, _ = io.Copy(io.Discard, res.Body)
		return result{kind: resultError, detail: fmt.Sprintf("status %d: %s", res.StatusCode, bytes.TrimSpace(c.buf[:n]))}
	}

	c.term.reset(ndjsonDone)
	if ct := res.Header.Get("Content-Type"); len(ct) >= 17 && ct[:17] == "text/event-stream" {
		c.term.reset(sseDone)
	}
	var first time.Time
	var readErr error
	var size int64
	for {
		n, err := res.Body.Read(c.buf)
		if n > 0 {
			if first.IsZero() {
				first = time.Now()
			}
			size += int64(n)
			c.term.feed(c.buf[:n])
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			readErr = err
			break
		}
	}
	end := time.Now()
	if !c.term.found {
		detail := fmt.Sprintf("%d body bytes, no %s", size, c.term.pat)
		if readErr != nil {
			detail += " (read error: " + readErr.Error() + ")"
		}
		return result{kind: resultTruncated, detail: detail}
	}
	if readErr != nil && !errors.Is(readErr, context.Canceled) {
		// The terminator arrived but the connection broke before the
		// body's end: the answer is complete, the transport is not.
		return result{kind: resultError, detail: "after the terminator: " + readErr.Error()}
	}
	return result{kind: resultOK, ttfb: first.Sub(start), total: end.Sub(start)}
}

// terminatorScan finds a byte pattern in a body fed in pieces, including
// across piece boundaries, without allocating.
type terminatorScan struct {
	pat   string
	patb  [32]byte // pat as bytes, so scanning needs no conversion
	tail  [32]byte // the last len(pat)-1 bytes seen
	n     int
	found bool
}

// reset starts a new body, looking for pat (1 to 32 bytes).
func (t *terminatorScan) reset(pat string) {
	if t.pat != pat {
		t.pat = pat
		copy(t.patb[:], pat)
	}
	t.n, t.found = 0, false
}

// feed scans the next piece of the body.
func (t *terminatorScan) feed(p []byte) {
	if t.found {
		return
	}
	pat := t.patb[:len(t.pat)]
	k := len(pat) - 1
	if t.n > 0 {
		var joint [64]byte
		j := copy(joint[:], t.tail[:t.n])
		j += copy(joint[j:], p[:min(len(p), k)])
		if bytes.Contains(joint[:j], pat) {
			t.found = true
			return
		}
	}
	if bytes.Contains(p, pat) {
		t.found = true
		return
	}
	if len(p) >= k {
		t.n = copy(t.tail[:], p[len(p)-k:])
		return
	}
	keep := min(t.n, k-len(p))
	copy(t.tail[:], t.tail[t.n-keep:t.n])
	t.n = keep + copy(t.tail[keep:], p)
}

// sleepUntil waits until t; it reports false if ctx ended first.
func sleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		return true
	}
}

// merge joins the clients' records.
func merge(records []clientRecord) loadOutcome {
	var out loadOutcome
	n := 0
	for i := range records {
		n += len(records[i].ttfb)
	}
	out.ttfb = make([]time.Duration, 0, n)
	out.total = make([]time.Duration, 0, n)
	seen := map[string]bool{}
	for i := range records {
		r := &records[i]
		out.ttfb = append(out.ttfb, r.ttfb...)
		out.total = append(out.total, r.total...)
		out.errors += r.errors
		out.truncated += r.truncated
		if r.sample != "" && !seen[r.sample] && len(out.samples) < maxErrorSamples {
			seen[r.sample] = true
			out.samples = append(out.samples, r.sample)
		}
	}
	out.ok = int64(n)
	return out
}
