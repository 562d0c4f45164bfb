package olla

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-olla/olla/admission"
	"github.com/caddy-olla/olla/fleet"
)

// The waiting room (App.room, admission.Queue) holds, for every site and
// config at once, the requests that found each of their endpoints at
// max_concurrency. It is process-wide because endpoints are: a slot freed
// on an endpoint two sites share goes to whichever waiter is next in line,
// and requests waiting across a reload keep their place.

// Queue is the `queue` block: when no candidate endpoint has room (every one
// is at its max_concurrency), a request waits instead of failing.
type Queue struct {
	// MaxSize bounds how many requests of this site wait at once; beyond
	// it a request gets 429 with a Retry-After. Default 100.
	MaxSize int `json:"max_size,omitempty"`
	// MaxWait bounds one request's wait; past it, 503 with a Retry-After.
	// Default 30s.
	MaxWait caddy.Duration `json:"max_wait,omitempty"`
	// Priority is a placeholder giving an integer priority (higher first),
	// clamped to -100..100. Give it a value the client cannot forge: one
	// derived from the authenticated identity (a map on
	// {http.auth.user.id}), never a header the client sends. Anything that
	// is not an integer counts as 0.
	Priority string `json:"priority,omitempty"`
	// FairBy is a placeholder giving the fairness key: within a priority,
	// waiting requests take turns across keys. Default the client IP
	// (IPv6 grouped by client_ipv6_prefix). Give it an identity the client
	// cannot mint, such as {http.auth.user.id}: a key from a client header
	// lets one client open as many lanes as it likes.
	FairBy string `json:"fair_by,omitempty"`
}

const (
	defaultQueueSize = 100
	defaultQueueWait = 30 * time.Second
	// maxQueueSize keeps a typo from promising memory we cannot give.
	maxQueueSize = 100_000
	// maxPriority bounds priorities (-maxPriority..maxPriority), so a
	// value that slips through means little more than a configured one.
	maxPriority = 100
	// maxEndpointConcurrency keeps a typo from meaning "no cap" in effect.
	maxEndpointConcurrency = 100_000
	// maxFairKey bounds a fairness key kept in the queue; longer ones are
	// hashed.
	maxFairKey = 128
)

// validate checks the block as written; 0 means the default.
func (q *Queue) validate() error {
	if q == nil {
		return nil
	}
	if q.MaxSize < 0 || q.MaxSize > maxQueueSize {
		return fmt.Errorf("queue max_size must be between 1 and %d (0 for the default %d), got %d", maxQueueSize, defaultQueueSize, q.MaxSize)
	}
	if q.MaxWait < 0 {
		return fmt.Errorf("queue max_wait must be positive, got %s", time.Duration(q.MaxWait))
	}
	return nil
}

// queuePolicy is a validated Queue with its site's bound.
type queuePolicy struct {
	bound    *admission.Bound
	maxWait  time.Duration
	priority string
	fairBy   string
}

// newQueuePolicy builds a validated block (nil: no queue).
func newQueuePolicy(q *Queue) *queuePolicy {
	if q == nil {
		return nil
	}
	p := &queuePolicy{bound: admission.NewBound(defaultQueueSize), maxWait: defaultQueueWait, priority: q.Priority, fairBy: q.FairBy}
	if q.MaxSize > 0 {
		p.bound = admission.NewBound(q.MaxSize)
	}
	if q.MaxWait > 0 {
		p.maxWait = time.Duration(q.MaxWait)
	}
	return p
}

// ticket describes r's place in the queue.
func (p *queuePolicy) ticket(r *http.Request, gates []admission.Gate) admission.Ticket {
	t := admission.Ticket{Gates: gates, MaxWait: p.maxWait, Bound: p.bound, Key: clientIP(r)}
	repl, _ := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	if repl == nil {
		return t
	}
	if p.priority != "" {
		if n, err := strconv.Atoi(strings.TrimSpace(repl.ReplaceAll(p.priority, ""))); err == nil {
			t.Priority = min(max(n, -maxPriority), maxPriority)
		}
	}
	if p.fairBy != "" {
		if k := repl.ReplaceAll(p.fairBy, ""); k != "" {
			t.Key = k
		}
	}
	if len(t.Key) > maxFairKey {
		sum := fnv.New64a()
		sum.Write([]byte(t.Key))
		t.Key = "h:" + strconv.FormatUint(sum.Sum64(), 36)
	}
	return t
}

// --- endpoints as admission gates ---

// Endpoints are the queue's gates: a slot freed on one (fleet.Endpoint.Leave
// through the room's Release) goes to the next request waiting for it.
var _ admission.Gate = (*fleet.Endpoint)(nil)

// wait queues the request for any of the endpoints it found full. It
// returns the endpoint that let it in, or nil with the answer to give.
func (p *picker) wait(ctx context.Context) (*fleet.Endpoint, *apiError) {
	if len(p.full) == 0 {
		return nil, nil
	}
	if p.queue == nil {
		return nil, &apiError{status: http.StatusServiceUnavailable, code: "endpoints_busy", retryAfter: time.Second,
			message: fmt.Sprintf("every endpoint that serves this request is at its max_concurrency (%s); retry shortly",
				strings.Join(candidates(p.full).names(), ", "))}
	}
	gates := make([]admission.Gate, len(p.full))
	for i, st := range p.full {
		gates[i] = st
	}
	start := time.Now()
	g, err := p.room.Wait(ctx, p.queue.ticket(p.req, gates))
	waited := time.Since(start)
	if p.metrics != nil {
		p.metrics.queueWait.Observe(waited.Seconds())
	}
	if err == nil {
		st := g.(*fleet.Endpoint)
		for i, x := range p.full {
			if x == st {
				p.full = append(p.full[:i], p.full[i+1:]...)
				break
			}
		}
		p.queued += waited
		if p.header != nil {
			p.header.Set("X-Olla-Queue-Time", strconv.FormatInt(p.queued.Milliseconds(), 10)+"ms")
		}
		return st, nil
	}
	reason := "client_gone"
	var refusal *apiError
	switch {
	case errors.Is(err, admission.ErrFull):
		reason = "full"
		refusal = &apiError{status: http.StatusTooManyRequests, code: "queue_full", retryAfter: p.room.RetryAfter(),
			message: fmt.Sprintf("every endpoint is busy and the queue is full (%d waiting, queue max_size); retry later", p.queue.bound.Max())}
	case errors.Is(err, admission.ErrTimeout):
		reason = "timeout"
		refusal = &apiError{status: http.StatusServiceUnavailable, code: "queue_timeout", retryAfter: p.room.RetryAfter(),
			message: fmt.Sprintf("every endpoint stayed busy for the whole %s this request could wait (queue max_wait); retry later", p.queue.maxWait)}
	}
	if p.metrics != nil {
		p.metrics.queueRejected.WithLabelValues(reason).Inc()
	}
	return nil, refusal
}

// queueStatus is the queue as the status routes show it: what waits now
// (every site), and this site's bound.
func (h *Handler) queueStatus() map[string]any {
	q := map[string]any{"depth": h.app.room.Depth(), "enabled": h.queue != nil}
	if h.queue != nil {
		q["site_waiting"] = h.queue.bound.Waiting()
		q["max_size"] = h.queue.bound.Max()
		q["max_wait"] = h.queue.maxWait.String()
	}
	return q
}

// queueKick is how often free room the queue was not told about (an
// endpoint back up, a parking over, a drain lifted, a cap raised) is offered
// to the requests waiting for it.
const queueKick = 250 * time.Millisecond

// kickQueue offers free room to waiting requests every queueKick, and
// samples the queue's depth for the dashboard, until ctx ends.
func (a *App) kickQueue(ctx context.Context) {
	t := time.NewTicker(queueKick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			depth := a.room.Depth()
			if depth > 0 {
				a.room.Kick()
			}
			a.activity.sampleQueue(int64(depth), now)
		}
	}
}
