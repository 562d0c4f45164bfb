package profiles

import (
	"cmp"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
)

func TestTableIntegrity(t *testing.T) {
	want := []string{"ollama", "lm-studio", "vllm", "sglang", "llamacpp", "lemonade", "lmdeploy", "litellm",
		"vllm-mlx", "docker-model-runner", "omlx", "openai-compatible"}
	var got []string
	for _, p := range All() {
		got = append(got, p.Name)
		if p.DisplayName == "" || len(p.Prefixes) == 0 || p.HealthPath == "" || p.ModelsPath == "" || p.ModelFormat == "" || len(p.Paths) == 0 {
			t.Errorf("profile %q has an empty required field: %+v", p.Name, p)
		}
		if !strings.HasPrefix(p.HealthPath, "/") || !strings.HasPrefix(p.ModelsPath, "/") {
			t.Errorf("profile %q: health/models paths must start with /", p.Name)
		}
		if !p.ServesPath(p.ModelsPath) {
			t.Errorf("profile %q does not list its own models path %q in Paths", p.Name, p.ModelsPath)
		}
		if p.HealthPath != "/" && !p.ServesPath(p.HealthPath) {
			t.Errorf("profile %q does not list its own health path %q in Paths", p.Name, p.HealthPath)
		}
		if p.OpenAICompatible && !p.ServesPath("/v1/chat/completions") {
			t.Errorf("OpenAI-compatible profile %q does not serve /v1/chat/completions", p.Name)
		}
		if p.AnthropicPath != "" && !p.ServesPath(p.AnthropicPath) {
			t.Errorf("profile %q does not list its Anthropic path", p.Name)
		}
		if q, ok := Lookup(p.Name); !ok || q != p {
			t.Errorf("Lookup(%q) does not find its own profile", p.Name)
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("All() order = %v, want %v", got, want)
	}
	sorted := append([]string(nil), want...)
	sort.Strings(sorted)
	if !reflect.DeepEqual(Types(), sorted) {
		t.Errorf("Types() = %v, want %v", Types(), sorted)
	}
	if !sort.StringsAreSorted(Prefixes()) {
		t.Errorf("Prefixes() not sorted: %v", Prefixes())
	}
	wantPrefixes := []string{"dmr", "docker-model-runner", "lemonade", "litellm", "llamacpp", "lm-studio", "lm_studio", "lmdeploy",
		"lmstudio", "ollama", "omlx", "openai-compatible", "sglang", "vllm", "vllm-mlx"}
	if !reflect.DeepEqual(Prefixes(), wantPrefixes) {
		t.Errorf("Prefixes() = %v, want %v", Prefixes(), wantPrefixes)
	}
	// The returned slices are copies.
	Types()[0] = "x"
	Prefixes()[0] = "x"
	All()[0] = nil
	if Types()[0] == "x" || Prefixes()[0] == "x" || All()[0] == nil {
		t.Error("Types/Prefixes/All expose internal slices")
	}
}

func TestDefaults(t *testing.T) {
	tests := []struct {
		typ, health, models, format string
		port                        int
	}{
		{"ollama", "/", "/api/tags", FormatOllama, 11434},
		{"lm-studio", "/v1/models", "/api/v0/models", FormatLMStudio, 1234},
		{"vllm", "/health", "/v1/models", FormatVLLM, 8000},
		{"sglang", "/health", "/v1/models", FormatSGLang, 30000},
		{"llamacpp", "/health", "/v1/models", FormatLlamaCpp, 8080},
		{"lemonade", "/api/v1/health", "/api/v1/models", FormatLemonade, 8000},
		{"lmdeploy", "/health", "/v1/models", FormatLMDeploy, 23333},
		{"litellm", "/health/liveliness", "/v1/models", FormatOpenAI, 4000},
		{"openai-compatible", "/v1/models", "/v1/models", FormatOpenAI, 0},
	}
	for _, tt := range tests {
		p, ok := Lookup(tt.typ)
		if !ok {
			t.Fatalf("Lookup(%q) failed", tt.typ)
		}
		if p.HealthPath != tt.health || p.ModelsPath != tt.models || p.ModelFormat != tt.format || p.DefaultPort != tt.port {
			t.Errorf("%s: got health=%q models=%q format=%q port=%d", tt.typ, p.HealthPath, p.ModelsPath, p.ModelFormat, p.DefaultPort)
		}
		if !p.OpenAICompatible {
			t.Errorf("%s: want OpenAI-compatible", tt.typ)
		}
	}
}

func TestLookup(t *testing.T) {
	tests := []struct {
		in   string
		want string // "" = not found
	}{
		{"ollama", "ollama"},
		{"OLLAMA", "ollama"},
		{" ollama ", "ollama"},
		{"lm-studio", "lm-studio"},
		{"lmstudio", "lm-studio"},
		{"LM_Studio", "lm-studio"},
		{"LmStudio", "lm-studio"},
		{"vllm", "vllm"},
		{"vLLM", "vllm"},
		{"sglang", "sglang"},
		{"llamacpp", "llamacpp"},
		{"llama.cpp", "llamacpp"},
		{"llama-cpp", "llamacpp"},
		{"lemonade", "lemonade"},
		{"lmdeploy", "lmdeploy"},
		{"litellm", "litellm"},
		{"openai-compatible", "openai-compatible"},
		{"openai", "openai-compatible"},
		{"OpenAI", "openai-compatible"},
		{"openai_compatible", "openai-compatible"},
		{"", ""},
		{"auto", ""},
		{"proxy", ""},
		{"vllm-mlx", "vllm-mlx"},
		{"vllm_mlx", "vllm-mlx"},
		{"dmr", "docker-model-runner"},
		{"Docker-Model-Runner", "docker-model-runner"},
		{"omlx", "omlx"},
		{"oMLX", "omlx"},
		{"mlx", ""},
		{"lm studio", ""},
	}
	for _, tt := range tests {
		p, ok := Lookup(tt.in)
		switch {
		case tt.want == "" && ok:
			t.Errorf("Lookup(%q) = %q, want not found", tt.in, p.Name)
		case tt.want != "" && (!ok || p.Name != tt.want):
			t.Errorf("Lookup(%q) = %v, %v; want %q", tt.in, p, ok, tt.want)
		}
	}
}

func TestByPrefix(t *testing.T) {
	tests := []struct {
		in   string
		want string
	}{
		{"ollama", "ollama"},
		{"lmstudio", "lm-studio"},
		{"lm-studio", "lm-studio"},
		{"lm_studio", "lm-studio"},
		{"vllm", "vllm"},
		{"sglang", "sglang"},
		{"llamacpp", "llamacpp"},
		{"lemonade", "lemonade"},
		{"lmdeploy", "lmdeploy"},
		{"litellm", "litellm"},
		{"openai-compatible", "openai-compatible"},
		// The cross-type route and other reserved words are not profile prefixes.
		{"openai", ""},
		{"proxy", ""},
		{"models", ""},
		{"anthropic", ""},
		// Exact, lower-case only; aliases are not prefixes.
		{"Ollama", ""},
		{"LMSTUDIO", ""},
		{"llama.cpp", ""},
		{"llama-cpp", ""},
		{"", ""},
	}
	for _, tt := range tests {
		p, ok := ByPrefix(tt.in)
		switch {
		case tt.want == "" && ok:
			t.Errorf("ByPrefix(%q) = %q, want not found", tt.in, p.Name)
		case tt.want != "" && (!ok || p.Name != tt.want):
			t.Errorf("ByPrefix(%q) = %v, %v; want %q", tt.in, p, ok, tt.want)
		}
	}
}

func mustLookup(t *testing.T, typ string) *Profile {
	t.Helper()
	p, ok := Lookup(typ)
	if !ok {
		t.Fatalf("Lookup(%q) failed", typ)
	}
	return p
}

func TestServesPath(t *testing.T) {
	tests := []struct {
		typ, path string
		want      bool
	}{
		{"ollama", "/api/chat", true},
		{"ollama", "/api/generate", true},
		{"ollama", "/api/tags", true},
		{"ollama", "/api/ps", true},
		{"ollama", "/", true},
		{"ollama", "/v1/chat/completions", true},
		{"ollama", "/v1/messages", true},
		{"ollama", "/v1/models/llama3.2:latest", true},
		{"ollama", "/v1/models/library/llama3.2", true},
		{"ollama", "/v1/models/", true}, // a trailing slash is dropped
		{"ollama", "/api/blobs/sha256:abc", true},
		{"ollama", "/api/blobs/sha256:abc/x", false},
		{"ollama", "/api/blobs", false},
		{"ollama", "/api/chat?x=1", true},
		{"ollama", "/api/chat/", true},
		{"ollama", "/api/v0/models", false},
		{"ollama", "api/chat", false},
		{"ollama", "", false},
		{"vllm", "/api/chat", false},
		{"vllm", "/v1/chat/completions", true},
		{"vllm", "/tokenize", true},
		{"vllm", "/v1/models/foo", false},
		{"vllm", "/", false},
		{"lm-studio", "/api/v0/models", true},
		{"lm-studio", "/api/v0/models/qwen/qwen3-8b", true},
		{"lm-studio", "/api/chat", false},
		{"llamacpp", "/completion", true},
		{"llamacpp", "/slots", true},
		{"llamacpp", "/api/tags", false},
		{"sglang", "/generate", true},
		{"lemonade", "/api/v1/chat/completions", true},
		{"lemonade", "/api/v1/models/Qwen3-0.6B-GGUF", true},
		{"lemonade", "/v1/chat/completions", true},
		{"lmdeploy", "/v1/encode", true},
		{"litellm", "/chat/completions", true},
		{"openai-compatible", "/v1/embeddings", true},
		{"openai-compatible", "/api/chat", false},
		{"openai-compatible", "/v1/models/Qwen/Qwen2.5-7B", true},
	}
	for _, tt := range tests {
		got := mustLookup(t, tt.typ).ServesPath(tt.path)
		if got != tt.want {
			t.Errorf("%s.ServesPath(%q) = %v, want %v", tt.typ, tt.path, got, tt.want)
		}
	}
	for _, p := range All() {
		for _, path := range []string{"/v1/chat/completions", "/v1/models"} {
			if p.OpenAICompatible && !p.ServesPath(path) {
				t.Errorf("%s does not serve %s", p.Name, path)
			}
		}
	}
}

func TestMatchPathPattern(t *testing.T) {
	tests := []struct {
		pattern, path string
		want          bool
	}{
		{"/a/{id}", "/a/b", true},
		{"/a/{id}", "/a/", false},
		{"/a/{id}", "/a", false},
		{"/a/{id}", "/a/b/c", false},
		{"/a/{id}/c", "/a/b/c", true},
		{"/a/{id}/c", "/a/b/d", false},
		{"/a/{rest...}", "/a/b", true},
		{"/a/{rest...}", "/a/b/c/d", true},
		{"/a/{rest...}", "/a", false},
		{"/a/{rest...}", "/a/b//c", false},
		{"/a/{rest...}", "/b/c", false},
	}
	for _, tt := range tests {
		if got := matchPathPattern(tt.pattern, tt.path); got != tt.want {
			t.Errorf("matchPathPattern(%q, %q) = %v, want %v", tt.pattern, tt.path, got, tt.want)
		}
	}
}

func TestTypesForPath(t *testing.T) {
	openAll := []string{"docker-model-runner", "lemonade", "litellm", "llamacpp", "lm-studio", "lmdeploy", "ollama", "omlx",
		"openai-compatible", "sglang", "vllm", "vllm-mlx"}
	tests := []struct {
		path string
		want []string
	}{
		{"/api/chat", []string{"ollama"}},
		{"/api/tags", []string{"ollama"}},
		{"/api/v0/models", []string{"lm-studio"}},
		{"/v1/chat/completions", openAll},
		{"/v1/models", openAll},
		{"/v1/embeddings", []string{"docker-model-runner", "lemonade", "litellm", "llamacpp", "lm-studio", "ollama", "omlx",
			"openai-compatible", "sglang", "vllm", "vllm-mlx"}},
		{"/engines/v1/chat/completions", openAll},
		{"/engines/llama.cpp/v1/embeddings", []string{"docker-model-runner", "lemonade", "litellm", "llamacpp", "lm-studio", "ollama", "omlx",
			"openai-compatible", "sglang", "vllm", "vllm-mlx"}},
		{"/engines/ps", []string{"docker-model-runner"}},
		{"/v1/models/status", []string{"docker-model-runner", "lemonade", "ollama", "omlx", "openai-compatible"}},
		{"/v1/status", []string{"vllm-mlx"}},
		{"/completion", []string{"llamacpp"}},
		{"/generate", []string{"lmdeploy", "sglang"}},
		{"/health", []string{"litellm", "llamacpp", "lmdeploy", "omlx", "sglang", "vllm", "vllm-mlx"}},
		{"/v1/messages", []string{"docker-model-runner", "llamacpp", "lm-studio", "ollama", "omlx", "vllm", "vllm-mlx"}},
		{"/anthropic/v1/messages", []string{"docker-model-runner", "llamacpp", "lm-studio", "ollama", "omlx", "vllm", "vllm-mlx"}},
		{"/v1/models/Qwen/Qwen2.5-7B", []string{"docker-model-runner", "lemonade", "ollama", "openai-compatible"}},
		{"/", []string{"docker-model-runner", "litellm", "ollama"}},
		{"/no/such/path", nil},
		{"", nil},
	}
	for _, tt := range tests {
		got := TypesForPath(tt.path)
		if !slices.Equal(got, tt.want) || (tt.want == nil) != (got == nil) {
			t.Errorf("TypesForPath(%q) = %#v, want %#v", tt.path, got, tt.want)
		}
	}
}

func TestRegisterRejectsClashes(t *testing.T) {
	// register mutates the package indexes, so run it against a copy.
	saveName, savePrefix, savePrefixes, saveTypes := byName, byPrefix, prefixes, types
	defer func() { byName, byPrefix, prefixes, types = saveName, savePrefix, savePrefixes, saveTypes }()
	reset := func() {
		byName, byPrefix, prefixes, types = map[string]*Profile{}, map[string]*Profile{}, nil, nil
		for _, p := range table {
			if err := register(p); err != nil {
				t.Fatal(err)
			}
		}
	}
	bad := []*Profile{
		{Name: "ollama", Prefixes: []string{"x1"}},
		{Name: "new1", Prefixes: []string{"vllm"}},
		{Name: "new2", Prefixes: []string{"openai"}},
		{Name: "new3", Prefixes: []string{"Upper"}},
		{Name: "new4", Prefixes: []string{"a/b"}},
		{Name: "new5", Prefixes: []string{"n5"}, Aliases: []string{"lmstudio"}},
		{Name: "new6", Prefixes: []string{"n6"}, Paths: []string{"v1/x"}},
		{Name: "New7"},
	}
	for _, p := range bad {
		reset()
		if err := register(p); err == nil {
			t.Errorf("register(%+v) accepted a bad profile", p)
		}
	}
}

// TestAnthropicNative pins which backend types serve the Anthropic Messages
// API natively (passthrough) and which are translated.
func TestAnthropicNative(t *testing.T) {
	native := map[string]bool{"ollama": true, "lm-studio": true, "vllm": true, "llamacpp": true,
		"vllm-mlx": true, "docker-model-runner": true, "omlx": true}
	counts := map[string]bool{"llamacpp": true, "vllm-mlx": true, "docker-model-runner": true, "omlx": true}
	// Docker Model Runner mounts Messages under /anthropic
	paths := map[string]string{"docker-model-runner": "/anthropic/v1/messages"}
	for _, p := range All() {
		if got := p.AnthropicPath != ""; got != native[p.Name] {
			t.Errorf("%s: native Messages API = %v, want %v", p.Name, got, native[p.Name])
		}
		if want := cmp.Or(paths[p.Name], "/v1/messages"); native[p.Name] && p.AnthropicPath != want {
			t.Errorf("%s: AnthropicPath = %q", p.Name, p.AnthropicPath)
		}
		if p.AnthropicCountTokens != counts[p.Name] {
			t.Errorf("%s: AnthropicCountTokens = %v, want %v", p.Name, p.AnthropicCountTokens, counts[p.Name])
		}
		if p.AnthropicCountTokens && !p.ServesPath(p.AnthropicPath+"/count_tokens") {
			t.Errorf("%s counts tokens natively but does not list %s/count_tokens", p.Name, p.AnthropicPath)
		}
	}
}

// TestAnthropicNativeMatchesCaptures checks the table against the real
// servers: each captured backend answers its AnthropicPath with an Anthropic
// message, plain and streamed.
func TestAnthropicNativeMatchesCaptures(t *testing.T) {
	for dir, typ := range map[string]string{"ollama-0.17.4": "ollama", "llamacpp": "llamacpp"} {
		p, ok := Lookup(typ)
		if !ok || p.AnthropicPath == "" {
			t.Fatalf("%s has no native Messages API in the table", typ)
		}
		for file, want := range map[string]string{
			"POST_v1_messages_nonstream.txt": `"type":"message"`,
			"POST_v1_messages_stream.txt":    "event: message_stop\n",
		} {
			raw, err := os.ReadFile(filepath.Join("..", "testdata", "real", dir, file))
			if err != nil {
				t.Fatal(err)
			}
			req, resp, _ := strings.Cut(string(raw), "\n---\n")
			if !strings.HasPrefix(req, "POST "+p.AnthropicPath+" ") {
				t.Errorf("%s/%s was not sent to %s: %.40q", dir, file, p.AnthropicPath, req)
			}
			if !strings.HasPrefix(resp, "HTTP/1.1 200 ") || !strings.Contains(resp, want) {
				t.Errorf("%s/%s: not a 200 Anthropic answer (%q)", dir, file, want)
			}
		}
	}
}
