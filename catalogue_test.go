package olla

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-olla/olla/discovery"
	"github.com/caddy-olla/olla/fleet"
	"github.com/caddy-olla/olla/profiles"
)

// testEndpoint is an endpoint state with a healthy verdict and the given
// models discovered, for handler tests that need no Caddy.
func testEndpoint(tb testing.TB, name, typ string, models []profiles.Model) *fleet.Endpoint {
	tb.Helper()
	u, _ := url.Parse("http://127.0.0.1:1")
	st := fleet.New(&fleet.Settings{Name: name, Type: typ, URL: u, DisplayURL: u.String(), CheckInterval: time.Second})
	tb.Cleanup(func() { _ = st.Destruct() })
	st.SetHealthForTest(fleet.Health{Status: discovery.StatusHealthy, CheckedAt: time.Now()})
	if models != nil {
		st.SetModelsForTest(models)
	}
	return st
}

// manyModels makes n OpenAI-style models named model-000000...
func manyModels(n int) []profiles.Model {
	out := make([]profiles.Model, n)
	for i := range out {
		out[i] = profiles.Model{Name: fmt.Sprintf("org/model-%06d", i), Publisher: "org", MaxContextLength: 8192}
	}
	return out
}

// serveGet runs one GET through the handler's /olla/ routing, without Caddy.
func serveGet(h *Handler, target string, header ...string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodGet, target, nil)
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Set(header[i], header[i+1])
	}
	w := httptest.NewRecorder()
	rq := &request{h: h, w: w, r: r, start: time.Now(), id: "test"}
	if strings.HasPrefix(r.URL.Path, "/internal/") {
		rq.prefix, rq.apiPath = "internal", r.URL.Path
		_ = rq.serveInternal(r.URL.Path)
		return w
	}
	prefix, apiPath, _ := strings.Cut(r.URL.Path[len("/olla/"):], "/")
	rq.prefix, rq.apiPath = prefix, "/"+apiPath
	_ = rq.serveOlla()
	return w
}

// discardWriter is a ResponseWriter that keeps the status and counts the
// body, so a benchmark measures the handler and not a recorder's buffer.
type discardWriter struct {
	header http.Header
	code   int
	n      int
}

func (d *discardWriter) Header() http.Header         { return d.header }
func (d *discardWriter) WriteHeader(code int)        { d.code = code }
func (d *discardWriter) Write(b []byte) (int, error) { d.n += len(b); return len(b), nil }

// BenchmarkCatalogue100k is one endpoint listing 100,000 models, asked for
// its catalogue again and again with nothing changing: each request should
// cost the bytes it sends, not a rebuild.
func BenchmarkCatalogue100k(b *testing.B) {
	st := testEndpoint(b, "big", "openai-compatible", manyModels(100_000))
	h := &Handler{states: []*fleet.Endpoint{st}}
	for name, path := range map[string]string{"models": "/olla/models", "openai": "/olla/openai/v1/models",
		"models-ollama": "/olla/models?format=ollama"} {
		b.Run(name, func(b *testing.B) {
			benchGet(b, h, path, nil)
		})
		// the first request after a model list change pays for the rebuild
		b.Run(name+"-after-change", func(b *testing.B) {
			models, _ := st.Models()
			benchGet(b, h, path, func() { st.SetModelsForTest(models) })
		})
	}
}

// BenchmarkCatalogue100kRetained reports the heap the usual views of a
// 100,000-model catalogue keep (merged entries, the unified and OpenAI
// lists of /olla/models, the /olla/openai/ and Ollama listings, gzipped
// forms) beside what the cache's budget counts for them.
func BenchmarkCatalogue100kRetained(b *testing.B) {
	models := manyModels(100_000)
	for range b.N {
		h := &Handler{states: []*fleet.Endpoint{testEndpoint(b, "big", "openai-compatible", models)}}
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		for _, path := range []string{"/olla/models", "/olla/models?format=openai", "/olla/openai/v1/models", "/olla/models?format=ollama"} {
			if w := serveGet(h, path); w.Code != http.StatusOK {
				b.Fatal(path, w.Code)
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/(1<<20), "MiB-retained")
		b.ReportMetric(float64(h.catalogue.views.Used())/(1<<20), "MiB-counted")
	}
}

func benchGet(b *testing.B, h *Handler, path string, before func()) {
	r := httptest.NewRequest(http.MethodGet, path, nil)
	prefix, apiPath, _ := strings.Cut(r.URL.Path[len("/olla/"):], "/")
	get := func() {
		w := &discardWriter{header: http.Header{}}
		rq := &request{h: h, w: w, r: r, start: time.Now(), id: "bench", prefix: prefix, apiPath: "/" + apiPath}
		if _ = rq.serveOlla(); w.code != http.StatusOK || w.n == 0 {
			b.Fatalf("%s: %d", path, w.code)
		}
	}
	get() // warm: the steady state is what is measured
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if before != nil {
			b.StopTimer()
			before()
			b.StartTimer()
		}
		get()
	}
}

// TestCatalogueBuiltOncePerChange: asking for any catalogue route again,
// one by one or 20 at once, builds nothing; a model list change or an
// availability change rebuilds each view once, however many ask.
func TestCatalogueBuiltOncePerChange(t *testing.T) {
	big := testEndpoint(t, "big", "openai-compatible", manyModels(2000))
	o := testEndpoint(t, "o", "ollama", []profiles.Model{{Name: "llama3.2:latest", Family: "llama"}})
	l := testEndpoint(t, "l", "lm-studio", []profiles.Model{{Name: "qwen", Type: "llm", State: "loaded"}})
	h := &Handler{states: []*fleet.Endpoint{big, o, l}}
	routes := []string{"/olla/models", "/olla/models?format=openai", "/olla/models?format=vllm", "/olla/models?type=llm",
		"/olla/models?capability=vision&format=ollama", "/olla/openai/v1/models", "/olla/vllm/v1/models",
		"/olla/ollama/api/tags", "/olla/lmstudio/api/v0/models", "/olla/proxy/v1/models", "/olla/models/org/model-000001"}
	for _, path := range routes {
		if w := serveGet(h, path); w.Code != http.StatusOK {
			t.Fatalf("%s: %d %s", path, w.Code, w.Body)
		}
	}
	built := h.catalogue.views.Builds()
	askAll := func(times int) {
		var wg sync.WaitGroup
		for range times {
			for _, path := range routes {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if w := serveGet(h, path); w.Code != http.StatusOK {
						t.Errorf("%s: %d", path, w.Code)
					}
				}()
			}
		}
		wg.Wait()
	}
	askAll(20)
	if n := h.catalogue.views.Builds(); n != built {
		t.Fatalf("%d requests with nothing changed built %d views", 20*len(routes), n-built)
	}

	// a changed list: 20 at once after the change build /olla/models once
	big.SetModelsForTest(manyModels(2001))
	before := h.catalogue.views.Builds()
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if w := serveGet(h, "/olla/models"); w.Code != http.StatusOK || !strings.Contains(w.Body.String(), "org/model-002000") {
				t.Errorf("after the change: %d, new model listed: %v", w.Code, strings.Contains(w.Body.String(), "org/model-002000"))
			}
		}()
	}
	wg.Wait()
	if n := h.catalogue.views.Builds() - before; n != 2 { // the merged entries, then the unified list
		t.Fatalf("20 concurrent requests after a change built %d views, want 2", n)
	}

	// availability: an endpoint going offline takes its models out at once
	before = h.catalogue.views.Builds()
	o.SetHealthForTest(fleet.Health{Status: discovery.StatusOffline, Reason: "test"})
	if w := serveGet(h, "/olla/ollama/api/tags"); strings.Contains(w.Body.String(), "llama3.2") {
		t.Fatalf("an offline endpoint's model is still listed: %s", w.Body)
	}
	if h.catalogue.views.Builds() == before {
		t.Fatal("an availability change did not rebuild")
	}
}

// TestCatalogueETag: every catalogue route carries a weak ETag, answers 304
// to a client whose copy is current, and a new tag once the catalogue
// changes.
func TestCatalogueETag(t *testing.T) {
	st := testEndpoint(t, "o", "ollama", []profiles.Model{{Name: "llama3.2:latest", Family: "llama"}, {Name: "qwen2.5:0.5b"}})
	h := &Handler{states: []*fleet.Endpoint{st}}
	for _, path := range []string{"/olla/models", "/olla/models?format=lmstudio", "/olla/models?family=llama",
		"/olla/ollama/api/tags", "/olla/ollama/v1/models", "/olla/openai/v1/models", "/internal/status/models"} {
		t.Run(path, func(t *testing.T) {
			first := serveGet(h, path)
			etag := first.Header().Get("ETag")
			if first.Code != http.StatusOK || !strings.HasPrefix(etag, `W/"`) {
				t.Fatalf("%d, ETag %q", first.Code, etag)
			}
			for _, inm := range []string{etag, `"other", ` + etag, strings.TrimPrefix(etag, "W/"), "*"} {
				w := serveGet(h, path, "If-None-Match", inm)
				if w.Code != http.StatusNotModified || w.Body.Len() != 0 || w.Header().Get("ETag") != etag {
					t.Fatalf("If-None-Match %s: %d, %d bytes, ETag %q", inm, w.Code, w.Body.Len(), w.Header().Get("ETag"))
				}
			}
			if w := serveGet(h, path, "If-None-Match", `W/"stale"`); w.Code != http.StatusOK || w.Body.Len() == 0 {
				t.Fatalf("a stale tag: %d", w.Code)
			}
			// gzip when asked: the same JSON, compressed
			w := serveGet(h, path, "Accept-Encoding", "gzip")
			if got := w.Header().Get("Content-Length"); got != strconv.Itoa(w.Body.Len()) {
				t.Fatalf("Content-Length %s for %d bytes", got, w.Body.Len())
			}
			if w.Header().Get("Content-Encoding") == "gzip" {
				zr, err := gzip.NewReader(bytes.NewReader(w.Body.Bytes()))
				if err != nil {
					t.Fatal(err)
				}
				plain, _ := io.ReadAll(zr)
				if !json.Valid(plain) {
					t.Fatalf("gzipped body is not JSON: %.100q", plain)
				}
			} else if first.Body.Len() >= minGzipSize {
				t.Fatalf("%d-byte answer not gzipped for a client that takes gzip", first.Body.Len())
			}

			st.SetModelsForTest([]profiles.Model{{Name: "llama3.2:latest", Family: "llama"}, {Name: "new:latest"}})
			defer st.SetModelsForTest([]profiles.Model{{Name: "llama3.2:latest", Family: "llama"}, {Name: "qwen2.5:0.5b"}})
			w = serveGet(h, path, "If-None-Match", etag)
			if w.Code != http.StatusOK || w.Header().Get("ETag") == etag {
				t.Fatalf("after a model list change: %d with ETag %q (was %q)", w.Code, w.Header().Get("ETag"), etag)
			}
		})
	}
}

// TestCatalogueHeadAndLength: HEAD answers the headers of GET, no body;
// Content-Length is the body's length.
func TestCatalogueHeadAndLength(t *testing.T) {
	h := &Handler{states: []*fleet.Endpoint{testEndpoint(t, "o", "ollama", []profiles.Model{{Name: "a:latest"}, {Name: "b:latest"}})}}
	for _, path := range []string{"/olla/models", "/olla/models?type=llm", "/olla/ollama/api/tags"} {
		get := serveGet(h, path)
		if get.Header().Get("Content-Length") != strconv.Itoa(get.Body.Len()) {
			t.Fatalf("%s: Content-Length %s for %d bytes", path, get.Header().Get("Content-Length"), get.Body.Len())
		}
		r := httptest.NewRequest(http.MethodHead, path, nil)
		w := httptest.NewRecorder()
		rq := &request{h: h, w: w, r: r, start: time.Now(), id: "test"}
		prefix, apiPath, _ := strings.Cut(r.URL.Path[len("/olla/"):], "/")
		rq.prefix, rq.apiPath = prefix, "/"+apiPath
		_ = rq.serveOlla()
		if w.Code != http.StatusOK || w.Body.Len() != 0 || w.Header().Get("Content-Length") != get.Header().Get("Content-Length") {
			t.Fatalf("HEAD %s: %d, %d bytes, Content-Length %s", path, w.Code, w.Body.Len(), w.Header().Get("Content-Length"))
		}
	}
}

// filterFleet is an LM Studio with a loaded chat model, an embedding model
// and a loaded vision model, an Ollama with a chat and an embedding model,
// and an offline vLLM.
func filterFleet(t *testing.T) *Handler {
	lms := testEndpoint(t, "lms", "lm-studio", []profiles.Model{
		{Name: "qwen2.5-7b-instruct", Type: "llm", State: "loaded", Family: "qwen2", Publisher: "lmstudio-community", MaxContextLength: 32768},
		{Name: "text-embedding-nomic-embed-text-v1.5", Type: "embeddings", State: "not-loaded", Family: "nomic-bert"},
		{Name: "llava-v1.6-mistral-7b", Type: "vlm", State: "loaded", Family: "llama"},
	})
	ollama := testEndpoint(t, "ollama1", "ollama", []profiles.Model{
		{Name: "llama3.2:latest", Family: "llama", Families: []string{"llama"}, ParameterSize: "3.2B", Quantization: "Q4_K_M",
			Digest: "sha256:aa", Size: 2019393189, Format: "gguf", ModifiedAt: "2026-11-01T10:00:00Z"},
		{Name: "nomic-embed-text:latest", Family: "nomic-bert", Families: []string{"nomic-bert"}, Size: 274302450},
	})
	vllm := testEndpoint(t, "vllm1", "vllm", []profiles.Model{{Name: "meta-llama/Llama-3.1-8B-Instruct", MaxContextLength: 131072}})
	vllm.SetHealthForTest(fleet.Health{Status: discovery.StatusOffline, Reason: "refused"})
	return &Handler{states: []*fleet.Endpoint{lms, ollama, vllm}}
}

// listedIDs reads the ids of any list format.
func listedIDs(t *testing.T, body []byte) []string {
	t.Helper()
	var v struct {
		Data []struct {
			ID string `json:"id"`
		} `json:"data"`
		Models []struct {
			Name string `json:"name"`
		} `json:"models"`
	}
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("not JSON: %v: %.200s", err, body)
	}
	var ids []string
	for _, d := range v.Data {
		ids = append(ids, d.ID)
	}
	for _, m := range v.Models {
		ids = append(ids, m.Name)
	}
	sort.Strings(ids)
	return ids
}

// TestCatalogueFilters: /olla/models honours the standalone's type,
// capability, available, family, endpoint and include_unavailable
// filters, alone and together, in every format.
func TestCatalogueFilters(t *testing.T) {
	h := filterFleet(t)
	const (
		qwen  = "qwen2.5-7b-instruct"
		nomic = "text-embedding-nomic-embed-text-v1.5"
		llava = "llava-v1.6-mistral-7b"
		llama = "llama3.2:latest"
		embed = "nomic-embed-text:latest"
		vllm  = "meta-llama/Llama-3.1-8B-Instruct"
	)
	cases := []struct {
		query string
		want  []string
	}{
		{"", []string{llama, llava, embed, qwen, nomic}},
		{"include_unavailable=true", []string{llama, vllm, llava, embed, qwen, nomic}},
		{"include_unavailable=false", []string{llama, llava, embed, qwen, nomic}},
		{"type=llm", []string{llama, qwen}},
		{"type=LLM", []string{llama, qwen}},
		{"type=vlm", []string{llava}},
		{"type=embeddings", []string{embed, nomic}},
		{"type=llm&include_unavailable=true", []string{llama, vllm, qwen}},
		{"capability=vision", []string{llava}},
		{"capability=multimodal", []string{llava}},
		{"capability=embedding", []string{embed, nomic}},
		{"capability=embeddings", []string{embed, nomic}},
		{"capability=vector_search", []string{embed, nomic}},
		{"capability=vector-search", []string{embed, nomic}},
		{"capability=chat", []string{llama, qwen}},
		{"capability=text_generation", []string{llama, qwen}},
		{"capability=completion", []string{llama, qwen}},
		{"capability=vision&type=llm", nil},
		{"available=true", []string{llava, qwen}},
		{"available=false", []string{llama, embed, nomic}},
		{"available=true&type=llm", []string{qwen}},
		{"family=llama", []string{llama, llava}},
		{"family=LLAMA&endpoint=ollama1", []string{llama}},
		{"endpoint=lms", []string{llava, qwen, nomic}},
		{"endpoint=vllm1", nil},
		{"endpoint=vllm1&include_unavailable=true", []string{vllm}},
		{"family=nothing", nil},
	}
	for _, format := range catalogueFormats {
		for _, c := range cases {
			q := "format=" + format
			if c.query != "" {
				q += "&" + c.query
			}
			w := serveGet(h, "/olla/models?"+q)
			if w.Code != http.StatusOK {
				t.Fatalf("%s: %d %s", q, w.Code, w.Body)
			}
			want := append([]string(nil), c.want...)
			sort.Strings(want)
			if got := listedIDs(t, w.Body.Bytes()); !slices.Equal(got, want) {
				t.Errorf("%s:\n got %v\nwant %v", q, got, want)
			}
		}
	}
	// filtering works on the built views: no query, however filtered,
	// builds anything once the format's list is there
	built := h.catalogue.views.Builds()
	for _, c := range cases {
		serveGet(h, "/olla/models?"+c.query)
	}
	if n := h.catalogue.views.Builds(); n != built {
		t.Fatalf("filtered queries built %d views", n-built)
	}
}

// TestCatalogueBadQuery: an unknown filter value is a 400 in the OpenAI
// envelope naming the parameter and what it takes.
func TestCatalogueBadQuery(t *testing.T) {
	h := filterFleet(t)
	cases := []struct{ query, mentions string }{
		{"format=xml", "unsupported format. Supported formats: unified, openai, ollama, lmstudio, lemonade, lmdeploy, sglang, vllm, llamacpp, docker-model-runner, vllm-mlx, omlx"},
		{"format=UNIFIED", "format="},
		{"type=chat", "use llm, vlm or embeddings"},
		{"type=" + strings.Repeat("x", 500), "xxx..."},
		{"capability=telepathy", "use vision, multimodal"},
		{"available=yes", "use true"},
		{"available=1", "available="},
		{"include_unavailable=1", "use true or false"},
		{"endpoint=nope", "configured endpoints are lms, ollama1, vllm1"},
		{"type=llm&capability=nonsense", "capability="},
	}
	for _, c := range cases {
		w := serveGet(h, "/olla/models?"+c.query)
		var env struct {
			Error struct {
				Message string `json:"message"`
				Type    string `json:"type"`
				Code    string `json:"code"`
			} `json:"error"`
		}
		if w.Code != http.StatusBadRequest || json.Unmarshal(w.Body.Bytes(), &env) != nil || env.Error.Type != "invalid_request_error" ||
			env.Error.Code != "invalid_query_parameter" || !strings.Contains(env.Error.Message, c.mentions) {
			t.Errorf("%.60s: %d %s", c.query, w.Code, w.Body)
		}
		if len(env.Error.Message) > 400 {
			t.Errorf("%.60s: the message repeats the whole value (%d bytes)", c.query, len(env.Error.Message))
		}
		if w.Header().Get("ETag") != "" {
			t.Errorf("%.60s: an error carries an ETag", c.query)
		}
	}
}

// TestCatalogueFormatShapes: each format has the shape of the server it is
// named for (the fields the reference and the servers' own lists give), and
// our own parser for that server reads it back to the same models.
func TestCatalogueFormatShapes(t *testing.T) {
	h := filterFleet(t)
	get := func(q string) (map[string]any, []byte) {
		w := serveGet(h, "/olla/models?"+q)
		if w.Code != http.StatusOK {
			t.Fatalf("%s: %d %s", q, w.Code, w.Body)
		}
		var v map[string]any
		if err := json.Unmarshal(w.Body.Bytes(), &v); err != nil {
			t.Fatal(err)
		}
		return v, w.Body.Bytes()
	}
	entry := func(v map[string]any, key, id string) map[string]any {
		list, _ := v[key].([]any)
		for _, e := range list {
			m := e.(map[string]any)
			if m["id"] == id || m["name"] == id {
				return m
			}
		}
		t.Fatalf("%s not in %v", id, v)
		return nil
	}
	need := func(format string, m map[string]any, fields ...string) {
		for _, f := range fields {
			if _, ok := m[f]; !ok {
				t.Errorf("format=%s: entry lacks %q: %v", format, f, m)
			}
		}
	}

	v, _ := get("")
	if v["object"] != "list" {
		t.Errorf("unified: object %v", v["object"])
	}
	u := entry(v, "data", "qwen2.5-7b-instruct")
	need("unified", u, "id", "object", "owned_by", "created", "olla")
	if u["object"] != "model" || u["owned_by"] != "olla" {
		t.Errorf("unified entry: %v", u)
	}
	o := u["olla"].(map[string]any)
	need("unified", o, "family", "aliases", "availability", "capabilities", "max_context_length", "type")
	if av := o["availability"].([]any)[0].(map[string]any); av["endpoint"] != "lms" || av["state"] != "loaded" {
		t.Errorf("unified availability: %v", av)
	}
	if caps := fmt.Sprint(entry(v, "data", "llava-v1.6-mistral-7b")["olla"].(map[string]any)["capabilities"]); !strings.Contains(caps, "vision") {
		t.Errorf("a vision model's capabilities: %s", caps)
	}
	for _, e := range v["data"].([]any) {
		if strings.Contains(fmt.Sprint(e), "127.0.0.1") {
			t.Errorf("an endpoint URL is exposed: %v", e)
		}
	}

	v, _ = get("format=openai")
	need("openai", entry(v, "data", "llama3.2:latest"), "id", "object", "created", "owned_by")

	v, _ = get("format=ollama")
	tag := entry(v, "models", "llama3.2:latest")
	need("ollama", tag, "name", "model", "modified_at", "size", "digest", "details")
	need("ollama", tag["details"].(map[string]any), "family", "parameter_size", "quantization_level", "format")
	if tag["digest"] != "sha256:aa" || tag["modified_at"] != "2026-11-01T10:00:00Z" {
		t.Errorf("ollama entry: %v", tag)
	}

	v, _ = get("format=lmstudio")
	lm := entry(v, "data", "text-embedding-nomic-embed-text-v1.5")
	need("lmstudio", lm, "id", "object", "type", "state")
	if lm["type"] != "embeddings" || lm["state"] != "not-loaded" {
		t.Errorf("lmstudio entry: %v", lm)
	}
	if lm := entry(v, "data", "llama3.2:latest"); lm["type"] != "llm" {
		t.Errorf("lmstudio type of an Ollama chat model: %v", lm)
	}

	v, _ = get("format=vllm&include_unavailable=true")
	vl := entry(v, "data", "meta-llama/Llama-3.1-8B-Instruct")
	need("vllm", vl, "id", "object", "created", "owned_by", "root", "parent", "max_model_len", "permission")
	if vl["owned_by"] != "meta-llama" || vl["root"] != "meta-llama/Llama-3.1-8B-Instruct" || vl["max_model_len"] != float64(131072) {
		t.Errorf("vllm entry: %v", vl)
	}
	if perm := vl["permission"].([]any); len(perm) != 1 || perm[0].(map[string]any)["object"] != "model_permission" {
		t.Errorf("vllm permission: %v", vl["permission"])
	}
	if own := entry(v, "data", "llama3.2:latest")["owned_by"]; own != "vllm" {
		t.Errorf("vllm owned_by without an org: %v", own)
	}
	v, _ = get("format=llamacpp")
	need("llamacpp", entry(v, "data", "llama3.2:latest"), "id", "object", "owned_by", "created", "meta")
	v, _ = get("format=sglang")
	need("sglang", entry(v, "data", "qwen2.5-7b-instruct"), "id", "object", "owned_by", "created", "root", "max_model_len")

	// every format reads back with the parser for that server
	for _, format := range catalogueFormats {
		_, body := get("format=" + format + "&include_unavailable=true")
		models, err := profiles.ParseModels(format, body)
		if err != nil {
			t.Errorf("format=%s does not parse as %s: %v", format, format, err)
			continue
		}
		var names []string
		for _, m := range models {
			names = append(names, m.Name)
		}
		sort.Strings(names)
		if want := listedIDs(t, body); !slices.Equal(names, want) || len(names) != 6 {
			t.Errorf("format=%s read back as %v, listed %v", format, names, want)
		}
	}
}

// TestCatalogueDetail: /olla/models/{id} finds a model by id (one with a
// slash too), then case-insensitively, from the same built view.
func TestCatalogueDetail(t *testing.T) {
	h := filterFleet(t)
	for _, id := range []string{"meta-llama/Llama-3.1-8B-Instruct", "META-LLAMA/llama-3.1-8b-instruct", "llama3.2:latest"} {
		w := serveGet(h, "/olla/models/"+id)
		var d map[string]any
		if w.Code != http.StatusOK || json.Unmarshal(w.Body.Bytes(), &d) != nil || !strings.EqualFold(d["id"].(string), id) {
			t.Fatalf("%s: %d %s", id, w.Code, w.Body)
		}
	}
	if w := serveGet(h, "/olla/models/nope"); w.Code != http.StatusNotFound {
		t.Fatalf("unknown model: %d", w.Code)
	}
}
