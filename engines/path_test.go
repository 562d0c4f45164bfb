package engines

import (
	"errors"
	"net/url"
	"testing"
)

// TestNormalizeAPIPath: the path every rule checks is the path UpstreamURL
// forwards, and ambiguous or escaping paths are refused.
func TestNormalizeAPIPath(t *testing.T) {
	for _, tc := range []struct {
		raw  string // request path below the route prefix, as sent
		want string
		err  error
	}{
		{"/api/pull", "/api/pull", nil},
		{"/api//pull", "/api/pull", nil},
		{"/api/./pull", "/api/pull", nil},
		{"/x/../api/pull", "/api/pull", nil},
		{"/api/pull/", "/api/pull/", nil},
		{"/api/pull/.", "/api/pull", nil},
		{"//api/chat", "/api/chat", nil},
		{"/", "/", nil},
		{"/v1/models/org%2Fmodel", "/v1/models/org/model", nil}, // an encoded slash that changes nothing
		{"/v1/models/a.b", "/v1/models/a.b", nil},
		{"/.well-known/x", "/.well-known/x", nil},
		{"/..", "", ErrPathEscapesRoute},
		{"/../openai/v1/chat/completions", "", ErrPathEscapesRoute},
		{"/api/../../x", "", ErrPathEscapesRoute},
		{"/api/%2e/pull", "", ErrPathEncodedDots},
		{"/api/%2E%2E/pull", "", ErrPathEncodedDots},
		{"/api%2F..%2Fpull", "", ErrPathEncodedDots},
		{"/api/%2fpull", "", ErrPathEncodedDots},
	} {
		u, err := url.Parse("http://h/olla/ollama" + tc.raw)
		if err != nil {
			t.Fatal(err)
		}
		api := u.Path[len("/olla/ollama"):]
		got, err := NormalizeAPIPath(api, u.EscapedPath())
		if !errors.Is(err, tc.err) || got != tc.want {
			t.Errorf("%s: got %q, %v; want %q, %v", tc.raw, got, err, tc.want, tc.err)
			continue
		}
		if err == nil {
			// forwarded exactly as checked
			if up := UpstreamURL(&url.URL{Scheme: "http", Host: "b"}, got, ""); up.Path != got {
				t.Errorf("%s: checked %q, forwarded %q", tc.raw, got, up.Path)
			}
		}
	}
}
