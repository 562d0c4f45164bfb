package limits

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis is a Store in Redis (or Valkey), shared by every instance that
// names the same server. Take is one Lua script that checks and counts
// atomically, so N instances enforce one limit. Add costs no round trip of
// its own: it is buffered (see batch.go) and sent with the next Take, or
// by a timer when no Take comes, so a request costs one round trip at
// most. Counters are plain integers under "olla:limits:<name>:<window>"
// with an expiry at their window's end.
type Redis struct {
	client  *redis.Client
	timeout time.Duration
	batch   batch
}

// redisTimeout bounds one store operation: a slow Redis costs a request
// this much at most, then the caller fails open or closed.
const redisTimeout = 500 * time.Millisecond

// NewRedis connects (lazily) to addr: host:port, a unix socket path, or a
// redis://, rediss:// or unix:// URL (which may carry a password and a
// database). Connection errors surface on the first operation and the
// client reconnects by itself once the server is back.
func NewRedis(addr string) (*Redis, error) {
	client, err := DialRedis(addr, redisTimeout)
	if err != nil {
		return nil, err
	}
	s := &Redis{client: client, timeout: redisTimeout}
	s.batch.init(s.flush)
	return s, nil
}

// DialRedis makes a client for addr (as NewRedis takes it) whose every
// call fails after timeout rather than retry: the caller's policy decides
// what a failure means. It connects lazily and reconnects by itself.
func DialRedis(addr string, timeout time.Duration) (*redis.Client, error) {
	var opts *redis.Options
	switch {
	case strings.Contains(addr, "://"):
		o, err := redis.ParseURL(addr)
		if err != nil {
			return nil, fmt.Errorf("redis address: %w", redactURL(err, addr))
		}
		opts = o
	case strings.HasPrefix(addr, "/"):
		opts = &redis.Options{Network: "unix", Addr: addr}
	default:
		opts = &redis.Options{Addr: addr}
	}
	opts.DialTimeout, opts.ReadTimeout, opts.WriteTimeout = timeout, timeout, timeout
	opts.MaxRetries = -1 // a failed call fails now; the caller's policy decides
	opts.PoolSize = max(opts.PoolSize, 64)
	// no CLIENT SETINFO on connect: older servers and proxies refuse it
	opts.DisableIdentity = true
	quietOnce.Do(func() { redis.SetLogger(quiet{}) })
	return redis.NewClient(opts), nil
}

// quiet drops the client's own log lines (to stderr, with addresses): the
// caller reports store failures in Caddy's log, once per interval.
type quiet struct{}

func (quiet) Printf(context.Context, string, ...any) {}

var quietOnce sync.Once

// redactURL keeps a URL's password out of an error.
func redactURL(err error, addr string) error {
	msg := err.Error()
	if i := strings.Index(addr, "@"); i >= 0 {
		msg = strings.ReplaceAll(msg, addr[:i], "<credentials>")
	}
	return errors.New(msg)
}

// Close sends what is still buffered (within the store's timeout), stops
// the flush timer and closes the client's connections.
func (s *Redis) Close() error {
	s.batch.close()
	return s.client.Close()
}

// redisKey is c's key in its current window and how long it must live,
// in seconds: to its window's end and a minute more, so an instance whose
// clock is a little behind still finds it. A TTL rather than a time, so
// the server's clock does not matter.
func redisKey(now time.Time, c Counter) (string, int64) {
	id, end := c.Window.bounds(now)
	ttl := int64(end.Sub(now)/time.Second) + 61
	return "olla:limits:" + c.Name() + ":" + strconv.FormatInt(id, 10), ttl
}

// readCounter is the scripts' common start: read(key) is a counter's
// value, 0 for none; a value that is not an integer raises an error (a
// store holding garbage is a store failure, not a zero), and a negative
// one reads as 0 and is reset (counts are never negative). add(key, n,
// ttl) adds n (INCRBY: exact 64-bit integers) and sets the key's TTL; a
// counter holding garbage restarts from n, so a buffered count is never
// stuck behind it.
const readCounter = `
local function read(key)
  local raw = redis.call("GET", key)
  if not raw then return 0 end
  local v = tonumber(raw)
  if v == nil or v ~= math.floor(v) then
    error({err = "olla: counter " .. key .. " holds a non-integer"})
  end
  if v < 0 then
    redis.call("SET", key, 0)
    return 0
  end
  return v
end
local function add(key, n, ttl)
  local raw = redis.call("GET", key)
  local v = raw and tonumber(raw)
  if raw and (v == nil or v ~= math.floor(v) or v < 0) then
    redis.call("SET", key, 0)
  end
  redis.call("INCRBY", key, n)
  redis.call("EXPIRE", key, ttl)
end
`

// takeScript adds the buffered counts, then checks every counter of the
// request and, when none is over (or force), adds each one's n. KEYS: the
// request's counters, then the buffered ones. ARGV: force, the number of
// the request's counters, limit, n and TTL per request counter, then n
// and TTL per buffered one. Every read that may fail comes before the
// first write, so a failed script has changed nothing and its buffered
// counts can be sent again.
var takeScript = redis.NewScript(readCounter + `
local force = ARGV[1] == "1"
local nt = tonumber(ARGV[2])
for i = 1, nt do read(KEYS[i]) end
for j = nt + 1, #KEYS do
  local a = 2 + 3*nt + 2*(j-nt) - 1
  add(KEYS[j], ARGV[a], ARGV[a+1])
end
local over, used = -1, 0
for i = 1, nt do
  local v = read(KEYS[i])
  local limit = tonumber(ARGV[3*i])
  local need = math.max(tonumber(ARGV[3*i+1]), 1)
  if over < 0 and limit > 0 and v + need > limit then
    over, used = i - 1, v
  end
end
if over < 0 or force then
  for i = 1, nt do
    if tonumber(ARGV[3*i+1]) > 0 then add(KEYS[i], ARGV[3*i+1], ARGV[3*i+2]) end
  end
end
return {over, used}
`)

// addScript adds each counter's n. ARGV: n and TTL per key.
var addScript = redis.NewScript(readCounter + `
for i, key in ipairs(KEYS) do
  add(key, ARGV[2*i-1], ARGV[2*i])
end
return 1
`)

// Take implements Store.
func (s *Redis) Take(ctx context.Context, now time.Time, cs []Counter, force bool) (Result, error) {
	res := Result{Over: -1}
	if len(cs) == 0 {
		return res, nil
	}
	buffered := s.batch.take()
	keys := make([]string, len(cs), len(cs)+len(buffered))
	args := make([]any, 2, 2+3*len(cs)+2*len(buffered))
	args[0], args[1] = "0", len(cs)
	if force {
		args[0] = "1"
	}
	for i, c := range cs {
		k, exp := redisKey(now, c)
		keys[i] = k
		args = append(args, c.Limit, c.N, exp)
	}
	for k, a := range buffered {
		keys = append(keys, k)
		args = append(args, a.n, a.ttl)
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	out, err := takeScript.Run(ctx, s.client, keys, args...).Int64Slice()
	if err != nil {
		s.batch.putBack(buffered)
		return res, fmt.Errorf("redis: %w", err)
	}
	if len(out) != 2 || out[0] >= int64(len(cs)) || out[0] < -1 {
		return res, fmt.Errorf("redis: unexpected answer %v", out)
	}
	res.Over, res.Used = int(out[0]), max(out[1], 0)
	return res, nil
}

// Add implements Store: the counts are buffered, to be sent with the next
// Take or by the flush timer (batch.go). It fails only when the buffer is
// full and cannot be sent.
func (s *Redis) Add(ctx context.Context, now time.Time, cs []Counter) error {
	full := false
	for _, c := range cs {
		if c.N <= 0 {
			continue
		}
		k, exp := redisKey(now, c)
		full = s.batch.add(k, c.N, exp) || full
	}
	if !full {
		return nil
	}
	// the buffer is at its bound: send it now rather than lose counts,
	// even when the request that filled it has ended
	return s.flush(context.WithoutCancel(ctx))
}

// flush sends every buffered count in one round trip; on failure they go
// back into the buffer (within its bound) for the next try.
func (s *Redis) flush(ctx context.Context) error {
	buffered := s.batch.take()
	if len(buffered) == 0 {
		return nil
	}
	keys := make([]string, 0, len(buffered))
	args := make([]any, 0, 2*len(buffered))
	for k, a := range buffered {
		keys = append(keys, k)
		args = append(args, a.n, a.ttl)
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	if err := addScript.Run(ctx, s.client, keys, args...).Err(); err != nil {
		s.batch.putBack(buffered)
		return fmt.Errorf("redis: %w", err)
	}
	return nil
}

// Peek implements Store: one MGET. A value that is not a whole number
// reads as 0 here (the page shows what it can; Take reports the fault).
func (s *Redis) Peek(ctx context.Context, now time.Time, cs []Counter) ([]int64, error) {
	out := make([]int64, len(cs))
	if len(cs) == 0 {
		return out, nil
	}
	keys := make([]string, len(cs))
	for i, c := range cs {
		keys[i], _ = redisKey(now, c)
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	vals, err := s.client.MGet(ctx, keys...).Result()
	if err != nil {
		return nil, fmt.Errorf("redis: %w", err)
	}
	for i, v := range vals {
		if str, ok := v.(string); ok {
			if n, err := strconv.ParseInt(str, 10, 64); err == nil && n > 0 {
				out[i] = n
			}
		}
	}
	return out, nil
}
