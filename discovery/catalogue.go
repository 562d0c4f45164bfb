package discovery

import (
	"sort"
	"strings"

	"github.com/caddy-olla/olla/profiles"
)

// EndpointModels is one endpoint's discovered models, with what the
// catalogue needs to know of the endpoint.
type EndpointModels struct {
	Endpoint string
	Type     string
	Status   Status
	Routable bool
	Models   []profiles.Model
}

// Source is one endpoint serving a catalogue entry.
type Source struct {
	Endpoint string `json:"endpoint"`
	Type     string `json:"type"`
	// Status is the endpoint's health when the catalogue was last built:
	// catalogues are rebuilt when an endpoint becomes routable or stops
	// being routable, not when it only turns from healthy to busy.
	Status Status `json:"status"`
	// State is the model's state on the endpoint where it reports one
	// (LM Studio: loaded, not-loaded); "available" otherwise.
	State    string `json:"state"`
	Routable bool   `json:"routable"`
	Digest   string `json:"digest,omitempty"`
	Size     int64  `json:"size,omitempty"`
}

// Entry is one model in a catalogue view, merged over the endpoints that
// serve it.
type Entry struct {
	ID      string
	Sources []Source
	// DigestMismatch flags sources of one type that report different
	// digests for the same name: merged, but worth a look.
	DigestMismatch bool
	// Model holds the merged details: the first source's, with gaps filled
	// from the others.
	Model profiles.Model
}

// Routable reports whether at least one source can take requests now.
func (e *Entry) Routable() bool {
	for _, s := range e.Sources {
		if s.Routable {
			return true
		}
	}
	return false
}

// Types lists the backend types serving the entry.
func (e *Entry) Types() []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range e.Sources {
		if !seen[s.Type] {
			seen[s.Type] = true
			out = append(out, s.Type)
		}
	}
	return out
}

// Unify merges endpoints' models into one entry per model name, sorted by
// name, each listing every endpoint that serves it. Names are matched
// exactly: clients see names as the servers spell them. Within one backend
// type, differing digests for one name are flagged, not split.
//
// Per-type views (an Ollama /api/tags) pass only that type's endpoints;
// cross-type views (/olla/models) pass all of them.
func Unify(eps []EndpointModels) []Entry {
	total := 0
	for _, ep := range eps {
		total += len(ep.Models)
	}
	index := make(map[string]int, total)
	out := make([]Entry, 0, total)
	for _, ep := range eps {
		for _, m := range ep.Models {
			i, ok := index[m.Name]
			if !ok {
				i = len(out)
				index[m.Name] = i
				out = append(out, Entry{ID: m.Name, Model: m})
			}
			e := &out[i]
			state := m.State
			if state == "" {
				state = "available"
			}
			src := Source{Endpoint: ep.Endpoint, Type: ep.Type, Status: ep.Status, State: state,
				Routable: ep.Routable, Digest: m.Digest, Size: m.Size}
			for _, prev := range e.Sources {
				if prev.Type == src.Type && prev.Digest != "" && src.Digest != "" && prev.Digest != src.Digest {
					e.DigestMismatch = true
				}
			}
			e.Sources = append(e.Sources, src)
			fillGaps(&e.Model, m)
		}
	}
	sort.Slice(out, func(a, b int) bool { return out[a].ID < out[b].ID })
	return out
}

// fillGaps copies details the merged model lacks from another source.
func fillGaps(dst *profiles.Model, src profiles.Model) {
	if dst.Family == "" {
		dst.Family = src.Family
	}
	if len(dst.Families) == 0 {
		dst.Families = src.Families
	}
	if dst.Format == "" {
		dst.Format = src.Format
	}
	if dst.ParameterSize == "" {
		dst.ParameterSize = src.ParameterSize
	}
	if dst.Quantization == "" {
		dst.Quantization = src.Quantization
	}
	if dst.Type == "" {
		dst.Type = src.Type
	}
	if dst.Publisher == "" {
		dst.Publisher = src.Publisher
	}
	if dst.MaxContextLength == 0 {
		dst.MaxContextLength = src.MaxContextLength
	}
	if dst.Digest == "" {
		dst.Digest = src.Digest
	}
	if dst.Size == 0 {
		dst.Size = src.Size
	}
	if dst.ModifiedAt == "" {
		dst.ModifiedAt = src.ModifiedAt
	}
}

// Model types, as LM Studio names them.
const (
	TypeLLM        = "llm"
	TypeVLM        = "vlm"
	TypeEmbeddings = "embeddings"
)

// ModelType says whether a model generates text (llm), also reads images
// (vlm) or embeds (embeddings): what the server reports when it does (LM
// Studio), else what its families and name suggest, else llm.
func ModelType(m profiles.Model) string {
	switch t := strings.ToLower(m.Type); t {
	case TypeLLM, TypeVLM, TypeEmbeddings:
		return t
	case "embedding":
		return TypeEmbeddings
	}
	// Ollama lists a vision model's projector family (clip) beside its own
	for _, f := range append([]string{m.Family}, m.Families...) {
		switch strings.ToLower(f) {
		case "bert", "nomic-bert", "jina-bert", "xlm-roberta":
			return TypeEmbeddings
		case "clip", "mllama":
			return TypeVLM
		}
	}
	name := strings.ToLower(m.Name)
	for _, w := range []string{"embed", "bge-", "bge:", "minilm", "e5-", "gte-"} {
		if strings.Contains(name, w) {
			return TypeEmbeddings
		}
	}
	for _, w := range []string{"llava", "vision", "-vl", "vlm", "moondream", "pixtral"} {
		if strings.Contains(name, w) {
			return TypeVLM
		}
	}
	return TypeLLM
}

// Capabilities lists what a model of this type and context can be used
// for, in the names the standalone Olla uses.
func Capabilities(typ string, maxContext int64) []string {
	var out []string
	switch typ {
	case TypeEmbeddings:
		out = []string{"embeddings", "vector-search"}
	case TypeVLM:
		out = []string{"text-generation", "chat", "completion", "vision", "multimodal"}
	default:
		out = []string{"text-generation", "chat", "completion"}
	}
	if maxContext >= 100_000 {
		out = append(out, "long-context")
	}
	return out
}

// Loaded reports whether some source has the model loaded now (as far as
// its server says: LM Studio's state).
func (e *Entry) Loaded() bool {
	for _, s := range e.Sources {
		if s.State == "loaded" {
			return true
		}
	}
	return false
}
