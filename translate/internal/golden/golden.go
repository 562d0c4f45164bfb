// Package golden compares test output with files in testdata, for the
// translators' golden tests. Only tests import it, so its -update flag
// exists only in their binaries.
package golden

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// Check compares got with the file at path, or writes it under -update.
func Check(t testing.TB, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs\n got: %s\nwant: %s", path, got, want)
	}
}

// Inputs lists testdata/<dir>/*<ext>, the goldens (*.want*) left out.
func Inputs(t testing.TB, dir, ext string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", dir, "*"+ext))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, f := range files {
		if !strings.Contains(filepath.Base(f), ".want") {
			out = append(out, f)
		}
	}
	if len(out) == 0 {
		t.Fatalf("no inputs in testdata/%s", dir)
	}
	return out
}

// Want is the golden file of an input: X<ext> → X.want<ext>.
func Want(in, ext string) string { return strings.TrimSuffix(in, ext) + ".want" + ext }

// FixIDs makes a translator's id maker deterministic for one test (the
// prefix, then gen1, gen2...; msg_gen1, toolu_gen2), restored after it.
func FixIDs(t testing.TB, newID *func(prefix string) string) {
	old := *newID
	n := 0
	*newID = func(prefix string) string { n++; return fmt.Sprintf("%sgen%d", prefix, n) }
	t.Cleanup(func() { *newID = old })
}
