package engines

import (
	"net/http"
	"testing"
	"time"
)

// TestParseRetryAfter: a backend's Retry-After is capped at five minutes and
// never overflows; what is not a valid value means "no advice" (0).
func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	date := func(d time.Duration) string { return now.Add(d).Format(http.TimeFormat) }
	for _, tc := range []struct {
		in   string
		want time.Duration
	}{
		{"", 0},
		{"0", 0},
		{"7", 7 * time.Second},
		{" 30 ", 30 * time.Second},
		{"300", 5 * time.Minute},
		{"301", MaxRetryAfter},
		{"86400", MaxRetryAfter},
		{"1000000000000", MaxRetryAfter},        // 10^12: overflows int64 nanoseconds when multiplied
		{"99999999999999999999", MaxRetryAfter}, // beyond int64 itself
		{"9223372036854775807", MaxRetryAfter},  // math.MaxInt64
		{"00000000000000000000000000000000000000000000000000000000000000000012", 12 * time.Second}, // leading zeros are still a number
		{"-1", 0},
		{"-86400", 0},
		{"+5", 0},
		{"1.5", 0},
		{"5s", 0},
		{"soon", 0},
		{"0x10", 0},
		{"１０", 0}, // full-width digits are not digits
		{date(90 * time.Second), 90 * time.Second},
		{date(24 * time.Hour), MaxRetryAfter},
		{"Fri, 31 Dec 9999 23:59:59 GMT", MaxRetryAfter},
		{date(-time.Hour), 0},
		{"Mon, 99 Foo 2026 99:99:99 GMT", 0},
	} {
		if got := ParseRetryAfter(tc.in, now); got != tc.want {
			t.Errorf("ParseRetryAfter(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
}
