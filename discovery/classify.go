package discovery

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/caddy-olla/olla/profiles"
)

// DefaultClassifyTimeout bounds each classification probe: short, since a
// server that cannot answer a GET in this long is not ready to be typed.
const DefaultClassifyTimeout = 2 * time.Second

// ClassifyType sends the type-auto probes (profiles.ClassifyProbes) to the
// server at base, at once, each a GET with header bounded by timeout and
// its body by profiles.MaxProbeBody, and decides the server's type from the
// answers (profiles.Classify). It takes at most about timeout, whatever the
// server does; redirects are not followed. The answers are returned too,
// for the record.
func ClassifyType(ctx context.Context, rt http.RoundTripper, base *url.URL, header http.Header, timeout time.Duration) (profiles.Classification, map[string]profiles.ProbeAnswer) {
	if timeout <= 0 {
		timeout = DefaultClassifyTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	answers := make(map[string]profiles.ProbeAnswer, len(profiles.ClassifyProbes))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, p := range profiles.ClassifyProbes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a := probe(ctx, rt, base, p, header, timeout)
			mu.Lock()
			answers[p] = a
			mu.Unlock()
		}()
	}
	wg.Wait()
	return profiles.Classify(answers), answers
}

func probe(ctx context.Context, rt http.RoundTripper, base *url.URL, path string, header http.Header, timeout time.Duration) profiles.ProbeAnswer {
	u := &url.URL{Scheme: base.Scheme, Host: base.Host, Path: strings.TrimSuffix(base.Path, "/") + path}
	res := Fetch{URL: u.String(), Header: header, UserAgent: "olla-caddy-classify", Limit: profiles.MaxProbeBody}.Do(ctx, rt)
	switch {
	case res.Unsent:
		return profiles.ProbeAnswer{Err: res.Err.Error()}
	case res.Err != nil && ctx.Err() != nil:
		return profiles.ProbeAnswer{Err: "no answer in " + timeout.String()}
	case res.Err != nil:
		return profiles.ProbeAnswer{Err: TransportReason(res.Err, timeout)}
	}
	a := profiles.ProbeAnswer{Status: res.Status, Server: res.Header.Get("Server"), Body: res.Body}
	if res.ReadErr != nil {
		// a body cut off by the deadline still says what it said so far
		a.Err = "body not read whole"
	}
	return a
}
