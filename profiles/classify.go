package profiles

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
)

// Classification of an endpoint declared with `type auto`: a fixed set of
// GETs (ClassifyProbes) is sent, and each type's rule reads the answers for
// its own distinguishing route and fields. The rules are data (classifyRules)
// and the decision is a pure function of the answers (Classify), so a
// capture of a real server classifies the same way as the server itself.
//
// A rule is strong when it rests on the type's own route answering with the
// type's own fields (Ollama's "Ollama is running", llama.cpp's /props),
// weak when it rests on a hint another server could give too (a Server
// header, an owned_by value). One strong match decides; no strong match and
// one weak match decides; anything else is ambiguous, and the endpoint is
// taken as openai-compatible with a warning naming why.

// ClassifyProbes are the paths type auto GETs, in the order they are sent
// and reported.
var ClassifyProbes = []string{
	"/", "/api/v1/health", "/api/v0/models", "/props", "/v1/status", "/v1/models/status",
	"/version", "/health/liveliness", "/metrics", "/v1/models", "/engines/v1/models",
}

// MaxProbeBody caps how much of one probe's body is read: enough for every
// rule's fields (they sit near the start), never a whole model catalogue.
const MaxProbeBody = 64 << 10

// ProbeAnswer is what one probe got back.
type ProbeAnswer struct {
	Status int    // 0 when there was no answer
	Server string // the Server header
	Body   []byte // at most MaxProbeBody bytes
	Err    string // why there was no answer (timeout, refused), if none
}

// Classification is the decision for one endpoint and what it rests on.
type Classification struct {
	Type     string   `json:"type"`               // a profile name
	Evidence []string `json:"evidence,omitempty"` // what matched, one line each
	// Warning says why the type is the openai-compatible fallback, when it is.
	Warning string `json:"warning,omitempty"`
}

type classifyRule struct {
	typ      string
	path     string
	strong   bool
	evidence string
	match    func(a ProbeAnswer) bool
}

// classifyRules are checked in this order; the order also orders evidence.
var classifyRules = []classifyRule{
	{"ollama", "/", true, `GET / answered "Ollama is running"`, func(a ProbeAnswer) bool {
		return a.Status == 200 && bytes.HasPrefix(bytes.TrimSpace(a.Body), []byte("Ollama is running"))
	}},
	{"docker-model-runner", "/", true, `GET / answered "Docker Model Runner is running"`, func(a ProbeAnswer) bool {
		return a.Status == 200 && bytes.Contains(a.Body, []byte("Docker Model Runner is running"))
	}},
	{"docker-model-runner", "/engines/v1/models", true, "GET /engines/v1/models answered a model list", func(a ProbeAnswer) bool {
		return a.Status == 200 && hasList(a.Body, "data")
	}},
	{"lemonade", "/api/v1/health", true, "GET /api/v1/health named its loaded model (model_loaded)", func(a ProbeAnswer) bool {
		return a.Status == 200 && hasKeys(a.Body, "status") && (hasKeys(a.Body, "model_loaded") || hasKeys(a.Body, "all_models_loaded"))
	}},
	{"lm-studio", "/api/v0/models", true, "GET /api/v0/models answered LM Studio's model list", func(a ProbeAnswer) bool {
		return a.Status == 200 && hasList(a.Body, "data")
	}},
	{"llamacpp", "/props", true, "GET /props answered llama-server's default_generation_settings", func(a ProbeAnswer) bool {
		return a.Status == 200 && (hasKeys(a.Body, "default_generation_settings") || hasKeys(a.Body, "build_info"))
	}},
	{"vllm-mlx", "/v1/status", true, "GET /v1/status answered vllm-mlx's num_running", func(a ProbeAnswer) bool {
		return a.Status == 200 && hasKeys(a.Body, "num_running") && hasKeys(a.Body, "model")
	}},
	{"omlx", "/v1/models/status", true, "GET /v1/models/status answered each model's loaded state", func(a ProbeAnswer) bool {
		return a.Status == 200 && listEntriesHave(a.Body, "models", "loaded")
	}},
	{"vllm", "/metrics", true, "GET /metrics has vllm: metrics", func(a ProbeAnswer) bool {
		return a.Status == 200 && (bytes.Contains(a.Body, []byte("\nvllm:")) || bytes.HasPrefix(a.Body, []byte("vllm:")))
	}},
	{"sglang", "/metrics", true, "GET /metrics has sglang: metrics", func(a ProbeAnswer) bool {
		return a.Status == 200 && bytes.Contains(a.Body, []byte("sglang:"))
	}},
	{"litellm", "/health/liveliness", true, `GET /health/liveliness answered "I'm alive!"`, func(a ProbeAnswer) bool {
		return a.Status == 200 && bytes.Contains(a.Body, []byte("alive"))
	}},
	// weak: hints another server could give
	{"llamacpp", "*", false, "answers carry Server: llama.cpp", nil},
	{"vllm", "/v1/models", false, `/v1/models entries are owned_by "vllm"`, ownedBy("vllm")},
	{"sglang", "/v1/models", false, `/v1/models entries are owned_by "sglang"`, ownedBy("sglang")},
	{"lmdeploy", "/v1/models", false, `/v1/models entries are owned_by "lmdeploy"`, ownedBy("lmdeploy")},
	{"omlx", "/v1/models", false, `/v1/models entries are owned_by "omlx"`, ownedBy("omlx")},
	{"vllm-mlx", "/v1/models", false, `/v1/models entries are owned_by "vllm-mlx"`, ownedBy("vllm-mlx")},
	{"lemonade", "/v1/models", false, `/v1/models entries are owned_by "lemonade"`, ownedBy("lemonade")},
	{"docker-model-runner", "/v1/models", false, `/v1/models entries are owned_by "docker"`, ownedBy("docker")},
}

// Classify decides an endpoint's type from the probes' answers (keyed by
// probe path). See the package comment above for the rule.
func Classify(answers map[string]ProbeAnswer) Classification {
	strong, weak := map[string][]string{}, map[string][]string{}
	for _, r := range classifyRules {
		var hit bool
		if r.path == "*" {
			hit = anyServer(answers, "llama.cpp")
		} else if a, ok := answers[r.path]; ok {
			hit = r.match(a)
		}
		if !hit {
			continue
		}
		if r.strong {
			strong[r.typ] = append(strong[r.typ], r.evidence)
		} else {
			weak[r.typ] = append(weak[r.typ], r.evidence)
		}
	}
	switch {
	case len(strong) == 1:
		for typ, ev := range strong {
			return Classification{Type: typ, Evidence: append(ev, weak[typ]...)}
		}
	case len(strong) > 1:
		return fallback(strong, "it answered as several types at once")
	case len(weak) == 1:
		for typ, ev := range weak {
			return Classification{Type: typ, Evidence: ev}
		}
	case len(weak) > 1:
		return fallback(weak, "its hints point at several types")
	}
	if a := answers["/v1/models"]; a.Status == 200 && hasList(a.Body, "data") {
		return Classification{Type: "openai-compatible", Evidence: []string{"GET /v1/models answered an OpenAI model list"},
			Warning: "no type's own route or fields answered, only the OpenAI model list; taken as openai-compatible"}
	}
	return Classification{Type: "openai-compatible", Warning: "it answered none of the probes as any known type (" + summary(answers) +
		"); taken as openai-compatible"}
}

// fallback is the ambiguous decision: openai-compatible, and why.
func fallback(matches map[string][]string, why string) Classification {
	types := make([]string, 0, len(matches))
	for t := range matches {
		types = append(types, t)
	}
	sort.Strings(types)
	var ev []string
	for _, t := range types {
		for _, e := range matches[t] {
			ev = append(ev, t+": "+e)
		}
	}
	return Classification{Type: "openai-compatible", Evidence: ev,
		Warning: fmt.Sprintf("ambiguous: %s (%s); taken as openai-compatible — set the type to choose", why, strings.Join(types, ", "))}
}

// summary is one short line of what the probes got, for a warning.
func summary(answers map[string]ProbeAnswer) string {
	var parts []string
	for _, p := range ClassifyProbes {
		a, ok := answers[p]
		switch {
		case !ok:
		case a.Status != 0:
			parts = append(parts, fmt.Sprintf("%s %d", p, a.Status))
		case a.Err != "":
			parts = append(parts, p+" "+a.Err)
		}
		if len(parts) == 4 {
			parts = append(parts, "...")
			break
		}
	}
	if len(parts) == 0 {
		return "no answers"
	}
	return strings.Join(parts, ", ")
}

func anyServer(answers map[string]ProbeAnswer, name string) bool {
	for _, a := range answers {
		if a.Status != 0 && strings.EqualFold(strings.TrimSpace(a.Server), name) {
			return true
		}
	}
	return false
}

// hasKeys reports whether body is a JSON object with every key (at the top
// level).
func hasKeys(body []byte, keys ...string) bool {
	var obj map[string]json.RawMessage
	if json.Unmarshal(body, &obj) != nil {
		return false
	}
	for _, k := range keys {
		if _, ok := obj[k]; !ok {
			return false
		}
	}
	return true
}

// hasList reports whether body is a JSON object whose key holds an array.
func hasList(body []byte, key string) bool {
	var obj map[string]json.RawMessage
	if json.Unmarshal(body, &obj) != nil {
		return false
	}
	v := bytes.TrimSpace(obj[key])
	return len(v) > 0 && v[0] == '['
}

// listEntriesHave reports whether body's list under key is non-empty and its
// first entry has field.
func listEntriesHave(body []byte, key, field string) bool {
	var obj map[string][]map[string]json.RawMessage
	if json.Unmarshal(body, &obj) != nil || len(obj[key]) == 0 {
		return false
	}
	_, ok := obj[key][0][field]
	return ok
}

// ownedBy matches a /v1/models whose entries are all owned by owner.
func ownedBy(owner string) func(ProbeAnswer) bool {
	return func(a ProbeAnswer) bool {
		if a.Status != http.StatusOK {
			return false
		}
		var list struct {
			Data []struct {
				OwnedBy string `json:"owned_by"`
			} `json:"data"`
		}
		if json.Unmarshal(a.Body, &list) != nil || len(list.Data) == 0 {
			return false
		}
		for _, m := range list.Data {
			if m.OwnedBy != owner {
				return false
			}
		}
		return true
	}
}
