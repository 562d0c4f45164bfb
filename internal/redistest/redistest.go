// Package redistest runs a real redis-server for tests, on a unix socket
// in the test's temporary directory (no TCP port to collide on).
package redistest

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Server is a redis-server a test started; it stops with the test.
type Server struct {
	t      testing.TB
	dir    string
	Socket string // the unix socket path, also a valid limits.NewRedis address
	cmd    *exec.Cmd
}

// Start starts redis-server. Without it the test is skipped, unless CI is
// set: CI installs it (.ci/run), so there a missing server is a failure.
func Start(t testing.TB) *Server {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("redis-server is not installed (CI installs the Debian package redis-server): %v", err)
		}
		t.Skip("redis-server is not installed: apt-get install redis-server to run this test")
	}
	dir := t.TempDir()
	s := &Server{t: t, dir: dir, Socket: filepath.Join(dir, "redis.sock")}
	s.Restart()
	t.Cleanup(s.Kill)
	return s
}

// Restart starts the server again after Kill (empty: no persistence).
func (s *Server) Restart() {
	s.t.Helper()
	s.cmd = exec.Command("redis-server", "--port", "0", "--unixsocket", s.Socket, "--unixsocketperm", "700",
		"--save", "", "--appendonly", "no", "--dir", s.dir)
	var logs strings.Builder
	s.cmd.Stdout, s.cmd.Stderr = &logs, &logs
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("starting redis-server: %v", err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		if c, err := net.Dial("unix", s.Socket); err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			s.Kill()
			s.t.Fatalf("redis-server did not start listening: %s", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Kill stops the server at once (SIGKILL), as a crash would.
func (s *Server) Kill() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.cmd = nil
	_ = os.Remove(s.Socket)
}

// client is a connection of the test's own, for measuring.
func (s *Server) client() *redis.Client {
	return redis.NewClient(&redis.Options{Network: "unix", Addr: s.Socket, MaxRetries: -1, DisableIdentity: true})
}

// ResetStats zeroes the server's command counts (CONFIG RESETSTAT).
func (s *Server) ResetStats() {
	s.t.Helper()
	c := s.client()
	defer c.Close()
	if err := c.ConfigResetStat(context.Background()).Err(); err != nil {
		s.t.Fatalf("CONFIG RESETSTAT: %v", err)
	}
}

// RoundTrips is how many commands clients sent since ResetStats, from the
// server's own counts (INFO commandstats, calls and rejected calls), with
// every count by command for the test's log. A script's own calls are
// counted apart (GET, SET, INCRBY, EXPIRE: none of them a client of ours
// sends alone), and a script cannot start another, so a script run is one
// round trip. Left out: the measurement's own INFO and CONFIG, and HELLO,
// which opens a pooled connection once, not once per request.
func (s *Server) RoundTrips() (int64, map[string]int64) {
	s.t.Helper()
	c := s.client()
	defer c.Close()
	info, err := c.Info(context.Background(), "commandstats").Result()
	if err != nil {
		s.t.Fatalf("INFO commandstats: %v", err)
	}
	stats := map[string]int64{}
	var n int64
	for _, line := range strings.Split(info, "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || !strings.HasPrefix(name, "cmdstat_") {
			continue
		}
		var calls int64
		for _, f := range strings.Split(rest, ",") {
			k, v, _ := strings.Cut(f, "=")
			if k == "calls" || k == "rejected_calls" {
				x, _ := strconv.ParseInt(v, 10, 64)
				calls += x
			}
		}
		cmd := strings.TrimPrefix(name, "cmdstat_")
		stats[cmd] = calls
		switch cmd {
		case "get", "set", "incrby", "expire", "info", "config|resetstat", "hello":
		default:
			n += calls
		}
	}
	return n, stats
}

// Count is how many keys match pattern (SCAN MATCH), for a test's
// "what did the proxies write".
func (s *Server) Count(pattern string) int {
	s.t.Helper()
	c := s.client()
	defer c.Close()
	n := 0
	iter := c.Scan(context.Background(), 0, pattern, 1000).Iterator()
	for iter.Next(context.Background()) {
		n++
	}
	if err := iter.Err(); err != nil {
		s.t.Fatalf("SCAN %s: %v", pattern, err)
	}
	return n
}
