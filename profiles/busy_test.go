package profiles

import (
	"strings"
	"testing"
)

func TestIsBusyAnswer(t *testing.T) {
	tests := []struct {
		status int
		body   string
		want   bool
	}{
		{409, `{"error":{"message":"All model slots are pinned","type":"slots_pinned_error"}}`, true},
		{503, `{"error":"server busy, please try again.  maximum pending requests exceeded"}`, true},
		{503, `{"error":{"code":503,"message":"No slot available","type":"unavailable_error"}}`, true},
		{503, `{"error":{"code":503,"message":"Loading model","type":"unavailable_error"}}`, false},
		{409, `{"error":"conflict"}`, false},
		{500, `{"error":"server busy"}`, false},
		{429, `slots_pinned_error`, false},
		{503, ``, false},
		// the marker past the peek is not read
		{503, strings.Repeat(" ", MaxBusyPeek) + "server busy", false},
	}
	for _, tt := range tests {
		if got := IsBusyAnswer(tt.status, []byte(tt.body)); got != tt.want {
			t.Errorf("IsBusyAnswer(%d, %.60q) = %v, want %v", tt.status, tt.body, got, tt.want)
		}
	}
}
