// Package bench measures LLM endpoints from the outside: a fixed prompt set
// sent to every endpoint × model, one request at a time, streamed, timing
// the first token (TTFT) and the decode rate (tokens per second) and
// counting errors. It backs the `caddy olla-bench` command, which builds
// the targets from a config; this package knows nothing of Caddy.
//
// The scheduler does not read these results: they are a report for people
// comparing backends (and the proxy against going direct), not a speed
// prior. The adaptive balancer learns TTFT from live traffic instead.
package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"
)

// DefaultPrompts is the fixed prompt set: short, varied, the same for every
// target so results compare.
var DefaultPrompts = []string{
	"Say hello in one short sentence.",
	"List three primary colours, comma separated.",
	"What is 17 times 3? Answer with the number only.",
	"Write a haiku about a load balancer.",
	"Name the capital of France in one word.",
}

// Target is one endpoint × model to measure, directly or through the proxy.
type Target struct {
	Endpoint string      `json:"endpoint"` // the endpoint's name ("" through the proxy: it chooses)
	Type     string      `json:"type"`
	Model    string      `json:"model"`
	Via      string      `json:"via"` // "direct" or "proxy"
	URL      string      `json:"-"`   // the chat completions URL
	Header   http.Header `json:"-"`   // credentials for a direct target; never reported
}

// Options bound a run.
type Options struct {
	Prompts   []string      // default DefaultPrompts
	MaxTokens int           // per answer; default 32
	Timeout   time.Duration // per request, headers and body; default 30s
	// Client sends the requests (default: a plain client).
	Client *http.Client
}

// Result is what one target came to. Times are milliseconds; a value is
// null when no request succeeded.
type Result struct {
	Target
	Requests        int      `json:"requests"`
	Errors          int      `json:"errors"`
	TTFTp50Ms       *float64 `json:"ttft_ms_p50"`
	TTFTp95Ms       *float64 `json:"ttft_ms_p95"`
	TokensPerSecond *float64 `json:"tokens_per_second"`
	// ErrorMessages are the distinct errors, at most three.
	ErrorMessages []string `json:"error_messages,omitempty"`
	// ServedBy are the endpoints the proxy chose (X-Olla-Endpoint).
	ServedBy []string `json:"served_by,omitempty"`
	// Skipped counts prompts not sent after a request timed out: an
	// endpoint that hangs costs one timeout, not one per prompt.
	Skipped int `json:"skipped,omitempty"`
}

// Report is a whole run.
type Report struct {
	Started   time.Time `json:"started"`
	Prompts   int       `json:"prompts"`
	MaxTokens int       `json:"max_tokens"`
	Results   []Result  `json:"results"`
}

// maxErrorMessages bounds the errors kept per target.
const maxErrorMessages = 3

// Run measures every target in turn, each prompt once, one request at a
// time (so TTFT is the server's, not a queue's). It takes at most about
// len(targets) × len(prompts) × Timeout, and less for a target that hangs.
func Run(ctx context.Context, targets []Target, o Options) Report {
	if len(o.Prompts) == 0 {
		o.Prompts = DefaultPrompts
	}
	if o.MaxTokens <= 0 {
		o.MaxTokens = 32
	}
	if o.Timeout <= 0 {
		o.Timeout = 30 * time.Second
	}
	if o.Client == nil {
		o.Client = &http.Client{}
	}
	rep := Report{Started: time.Now().UTC(), Prompts: len(o.Prompts), MaxTokens: o.MaxTokens, Results: []Result{}}
	for _, t := range targets {
		rep.Results = append(rep.Results, runTarget(ctx, t, o))
	}
	return rep
}

func runTarget(ctx context.Context, t Target, o Options) Result {
	r := Result{Target: t}
	var ttfts []float64
	var tokens int
	var decode time.Duration
	for i, p := range o.Prompts {
		if ctx.Err() != nil {
			r.Skipped += len(o.Prompts) - i
			break
		}
		r.Requests++
		m, err := one(ctx, t, p, o)
		if m.servedBy != "" && !slices.Contains(r.ServedBy, m.servedBy) {
			r.ServedBy = append(r.ServedBy, m.servedBy)
		}
		if err != nil {
			r.Errors++
			if msg := err.Error(); len(r.ErrorMessages) < maxErrorMessages && !slices.Contains(r.ErrorMessages, msg) {
				r.ErrorMessages = append(r.ErrorMessages, msg)
			}
			if m.timedOut {
				r.Skipped = len(o.Prompts) - i - 1
				break
			}
			continue
		}
		ttfts = append(ttfts, float64(m.ttft)/float64(time.Millisecond))
		if m.tokens > 1 && m.decode > 0 {
			tokens += m.tokens - 1 // the first token's time is TTFT
			decode += m.decode
		}
	}
	if len(ttfts) > 0 {
		slices.Sort(ttfts)
		p50, p95 := percentile(ttfts, 0.50), percentile(ttfts, 0.95)
		r.TTFTp50Ms, r.TTFTp95Ms = &p50, &p95
	}
	if decode > 0 {
		tps := float64(tokens) / decode.Seconds()
		r.TokensPerSecond = &tps
	}
	return r
}

// percentile of sorted values, nearest rank.
func percentile(sorted []float64, q float64) float64 {
	i := int(float64(len(sorted))*q+0.999999) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

type measure struct {
	ttft, decode time.Duration
	tokens       int
	servedBy     string
	timedOut     bool
}

// one sends a prompt and reads the streamed answer.
func one(ctx context.Context, t Target, prompt string, o Options) (measure, error) {
	var m measure
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	body, _ := json.Marshal(map[string]any{
		"model": t.Model, "stream": true, "max_tokens": o.MaxTokens,
		"stream_options": map[string]any{"include_usage": true},
		"messages":       []map[string]string{{"role": "user", "content": prompt}},
	})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.URL, bytes.NewReader(body))
	if err != nil {
		return m, err
	}
	for k, v := range t.Header {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/json")
	start := time.Now()
	res, err := o.Client.Do(req)
	if err != nil {
		m.timedOut = ctx.Err() != nil
		if m.timedOut {
			return m, fmt.Errorf("no answer within %s", o.Timeout)
		}
		return m, fmt.Errorf("request failed: %v", err)
	}
	defer res.Body.Close()
	m.servedBy = res.Header.Get("X-Olla-Endpoint")
	if res.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(res.Body, 200))
		return m, fmt.Errorf("HTTP %d: %s", res.StatusCode, strings.TrimSpace(string(b)))
	}
	var first, last time.Time
	usage := 0
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		data, ok := bytes.CutPrefix(sc.Bytes(), []byte("data:"))
		if !ok {
			continue
		}
		data = bytes.TrimSpace(data)
		if bytes.Equal(data, []byte("[DONE]")) {
			break
		}
		var ev struct {
			Choices []struct {
				Delta struct {
					Content          string `json:"content"`
					ReasoningContent string `json:"reasoning_content"`
				} `json:"delta"`
			} `json:"choices"`
			Usage *struct {
				CompletionTokens int `json:"completion_tokens"`
			} `json:"usage"`
		}
		if json.Unmarshal(data, &ev) != nil {
			continue
		}
		if ev.Usage != nil && ev.Usage.CompletionTokens > 0 {
			usage = ev.Usage.CompletionTokens
		}
		for _, c := range ev.Choices {
			if c.Delta.Content == "" && c.Delta.ReasoningContent == "" {
				continue
			}
			now := time.Now()
			if first.IsZero() {
				first = now
			}
			last = now
			m.tokens++
		}
	}
	if err := sc.Err(); err != nil {
		m.timedOut = ctx.Err() != nil
		if m.timedOut {
			return m, fmt.Errorf("answer not finished within %s", o.Timeout)
		}
		return m, fmt.Errorf("stream broke: %v", err)
	}
	if first.IsZero() {
		return m, fmt.Errorf("the stream carried no tokens")
	}
	if usage > m.tokens { // a server that sends several tokens per event
		m.tokens = usage
	}
	m.ttft, m.decode = first.Sub(start), last.Sub(first)
	return m, nil
}
