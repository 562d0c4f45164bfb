package olla

import (
	"context"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-olla/olla/discovery"
	"github.com/caddy-olla/olla/profiles"
)

// `type auto`: the endpoint's type is decided by probing it
// (discovery.ClassifyType, rules in profiles/classify.go) when it is first
// checked and again each time it recovers, and its health, model and load
// paths are resolved for that type. Until a server answers any probe it
// stays undecided, with the openai-compatible profile; an answer that fits
// no type, or several, makes it openai-compatible with a warning saying why.

const autoTypeName = "auto"

// autoFallback is the profile of an undecided or ambiguous endpoint.
var autoFallback, _ = profiles.Lookup("openai-compatible")

func isAutoType(typ string) bool { return strings.EqualFold(strings.TrimSpace(typ), autoTypeName) }

// autoDecision is one classification of an endpoint.
type autoDecision struct {
	class profiles.Classification
	at    time.Time
}

// autoStatus is a decision as the status routes show it.
type autoStatus struct {
	Type     string   `json:"type"`
	Evidence []string `json:"evidence,omitempty"`
	Warning  string   `json:"warning,omitempty"`
	At       string   `json:"decided_at,omitempty"`
	Pending  bool     `json:"pending,omitempty"` // no server has answered yet
}

func (st *endpointState) autoStatus() *autoStatus {
	if st.settings.Load().auto == nil {
		return nil
	}
	d := st.autoType.Load()
	if d == nil {
		return &autoStatus{Type: autoFallback.Name, Pending: true}
	}
	return &autoStatus{Type: d.class.Type, Evidence: d.class.Evidence, Warning: d.class.Warning, At: d.at.UTC().Format(time.RFC3339)}
}

// classify probes a `type auto` endpoint and, when the server answered,
// records the decision and puts the settings for its type in force. It
// returns the settings to use now.
func (a *App) classify(ctx context.Context, st *endpointState, s *endpointSettings) *endpointSettings {
	class, answers := discovery.ClassifyType(ctx, st.transport.Load(), s.url, s.header, discovery.DefaultClassifyTimeout)
	if ctx.Err() != nil {
		return s
	}
	answered := false
	for _, ans := range answers {
		answered = answered || ans.Status != 0
	}
	if !answered {
		return s // down: decided when it answers
	}
	prev := st.autoType.Swap(&autoDecision{class: class, at: time.Now()})
	fields := []zap.Field{zap.String("endpoint", s.name), zap.String("type", class.Type), zap.Strings("evidence", class.Evidence)}
	switch {
	case prev != nil && prev.class.Type != class.Type:
		a.logger.Warn("type auto: the endpoint answers as another type now", append(fields, zap.String("was", prev.class.Type))...)
	case class.Warning != "":
		a.logger.Warn("type auto: "+class.Warning, fields...)
	case prev == nil:
		a.logger.Info("type auto: decided", fields...)
	}
	typed := s.withType(class.Type)
	if typed == s {
		return s
	}
	if cur := st.settings.Load(); cur.auto == s.auto {
		st.settings.CompareAndSwap(cur, typed)
	}
	return typed
}

// keepAutoType gives a reloaded `type auto` endpoint the type last decided.
func (st *endpointState) keepAutoType(s *endpointSettings) *endpointSettings {
	if s.auto == nil {
		return s
	}
	if d := st.autoType.Load(); d != nil {
		return s.withType(d.class.Type)
	}
	return s
}

// withType is s for a decided type: the profile, and the health, model and
// load paths resolved again from the declaration. It returns s when the type
// is the one in force, or when the paths do not resolve (they did for the
// fallback, so only a bad override can fail, and it fails for every type).
func (s *endpointSettings) withType(typ string) *endpointSettings {
	p, ok := profiles.Lookup(typ)
	if !ok || p == s.profile {
		return s
	}
	n := *s
	n.profile, n.typ = p, p.Name
	var err error
	if n.healthURL, err = endpointSubURL(s.url, s.auto.HealthCheckURL, p.HealthPath); err != nil {
		return s
	}
	if n.modelsURL, err = endpointSubURL(s.url, s.auto.ModelURL, p.ModelsPath); err != nil {
		return s
	}
	n.loadSurfaces, n.loadInterval, n.loadTimeout = nil, 0, 0
	if err := n.resolveLoad(s.auto); err != nil {
		return s
	}
	return &n
}
