package engines

import (
	"strings"
	"testing"
)

func TestTailKeepsTheEnd(t *testing.T) {
	var tail Tail
	long := strings.Repeat("x", 10000) + "END"
	for i := 0; i < len(long); i += 1000 {
		tail.Write([]byte(long[i:min(i+1000, len(long))]))
	}
	got := string(tail.Bytes())
	if len(got) != tailSize || !strings.HasSuffix(got, "END") {
		t.Fatalf("tail kept %d bytes ending %q", len(got), got[len(got)-5:])
	}
}
