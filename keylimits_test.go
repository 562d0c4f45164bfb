package olla

import "testing"

// TestSoleVariable: only a key that is one placeholder and nothing else
// is read with Replacer.GetString; anything else goes through ReplaceAll.
func TestSoleVariable(t *testing.T) {
	for key, want := range map[string]string{
		"{http.auth.user.id}":                            "http.auth.user.id",
		"{http.request.header.X-Team}":                   "http.request.header.X-Team",
		"team-{http.request.header.X-Team}":              "",
		"{http.request.header.A}{http.request.header.B}": "",
		"{a}/{b}": "",
		"{}":      "",
		"{":       "",
		"":        "",
		`{a\}`:    "",
		"{a} ":    "",
	} {
		if got := soleVariable(key); got != want {
			t.Errorf("soleVariable(%q) = %q, want %q", key, got, want)
		}
	}
}
