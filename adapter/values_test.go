package adapter

import (
	"reflect"
	"testing"
	"time"
)

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"104857600", 104857600, true},
		{"100MB", 100 << 20, true},
		{"100mb", 100 << 20, true},
		{"100 MiB", 100 << 20, true},
		{"64KB", 64 << 10, true},
		{"512K", 512 << 10, true},
		{"1GB", 1 << 30, true},
		{"1.5MB", 3 << 19, true},
		{"10B", 10, true},
		{"0", 0, true},
		{"-1", -1, true},
		{"", 0, false},
		{"MB", 0, false},
		{"ten", 0, false},
		{"10 parsecs", 0, false},
		{"1e3MB", 0, false},
		{"9999999TB", 0, false},
	}
	for _, tt := range tests {
		got, err := parseSize(tt.in)
		if (err == nil) != tt.ok || (tt.ok && got != tt.want) {
			t.Errorf("parseSize(%q) = %d, %v; want %d, ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func TestDurations(t *testing.T) {
	for in, want := range map[string]string{
		"5m": "5m", "300s": "5m", "90s": "1m30s", "1h": "1h", "24h": "24h", "1h30m": "1h30m",
		"500ms": "500ms", "1.5s": "1.5s", "2m0s": "2m", "0": "0s",
	} {
		d, err := parseDuration(in)
		if err != nil {
			t.Errorf("parseDuration(%q): %v", in, err)
			continue
		}
		if got := fmtDuration(d); got != want {
			t.Errorf("fmtDuration(parseDuration(%q)) = %q, want %q", in, got, want)
		}
	}
	for _, bad := range []string{"30", "1.5", "5 minutes", "1d", ""} {
		if _, err := parseDuration(bad); err == nil {
			t.Errorf("parseDuration(%q) accepted", bad)
		}
	}
	if d, _ := parseDuration("2m"); d != 2*time.Minute {
		t.Errorf("2m = %v", d)
	}
}

func TestSplitEnv(t *testing.T) {
	tests := []struct {
		in   string
		want []any
		ok   bool
	}{
		{"plain", []any{"plain"}, true},
		{"${A}", []any{envRef{name: "A"}}, true},
		{"Bearer ${TOKEN_1}", []any{"Bearer ", envRef{name: "TOKEN_1"}}, true},
		{"${A:-x y}-${B}", []any{envRef{name: "A", def: "x y", hasDefault: true}, "-", envRef{name: "B"}}, true},
		{"${A:-}", []any{envRef{name: "A", hasDefault: true}}, true},
		{"cost $5", []any{"cost $5"}, true},
		{"${1A}", nil, false},
		{"${A-B}", nil, false},
		{"${}", nil, false},
		{"${A", nil, false},
	}
	for _, tt := range tests {
		got, err := splitEnv(tt.in)
		if (err == nil) != tt.ok || (tt.ok && !reflect.DeepEqual(got, tt.want)) {
			t.Errorf("splitEnv(%q) = %#v, %v; want %#v ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func TestEscapeBraces(t *testing.T) {
	if got := escapeBraces("a{b}c"); got != `a\{b\}c` {
		t.Errorf("escapeBraces = %q", got)
	}
	if got := escapeBraces("none"); got != "none" {
		t.Errorf("escapeBraces = %q", got)
	}
}
