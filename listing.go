package olla

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/caddy-olla/olla/discovery"
	"github.com/caddy-olla/olla/engines"
	"github.com/caddy-olla/olla/fleet"
	"github.com/caddy-olla/olla/profiles"
)

// ollamaManagement are Ollama's model-management routes: changing one
// server's models through a load balancer would change a random one.
var ollamaManagement = map[string]bool{
	"/api/pull": true, "/api/push": true, "/api/create": true, "/api/copy": true, "/api/delete": true,
}

// isManagementPath reports whether a normalised API path is one of Ollama's
// model-management routes or its blob store (/api/blobs/<digest>, where
// create uploads model files). A trailing slash or another case does not
// make it another route.
func isManagementPath(p string) bool {
	p = strings.ToLower(strings.TrimSuffix(p, "/"))
	return ollamaManagement[p] || p == "/api/blobs" || strings.HasPrefix(p, "/api/blobs/")
}

// serveListing answers the model-listing routes from the catalogue, in the
// format of the provider the path speaks. It reports false for any other
// path, which is then proxied.
func (rq *request) serveListing(rt route) (bool, error) {
	p := rq.apiPath
	// on every prefix: /olla/openai/ reaches Ollama servers too
	if isManagementPath(p) {
		return true, rq.fail(apiError{status: http.StatusNotImplemented, code: "not_supported",
			message: fmt.Sprintf("%s is not supported through the load balancer: it would change the models of one backend chosen at random; call that Ollama server directly", p)})
	}
	if rq.r.Method != http.MethodGet && rq.r.Method != http.MethodHead {
		return false, nil
	}
	var native *profiles.Profile
	if pr, ok := profiles.ByPrefix(rt.prefix); ok {
		native = pr
	}
	switch {
	case p == "/v1/models" || p == "/models" || p == "/api/v1/models" && native != nil && native.Name != "ollama":
		return true, rq.serveListingView(rt, "openai")
	case strings.HasPrefix(p, "/v1/models/") && len(p) > len("/v1/models/"):
		// one model, answered from the same view as the list, so a client
		// can retrieve every model it was shown
		id := strings.TrimPrefix(p, "/v1/models/")
		if rq.h.routeServes(rt, id, time.Now()) {
			return true, rq.writeJSON(http.StatusOK, openAIModel{ID: id, Object: "model", Created: time.Now().Unix(), OwnedBy: "olla"})
		}
		return true, rq.fail(apiError{status: http.StatusNotFound, code: "model_not_found",
			message: fmt.Sprintf("model '%s' not found on /olla/%s/; GET /olla/%s/v1/models lists the models available", id, rt.prefix, rt.prefix)})
	case p == "/api/tags" && (rt.prefix == "ollama" || rt.prefix == "proxy"):
		return true, rq.serveListingView(onlyType(rt, "ollama"), "ollama")
	case p == "/api/ps" && (rt.prefix == "ollama" || rt.prefix == "proxy"):
		return true, rq.writeJSON(http.StatusOK, rq.h.ollamaPS(rq.r.Context()))
	case p == "/api/v0/models" && (native == nil || native.Name == "lm-studio"):
		return true, rq.serveListingView(onlyType(rt, "lm-studio"), "lmstudio")
	case native != nil && p == native.ModelsPath:
		return true, rq.serveListingView(rt, "openai")
	}
	return false, nil
}

// onlyType narrows a route to one backend type, if it allows it.
func onlyType(rt route, typ string) route {
	if !rt.allows(typ) {
		return route{prefix: rt.prefix, types: map[string]bool{}, label: rt.label}
	}
	return route{prefix: rt.prefix, types: map[string]bool{typ: true}, label: typ}
}

// serveListingView answers a listing route: the models with at least one
// routable source among the route's endpoints, from the cached view.
func (rq *request) serveListingView(rt route, format string) error {
	h := rq.h
	in := h.catalogueInput(time.Now())
	etag := h.etag(in, "listing/"+typesKey(rt)+"/"+format)
	if rq.notModified(etag) {
		return nil
	}
	l, err := h.listing(rq.r.Context(), in, rt, format)
	if err != nil {
		return rq.viewFailed(err)
	}
	return rq.writeList(etag, l, nil, l.gz)
}

// viewFailed answers a request whose catalogue view could not be had: the
// client left while it was being built, or building it failed.
func (rq *request) viewFailed(err error) error {
	return rq.fail(apiError{status: http.StatusServiceUnavailable, code: "catalogue_unavailable", retryAfter: time.Second,
		message: "the model catalogue is not available: " + err.Error()})
}

// routeServes reports whether a routable endpoint of the route lists the
// model under exactly this name: what its listing shows.
func (h *Handler) routeServes(rt route, id string, now time.Time) bool {
	for _, st := range h.states {
		if !rt.allows(st.Type()) || !st.Routable(now) {
			continue
		}
		if st.ListsExactly(id) {
			return true
		}
	}
	return false
}

// ollamaPS asks every routable Ollama endpoint which models it has loaded
// and merges the answers; an endpoint that does not answer in time is left
// out rather than failing the listing.
func (h *Handler) ollamaPS(ctx context.Context) map[string][]json.RawMessage {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var mu sync.Mutex
	var wg sync.WaitGroup
	models := []json.RawMessage{}
	now := time.Now()
	for _, st := range h.states {
		if st.Type() != "ollama" || !st.Routable(now) {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := st.Settings()
			got := fetchPS(ctx, st, engines.UpstreamURL(s.URL, "/api/ps", ""), s.Header)
			mu.Lock()
			models = append(models, got...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	return map[string][]json.RawMessage{"models": models}
}

func fetchPS(ctx context.Context, st *fleet.Endpoint, u *url.URL, header http.Header) []json.RawMessage {
	res := discovery.Fetch{URL: u.String(), Header: header, Accept: "application/json", Limit: fleet.MaxModelListBytes, OnlyOK: true}.Do(ctx, st.Transport())
	if res.Status != http.StatusOK || res.ReadErr != nil || res.TooLarge {
		return nil
	}
	var body struct {
		Models []json.RawMessage `json:"models"`
	}
	if err := json.Unmarshal(res.Body, &body); err != nil {
		return nil
	}
	return body.Models
}

// --- list formats ---

// listFormat is one list shape: the text around the entries and how one
// entry is written.
type listFormat struct {
	head, tail string
	entry      func(e *discovery.Entry, typ string, ec *encodeContext) any
}

// encodeContext is what entries are written with.
type encodeContext struct {
	h       *Handler
	created int64 // when the view was built: every list entry's created
	now     time.Time
}

const openAIHead, openAITail = `{"object":"list","data":[`, "]}\n"

// listFormats are the list shapes, by /olla/models?format= name.
var listFormats = map[string]*listFormat{
	"unified":  {openAIHead, openAITail, unifiedEntry},
	"openai":   {openAIHead, openAITail, openAIEntry},
	"ollama":   {`{"models":[`, "]}\n", ollamaEntry},
	"lmstudio": {openAIHead, openAITail, lmStudioEntry},
	"vllm":     {openAIHead, openAITail, vllmEntry},
	"sglang":   {openAIHead, openAITail, sglangEntry},
	"lmdeploy": {openAIHead, openAITail, lmdeployEntry},
	"llamacpp": {openAIHead, openAITail, llamacppEntry},
	"lemonade": {openAIHead, openAITail, lemonadeEntry},
	"docker-model-runner": {openAIHead, openAITail, func(e *discovery.Entry, _ string, ec *encodeContext) any {
		return openAIModel{ID: e.ID, Object: "model", Created: ec.created, OwnedBy: "docker"}
	}},
	"vllm-mlx": {openAIHead, openAITail, func(e *discovery.Entry, _ string, ec *encodeContext) any {
		return contextModel{openAIModel{ID: e.ID, Object: "model", Created: ec.created, OwnedBy: "vllm-mlx"}, e.Model.MaxContextLength}
	}},
	"omlx": {openAIHead, openAITail, func(e *discovery.Entry, _ string, ec *encodeContext) any {
		return openAIModel{ID: e.ID, Object: "model", Created: ec.created, OwnedBy: "omlx"}
	}},
}

// catalogueFormats lists the formats in the order error messages give them.
var catalogueFormats = []string{"unified", "openai", "ollama", "lmstudio", "lemonade", "lmdeploy", "sglang", "vllm",
	"llamacpp", "docker-model-runner", "vllm-mlx", "omlx"}

// openAIModel is an entry of an OpenAI /v1/models list.
type openAIModel struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
}

func openAIEntry(e *discovery.Entry, _ string, ec *encodeContext) any {
	return openAIModel{ID: e.ID, Object: "model", Created: ec.created, OwnedBy: "olla"}
}

// contextModel is an OpenAI entry with the context length vLLM-like
// servers add.
type contextModel struct {
	openAIModel
	MaxModelLen int64 `json:"max_model_len,omitempty"`
}

// ollamaTag is an entry of Ollama's /api/tags.
type ollamaTag struct {
	Name       string        `json:"name"`
	Model      string        `json:"model"`
	ModifiedAt string        `json:"modified_at"`
	Size       int64         `json:"size"`
	Digest     string        `json:"digest"`
	Details    ollamaDetails `json:"details"`
}

type ollamaDetails struct {
	ParentModel       string   `json:"parent_model"`
	Format            string   `json:"format"`
	Family            string   `json:"family"`
	Families          []string `json:"families"`
	ParameterSize     string   `json:"parameter_size"`
	QuantizationLevel string   `json:"quantization_level"`
}

func ollamaEntry(e *discovery.Entry, _ string, ec *encodeContext) any {
	m := e.Model
	mod := m.ModifiedAt
	if mod == "" {
		mod = ec.now.UTC().Format(time.RFC3339)
	}
	return ollamaTag{Name: e.ID, Model: e.ID, ModifiedAt: mod, Size: m.Size, Digest: m.Digest,
		Details: ollamaDetails{Format: m.Format, Family: m.Family, Families: m.Families,
			ParameterSize: m.ParameterSize, QuantizationLevel: m.Quantization}}
}

// lmStudioModel is an entry of LM Studio's /api/v0/models.
type lmStudioModel struct {
	ID               string `json:"id"`
	Object           string `json:"object"`
	Type             string `json:"type"`
	Publisher        string `json:"publisher,omitempty"`
	Arch             string `json:"arch,omitempty"`
	Compatibility    string `json:"compatibility_type,omitempty"`
	Quantization     string `json:"quantization,omitempty"`
	State            string `json:"state"`
	MaxContextLength int64  `json:"max_context_length,omitempty"`
}

func lmStudioEntry(e *discovery.Entry, typ string, _ *encodeContext) any {
	m := e.Model
	state := "not-loaded"
	if e.Loaded() {
		state = "loaded"
	}
	return lmStudioModel{ID: e.ID, Object: "model", Type: typ, Publisher: m.Publisher, Arch: m.Family,
		Compatibility: m.Format, Quantization: m.Quantization, State: state, MaxContextLength: m.MaxContextLength}
}

// vllmPermission is the permission block vLLM and LMDeploy put on every
// entry; it grants what the server allows anyone.
type vllmPermission struct {
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

type vllmModel struct {
	openAIModel
	Root        string           `json:"root"`
	Parent      *string          `json:"parent"`
	MaxModelLen int64            `json:"max_model_len,omitempty"`
	Permission  []vllmPermission `json:"permission"`
}

func vllmStyle(e *discovery.Entry, ec *encodeContext, ownedBy string) vllmModel {
	m := e.Model
	root := m.Root
	if root == "" {
		root = e.ID
	}
	var parent *string
	if m.Parent != "" {
		parent = &m.Parent
	}
	perm := vllmPermission{ID: "modelperm-" + permissionID(e.ID), Object: "model_permission", Created: ec.created,
		AllowSampling: true, AllowLogprobs: true, AllowView: true, Organization: "*"}
	return vllmModel{openAIModel: openAIModel{ID: e.ID, Object: "model", Created: ec.created, OwnedBy: ownedBy},
		Root: root, Parent: parent, MaxModelLen: m.MaxContextLength, Permission: []vllmPermission{perm}}
}

// permissionID is a stable id for a model's synthetic permission entry.
func permissionID(id string) string {
	sum := fnv.New64a()
	sum.Write([]byte(id))
	return strconv.FormatUint(sum.Sum64(), 16)
}

// modelOwner is who owns a model as vLLM would say it: the organisation of
// an "org/name" id, else the publisher the server gave, else fallback.
func modelOwner(e *discovery.Entry, fallback string) string {
	if org, _, ok := strings.Cut(e.ID, "/"); ok && org != "" {
		return org
	}
	if e.Model.Publisher != "" {
		return e.Model.Publisher
	}
	return fallback
}

func vllmEntry(e *discovery.Entry, _ string, ec *encodeContext) any {
	return vllmStyle(e, ec, modelOwner(e, "vllm"))
}

func lmdeployEntry(e *discovery.Entry, _ string, ec *encodeContext) any {
	m := vllmStyle(e, ec, "lmdeploy")
	m.MaxModelLen = 0 // LMDeploy does not report it
	return m
}

type sglangModel struct {
	openAIModel
	Root        string `json:"root"`
	MaxModelLen int64  `json:"max_model_len,omitempty"`
}

func sglangEntry(e *discovery.Entry, _ string, ec *encodeContext) any {
	root := e.Model.Root
	if root == "" {
		root = e.ID
	}
	return sglangModel{openAIModel{ID: e.ID, Object: "model", Created: ec.created, OwnedBy: "sglang"}, root, e.Model.MaxContextLength}
}

type llamacppMeta struct {
	NCtxTrain int64 `json:"n_ctx_train,omitempty"`
	NParams   int64 `json:"n_params,omitempty"`
	Size      int64 `json:"size,omitempty"`
}

type llamacppModel struct {
	openAIModel
	Meta llamacppMeta `json:"meta"`
}

func llamacppEntry(e *discovery.Entry, _ string, ec *encodeContext) any {
	m := e.Model
	return llamacppModel{openAIModel{ID: e.ID, Object: "model", Created: ec.created, OwnedBy: "llamacpp"},
		llamacppMeta{NCtxTrain: m.MaxContextLength, NParams: profiles.ParameterCount(m.ParameterSize), Size: m.Size}}
}

type lemonadeModel struct {
	openAIModel
	Checkpoint string `json:"checkpoint,omitempty"`
	Recipe     string `json:"recipe,omitempty"`
}

func lemonadeEntry(e *discovery.Entry, _ string, ec *encodeContext) any {
	return lemonadeModel{openAIModel{ID: e.ID, Object: "model", Created: ec.created, OwnedBy: "lemonade"}, e.Model.Checkpoint, e.Model.Recipe}
}

// unifiedModel is an entry of /olla/models.
type unifiedModel struct {
	ID      string      `json:"id"`
	Object  string      `json:"object"`
	OwnedBy string      `json:"owned_by"`
	Created int64       `json:"created"`
	Olla    unifiedOlla `json:"olla"`
}

type unifiedOlla struct {
	Family           string             `json:"family,omitempty"`
	ParameterSize    string             `json:"parameter_size,omitempty"`
	Quantization     string             `json:"quantization,omitempty"`
	Type             string             `json:"type,omitempty"`
	MaxContextLength int64              `json:"max_context_length,omitempty"`
	Aliases          []string           `json:"aliases"`
	Availability     []discovery.Source `json:"availability"`
	Capabilities     []string           `json:"capabilities"`
	DigestMismatch   bool               `json:"digest_mismatch,omitempty"`
	Types            []string           `json:"types"`
}

func unifiedEntry(e *discovery.Entry, typ string, ec *encodeContext) any {
	return unifiedModel{ID: e.ID, Object: "model", OwnedBy: "olla", Created: ec.created, Olla: ec.h.unifiedOlla(e, typ)}
}

func (h *Handler) unifiedOlla(e *discovery.Entry, typ string) unifiedOlla {
	m := e.Model
	return unifiedOlla{Family: m.Family, ParameterSize: profiles.NormalizeParameterSize(m.ParameterSize),
		Quantization: profiles.NormalizeQuantization(m.Quantization), Type: typ, MaxContextLength: m.MaxContextLength,
		Aliases: nonNil(h.aliasesOf(e.ID)), Availability: e.Sources, Capabilities: discovery.Capabilities(typ, m.MaxContextLength),
		DigestMismatch: e.DigestMismatch, Types: e.Types()}
}

// --- /olla/models ---

// serveCatalogue answers /olla/models and /olla/models/{id...}.
func (rq *request) serveCatalogue(rest string) error {
	h := rq.h
	ctx := rq.r.Context()
	in := h.catalogueInput(time.Now())
	if rest != "" {
		id, _ := url.PathUnescape(rest)
		c, err := h.allEntries(ctx, in)
		if err != nil {
			return rq.viewFailed(err)
		}
		if i, ok := c.lookup(id); ok {
			return rq.writeJSON(http.StatusOK, h.modelDetail(&c.entries[i], c.types[i]))
		}
		return rq.fail(apiError{status: http.StatusNotFound, code: "model_not_found",
			message: fmt.Sprintf("model '%s' not found; GET /olla/models lists the models available", id)})
	}

	q, aerr := h.parseCatalogueQuery(rq.r.URL.Query())
	if aerr != nil {
		return rq.fail(*aerr)
	}
	etag := h.etag(in, "models/"+q.key())
	if rq.notModified(etag) {
		return nil
	}
	c, err := h.allEntries(ctx, in)
	if err != nil {
		return rq.viewFailed(err)
	}
	l, err := h.modelsList(ctx, in, c, q.format)
	if err != nil {
		return rq.viewFailed(err)
	}
	keep, isDefault := q.keep(c)
	var gz []byte
	if isDefault {
		gz = l.gz
	}
	return rq.writeList(etag, l, keep, gz)
}

// catalogueQuery is /olla/models' query, checked.
type catalogueQuery struct {
	format             string
	includeUnavailable bool
	endpoint, family   string
	typ, capabilityTyp string
	available          string // "", "true" or "false"
}

// capabilityTypes maps the capability filter's names to the model type
// that has them, as the standalone Olla does.
var capabilityTypes = map[string]string{
	"vision": discovery.TypeVLM, "multimodal": discovery.TypeVLM,
	"embedding": discovery.TypeEmbeddings, "embeddings": discovery.TypeEmbeddings, "vector_search": discovery.TypeEmbeddings,
	"chat": discovery.TypeLLM, "text_generation": discovery.TypeLLM, "completion": discovery.TypeLLM,
}

func (h *Handler) parseCatalogueQuery(v url.Values) (catalogueQuery, *apiError) {
	bad := func(param, value, expected string) *apiError {
		if len(value) > 64 {
			value = value[:64] + "..."
		}
		return &apiError{status: http.StatusBadRequest, code: "invalid_query_parameter",
			message: fmt.Sprintf("invalid query parameter %s=%q: %s", param, value, expected)}
	}
	q := catalogueQuery{format: "unified", endpoint: v.Get("endpoint"), family: v.Get("family")}
	if f := v.Get("format"); f != "" {
		if listFormats[f] == nil {
			return q, bad("format", f, "unsupported format. Supported formats: "+strings.Join(catalogueFormats, ", "))
		}
		q.format = f
	}
	switch iu := v.Get("include_unavailable"); iu {
	case "", "false":
	case "true":
		q.includeUnavailable = true
	default:
		return q, bad("include_unavailable", iu, "use true or false")
	}
	switch a := v.Get("available"); a {
	case "", "true", "false":
		q.available = a
	default:
		return q, bad("available", a, "use true (a source has the model loaded) or false")
	}
	if t := v.Get("type"); t != "" {
		q.typ = strings.ToLower(t)
		if q.typ != discovery.TypeLLM && q.typ != discovery.TypeVLM && q.typ != discovery.TypeEmbeddings {
			return q, bad("type", t, "use llm, vlm or embeddings")
		}
	}
	if c := v.Get("capability"); c != "" {
		typ, ok := capabilityTypes[strings.ReplaceAll(strings.ToLower(c), "-", "_")]
		if !ok {
			return q, bad("capability", c, "use vision, multimodal, embedding, embeddings, vector_search, chat, text_generation or completion")
		}
		q.capabilityTyp = typ
	}
	if q.endpoint != "" {
		names := make([]string, 0, len(h.states))
		known := false
		for _, st := range h.states {
			names = append(names, st.Name())
			known = known || st.Name() == q.endpoint
		}
		if !known {
			return q, bad("endpoint", q.endpoint, "no such endpoint; configured endpoints are "+strings.Join(names, ", "))
		}
	}
	return q, nil
}

// key is the query as the answer depends on it, for the ETag.
func (q catalogueQuery) key() string {
	return strings.Join([]string{q.format, strconv.FormatBool(q.includeUnavailable), q.endpoint, q.family,
		q.typ, q.capabilityTyp, q.available}, "\x00")
}

// keep is the query's filter over the catalogue (nil: every entry), and
// whether it is the default answer's.
func (q catalogueQuery) keep(c *catalogueEntries) (func(int) bool, bool) {
	if q.endpoint == "" && q.family == "" && q.typ == "" && q.capabilityTyp == "" && q.available == "" {
		if q.includeUnavailable {
			return nil, false
		}
		return c.defaultKeep(), true
	}
	return func(i int) bool {
		e := &c.entries[i]
		switch {
		case !q.includeUnavailable && !e.Routable(),
			q.family != "" && !strings.EqualFold(e.Model.Family, q.family),
			q.endpoint != "" && !hasSource(e, q.endpoint),
			q.typ != "" && c.types[i] != q.typ,
			q.capabilityTyp != "" && c.types[i] != q.capabilityTyp,
			q.available != "" && e.Loaded() != (q.available == "true"):
			return false
		}
		return true
	}, false
}

func hasSource(e *discovery.Entry, endpoint string) bool {
	for _, s := range e.Sources {
		if s.Endpoint == endpoint {
			return true
		}
	}
	return false
}

func (h *Handler) modelDetail(e *discovery.Entry, typ string) map[string]any {
	var endpoints, loaded []string
	var disk int64
	for _, s := range e.Sources {
		endpoints = append(endpoints, s.Endpoint)
		if s.State == "loaded" {
			loaded = append(loaded, s.Endpoint)
		}
		disk += s.Size
	}
	o := h.unifiedOlla(e, typ)
	return map[string]any{
		"id": e.ID, "object": "model", "owned_by": "olla",
		"family": o.Family, "parameter_size": o.ParameterSize, "quantization": o.Quantization,
		"format": e.Model.Format, "type": o.Type, "max_context_length": o.MaxContextLength,
		"total_disk_size": disk, "aliases": nonNil(o.Aliases), "endpoints": nonNil(endpoints),
		"loaded_endpoints": nonNil(loaded), "availability": e.Sources, "types": o.Types,
		"capabilities": o.Capabilities, "digest_mismatch": e.DigestMismatch,
	}
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
