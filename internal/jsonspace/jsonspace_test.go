package jsonspace

import "testing"

func TestSkip(t *testing.T) {
	for _, tc := range []struct {
		in   string
		from int
		want int
	}{
		{"", 0, 0},
		{"{}", 0, 0},
		{" \t\r\n{", 0, 4},
		{"a  b", 1, 3},
		{"   ", 1, 3},
		{"x", 1, 1},
		// not JSON whitespace: form feed, vertical tab, NBSP, NUL
		{"\f{", 0, 0},
		{"\v{", 0, 0},
		{"\u00a0{", 0, 0},
		{"\x00{", 0, 0},
	} {
		if got := Skip([]byte(tc.in), tc.from); got != tc.want {
			t.Errorf("Skip(%q, %d) = %d, want %d", tc.in, tc.from, got, tc.want)
		}
	}
}

func TestIs(t *testing.T) {
	for c := 0; c < 256; c++ {
		want := c == ' ' || c == '\t' || c == '\n' || c == '\r'
		if Is(byte(c)) != want {
			t.Errorf("Is(%#x) = %v, want %v", c, !want, want)
		}
	}
}
