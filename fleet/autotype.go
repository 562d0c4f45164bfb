package fleet

import (
	"context"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-olla/olla/discovery"
)

// `type auto`: the endpoint's type is decided by probing it
// (discovery.ClassifyType, rules in profiles/classify.go) when it is first
// checked, again each time it recovers, and when its health route fails;
// Settings.Retype resolves its health, model and load paths for that type.
// Until a server answers any probe it stays undecided, with the fallback
// profile it was declared with; an answer that fits no type, or several,
// makes it openai-compatible with a warning saying why.

// AutoType is the type name that asks for probing.
const AutoType = "auto"

// autoDecision is one classification of an endpoint.
type autoDecision struct {
	typ      string
	evidence []string
	warning  string
	at       time.Time
}

// AutoStatus is a decision as the status routes show it.
type AutoStatus struct {
	Type     string   `json:"type"`
	Evidence []string `json:"evidence,omitempty"`
	Warning  string   `json:"warning,omitempty"`
	At       string   `json:"decided_at,omitempty"`
	Pending  bool     `json:"pending,omitempty"` // no server has answered yet
}

// autoStatus is the decision for a `type auto` endpoint, nil for the others.
func (st *Endpoint) autoStatus(s *Settings) *AutoStatus {
	if s.Retype == nil {
		return nil
	}
	d := st.autoType.Load()
	if d == nil {
		return &AutoStatus{Type: s.Type, Pending: true}
	}
	return &AutoStatus{Type: d.typ, Evidence: d.evidence, Warning: d.warning, At: d.at.UTC().Format(time.RFC3339)}
}

// classify probes a `type auto` endpoint and, when the server answered,
// records the decision and puts the settings for its type in force. It
// returns the settings to use now.
func (st *Endpoint) classify(ctx context.Context, log *zap.Logger, s *Settings) *Settings {
	class, answers := discovery.ClassifyType(ctx, st.transport.Load(), s.URL, s.Header, discovery.DefaultClassifyTimeout)
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
	prev := st.autoType.Swap(&autoDecision{typ: class.Type, evidence: class.Evidence, warning: class.Warning, at: time.Now()})
	fields := []zap.Field{zap.String("endpoint", s.Name), zap.String("type", class.Type), zap.Strings("evidence", class.Evidence)}
	switch {
	case prev != nil && prev.typ != class.Type:
		log.Warn("type auto: the endpoint answers as another type now", append(fields, zap.String("was", prev.typ))...)
	case class.Warning != "":
		log.Warn("type auto: "+class.Warning, fields...)
	case prev == nil:
		log.Info("type auto: decided", fields...)
	}
	typed := s.Retype(s, class.Type)
	if typed == s {
		return s
	}
	if !st.settings.CompareAndSwap(s, typed) {
		// a reload swapped in other settings meanwhile: type those
		if cur := st.settings.Load(); cur.Retype != nil {
			st.settings.CompareAndSwap(cur, cur.Retype(cur, class.Type))
		}
	}
	return typed
}

// keepAutoType gives a reloaded `type auto` endpoint the type last decided.
func (st *Endpoint) keepAutoType(s *Settings) *Settings {
	if s.Retype == nil {
		return s
	}
	if d := st.autoType.Load(); d != nil {
		return s.Retype(s, d.typ)
	}
	return s
}
