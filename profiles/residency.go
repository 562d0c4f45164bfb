package profiles

import (
	"encoding/json"
	"fmt"
	"time"
)

// Residency surfaces: the routes of engines that load and evict models on
// demand and say which are loaded now. Each parser fills Signals' loaded set
// (LoadedKnown); a list longer than maxLoadedModels is refused whole, so a
// lying backend costs at most one capped body.
const (
	SignalsOMLXStatus     = "omlx-models-status" // oMLX GET /v1/models/status
	SignalsDMRPS          = "dmr-engines-ps"     // Docker Model Runner GET /engines/ps
	SignalsVLLMMLXStatus  = "vllm-mlx-status"    // vllm-mlx GET /v1/status
	SignalsLlamaModels    = "llamacpp-models"    // llama.cpp GET /models (router mode: per-model status)
	SignalsLemonadeHealth = "lemonade-health"    // Lemonade GET /api/v1/health
)

// ParseOMLXStatus reads oMLX's /v1/models/status: {"models":[{"id",
// "loaded":true,...}]} (a "data" list is read the same way). The models
// with loaded true are resident.
func ParseOMLXStatus(body []byte) (Signals, error) {
	var st struct {
		Models *[]omlxModelStatus `json:"models"`
		Data   *[]omlxModelStatus `json:"data"`
	}
	if err := decodeJSON(body, &st); err != nil {
		return Signals{}, fmt.Errorf("omlx /v1/models/status: %w", err)
	}
	list := st.Models
	if list == nil {
		list = st.Data
	}
	if list == nil {
		return Signals{}, fmt.Errorf("omlx /v1/models/status: no \"models\" list")
	}
	if n := len(*list); n > maxLoadedModels {
		return Signals{}, fmt.Errorf("omlx /v1/models/status: %d models, more than %d: ignored", n, maxLoadedModels)
	}
	s := Signals{LoadedKnown: true, loaded: map[string]struct{}{}, At: time.Now()}
	for _, m := range *list {
		if m.Loaded {
			s.addLoaded(m.ID)
		}
	}
	return s, nil
}

type omlxModelStatus struct {
	ID     string `json:"id"`
	Loaded bool   `json:"loaded"`
}

// ParseDMRPS reads Docker Model Runner's /engines/ps: a JSON array of
// running backends, [{"backend_name","model_name","mode","last_used",
// "loading"}]. A runner still loading is not resident yet.
func ParseDMRPS(body []byte) (Signals, error) {
	var ps *[]struct {
		ModelName string `json:"model_name"`
		Loading   bool   `json:"loading"`
	}
	if err := decodeJSON(body, &ps); err != nil {
		return Signals{}, fmt.Errorf("docker model runner /engines/ps: %w", err)
	}
	if ps == nil {
		return Signals{}, fmt.Errorf("docker model runner /engines/ps: not a list")
	}
	if n := len(*ps); n > maxLoadedModels {
		return Signals{}, fmt.Errorf("docker model runner /engines/ps: %d runners, more than %d: ignored", n, maxLoadedModels)
	}
	s := Signals{LoadedKnown: true, loaded: map[string]struct{}{}, At: time.Now()}
	for _, r := range *ps {
		if !r.Loading {
			s.addLoaded(r.ModelName)
		}
	}
	return s, nil
}

// ParseVLLMMLXStatus reads vllm-mlx's /v1/status: {"status":"running",
// "model", "num_running", "num_waiting", ...}. It gives the running and
// waiting counts; the model it serves is resident by the type's rule
// (ServesListed), since /v1/status names it by path, not by served name.
func ParseVLLMMLXStatus(body []byte) (Signals, error) {
	var st struct {
		Status     string   `json:"status"`
		NumRunning *float64 `json:"num_running"`
		NumWaiting *float64 `json:"num_waiting"`
	}
	if err := decodeJSON(body, &st); err != nil {
		return Signals{}, fmt.Errorf("vllm-mlx /v1/status: %w", err)
	}
	if st.Status == "" && st.NumRunning == nil && st.NumWaiting == nil {
		return Signals{}, fmt.Errorf("vllm-mlx /v1/status: no status, num_running or num_waiting")
	}
	s := Signals{At: time.Now()}
	if v, ok := countOf(st.NumRunning); ok {
		s.RunningKnown, s.Running = true, v
	}
	if v, ok := countOf(st.NumWaiting); ok {
		s.WaitingKnown, s.Waiting = true, v
	}
	return s, nil
}

// countOf is a reported count, if it is one: finite, not negative, capped.
func countOf(v *float64) (int64, bool) {
	if v == nil || *v != *v || *v < 0 || *v > maxCount {
		return 0, false
	}
	return int64(*v), true
}

// ParseLlamaModels reads llama.cpp's /models. In router mode (llama-server
// started with --models-dir or a preset) each entry has a status,
// {"value":"loaded"|"loading"|"unloaded"} (a bare string is read too), and
// the loaded ones are resident. Without router mode no entry has a status:
// the server serves its one model, and the result says nothing about
// residency (LoadedKnown false), so the type's rule applies.
func ParseLlamaModels(body []byte) (Signals, error) {
	var list struct {
		Data *[]struct {
			ID     string          `json:"id"`
			Status json.RawMessage `json:"status"`
		} `json:"data"`
	}
	if err := decodeJSON(body, &list); err != nil {
		return Signals{}, fmt.Errorf("llama.cpp /models: %w", err)
	}
	if list.Data == nil {
		return Signals{}, fmt.Errorf("llama.cpp /models: no \"data\" list")
	}
	if n := len(*list.Data); n > maxLoadedModels {
		return Signals{}, fmt.Errorf("llama.cpp /models: %d models, more than %d: ignored", n, maxLoadedModels)
	}
	s := Signals{At: time.Now()}
	for _, m := range *list.Data {
		value, ok := routerStatus(m.Status)
		if !ok {
			continue
		}
		if s.loaded == nil {
			s.LoadedKnown, s.loaded = true, map[string]struct{}{}
		}
		if value == "loaded" {
			s.addLoaded(m.ID)
		}
	}
	return s, nil
}

// routerStatus reads a router-mode status: {"value":"loaded",...} or
// "loaded". ok is false when there is none.
func routerStatus(raw json.RawMessage) (string, bool) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", false
	}
	var v string
	if json.Unmarshal(raw, &v) == nil {
		return v, v != ""
	}
	var obj struct {
		Value string `json:"value"`
	}
	if json.Unmarshal(raw, &obj) == nil && obj.Value != "" {
		return obj.Value, true
	}
	return "", false
}

// ParseLemonadeHealth reads Lemonade's /api/v1/health: {"status":"ok",
// "model_loaded":"name", "all_models_loaded":[{"model_name",...}]}. Older
// servers name only model_loaded (null or "" when none is).
func ParseLemonadeHealth(body []byte) (Signals, error) {
	var h struct {
		Status      string  `json:"status"`
		ModelLoaded *string `json:"model_loaded"`
		All         *[]struct {
			ModelName string `json:"model_name"`
		} `json:"all_models_loaded"`
	}
	if err := decodeJSON(body, &h); err != nil {
		return Signals{}, fmt.Errorf("lemonade /api/v1/health: %w", err)
	}
	if h.All == nil && h.Status == "" {
		return Signals{}, fmt.Errorf("lemonade /api/v1/health: no status or loaded models")
	}
	if h.All != nil && len(*h.All) > maxLoadedModels {
		return Signals{}, fmt.Errorf("lemonade /api/v1/health: %d loaded models, more than %d: ignored", len(*h.All), maxLoadedModels)
	}
	s := Signals{LoadedKnown: true, loaded: map[string]struct{}{}, At: time.Now()}
	if h.ModelLoaded != nil {
		s.addLoaded(*h.ModelLoaded)
	}
	if h.All != nil {
		for _, m := range *h.All {
			s.addLoaded(m.ModelName)
		}
	}
	return s, nil
}
