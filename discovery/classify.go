package discovery

import (
	"context"
	"io"
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
	client := &http.Client{Transport: rt, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	answers := make(map[string]profiles.ProbeAnswer, len(profiles.ClassifyProbes))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, p := range profiles.ClassifyProbes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a := probe(ctx, client, base, p, header, timeout)
			mu.Lock()
			answers[p] = a
			mu.Unlock()
		}()
	}
	wg.Wait()
	return profiles.Classify(answers), answers
}

func probe(ctx context.Context, client *http.Client, base *url.URL, path string, header http.Header, timeout time.Duration) profiles.ProbeAnswer {
	u := &url.URL{Scheme: base.Scheme, Host: base.Host, Path: strings.TrimSuffix(base.Path, "/") + path}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return profiles.ProbeAnswer{Err: err.Error()}
	}
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("User-Agent", "olla-caddy-classify")
	res, err := client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return profiles.ProbeAnswer{Err: "no answer in " + timeout.String()}
		}
		return profiles.ProbeAnswer{Err: TransportReason(err, timeout)}
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, profiles.MaxProbeBody))
	a := profiles.ProbeAnswer{Status: res.StatusCode, Server: res.Header.Get("Server"), Body: body}
	if err != nil {
		// a body cut off by the deadline still says what it said so far
		a.Err = "body not read whole"
	}
	return a
}
