// Package ui holds the status dashboard's page: static files embedded in the
// binary, so it works offline and needs no CDN. The page reads its data from
// a JSON route the root package serves beside it, and renders everything as
// text (never as markup), so names a backend chose cannot inject anything.
package ui

import (
	"embed"
	"net/http"
	"path"
	"strconv"
)

//go:embed assets
var assets embed.FS

// SecurityHeaders are set on the page, its assets and its data: scripts and
// styles from this origin only, nothing inline, no framing, no sniffing.
func SecurityHeaders(h http.Header) {
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "+
		"img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
}

var types = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
}

// Serve writes the asset name ("index.html", "app.js", "app.css") and
// reports false when there is no such asset.
func Serve(w http.ResponseWriter, r *http.Request, name string) bool {
	ct, ok := types[path.Ext(name)]
	if !ok || name != path.Base(name) {
		return false
	}
	b, err := assets.ReadFile("assets/" + name)
	if err != nil {
		return false
	}
	h := w.Header()
	SecurityHeaders(h)
	h.Set("Content-Type", ct)
	h.Set("Content-Length", strconv.Itoa(len(b)))
	h.Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(b)
	}
	return true
}
