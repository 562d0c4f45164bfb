// Package redistest runs a real redis-server for tests, on a unix socket
// in the test's temporary directory (no TCP port to collide on).
package redistest

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
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
