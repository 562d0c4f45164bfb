package profiles

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// LoadRequest is the request that makes a backend load one model into
// memory without generating anything (preloading). Path is joined to the
// endpoint's base URL as is (it is not mapped by UpstreamPath).
type LoadRequest struct {
	Method string
	Path   string
	Header http.Header // extra headers, nil for none
	Body   []byte
}

// Load routes, from each project's documentation or source:
//   - Ollama: POST /api/generate with a model and no prompt loads the model
//     and answers {"done_reason":"load"}; keep_alive says how long it stays
//     (a negative number: until memory is needed or it is unloaded).
//   - llama.cpp in router mode: POST /models/load {"model"}.
//   - LM Studio 0.4+: POST /api/v1/models/load {"model"}. It loads another
//     instance of a model that is loaded already, so callers ask only for
//     models known not to be resident.
//   - oMLX: POST /v1/models/{model_id}/load, which blocks until the model
//     is loaded (404 unknown model, 507 no memory for it, 409 busy).
//   - Docker Model Runner: an inference request with the header
//     X-Preload-Only: true starts the model's runner and returns without
//     running inference.
//   - Lemonade: POST /api/v1/load {"model_name"}.
//
// The other types serve what they list without loading (vLLM, SGLang,
// vllm-mlx, LMDeploy) or expose no load route (LiteLLM, OpenAI-compatible).
var loadRoutes = map[string]func(model string, keepAlive time.Duration) LoadRequest{
	"ollama": func(model string, keepAlive time.Duration) LoadRequest {
		body := map[string]any{"model": model}
		if keepAlive < 0 {
			body["keep_alive"] = -1
		} else if keepAlive > 0 {
			body["keep_alive"] = keepAlive.String()
		}
		return LoadRequest{Method: http.MethodPost, Path: "/api/generate", Body: mustMarshal(body)}
	},
	"llamacpp": func(model string, _ time.Duration) LoadRequest {
		return LoadRequest{Method: http.MethodPost, Path: "/models/load", Body: mustMarshal(map[string]string{"model": model})}
	},
	"lm-studio": func(model string, _ time.Duration) LoadRequest {
		return LoadRequest{Method: http.MethodPost, Path: "/api/v1/models/load", Body: mustMarshal(map[string]string{"model": model})}
	},
	"omlx": func(model string, _ time.Duration) LoadRequest {
		return LoadRequest{Method: http.MethodPost, Path: "/v1/models/" + url.PathEscape(model) + "/load"}
	},
	"docker-model-runner": func(model string, _ time.Duration) LoadRequest {
		return LoadRequest{Method: http.MethodPost, Path: "/engines/v1/chat/completions",
			Header: http.Header{"X-Preload-Only": {"true"}}, Body: mustMarshal(map[string]string{"model": model})}
	},
	"lemonade": func(model string, _ time.Duration) LoadRequest {
		return LoadRequest{Method: http.MethodPost, Path: "/api/v1/load", Body: mustMarshal(map[string]string{"model_name": model})}
	},
}

// CanLoad says whether the type has a route that loads a model on request.
// llama.cpp has one only in router mode, which its residency surface tells.
func (p *Profile) CanLoad() bool {
	_, ok := loadRoutes[p.Name]
	return ok
}

// LoadRequest builds the request that loads model; ok is false for a type
// without a load route. keepAlive is Ollama's keep_alive (0: the server's
// default; negative: keep it loaded).
func (p *Profile) LoadRequest(model string, keepAlive time.Duration) (LoadRequest, bool) {
	route, ok := loadRoutes[p.Name]
	if !ok {
		return LoadRequest{}, false
	}
	return route(model, keepAlive), true
}

// LoadTypes lists the types with a load route, for messages.
func LoadTypes() string {
	var names []string
	for _, p := range All() {
		if p.CanLoad() {
			names = append(names, p.Name)
		}
	}
	return strings.Join(names, ", ")
}

func mustMarshal(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // maps of strings and numbers always marshal
	}
	return b
}
