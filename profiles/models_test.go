package profiles

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// fixtureDir holds the real captures (Ollama 0.17.4, llama.cpp), copied into
// the repository so a clone from anywhere runs these tests.
var fixtureDir = filepath.Join("..", "testdata", "real")

// fixtureBody returns the response body of a real capture. The file holds the
// request, a line "---", then the response; the response's headers end at the
// first blank line.
func fixtureBody(t testing.TB, rel string) []byte {
	t.Helper()
	path := filepath.Join(fixtureDir, rel)
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("fixture %s is required (testdata/real is part of the repository): %v", path, err)
	}
	_, resp, ok := bytes.Cut(raw, []byte("\n---\n"))
	if !ok {
		t.Fatalf("fixture %s: no \"---\" separator between request and response", path)
	}
	_, body, ok := bytes.Cut(resp, []byte("\n\n"))
	if !ok {
		t.Fatalf("fixture %s: response has no blank line after its headers", path)
	}
	return body
}

func testdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func unix(sec int64) string { return time.Unix(sec, 0).UTC().Format(time.RFC3339) }

func checkModels(t *testing.T, got []Model, err error, want []Model) {
	t.Helper()
	if err != nil {
		t.Fatalf("unexpected error: %v", err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("models differ\n got: %+v\nwant: %+v", got, want)
	}
}

func TestParseOllamaTagsReal(t *testing.T) {
	body := fixtureBody(t, "ollama-0.17.4/GET_api_tags.txt")
	got, err := ParseModels(FormatOllama, body)
	checkModels(t, got, err, []Model{
		{
			Name: "small:latest", Digest: "bb7efe93c91da11fc67080a5dd976499b4eda538bd96984b535a0c411525e66c",
			Size: 48012016, ModifiedAt: "2026-11-24T20:28:24.007672791Z", Family: "llama", Families: []string{"llama"},
			Format: "gguf", ParameterSize: "12.00M", Quantization: "unknown",
		},
		{
			Name: "tiny:latest", Digest: "298898c41d4c89a1bd8011ab78ae8dbf3a870ed6f7c8446031840418b9f5b5cb",
			Size: 772526, ModifiedAt: "2026-11-24T20:28:23.87169686Z", Family: "llama", Families: []string{"llama"},
			Format: "gguf", ParameterSize: "189K", Quantization: "unknown",
		},
	})
	// Through the profile as well.
	got2, err := mustLookup(t, "ollama").ParseModels(body)
	if err != nil || !reflect.DeepEqual(got, got2) {
		t.Errorf("Profile.ParseModels differs from ParseModels: %v", err)
	}
}

func TestParseOllamaPSReal(t *testing.T) {
	got, err := ParseModels(FormatOllama, fixtureBody(t, "ollama-0.17.4/GET_api_ps_loaded.txt"))
	if err != nil || len(got) != 1 || got[0].Name != "tiny:latest" || got[0].ContextLength != 2048 || got[0].Size != 4785408 {
		t.Errorf("api/ps: got %+v, %v", got, err)
	}
	got, err = ParseModels(FormatOllama, fixtureBody(t, "ollama-0.17.4/GET_api_ps_empty.txt"))
	if err != nil || got == nil || len(got) != 0 {
		t.Errorf("empty api/ps: got %#v, %v; want empty non-nil slice", got, err)
	}
}

func TestParseOllamaV1ModelsReal(t *testing.T) {
	body := fixtureBody(t, "ollama-0.17.4/GET_v1_models.txt")
	got, err := ParseModels(FormatOpenAI, body)
	checkModels(t, got, err, []Model{
		{Name: "small:latest", ModifiedAt: unix(1795552104), Publisher: "library"},
		{Name: "tiny:latest", ModifiedAt: unix(1795552103), Publisher: "library"},
	})
	// An Ollama endpoint whose model_url points at /v1/models: a clear error.
	_, err = ParseModels(FormatOllama, body)
	if err == nil || !strings.Contains(err.Error(), `no "models" array`) {
		t.Errorf("ollama parser on /v1/models: err = %v", err)
	}
}

func TestParseLlamaCppReal(t *testing.T) {
	want := []Model{{
		Name: "tiny", Size: 754944, ModifiedAt: unix(1795552211), Format: "gguf",
		ParameterSize: "189K", Quantization: "F32", Publisher: "llamacpp",
		MaxContextLength: 4096, ContextLength: 1024,
	}}
	for _, f := range []string{"llamacpp/GET_v1_models.txt", "llamacpp/GET_models.txt"} {
		t.Run(f, func(t *testing.T) {
			body := fixtureBody(t, f)
			got, err := ParseModels(FormatLlamaCpp, body)
			checkModels(t, got, err, want)

			// The same body read by the OpenAI parser (type openai-compatible
			// in front of llama-server) still finds the model.
			got, err = ParseModels(FormatOpenAI, body)
			if err != nil || len(got) != 1 || got[0].Name != "tiny" {
				t.Errorf("openai parser: %+v, %v", got, err)
			}
			// And the Ollama parser reads its "models" half, whose numbers
			// are "" strings, without failing.
			got, err = ParseModels(FormatOllama, body)
			if err != nil || len(got) != 1 || got[0].Name != "tiny" || got[0].Size != 0 || got[0].Families != nil {
				t.Errorf("ollama parser: %+v, %v", got, err)
			}
		})
	}
}

func TestParseBackendErrorBodyReal(t *testing.T) {
	// llama-server's 404 for /api/tags, as a misconfigured Ollama-typed
	// endpoint would see it.
	_, err := ParseModels(FormatOllama, fixtureBody(t, "llamacpp/GET_api_tags.txt"))
	if err == nil || !strings.Contains(err.Error(), "error response") || !strings.Contains(err.Error(), "File Not Found") {
		t.Errorf("err = %v", err)
	}
	_, err = ParseModels(FormatOpenAI, []byte(`{"error":"model 'nope' not found"}`))
	if err == nil || !strings.Contains(err.Error(), `"model 'nope' not found"`) {
		t.Errorf("err = %v", err)
	}
}

func TestParseLMStudio(t *testing.T) {
	got, err := ParseModels("lmstudio", testdata(t, "lmstudio_api_v0_models.json"))
	checkModels(t, got, err, []Model{
		{Name: "qwen2-vl-7b-instruct", Family: "qwen2_vl", Format: "mlx", Quantization: "4bit", Type: "vlm", State: "not-loaded", Publisher: "mlx-community", MaxContextLength: 32768},
		{Name: "meta-llama-3.1-8b-instruct", Family: "llama", Format: "gguf", Quantization: "Q4_K_M", Type: "llm", State: "loaded", Publisher: "lmstudio-community", MaxContextLength: 131072, ContextLength: 4096},
		{Name: "text-embedding-nomic-embed-text-v1.5", Family: "nomic-bert", Format: "gguf", Quantization: "Q4_0", Type: "embeddings", State: "not-loaded", Publisher: "nomic-ai", MaxContextLength: 2048},
	})
	// Profile names are accepted as format names.
	got2, err := ParseModels("LM-Studio", testdata(t, "lmstudio_api_v0_models.json"))
	if err != nil || !reflect.DeepEqual(got, got2) {
		t.Errorf("format lm-studio differs: %v", err)
	}
}

func TestParseVLLM(t *testing.T) {
	got, err := mustLookup(t, "vllm").ParseModels(testdata(t, "vllm_v1_models.json"))
	checkModels(t, got, err, []Model{
		{Name: "Qwen/Qwen2.5-7B-Instruct", ModifiedAt: unix(1732000000), Publisher: "vllm", MaxContextLength: 32768, Root: "Qwen/Qwen2.5-7B-Instruct"},
		{Name: "sql-lora", ModifiedAt: unix(1732000000), Publisher: "vllm", MaxContextLength: 32768, Root: "/adapters/sql-lora", Parent: "Qwen/Qwen2.5-7B-Instruct"},
	})
}

func TestParseSGLang(t *testing.T) {
	got, err := mustLookup(t, "sglang").ParseModels(testdata(t, "sglang_v1_models.json"))
	checkModels(t, got, err, []Model{
		{Name: "meta-llama/Llama-3.1-8B-Instruct", ModifiedAt: unix(1732000000), Publisher: "sglang", MaxContextLength: 131072, Root: "meta-llama/Llama-3.1-8B-Instruct"},
	})
}

func TestParseLemonade(t *testing.T) {
	got, err := mustLookup(t, "lemonade").ParseModels(testdata(t, "lemonade_api_v1_models.json"))
	checkModels(t, got, err, []Model{
		{Name: "Qwen3-0.6B-GGUF", ModifiedAt: unix(1744173590), Publisher: "lemonade", Checkpoint: "unsloth/Qwen3-0.6B-GGUF:Q4_0", Recipe: "llamacpp"},
		{Name: "Llama-3.2-1B-Instruct-Hybrid", ModifiedAt: unix(1744173590), Publisher: "lemonade", Checkpoint: "amd/Llama-3.2-1B-Instruct-awq-g128-int4-asym-fp16-onnx-hybrid", Recipe: "oga-hybrid"},
	})
}

func TestParseLMDeploy(t *testing.T) {
	got, err := mustLookup(t, "lmdeploy").ParseModels(testdata(t, "lmdeploy_v1_models.json"))
	checkModels(t, got, err, []Model{
		{Name: "internlm2_5-7b-chat", ModifiedAt: unix(1732000000), Publisher: "lmdeploy", Root: "internlm2_5-7b-chat"},
	})
}

func TestParseValidLists(t *testing.T) {
	tests := []struct {
		name, format, body string
		want               []string
	}{
		{"ollama empty", FormatOllama, `{"models":[]}`, nil},
		{"ollama null", FormatOllama, `{"models":null}`, nil},
		{"openai empty", FormatOpenAI, `{"object":"list","data":[]}`, nil},
		{"openai whitespace and BOM", FormatOpenAI, "\xef\xbb\xbf \n{\"data\":[{\"id\":\"a\"}]}\n", []string{"a"}},
		{"skips empty names", FormatOllama, `{"models":[{"name":""},{"name":"  "},{"name":"a"}]}`, []string{"a"}},
		{"ollama falls back to model", FormatOllama, `{"models":[{"model":"m:latest"}]}`, []string{"m:latest"}},
		{"skips empty ids", FormatOpenAI, `{"data":[{"id":""},{"object":"model"},{"id":"b"}]}`, []string{"b"}},
		{"drops repeats", FormatOpenAI, `{"data":[{"id":"b"},{"id":"a"},{"id":"b"}]}`, []string{"b", "a"}},
		{"unknown format reads openai", "vllm-mlx", `{"data":[{"id":"x"}]}`, []string{"x"}},
		{"empty format reads openai", "", `{"data":[{"id":"x"}]}`, []string{"x"}},
		{"numbers as strings", FormatOpenAI, `{"data":[{"id":"x","created":"1732000000","max_model_len":"4096"}]}`, []string{"x"}},
		{"float numbers", FormatOllama, `{"models":[{"name":"x","size":1.5e3}]}`, []string{"x"}},
		{"unknown fields ignored", FormatLMStudio, `{"data":[{"id":"x","foo":{"bar":[1,2]}}],"extra":true}`, []string{"x"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseModels(tt.format, []byte(tt.body))
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if got == nil {
				t.Fatal("got nil slice, want non-nil")
			}
			var names []string
			for _, m := range got {
				names = append(names, m.Name)
			}
			if !reflect.DeepEqual(names, tt.want) {
				t.Errorf("names = %v, want %v", names, tt.want)
			}
		})
	}
	got, _ := ParseModels(FormatOpenAI, []byte(`{"data":[{"id":"x","created":"1732000000","max_model_len":"4096"}]}`))
	if got[0].MaxContextLength != 4096 || got[0].ModifiedAt != unix(1732000000) {
		t.Errorf("string numbers not read: %+v", got[0])
	}
	got, _ = ParseModels(FormatOllama, []byte(`{"models":[{"name":"x","size":1.5e3}]}`))
	if got[0].Size != 1500 {
		t.Errorf("float size not read: %+v", got[0])
	}
}

func TestParseErrors(t *testing.T) {
	tags := fixtureBody(t, "ollama-0.17.4/GET_api_tags.txt")
	tests := []struct {
		name, format string
		body         []byte
		want         string // substring of the message
	}{
		{"empty body", FormatOllama, nil, "model list body is empty"},
		{"whitespace body", FormatOpenAI, []byte(" \r\n\t"), "model list body is empty"},
		{"html", FormatOllama, []byte("<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"),
			`model list is not JSON: invalid character '<' looking for beginning of value (got "<html><head><title>502 Bad Gateway</titl...")`},
		{"garbage", FormatOpenAI, []byte("garbage\x00\xff"), "model list is not JSON: invalid character 'g'"},
		{"plain text", FormatOllama, []byte("Ollama is running"), "model list is not JSON"},
		{"truncated 200 body", FormatOllama, tags[:len(tags)/2], "model list is not JSON: unexpected end of JSON input"},
		{"truncated openai", FormatOpenAI, []byte(`{"object":"list","data":[{"id":"a"`), "unexpected end of JSON input"},
		{"trailing garbage", FormatOpenAI, []byte(`{"data":[]} x`), "model list is not JSON: invalid character 'x' after top-level value"},
		{"two objects", FormatOllama, []byte("{\"models\":[]}\n{\"models\":[]}"), "model list is not JSON"},
		{"models wrong type", FormatOllama, []byte(`{"models": "x"}`), `model list "models" is a JSON string, not an array`},
		{"data wrong type", FormatOpenAI, []byte(`{"data":{"id":"a"}}`), `model list "data" is a JSON object, not an array`},
		{"no list key", FormatOllama, []byte(`{"status":"ok"}`), `model list has no "models" array (got "{\"status\":\"ok\"}")`},
		{"empty object", FormatOpenAI, []byte(`{}`), `model list has no "data" array`},
		{"array top level", FormatOpenAI, []byte(`[{"id":"a"}]`), `model list is a JSON array, not an object`},
		{"null top level", FormatOllama, []byte(`null`), `model list is a JSON null, not an object`},
		{"string top level", FormatOllama, []byte(`"models"`), `model list is a JSON string, not an object`},
		{"number top level", FormatLMStudio, []byte(`42`), `model list is a JSON number, not an object`},
		{"entry not object", FormatOllama, []byte(`{"models":[1]}`), `model list "models" entry 0 is a JSON number, not an object`},
		{"entry null", FormatOpenAI, []byte(`{"data":[{"id":"a"},null]}`), `entry 1 is a JSON null, not an object`},
		{"name wrong type", FormatOllama, []byte(`{"models":[{"name":5}]}`), `entry 0 is malformed: field "name" is a JSON number, want a string`},
		{"families wrong type", FormatOllama, []byte(`{"models":[{"name":"a","details":{"families":"llama"}}]}`), `entry 0 is malformed: field "details.families" is a JSON string, want an array`},
		{"bool number", FormatOpenAI, []byte(`{"data":[{"id":"a","created":true}]}`), `entry 0 is malformed: field "created" is a JSON boolean, want a number`},
		{"object number", FormatLlamaCpp, []byte(`{"data":[{"id":"a","meta":{"n_ctx_train":{}}}]}`), `entry 0 is malformed: field "meta.n_ctx_train" is a JSON object, want a number`},
		{"error string", FormatOllama, []byte(`{"error":"unauthorized"}`), `model list is an error response: "unauthorized"`},
		{"error object", FormatOpenAI, []byte(`{"error":{"message":"Invalid API key","type":"auth"}}`), `model list is an error response: "Invalid API key"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseModels(tt.format, tt.body)
			if err == nil {
				t.Fatalf("no error; got %+v", got)
			}
			if got != nil {
				t.Errorf("models returned with an error: %+v", got)
			}
			msg := err.Error()
			if !strings.Contains(msg, tt.want) {
				t.Errorf("error = %s\nwant it to contain %s", msg, tt.want)
			}
			checkErrorShape(t, err, tt.body)
		})
	}
}

// checkErrorShape asserts the error is a one-line *ParseError that does not
// quote much of the body.
func checkErrorShape(t testing.TB, err error, body []byte) {
	t.Helper()
	msg := err.Error()
	if strings.ContainsAny(msg, "\r\n") {
		t.Errorf("error spans lines: %q", msg)
	}
	var pe *ParseError
	if !errors.As(err, &pe) {
		t.Errorf("error is %T, want *ParseError", err)
	}
	// Quoted snippets are short: the message never holds a long run of body.
	if len(body) > 200 && strings.Contains(msg, string(body[:100])) {
		t.Errorf("error quotes too much of the body: %q", msg)
	}
	if len(msg) > 400 {
		t.Errorf("error too long (%d bytes): %q", len(msg), msg)
	}
}

func TestParseErrorUnwrap(t *testing.T) {
	_, err := ParseModels(FormatOllama, []byte("{"))
	var pe *ParseError
	if !errors.As(err, &pe) || pe.Format != FormatOllama || pe.Unwrap() == nil {
		t.Errorf("err = %#v", err)
	}
}

func TestLlamaFtypeQuantization(t *testing.T) {
	tests := map[string]string{
		"all F32":           "F32",
		"all F16":           "F16",
		"Q4_K - Medium":     "Q4_K_M",
		"Q5_K - Small":      "Q5_K_S",
		"Q3_K - Large":      "Q3_K_L",
		"IQ4_XS - 4.25 bpw": "IQ4_XS - 4.25 bpw",
		"Q8_0":              "Q8_0",
		"":                  "",
	}
	for in, want := range tests {
		if got := llamaFtypeQuantization(in); got != want {
			t.Errorf("llamaFtypeQuantization(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzParseModels(f *testing.F) {
	formats := []string{FormatOllama, FormatLMStudio, FormatOpenAI, FormatVLLM, FormatSGLang, FormatLlamaCpp, FormatLemonade, FormatLMDeploy, "unknown"}
	seeds := [][]byte{
		fixtureBody(f, "ollama-0.17.4/GET_api_tags.txt"),
		fixtureBody(f, "ollama-0.17.4/GET_v1_models.txt"),
		fixtureBody(f, "llamacpp/GET_v1_models.txt"),
		fixtureBody(f, "llamacpp/GET_api_tags.txt"),
		testdata(f, "lmstudio_api_v0_models.json"),
		testdata(f, "vllm_v1_models.json"),
		testdata(f, "lemonade_api_v1_models.json"),
		[]byte(`{"models":"x"}`),
		[]byte(`{"data":[null,1,"a",{"id":5}]}`),
		[]byte(`<html>`),
		nil,
	}
	for i, s := range seeds {
		f.Add(formats[i%len(formats)], s)
	}
	f.Fuzz(func(t *testing.T, format string, body []byte) {
		models, err := ParseModels(format, body)
		if err != nil {
			if models != nil {
				t.Errorf("models with error")
			}
			checkErrorShape(t, err, body)
			return
		}
		if models == nil {
			t.Errorf("nil slice without error")
		}
		seen := map[string]bool{}
		for _, m := range models {
			if strings.TrimSpace(m.Name) == "" {
				t.Errorf("model with empty name: %+v", m)
			}
			if seen[m.Name] {
				t.Errorf("repeated name %q", m.Name)
			}
			seen[m.Name] = true
		}
	})
}
