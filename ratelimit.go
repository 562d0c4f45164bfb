package olla

import (
	"fmt"
	"math"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/puzpuzpuz/xsync/v3"
	"golang.org/x/time/rate"

	"github.com/caddy-olla/olla/fleet"
)

// Rate limit defaults.
const (
	defaultBurst           = 10
	defaultRateIdleTimeout = 10 * time.Minute
)

// rateLimiter is a handler's token buckets: one global, one per client IP
// for /olla/ routes, one per client IP for the health and status routes,
// and one per endpoint. Idle client buckets are evicted as requests pass,
// so memory stays bounded under many client IPs without a goroutine.
type rateLimiter struct {
	global     *rate.Limiter // nil: no global limit
	perIP      limitSpec
	health     limitSpec
	perEP      limitSpec
	clients    *xsync.MapOf[string, *clientBucket]
	healthers  *xsync.MapOf[string, *clientBucket]
	endpoints  *xsync.MapOf[*fleet.Endpoint, *rate.Limiter]
	idle       time.Duration
	lastSweep  atomic.Int64
	now        func() time.Time // injectable clock for tests
	headerRate int              // requests per minute reported in X-RateLimit-Limit
}

// limitSpec is one kind of bucket; zero rate means no limit.
type limitSpec struct {
	perMinute int
	burst     int
}

func (l limitSpec) on() bool { return l.perMinute > 0 }

func (l limitSpec) limiter() *rate.Limiter {
	return rate.NewLimiter(rate.Limit(float64(l.perMinute)/60), l.burst)
}

// clientBucket is one client's bucket and when it was last used.
type clientBucket struct {
	lim  *rate.Limiter
	seen atomic.Int64 // unix nanos
}

func newRateLimiter(cfg *RateLimits) *rateLimiter {
	if cfg == nil {
		return nil
	}
	burst := cfg.BurstSize
	if burst == 0 {
		burst = defaultBurst
	}
	healthBurst := cfg.HealthBurstSize
	if healthBurst == 0 {
		healthBurst = burst
	}
	rl := &rateLimiter{
		perIP:     limitSpec{cfg.PerIPRequestsPerMinute, burst},
		health:    limitSpec{cfg.HealthRequestsPerMinute, healthBurst},
		perEP:     limitSpec{cfg.PerEndpointRequestsPerMinute, burst},
		clients:   xsync.NewMapOf[string, *clientBucket](),
		healthers: xsync.NewMapOf[string, *clientBucket](),
		endpoints: xsync.NewMapOf[*fleet.Endpoint, *rate.Limiter](),
		idle:      defaultRateIdleTimeout,
		now:       time.Now,
	}
	if cfg.IdleTimeout > 0 {
		rl.idle = time.Duration(cfg.IdleTimeout)
	}
	if cfg.GlobalRequestsPerMinute > 0 {
		rl.global = limitSpec{cfg.GlobalRequestsPerMinute, burst}.limiter()
	}
	rl.headerRate = cfg.PerIPRequestsPerMinute
	if rl.headerRate == 0 {
		rl.headerRate = cfg.GlobalRequestsPerMinute
	}
	return rl
}

// verdict is a limiter's answer for one request.
type verdict struct {
	allowed    bool
	bucket     string // which bucket refused
	limit      int    // requests per minute
	remaining  int
	reset      time.Time
	retryAfter time.Duration
}

// take spends one token from lim, or says how long to wait for one.
func take(lim *rate.Limiter, now time.Time) (bool, time.Duration) {
	r := lim.ReserveN(now, 1)
	if !r.OK() {
		return false, time.Minute
	}
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}

// allowProxy checks a request on an /olla/ route: the client's own bucket
// first (so one noisy client spends only its own tokens), then the global.
func (rl *rateLimiter) allowProxy(clientIP string) verdict {
	now := rl.now()
	rl.maybeSweep(now)
	v := verdict{allowed: true, limit: rl.headerRate}
	if rl.perIP.on() {
		b := rl.bucket(rl.clients, clientIP, rl.perIP, now)
		if ok, wait := take(b.lim, now); !ok {
			v = verdict{bucket: "client", limit: rl.perIP.perMinute, retryAfter: wait}
		}
		v.remaining, v.reset = tokensLeft(b.lim, now)
		if !v.allowed {
			v.bucket = "client"
			return v
		}
	}
	if rl.global != nil {
		if ok, wait := take(rl.global, now); !ok {
			return verdict{bucket: "global", limit: rl.headerRate, retryAfter: wait, reset: now.Add(wait)}
		}
		if !rl.perIP.on() {
			v.remaining, v.reset = tokensLeft(rl.global, now)
		}
	}
	return v
}

// allowHealth checks a request on a health or status route, in its own bucket.
func (rl *rateLimiter) allowHealth(clientIP string) verdict {
	if !rl.health.on() {
		return verdict{allowed: true}
	}
	now := rl.now()
	rl.maybeSweep(now)
	b := rl.bucket(rl.healthers, clientIP, rl.health, now)
	ok, wait := take(b.lim, now)
	v := verdict{allowed: ok, limit: rl.health.perMinute, retryAfter: wait, bucket: "health"}
	v.remaining, v.reset = tokensLeft(b.lim, now)
	return v
}

// allowEndpoint spends a token of an endpoint's own bucket; a full
// endpoint is skipped like a busy one.
func (rl *rateLimiter) allowEndpoint(st *fleet.Endpoint) bool {
	if rl == nil || !rl.perEP.on() {
		return true
	}
	lim, _ := rl.endpoints.LoadOrCompute(st, rl.perEP.limiter)
	ok, _ := take(lim, rl.now())
	return ok
}

func (rl *rateLimiter) bucket(m *xsync.MapOf[string, *clientBucket], ip string, spec limitSpec, now time.Time) *clientBucket {
	b, _ := m.LoadOrCompute(ip, func() *clientBucket { return &clientBucket{lim: spec.limiter()} })
	b.seen.Store(now.UnixNano())
	return b
}

// maybeSweep evicts idle client buckets, at most once per half idle
// period, on whichever request wins the race to do it.
func (rl *rateLimiter) maybeSweep(now time.Time) {
	last := rl.lastSweep.Load()
	if now.UnixNano()-last < int64(rl.idle/2) || !rl.lastSweep.CompareAndSwap(last, now.UnixNano()) {
		return
	}
	cutoff := now.Add(-rl.idle).UnixNano()
	for _, m := range []*xsync.MapOf[string, *clientBucket]{rl.clients, rl.healthers} {
		m.Range(func(ip string, b *clientBucket) bool {
			if b.seen.Load() < cutoff {
				m.Delete(ip)
			}
			return true
		})
	}
}

// tokensLeft is the bucket's whole tokens and when it is full again.
func tokensLeft(lim *rate.Limiter, now time.Time) (int, time.Time) {
	tokens := lim.TokensAt(now)
	missing := float64(lim.Burst()) - tokens
	var full time.Time
	if lim.Limit() > 0 && missing > 0 {
		full = now.Add(time.Duration(missing / float64(lim.Limit()) * float64(time.Second)))
	} else {
		full = now
	}
	return int(math.Max(0, math.Floor(tokens))), full
}

// setHeaders puts the X-RateLimit-* headers (and Retry-After on a refusal).
func (v verdict) setHeaders(h http.Header) {
	if v.limit == 0 {
		return
	}
	h.Set("X-Ratelimit-Limit", strconv.Itoa(v.limit))
	h.Set("X-Ratelimit-Remaining", strconv.Itoa(v.remaining))
	if !v.reset.IsZero() {
		h.Set("X-Ratelimit-Reset", strconv.FormatInt(v.reset.Unix(), 10))
	}
}

// refuse answers a request a bucket refused.
func (rq *request) refuse(v verdict) error {
	rq.h.app.metrics.rateLimited.WithLabelValues(v.bucket).Inc()
	return rq.fail(apiError{status: http.StatusTooManyRequests, code: "rate_limit_exceeded", retryAfter: v.retryAfter,
		message: fmt.Sprintf("rate limit exceeded (%s bucket: %d requests per minute); retry after %s",
			v.bucket, v.limit, v.retryAfter.Round(time.Second).String())})
}
