package adapter_test

import (
	"strconv"
	"strings"
	"testing"
)

// TestHostileAliases: aliases and merge keys (<<) that refer to themselves
// or expand exponentially are refused with an error naming the problem,
// before any of them is expanded. Before the guard the cyclic merge was a
// fatal stack overflow and the nested merges ran for minutes.
func TestHostileAliases(t *testing.T) {
	// laughs nests merge keys: each level merges the one below ten times.
	laughs := func(levels int, merge bool) string {
		var b strings.Builder
		b.WriteString("l0: &l0 {a: 1, b: 2}\n")
		for i := 1; i <= levels; i++ {
			b.WriteString("l" + strconv.Itoa(i) + ": &l" + strconv.Itoa(i) + " ")
			if merge {
				b.WriteString("{<<: [")
			} else {
				b.WriteString("[")
			}
			for j := 0; j < 10; j++ {
				if j > 0 {
					b.WriteString(", ")
				}
				b.WriteString("*l" + strconv.Itoa(i-1))
			}
			if merge {
				b.WriteString("]}\n")
			} else {
				b.WriteString("]\n")
			}
		}
		return b.String()
	}
	tests := []struct {
		name, yaml string
		want       []string
	}{
		{"self-referencing merge", "proxy: &p {<<: *p}\n" + oneEndpoint, []string{"config.yaml:1:", "*p", "contains it"}},
		{"self-referencing merge in block style", "proxy: &p\n  engine: olla\n  <<: *p\n" + oneEndpoint, []string{"config.yaml:3:", "*p"}},
		{"mutual merges", "a: &a {x: 1}\nproxy: &p\n  <<: *a\n  q: &q {<<: *p}\n" + oneEndpoint, []string{"config.yaml:4:", "*p"}},
		{"self-referencing alias without merge", "proxy: &p {sticky_sessions: *p}\n" + oneEndpoint, []string{"config.yaml:1:", "*p"}},
		{"alias to the list that holds it", "discovery:\n  static:\n    endpoints: &e [*e]\n", []string{"config.yaml:3:", "*e"}},
		{"merge inside a merged mapping that loops", "x: &x {y: {<<: *x}}\nproxy:\n  <<: *x\n" + oneEndpoint, []string{"config.yaml:1:", "*x"}},
		{"billion laughs through merge keys", laughs(9, true) + "proxy: {<<: *l9}\n" + oneEndpoint, []string{"100000", "aliases"}},
		{"billion laughs through lists", laughs(9, false) + oneEndpoint, []string{"100000", "aliases"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := fixedAdapter(nil).Adapt([]byte(tt.yaml), map[string]any{"filename": "config.yaml"})
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

// TestAliasesWithinBounds: ordinary anchors, aliases and merges still work,
// including one mapping merged into many endpoints.
func TestAliasesWithinBounds(t *testing.T) {
	yaml := "defaults: &d {type: ollama, check_interval: 10s}\n" +
		"discovery:\n  static:\n    endpoints:\n" +
		"      - {<<: *d, url: 'http://a:1', name: a}\n" +
		"      - {<<: [*d], url: 'http://b:1', name: b, type: vllm}\n"
	out, _, err := fixedAdapter(nil).Adapt([]byte(yaml), map[string]any{"filename": "config.yaml"})
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{`"name":"a","url":"http://a:1","type":"ollama"`, `"name":"b","url":"http://b:1","type":"vllm"`, `"check_interval":"10s"`} {
		if !strings.Contains(string(out), w) {
			t.Errorf("adapted JSON lacks %s:\n%s", w, out)
		}
	}
}
