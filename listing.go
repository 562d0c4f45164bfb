package olla

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/caddy-olla/olla/discovery"
	"github.com/caddy-olla/olla/engines"
	"github.com/caddy-olla/olla/profiles"
)

// ollamaManagement are Ollama's model-management routes: changing one
// server's models through a load balancer would change a random one.
var ollamaManagement = map[string]bool{
	"/api/pull": true, "/api/push": true, "/api/create": true, "/api/copy": true, "/api/delete": true,
}

// serveListing answers the model-listing routes from the catalogue, in the
// format of the provider the path speaks. It reports false for any other
// path, which is then proxied.
func (rq *request) serveListing(rt route) (bool, error) {
	p := rq.apiPath
	if ollamaManagement[p] && (rt.prefix == "ollama" || rt.prefix == "proxy") {
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
		return true, rq.writeJSON(http.StatusOK, openAIList(rq.h.view(rt)))
	case strings.HasPrefix(p, "/v1/models/") && len(p) > len("/v1/models/"):
		// one model, answered from the same view as the list, so a client
		// can retrieve every model it was shown
		id := strings.TrimPrefix(p, "/v1/models/")
		for _, e := range rq.h.view(rt) {
			if e.ID == id {
				return true, rq.writeJSON(http.StatusOK, openAIList([]discovery.Entry{e}).Data[0])
			}
		}
		return true, rq.fail(apiError{status: http.StatusNotFound, code: "model_not_found",
			message: fmt.Sprintf("model '%s' not found on /olla/%s/; GET /olla/%s/v1/models lists the models available", id, rt.prefix, rt.prefix)})
	case p == "/api/tags" && (rt.prefix == "ollama" || rt.prefix == "proxy"):
		return true, rq.writeJSON(http.StatusOK, ollamaTags(rq.h.view(onlyType(rt, "ollama"))))
	case p == "/api/ps" && (rt.prefix == "ollama" || rt.prefix == "proxy"):
		return true, rq.writeJSON(http.StatusOK, rq.h.ollamaPS(rq.r.Context()))
	case p == "/api/v0/models" && (native == nil || native.Name == "lm-studio"):
		return true, rq.writeJSON(http.StatusOK, lmStudioList(rq.h.view(onlyType(rt, "lm-studio"))))
	case native != nil && p == native.ModelsPath:
		return true, rq.writeJSON(http.StatusOK, openAIList(rq.h.view(rt)))
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

// view is the catalogue over the route's endpoints, keeping only models
// with at least one routable source.
func (h *Handler) view(rt route) []discovery.Entry {
	all := discovery.Unify(h.sources(rt, time.Now()))
	kept := all[:0]
	for _, e := range all {
		if e.Routable() {
			kept = append(kept, e)
		}
	}
	return kept
}

// sources collects the discovered models of the route's endpoints.
func (h *Handler) sources(rt route, now time.Time) []discovery.EndpointModels {
	out := make([]discovery.EndpointModels, 0, len(h.states))
	for _, st := range h.states {
		if !rt.allows(st.Type()) {
			continue
		}
		em := discovery.EndpointModels{Endpoint: st.Name(), Type: st.Type(),
			Status: st.health.Load().status, Routable: st.routable(now)}
		if ms := st.models.Load(); ms != nil {
			em.Models = ms.models
		}
		out = append(out, em)
	}
	return out
}

// openAIModel is an entry of an OpenAI /v1/models list.
type openAIModel struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
}

type openAIListBody struct {
	Object string        `json:"object"`
	Data   []openAIModel `json:"data"`
}

func openAIList(entries []discovery.Entry) openAIListBody {
	now := time.Now().Unix()
	out := openAIListBody{Object: "list", Data: make([]openAIModel, 0, len(entries))}
	for _, e := range entries {
		out.Data = append(out.Data, openAIModel{ID: e.ID, Object: "model", Created: now, OwnedBy: "olla"})
	}
	return out
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

func ollamaTags(entries []discovery.Entry) map[string][]ollamaTag {
	out := make([]ollamaTag, 0, len(entries))
	for _, e := range entries {
		m := e.Model
		mod := m.ModifiedAt
		if mod == "" {
			mod = time.Now().UTC().Format(time.RFC3339)
		}
		out = append(out, ollamaTag{Name: e.ID, Model: e.ID, ModifiedAt: mod, Size: m.Size, Digest: m.Digest,
			Details: ollamaDetails{Format: m.Format, Family: m.Family, Families: m.Families,
				ParameterSize: m.ParameterSize, QuantizationLevel: m.Quantization}})
	}
	return map[string][]ollamaTag{"models": out}
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

func lmStudioList(entries []discovery.Entry) map[string]any {
	out := make([]lmStudioModel, 0, len(entries))
	for _, e := range entries {
		m := e.Model
		typ := m.Type
		if typ == "" {
			typ = "llm"
		}
		state := "not-loaded"
		for _, s := range e.Sources {
			if s.State == "loaded" {
				state = "loaded"
			}
		}
		out = append(out, lmStudioModel{ID: e.ID, Object: "model", Type: typ, Publisher: m.Publisher, Arch: m.Family,
			Compatibility: m.Format, Quantization: m.Quantization, State: state, MaxContextLength: m.MaxContextLength})
	}
	return map[string]any{"object": "list", "data": out}
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
		if st.Type() != "ollama" || !st.routable(now) {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := st.settings.Load()
			got := fetchPS(ctx, st, engines.UpstreamURL(s.url, "/api/ps", ""), s.header)
			mu.Lock()
			models = append(models, got...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	return map[string][]json.RawMessage{"models": models}
}

func fetchPS(ctx context.Context, st *endpointState, u *url.URL, header http.Header) []json.RawMessage {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil
	}
	for k, v := range header {
		req.Header[k] = v
	}
	res, err := st.Transport().RoundTrip(req)
	if err != nil {
		return nil
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return nil
	}
	var body struct {
		Models []json.RawMessage `json:"models"`
	}
	if err := json.NewDecoder(io.LimitReader(res.Body, maxModelListBytes)).Decode(&body); err != nil {
		return nil
	}
	return body.Models
}

// --- /olla/models ---

// unifiedModel is an entry of /olla/models.
type unifiedModel struct {
	ID      string      `json:"id"`
	Object  string      `json:"object"`
	OwnedBy string      `json:"owned_by"`
	Created int64       `json:"created"`
	Olla    unifiedOlla `json:"olla"`
}

type unifiedOlla struct {
	Family           string              `json:"family,omitempty"`
	ParameterSize    string              `json:"parameter_size,omitempty"`
	Quantization     string              `json:"quantization,omitempty"`
	Type             string              `json:"type,omitempty"`
	MaxContextLength int64               `json:"max_context_length,omitempty"`
	Aliases          []string            `json:"aliases,omitempty"`
	Availability     []discovery.Source  `json:"availability"`
	DigestMismatch   bool                `json:"digest_mismatch,omitempty"`
	Types            []string            `json:"types"`
	Extra            map[string][]string `json:"-"`
}

var catalogueFormats = []string{"unified", "openai", "ollama", "lmstudio"}

// serveCatalogue answers /olla/models and /olla/models/{id...}.
func (rq *request) serveCatalogue(rest string) error {
	h := rq.h
	q := rq.r.URL.Query()
	now := time.Now()
	all := discovery.Unify(h.sources(route{prefix: "models", label: "any"}, now))
	if rest != "" {
		id, _ := url.PathUnescape(rest)
		for i := range all {
			if all[i].ID == id {
				return rq.writeJSON(http.StatusOK, h.modelDetail(&all[i]))
			}
		}
		for i := range all {
			if strings.EqualFold(all[i].ID, id) {
				return rq.writeJSON(http.StatusOK, h.modelDetail(&all[i]))
			}
		}
		return rq.fail(apiError{status: http.StatusNotFound, code: "model_not_found",
			message: fmt.Sprintf("model '%s' not found; GET /olla/models lists the models available", id)})
	}

	includeUnavailable := q.Get("include_unavailable") == "true"
	endpoint, family := q.Get("endpoint"), q.Get("family")
	kept := all[:0]
	for _, e := range all {
		if !includeUnavailable && !e.Routable() {
			continue
		}
		if family != "" && !strings.EqualFold(e.Model.Family, family) {
			continue
		}
		if endpoint != "" && !hasSource(e, endpoint) {
			continue
		}
		kept = append(kept, e)
	}
	switch format := q.Get("format"); format {
	case "", "unified":
		return rq.writeJSON(http.StatusOK, h.unifiedList(kept))
	case "openai":
		return rq.writeJSON(http.StatusOK, openAIList(kept))
	case "ollama":
		return rq.writeJSON(http.StatusOK, ollamaTags(kept))
	case "lmstudio":
		return rq.writeJSON(http.StatusOK, lmStudioList(kept))
	default:
		return rq.fail(apiError{status: http.StatusBadRequest, code: "invalid_format",
			message: fmt.Sprintf("unsupported format %q: use one of %s", format, strings.Join(catalogueFormats, ", "))})
	}
}

func hasSource(e discovery.Entry, endpoint string) bool {
	for _, s := range e.Sources {
		if s.Endpoint == endpoint {
			return true
		}
	}
	return false
}

func (h *Handler) unifiedList(entries []discovery.Entry) map[string]any {
	now := time.Now().Unix()
	data := make([]unifiedModel, 0, len(entries))
	for _, e := range entries {
		data = append(data, unifiedModel{ID: e.ID, Object: "model", OwnedBy: "olla", Created: now, Olla: h.unifiedOlla(e)})
	}
	return map[string]any{"object": "list", "data": data}
}

func (h *Handler) unifiedOlla(e discovery.Entry) unifiedOlla {
	m := e.Model
	return unifiedOlla{Family: m.Family, ParameterSize: profiles.NormalizeParameterSize(m.ParameterSize),
		Quantization: profiles.NormalizeQuantization(m.Quantization), Type: m.Type, MaxContextLength: m.MaxContextLength,
		Aliases: h.aliasesOf(e.ID), Availability: e.Sources, DigestMismatch: e.DigestMismatch, Types: e.Types()}
}

// aliasesOf lists the configured aliases that point at a model.
func (h *Handler) aliasesOf(id string) []string {
	var out []string
	for alias, targets := range h.Aliases {
		for _, t := range targets {
			if strings.EqualFold(t, id) {
				out = append(out, alias)
				break
			}
		}
	}
	sort.Strings(out)
	return out
}

func (h *Handler) modelDetail(e *discovery.Entry) map[string]any {
	var endpoints, loaded []string
	var disk int64
	for _, s := range e.Sources {
		endpoints = append(endpoints, s.Endpoint)
		if s.State == "loaded" {
			loaded = append(loaded, s.Endpoint)
		}
		disk += s.Size
	}
	o := h.unifiedOlla(*e)
	return map[string]any{
		"id": e.ID, "object": "model", "owned_by": "olla",
		"family": o.Family, "parameter_size": o.ParameterSize, "quantization": o.Quantization,
		"format": e.Model.Format, "type": o.Type, "max_context_length": o.MaxContextLength,
		"total_disk_size": disk, "aliases": nonNil(o.Aliases), "endpoints": nonNil(endpoints),
		"loaded_endpoints": nonNil(loaded), "availability": e.Sources, "types": o.Types,
		"digest_mismatch": e.DigestMismatch,
	}
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
