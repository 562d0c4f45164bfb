package main

// The simulated backends: one olla-sim process serving two Ollama backends,
// steered through its /_sim/ control routes.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// simSet is the simulator process and the base URLs of its backends.
type simSet struct {
	proc *child
	urls []string // "http://127.0.0.1:PORT"
}

// startSims starts one olla-sim process serving an Ollama backend with the
// test model on each address, and waits until all answer.
func startSims(ctx context.Context, sup *supervisor, bin string, addrs []string) (*simSet, error) {
	var args []string
	s := &simSet{}
	for i, a := range addrs {
		// norecord: no copy of every request for /_sim/last (an allocation per request).
		args = append(args, "-sim", fmt.Sprintf("ollama@%s=%s;name=sim-%c;norecord", a, testModel, 'a'+i))
		s.urls = append(s.urls, "http://"+a)
	}
	p, err := sup.start("olla-sim", "olla-sim", bin, args...)
	if err != nil {
		return nil, err
	}
	s.proc = p
	for _, u := range s.urls {
		if err := waitHTTP(ctx, p, 10*time.Second, func(c *http.Client) bool {
			res, err := c.Get(u + "/_sim/stats")
			if err != nil {
				return false
			}
			drain(res.Body)
			return res.StatusCode == http.StatusOK
		}); err != nil {
			return nil, fmt.Errorf("simulator %s: %w", u, err)
		}
	}
	return s, nil
}

// setTiming sets the pacing of every backend (see POST /_sim/timing).
func (s *simSet) setTiming(ctx context.Context, ttft time.Duration, tps float64, tokens int) error {
	body := fmt.Sprintf(`{"ttft":%q,"tokens_per_second":%g,"tokens":%d}`, ttft.String(), tps, tokens)
	for _, u := range s.urls {
		if err := controlCall(ctx, http.MethodPost, u+"/_sim/timing", body, nil); err != nil {
			return err
		}
	}
	return nil
}

// resetStats zeroes every backend's counters (DELETE /_sim/stats).
func (s *simSet) resetStats(ctx context.Context) error {
	for _, u := range s.urls {
		if err := controlCall(ctx, http.MethodDelete, u+"/_sim/stats", "", nil); err != nil {
			return err
		}
	}
	return nil
}

// inferenceCounts returns the /api/chat requests each backend received
// since the last reset.
func (s *simSet) inferenceCounts(ctx context.Context) ([]int64, error) {
	out := make([]int64, len(s.urls))
	for i, u := range s.urls {
		var st struct {
			ByPath map[string]int64 `json:"by_path"`
		}
		if err := controlCall(ctx, http.MethodGet, u+"/_sim/stats", "", &st); err != nil {
			return nil, err
		}
		out[i] = st.ByPath["POST "+chatPath]
	}
	return out, nil
}

// controlCall performs one simulator control request and decodes a JSON
// answer into into when it is not nil.
func controlCall(ctx context.Context, method, url, body string, into any) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	if err != nil {
		return err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, url, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, url, err)
	}
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %s: %s", method, url, res.Status, bytes.TrimSpace(b))
	}
	if into != nil {
		return json.Unmarshal(b, into)
	}
	return nil
}
