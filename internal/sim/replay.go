package sim

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
)

// Replay serves the captured GET exchanges of one real server (a directory
// of testdata/real: files GET_*.txt holding the request line, "---", then
// the response as captured): each capture at its path, any other path the
// capture of an unknown path (a file whose name has "nonexistent"), or a
// plain 404 when there is none. Classification tests use it to type a real
// server's answers through the same HTTP path as a live one.
func Replay(dir string) (http.Handler, error) {
	type answer struct {
		status int
		header http.Header
		body   []byte
	}
	answers := map[string]answer{}
	notFound := answer{status: http.StatusNotFound, header: http.Header{}}
	files, err := filepath.Glob(filepath.Join(dir, "GET_*.txt"))
	if err != nil || len(files) == 0 {
		return nil, fmt.Errorf("sim: no GET captures in %s", dir)
	}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		reqPart, resPart, ok := bytes.Cut(raw, []byte("\n---\n"))
		if !ok {
			return nil, fmt.Errorf("sim: %s has no --- between request and response", f)
		}
		fields := strings.Fields(string(reqPart))
		if len(fields) < 2 {
			return nil, fmt.Errorf("sim: %s has no request line", f)
		}
		head, body, _ := bytes.Cut(resPart, []byte("\n\n"))
		r, err := http.ReadResponse(bufio.NewReader(io.MultiReader(bytes.NewReader(head), strings.NewReader("\r\n\r\n"))), nil)
		if err != nil {
			return nil, fmt.Errorf("sim: %s: %w", f, err)
		}
		r.Header.Del("Content-Length")
		r.Header.Del("Transfer-Encoding")
		a := answer{r.StatusCode, r.Header, body}
		if strings.Contains(f, "nonexistent") {
			notFound = a
			continue
		}
		if _, seen := answers[fields[1]]; !seen {
			answers[fields[1]] = a // the first capture of a path (files sort by name)
		}
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a, ok := answers[r.URL.Path]
		if !ok {
			a = notFound
		}
		for k, v := range a.header {
			w.Header()[k] = v
		}
		w.WriteHeader(a.status)
		_, _ = w.Write(a.body)
	}), nil
}
