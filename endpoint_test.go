package olla

import (
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddy-olla/olla/fleet"
)

// TestCheckTimeoutClamped: a check_timeout that is not below the
// check_interval is accepted, as the standalone Olla accepts it, clamped to
// the interval with one warning naming the endpoint; an interval alone that
// is shorter than the default timeout halves the timeout, silently.
func TestCheckTimeoutClamped(t *testing.T) {
	tests := []struct {
		name              string
		interval, timeout time.Duration
		want              time.Duration
		warns             int
	}{
		{"timeout above interval", 2 * time.Second, 10 * time.Second, 2 * time.Second, 1},
		{"timeout equal to interval", 3 * time.Second, 3 * time.Second, 3 * time.Second, 1},
		{"timeout below interval", 5 * time.Second, time.Second, time.Second, 0},
		{"short interval alone", time.Second, 0, 500 * time.Millisecond, 0},
		{"defaults", 0, 0, fleet.DefaultCheckTimeout, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := &Endpoint{Name: "slow", URL: "http://127.0.0.1:9", Type: "ollama",
				CheckInterval: caddy.Duration(tt.interval), CheckTimeout: caddy.Duration(tt.timeout)}
			if err := e.validate(); err != nil {
				t.Fatalf("validate: %v", err)
			}
			core, logs := observer.New(zapcore.WarnLevel)
			s, err := e.resolve(caddy.NewReplacer(), zap.New(core))
			if err != nil {
				t.Fatalf("resolve: %v", err)
			}
			if s.CheckTimeout != tt.want {
				t.Errorf("check timeout %s, want %s", s.CheckTimeout, tt.want)
			}
			if logs.Len() != tt.warns {
				t.Fatalf("%d warnings, want %d: %v", logs.Len(), tt.warns, logs.All())
			}
			for _, w := range logs.All() {
				if w.ContextMap()["endpoint"] != "slow" {
					t.Errorf("warning %q does not name the endpoint: %v", w.Message, w.ContextMap())
				}
			}
		})
	}
}
