package sim

import (
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseSpec(t *testing.T) {
	ok := []struct {
		in   string
		want Spec
	}{
		{"ollama@127.0.0.1:11434=llama3.2:latest,phi4-mini;ttft=100ms;tps=50;tokens=20;name=a",
			Spec{Addr: "127.0.0.1:11434", Config: Config{Kind: Ollama, Models: []string{"llama3.2:latest", "phi4-mini"},
				TTFT: 100 * time.Millisecond, TokensPerSecond: 50, Tokens: 20, Name: "a"}}},
		{"vllm@:8000=Qwen/Qwen2.5-7B-Instruct", Spec{Addr: "127.0.0.1:8000", Config: Config{Kind: VLLM, Models: []string{"Qwen/Qwen2.5-7B-Instruct"}}}},
		{"lm-studio@1234", Spec{Addr: "127.0.0.1:1234", Config: Config{Kind: LMStudio}}},
		{"llama.cpp@0.0.0.0:8080;dims=768", Spec{Addr: "0.0.0.0:8080", Config: Config{Kind: LlamaCpp, EmbeddingDims: 768}}},
		{"openai-compatible@[::1]:9000= a , b ", Spec{Addr: "[::1]:9000", Config: Config{Kind: OpenAI, Models: []string{"a", "b"}}}},
		{" OLLAMA@localhost:0 ", Spec{Addr: "localhost:0", Config: Config{Kind: Ollama}}},
		{"ollama@:1=m;name=a;norecord", Spec{Addr: "127.0.0.1:1", Config: Config{Kind: Ollama, Models: []string{"m"}, Name: "a", NoRecord: true}}},
		{"ollama@:1; NoRecord ;tps=5", Spec{Addr: "127.0.0.1:1", Config: Config{Kind: Ollama, NoRecord: true, TokensPerSecond: 5}}},
		{"ollama@:1;norecord=true", Spec{Addr: "127.0.0.1:1", Config: Config{Kind: Ollama, NoRecord: true}}},
		{"ollama@:1;norecord=false", Spec{Addr: "127.0.0.1:1", Config: Config{Kind: Ollama}}},
	}
	for _, tc := range ok {
		got, err := ParseSpec(tc.in)
		if err != nil {
			t.Errorf("ParseSpec(%q): %v", tc.in, err)
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseSpec(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
	}
	bad := map[string]string{
		"ollama":                        "missing '@'",
		"nope@:1":                       "unknown kind",
		"ollama@":                       "missing address",
		"ollama@host":                   "bad address",
		"ollama@:99999":                 "bad port",
		"ollama@:1=a,,b":                "empty model name",
		"ollama@:1=a;ttft=soon":         "ttft",
		"ollama@:1;tps=-1":              "tps",
		"ollama@:1;tokens=0":            "tokens",
		"ollama@:1;dims=x":              "dims",
		"ollama@:1;color=red":           "unknown option",
		"ollama@:1;ttft":                "needs a value",
		"ollama@:1;ttft=1s;ttft=2s":     "twice",
		"ollama@:1=a;name=x;tokens=2.5": "tokens",
		"ollama@:1;norecord=maybe":      "norecord",
		"ollama@:1;norecord;norecord":   "twice",
		"ollama@:1;name":                "needs a value",
	}
	for in, want := range bad {
		if _, err := ParseSpec(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseSpec(%q) error %v, want one mentioning %q", in, err, want)
		}
	}
}

// TestParseSpecNoRecord checks the norecord key reaches the simulator: a
// spec without it keeps the last request for /_sim/last, one with it does
// not.
func TestParseSpecNoRecord(t *testing.T) {
	for _, tc := range []struct {
		spec   string
		record bool
	}{
		{"ollama@127.0.0.1:0=m", true},
		{"ollama@127.0.0.1:0=m;norecord", false},
	} {
		sp, err := ParseSpec(tc.spec)
		if err != nil {
			t.Fatalf("ParseSpec(%q): %v", tc.spec, err)
		}
		if sp.Config.NoRecord == tc.record {
			t.Fatalf("ParseSpec(%q): NoRecord = %v", tc.spec, sp.Config.NoRecord)
		}
		s := New(sp.Config)
		req := httptest.NewRequest(http.MethodPost, "/api/chat",
			strings.NewReader(`{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":false}`))
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			t.Fatalf("%s: chat answered %d: %s", tc.spec, rec.Code, rec.Body)
		}
		_, recorded := s.LastRequestTo("/api/chat")
		if recorded != tc.record {
			t.Errorf("%s: request recorded = %v, want %v", tc.spec, recorded, tc.record)
		}
	}
}
