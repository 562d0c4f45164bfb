package preload

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"

	"github.com/caddy-olla/olla/profiles"
)

// SendHTTP sends a load request to base (the endpoint's URL, which may
// carry a path) with the endpoint's headers, through rt (redirects are not
// followed: a load goes to the endpoint or nowhere), and reads at most
// limit bytes of the answer. A Target's Send is usually this.
func SendHTTP(ctx context.Context, rt http.RoundTripper, base string, header http.Header,
	lr profiles.LoadRequest, limit int64) (int, http.Header, []byte, error) {
	client := &http.Client{Transport: rt, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	var body io.Reader
	if lr.Body != nil {
		body = bytes.NewReader(lr.Body)
	}
	req, err := http.NewRequestWithContext(ctx, lr.Method, strings.TrimRight(base, "/")+lr.Path, body)
	if err != nil {
		return 0, nil, nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	for k, v := range lr.Header {
		req.Header[k] = v
	}
	if lr.Body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("User-Agent", "olla-caddy-preload")
	res, err := client.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, limit))
	if err != nil && ctx.Err() != nil {
		return 0, nil, nil, ctx.Err()
	}
	// drain a little more so the connection can be reused; a long answer
	// is closed instead
	_, _ = io.CopyN(io.Discard, res.Body, 4<<10)
	return res.StatusCode, res.Header, b, nil
}
