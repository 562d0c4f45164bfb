package sim

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// modelEntry is one served model with the metadata the lists show. All of
// it is derived deterministically from the name.
type modelEntry struct {
	name       string // as configured
	id         string // as listed (Ollama lists "tiny:latest" for "tiny")
	digest     string // sha256 hex of the name
	size       int64  // bytes on disk
	family     string
	paramSize  string // "8.0B", "270M"
	paramCount int64
	quant      string
	ctx        int // context length
	embed      bool

	lastUsed atomic.Int64 // unix nanoseconds of the last inference request; 0 = never
	// expires is when the last answer's keep_alive unloads the model (unix
	// nanoseconds; math.MaxInt64 = never); 0 = keepAlive after lastUsed
	expires atomic.Int64
}

// expiry is when e unloads unless it is used again (lastUsed != 0).
func (e *modelEntry) expiry() time.Time {
	if x := e.expires.Load(); x != 0 {
		return time.Unix(0, x)
	}
	return time.Unix(0, e.lastUsed.Load()).Add(keepAlive)
}

// parseKeepAlive reads Ollama's keep_alive as Ollama does: a number is
// seconds, a string a Go duration ("10m", "0"); a negative value keeps the
// model loaded for good (forever true). Absent (or null) is the default.
func parseKeepAlive(raw rawVal) (d time.Duration, forever, set bool, err error) {
	if len(raw) == 0 {
		return 0, false, false, nil
	}
	if raw[0] == '"' {
		var str string
		if err := json.Unmarshal(raw, &str); err != nil {
			return 0, false, false, err
		}
		if d, err = time.ParseDuration(str); err != nil {
			return 0, false, false, err
		}
	} else {
		var secs float64
		if err := json.Unmarshal(raw, &secs); err != nil {
			return 0, false, false, fmt.Errorf("json: cannot unmarshal %s into keep_alive", raw)
		}
		if secs > float64(math.MaxInt64/int64(time.Second)) {
			return 0, true, true, nil
		}
		d = time.Duration(secs * float64(time.Second))
	}
	return d, d < 0, true, nil
}

// modelSet is an immutable snapshot of the served models plus the
// precomputed list bodies. SetModels swaps it atomically.
type modelSet struct {
	list  []*modelEntry
	exact map[string]*modelEntry
	lower map[string]*modelEntry // Ollama: lower-case name and id (with and without ":latest")
	tags  []byte                 // Ollama GET /api/tags
	v1    []byte                 // GET /v1/models (kind's own shape)
	v0    atomic.Pointer[[]byte] // LM Studio GET /api/v0/models; nil = rebuild (load state changed)
}

const (
	keepAlive        = 5 * time.Minute // Ollama's default keep_alive, for /api/ps
	maxEmbeddingDims = 8192
)

func newModelSet(s *Sim, names []string, old *modelSet) *modelSet {
	ms := &modelSet{
		exact: make(map[string]*modelEntry, 2*len(names)),
		lower: make(map[string]*modelEntry, 4*len(names)),
	}
	for _, n := range names {
		n = strings.TrimSpace(n)
		if n == "" {
			continue
		}
		id := n
		if s.kind == Ollama {
			id = ollamaFullName(n)
		}
		if _, dup := ms.exact[id]; dup {
			continue
		}
		e := newModelEntry(n, id, s.ctxLen)
		if old != nil {
			if o := old.exact[id]; o != nil {
				e.lastUsed.Store(o.lastUsed.Load())
			}
		}
		ms.list = append(ms.list, e)
		ms.exact[n] = e
		ms.exact[id] = e
		for _, k := range []string{n, id, strings.TrimSuffix(id, ":latest")} {
			k = strings.ToLower(k)
			if _, taken := ms.lower[k]; !taken {
				ms.lower[k] = e
			}
		}
	}
	if len(ms.list) == 0 {
		return newModelSet(s, []string{DefaultModel}, old)
	}
	ms.tags = ollamaTagsBody(ms, s.created)
	ms.v1 = v1ModelsBody(s, ms)
	return ms
}

// ollamaFullName adds the implicit ":latest" tag to a name without a tag.
func ollamaFullName(n string) string {
	base := n
	if i := strings.LastIndexByte(n, '/'); i >= 0 {
		base = n[i+1:]
	}
	if strings.IndexByte(base, ':') >= 0 {
		return n
	}
	return n + ":latest"
}

func newModelEntry(name, id string, ctx int) *modelEntry {
	sum := sha256.Sum256([]byte(id))
	lname := strings.ToLower(name)
	e := &modelEntry{
		name:   name,
		id:     id,
		digest: hex.EncodeToString(sum[:]),
		family: familyOf(lname),
		quant:  "Q4_K_M",
		ctx:    ctx,
		embed:  strings.Contains(lname, "embed") || strings.Contains(lname, "bge") || strings.Contains(lname, "minilm"),
	}
	switch {
	case strings.Contains(lname, "q8"):
		e.quant = "Q8_0"
	case strings.Contains(lname, "fp16") || strings.Contains(lname, "f16"):
		e.quant = "F16"
	}
	e.paramSize, e.paramCount = paramSizeOf(lname)
	if e.paramCount == 0 {
		// Not in the name: pick a plausible size from the digest.
		sizes := [...]int64{1_200_000_000, 3_200_000_000, 7_600_000_000, 8_000_000_000, 14_000_000_000}
		e.paramCount = sizes[binary.BigEndian.Uint64(sum[:8])%uint64(len(sizes))]
		e.paramSize = formatParams(e.paramCount)
	}
	bytesPerParam := 0.6
	switch e.quant {
	case "Q8_0":
		bytesPerParam = 1.07
	case "F16":
		bytesPerParam = 2
	}
	e.size = int64(float64(e.paramCount)*bytesPerParam) + int64(binary.BigEndian.Uint32(sum[8:12])%1_000_000)
	return e
}

var knownFamilies = []struct{ match, family string }{
	{"nomic-embed", "nomic-bert"}, {"mxbai", "bert"}, {"bge", "bert"}, {"minilm", "bert"},
	{"qwen3", "qwen3"}, {"qwen", "qwen2"}, {"gemma3", "gemma3"}, {"gemma2", "gemma2"}, {"gemma", "gemma"},
	{"phi", "phi3"}, {"granite", "granite"}, {"deepseek", "qwen2"}, {"mistral", "llama"}, {"mixtral", "llama"},
	{"llama", "llama"},
}

func familyOf(lname string) string {
	for _, f := range knownFamilies {
		if strings.Contains(lname, f.match) {
			return f.family
		}
	}
	return "llama"
}

// paramSizeOf finds a "7b", "0.5b", "270m" style size in a lower-case name.
func paramSizeOf(lname string) (string, int64) {
	if i := strings.LastIndexByte(lname, '/'); i >= 0 {
		lname = lname[i+1:]
	}
	for i := 0; i < len(lname); i++ {
		if !isDigit(lname[i]) || (i > 0 && (isDigit(lname[i-1]) || lname[i-1] == '.' || isLetter(lname[i-1]) && lname[i-1] != 'x')) {
			continue
		}
		j := i
		for j < len(lname) && (isDigit(lname[j]) || lname[j] == '.') {
			j++
		}
		if j >= len(lname) || (lname[j] != 'b' && lname[j] != 'm') {
			continue
		}
		if j+1 < len(lname) && isLetter(lname[j+1]) {
			continue
		}
		v, err := strconv.ParseFloat(lname[i:j], 64)
		if err != nil || v <= 0 {
			continue
		}
		mult := 1e9
		if lname[j] == 'm' {
			mult = 1e6
		}
		n := int64(v * mult)
		return formatParams(n), n
	}
	return "", 0
}

func isDigit(c byte) bool  { return c >= '0' && c <= '9' }
func isLetter(c byte) bool { return c >= 'a' && c <= 'z' }

func formatParams(n int64) string {
	switch {
	case n >= 1e9:
		return strconv.FormatFloat(float64(n)/1e9, 'f', 1, 64) + "B"
	case n >= 1e6:
		return strconv.FormatFloat(float64(n)/1e6, 'f', 0, 64) + "M"
	}
	return strconv.FormatFloat(float64(n)/1e3, 'f', 0, 64) + "K"
}

// lookup resolves a requested model name the way the simulated server does:
// Ollama ignores case and the ":latest" tag; LM Studio falls back to a
// case-insensitive match; the others need the exact id.
func (ms *modelSet) lookup(kind, name string) *modelEntry {
	if kind == Ollama {
		return ms.lower[strings.ToLower(name)]
	}
	if e := ms.exact[name]; e != nil {
		return e
	}
	if kind == LMStudio {
		for _, e := range ms.list {
			if strings.EqualFold(e.id, name) {
				return e
			}
		}
	}
	return nil
}

// markUsed records an inference request for e (Ollama /api/ps, LM Studio state).
func (ms *modelSet) markUsed(e *modelEntry, now time.Time) {
	e.expires.Store(0) // in use: a past keep_alive no longer counts
	if e.lastUsed.Swap(now.UnixNano()) == 0 {
		ms.v0.Store(nil) // LM Studio: the model just became "loaded"
	}
}

// unloadAll forgets which models are loaded and what the prefix cache
// held, as a restarted server does.
func (s *Sim) unloadAll() {
	ms := s.models.Load()
	for _, e := range ms.list {
		e.lastUsed.Store(0)
		e.expires.Store(0)
	}
	ms.v0.Store(nil)
	if cp := s.cap; cp != nil {
		cp.mu.Lock()
		cp.resident = nil
		cp.cache.drop()
		cp.mu.Unlock()
	}
}

// ---- Ollama ----

type ollamaDetails struct {
	ParentModel       string   `json:"parent_model"`
	Format            string   `json:"format"`
	Family            string   `json:"family"`
	Families          []string `json:"families"`
	ParameterSize     string   `json:"parameter_size"`
	QuantizationLevel string   `json:"quantization_level"`
}

func (e *modelEntry) ollamaDetails() ollamaDetails {
	return ollamaDetails{Format: "gguf", Family: e.family, Families: []string{e.family},
		ParameterSize: e.paramSize, QuantizationLevel: e.quant}
}

func ollamaTagsBody(ms *modelSet, modified time.Time) []byte {
	type tag struct {
		Name       string        `json:"name"`
		Model      string        `json:"model"`
		ModifiedAt string        `json:"modified_at"`
		Size       int64         `json:"size"`
		Digest     string        `json:"digest"`
		Details    ollamaDetails `json:"details"`
	}
	out := struct {
		Models []tag `json:"models"`
	}{Models: make([]tag, 0, len(ms.list))}
	for _, e := range ms.list {
		out.Models = append(out.Models, tag{Name: e.id, Model: e.id, ModifiedAt: modified.Format(time.RFC3339Nano),
			Size: e.size, Digest: e.digest, Details: e.ollamaDetails()})
	}
	return mustJSON(out)
}

// ollamaPsBody lists the models used within the keep-alive window, or with a
// memory limit (resident != nil) the models resident now.
func ollamaPsBody(ms *modelSet, now time.Time, resident func(string) bool) []byte {
	type ps struct {
		Name          string        `json:"name"`
		Model         string        `json:"model"`
		Size          int64         `json:"size"`
		Digest        string        `json:"digest"`
		Details       ollamaDetails `json:"details"`
		ExpiresAt     string        `json:"expires_at"`
		SizeVRAM      int64         `json:"size_vram"`
		ContextLength int           `json:"context_length"`
	}
	out := struct {
		Models []ps `json:"models"`
	}{Models: []ps{}}
	for _, e := range ms.list {
		lu := e.lastUsed.Load()
		if resident != nil {
			if !resident(e.id) {
				continue
			}
		} else if lu == 0 {
			continue
		}
		exp := e.expiry().UTC()
		if resident == nil && !exp.After(now) {
			continue
		}
		out.Models = append(out.Models, ps{Name: e.id, Model: e.id, Size: e.size + int64(e.ctx)*1024,
			Digest: e.digest, Details: e.ollamaDetails(), ExpiresAt: exp.Format(time.RFC3339Nano),
			SizeVRAM: 0, ContextLength: e.ctx})
	}
	sort.SliceStable(out.Models, func(i, j int) bool { return out.Models[i].ExpiresAt > out.Models[j].ExpiresAt })
	return mustJSON(out)
}

// ollamaShowBody is POST /api/show for e.
func ollamaShowBody(e *modelEntry, modified time.Time) []byte {
	type tensor struct {
		Name  string  `json:"name"`
		Type  string  `json:"type"`
		Shape []int64 `json:"shape"`
	}
	const tmpl = "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}<|im_start|>assistant\n"
	a := e.family
	info := map[string]any{
		"general.alignment":                     32,
		"general.architecture":                  a,
		"general.file_type":                     15,
		"general.parameter_count":               e.paramCount,
		a + ".attention.head_count":             32,
		a + ".attention.head_count_kv":          8,
		a + ".attention.layer_norm_rms_epsilon": 0.00001,
		a + ".block_count":                      32,
		a + ".context_length":                   e.ctx,
		a + ".embedding_length":                 4096,
		a + ".feed_forward_length":              14336,
		a + ".rope.dimension_count":             128,
		a + ".rope.freq_base":                   500000,
		a + ".vocab_size":                       128256,
		"tokenizer.ggml.add_bos_token":          true,
		"tokenizer.ggml.add_eos_token":          false,
		"tokenizer.ggml.bos_token_id":           1,
		"tokenizer.ggml.eos_token_id":           2,
		"tokenizer.ggml.model":                  "gpt2",
		"tokenizer.ggml.scores":                 nil,
		"tokenizer.ggml.token_type":             nil,
		"tokenizer.ggml.tokens":                 nil,
		"tokenizer.ggml.unknown_token_id":       0,
	}
	tensors := []tensor{{Name: "token_embd.weight", Type: "Q4_K", Shape: []int64{4096, 128256}}}
	for blk := 0; blk < 2; blk++ {
		p := "blk." + strconv.Itoa(blk) + "."
		tensors = append(tensors,
			tensor{Name: p + "attn_norm.weight", Type: "F32", Shape: []int64{4096}},
			tensor{Name: p + "attn_q.weight", Type: "Q4_K", Shape: []int64{4096, 4096}},
			tensor{Name: p + "attn_k.weight", Type: "Q4_K", Shape: []int64{4096, 1024}},
			tensor{Name: p + "attn_v.weight", Type: "Q6_K", Shape: []int64{4096, 1024}},
			tensor{Name: p + "attn_output.weight", Type: "Q4_K", Shape: []int64{4096, 4096}},
			tensor{Name: p + "ffn_norm.weight", Type: "F32", Shape: []int64{4096}},
			tensor{Name: p + "ffn_gate.weight", Type: "Q4_K", Shape: []int64{4096, 14336}},
			tensor{Name: p + "ffn_up.weight", Type: "Q4_K", Shape: []int64{4096, 14336}},
			tensor{Name: p + "ffn_down.weight", Type: "Q6_K", Shape: []int64{14336, 4096}})
	}
	tensors = append(tensors,
		tensor{Name: "output_norm.weight", Type: "F32", Shape: []int64{4096}},
		tensor{Name: "output.weight", Type: "Q6_K", Shape: []int64{4096, 128256}})
	caps := []string{"completion"}
	if e.embed {
		caps = []string{"embedding"}
	}
	det := e.ollamaDetails()
	det.ParentModel = ""
	out := struct {
		Modelfile    string         `json:"modelfile"`
		Parameters   string         `json:"parameters"`
		Template     string         `json:"template"`
		Details      ollamaDetails  `json:"details"`
		ModelInfo    map[string]any `json:"model_info"`
		Tensors      []tensor       `json:"tensors"`
		Capabilities []string       `json:"capabilities"`
		ModifiedAt   string         `json:"modified_at"`
	}{
		Modelfile: "# Modelfile generated by \"ollama show\"\n# To build a new Modelfile based on this, replace FROM with:\n# FROM " +
			e.id + "\n\nFROM /sim/blobs/sha256-" + e.digest + "\nTEMPLATE \"" + tmpl + "\"\nPARAMETER num_ctx " + strconv.Itoa(e.ctx) + "\nPARAMETER stop <|im_start|>\nPARAMETER stop <|im_end|>\n",
		Parameters:   "num_ctx                        " + strconv.Itoa(e.ctx) + "\nstop                           \"<|im_start|>\"\nstop                           \"<|im_end|>\"",
		Template:     tmpl,
		Details:      det,
		ModelInfo:    info,
		Tensors:      tensors,
		Capabilities: caps,
		ModifiedAt:   modified.Format(time.RFC3339Nano),
	}
	return mustJSON(out)
}

// ---- OpenAI family ----

// v1ModelsBody is GET /v1/models in the kind's own shape.
func v1ModelsBody(s *Sim, ms *modelSet) []byte {
	created := s.created.Unix()
	if s.flavor != "" {
		return flavorModelsBody(s.flavor, ms, created)
	}
	switch s.kind {
	case LlamaCpp:
		return llamaModelsBody(ms, created)
	case VLLM:
		type perm struct {
			ID                 string  `json:"id"`
			Object             string  `json:"object"`
			Created            int64   `json:"created"`
			AllowCreateEngine  bool    `json:"allow_create_engine"`
			AllowSampling      bool    `json:"allow_sampling"`
			AllowLogprobs      bool    `json:"allow_logprobs"`
			AllowSearchIndices bool    `json:"allow_search_indices"`
			AllowView          bool    `json:"allow_view"`
			AllowFineTuning    bool    `json:"allow_fine_tuning"`
			Organization       string  `json:"organization"`
			Group              *string `json:"group"`
			IsBlocking         bool    `json:"is_blocking"`
		}
		type model struct {
			ID          string  `json:"id"`
			Object      string  `json:"object"`
			Created     int64   `json:"created"`
			OwnedBy     string  `json:"owned_by"`
			Root        string  `json:"root"`
			Parent      *string `json:"parent"`
			MaxModelLen int     `json:"max_model_len"`
			Permission  []perm  `json:"permission"`
		}
		out := struct {
			Object string  `json:"object"`
			Data   []model `json:"data"`
		}{Object: "list", Data: []model{}}
		for _, e := range ms.list {
			out.Data = append(out.Data, model{ID: e.id, Object: "model", Created: created, OwnedBy: "vllm", Root: e.id,
				MaxModelLen: e.ctx, Permission: []perm{{ID: "modelperm-" + e.digest[:32], Object: "model_permission",
					Created: created, AllowSampling: true, AllowLogprobs: true, AllowView: true, Organization: "*"}}})
		}
		return mustJSON(out)
	}
	type model struct {
		ID      string `json:"id"`
		Object  string `json:"object"`
		Created int64  `json:"created"`
		OwnedBy string `json:"owned_by"`
	}
	out := struct {
		Object string  `json:"object"`
		Data   []model `json:"data"`
	}{Object: "list", Data: []model{}}
	for _, e := range ms.list {
		out.Data = append(out.Data, model{ID: e.id, Object: "model", Created: created, OwnedBy: ownedBy(s.kind, e.id)})
	}
	b := mustJSON(out)
	if s.kind == Ollama {
		b = append(b, '\n')
	}
	return b
}

// v1ModelBody is GET /v1/models/{id}.
func v1ModelBody(s *Sim, e *modelEntry) []byte {
	b := mustJSON(struct {
		ID      string `json:"id"`
		Object  string `json:"object"`
		Created int64  `json:"created"`
		OwnedBy string `json:"owned_by"`
	}{e.id, "model", s.created.Unix(), ownedBy(s.kind, e.id)})
	if s.kind == Ollama {
		b = append(b, '\n')
	}
	return b
}

func ownedBy(kind, id string) string {
	switch kind {
	case Ollama:
		if i := strings.IndexByte(id, '/'); i > 0 {
			return id[:i]
		}
		return "library"
	case LMStudio:
		return "organization_owner"
	}
	return "system"
}

func llamaModelsBody(ms *modelSet, created int64) []byte {
	type details struct {
		ParentModel       string   `json:"parent_model"`
		Format            string   `json:"format"`
		Family            string   `json:"family"`
		Families          []string `json:"families"`
		ParameterSize     string   `json:"parameter_size"`
		QuantizationLevel string   `json:"quantization_level"`
	}
	type omodel struct {
		Name         string   `json:"name"`
		Model        string   `json:"model"`
		ModifiedAt   string   `json:"modified_at"`
		Size         string   `json:"size"`
		Digest       string   `json:"digest"`
		Type         string   `json:"type"`
		Description  string   `json:"description"`
		Tags         []string `json:"tags"`
		Capabilities []string `json:"capabilities"`
		Parameters   string   `json:"parameters"`
		Details      details  `json:"details"`
	}
	type arch struct {
		In  []string `json:"input_modalities"`
		Out []string `json:"output_modalities"`
	}
	type meta struct {
		VocabType int    `json:"vocab_type"`
		NVocab    int    `json:"n_vocab"`
		NCtx      int    `json:"n_ctx"`
		NCtxTrain int    `json:"n_ctx_train"`
		NEmbd     int    `json:"n_embd"`
		NParams   int64  `json:"n_params"`
		Size      int64  `json:"size"`
		Ftype     string `json:"ftype"`
	}
	type dmodel struct {
		ID           string   `json:"id"`
		Aliases      []string `json:"aliases"`
		Tags         []string `json:"tags"`
		Object       string   `json:"object"`
		Architecture arch     `json:"architecture"`
		Created      int64    `json:"created"`
		OwnedBy      string   `json:"owned_by"`
		Meta         meta     `json:"meta"`
	}
	out := struct {
		Models []omodel `json:"models"`
		Object string   `json:"object"`
		Data   []dmodel `json:"data"`
	}{Models: []omodel{}, Object: "list", Data: []dmodel{}}
	for _, e := range ms.list {
		out.Models = append(out.Models, omodel{Name: e.id, Model: e.id, Type: "model", Tags: []string{""},
			Capabilities: []string{"completion"}, Details: details{Format: "gguf", Families: []string{""}}})
		out.Data = append(out.Data, dmodel{ID: e.id, Aliases: []string{e.id}, Tags: []string{}, Object: "model",
			Architecture: arch{In: []string{"text"}, Out: []string{"text"}}, Created: created, OwnedBy: "llamacpp",
			Meta: meta{VocabType: 1, NVocab: 128256, NCtx: e.ctx, NCtxTrain: 131072, NEmbd: 4096,
				NParams: e.paramCount, Size: e.size, Ftype: e.quant}})
	}
	return mustJSON(out)
}

// lmsModel is one entry of LM Studio's GET /api/v0/models.
type lmsModel struct {
	ID                string `json:"id"`
	Object            string `json:"object"`
	Type              string `json:"type"`
	Publisher         string `json:"publisher"`
	Arch              string `json:"arch"`
	CompatibilityType string `json:"compatibility_type"`
	Quantization      string `json:"quantization"`
	State             string `json:"state"`
	MaxContextLength  int    `json:"max_context_length"`
}

// lmStudioV0Body is LM Studio's GET /api/v0/models. The first model and any
// model that has served a request are "loaded".
func lmStudioV0Body(ms *modelSet, resident func(string) bool) []byte {
	if p := ms.v0.Load(); p != nil && resident == nil {
		return *p
	}
	out := struct {
		Object string     `json:"object"`
		Data   []lmsModel `json:"data"`
	}{Object: "list", Data: []lmsModel{}}
	for i, e := range ms.list {
		out.Data = append(out.Data, lmStudioModel(e, i == 0, resident))
	}
	b := mustJSON(out)
	if resident == nil {
		ms.v0.Store(&b)
	}
	return b
}

func lmStudioModel(e *modelEntry, first bool, resident func(string) bool) lmsModel {
	m := lmsModel{ID: e.id, Object: "model", Type: "llm", Publisher: "lmstudio-community",
		Arch: e.family, CompatibilityType: "gguf", Quantization: e.quant, State: "not-loaded", MaxContextLength: e.ctx}
	if e.embed {
		m.Type = "embeddings"
	}
	if i := strings.IndexByte(e.id, '/'); i > 0 {
		m.Publisher = e.id[:i]
	}
	switch {
	case resident != nil:
		if resident(e.id) {
			m.State = "loaded"
		}
	case first || e.lastUsed.Load() != 0:
		m.State = "loaded"
	}
	return m
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic("sim: " + err.Error())
	}
	return b
}
