package sim

import (
	"errors"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Server is a Sim listening on a real TCP address.
type Server struct {
	*Sim
	URL  string // "http://127.0.0.1:PORT", no trailing slash
	Addr string // "127.0.0.1:PORT", the resolved listen address (kept by Restart)

	mu       sync.Mutex
	srv      *http.Server
	inflight atomic.Int64
}

// Start starts a simulator on 127.0.0.1 with a random free port.
func Start(cfg Config) (*Server, error) { return StartAt("127.0.0.1:0", cfg) }

// StartAt starts a simulator listening on addr ("host:port"; port 0 picks a
// free one).
func StartAt(addr string, cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Server{Sim: New(cfg)}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s.Addr = ln.Addr().String()
	s.URL = "http://" + s.Addr
	s.srv = s.serve(ln)
	return s, nil
}

// serve starts an http.Server on ln. The caller stores it in s.srv.
func (s *Server) serve(ln net.Listener) *http.Server {
	srv := &http.Server{
		Handler:           http.HandlerFunc(s.handle),
		ReadHeaderTimeout: 30 * time.Second,
	}
	go func() { _ = srv.Serve(ln) }()
	return srv
}

func (s *Server) handle(w http.ResponseWriter, r *http.Request) {
	s.inflight.Add(1)
	defer s.inflight.Add(-1)
	s.Sim.ServeHTTP(w, r)
}

// Close stops the listener and closes every connection, including those
// of requests in progress (streams end abruptly, hung requests are
// released), like a backend that died. It waits briefly for the handlers
// to return. Calling Close on a closed server does nothing.
func (s *Server) Close() {
	s.mu.Lock()
	srv := s.srv
	s.srv = nil
	s.mu.Unlock()
	if srv == nil {
		return
	}
	_ = srv.Close()
	deadline := time.Now().Add(5 * time.Second)
	for s.inflight.Load() > 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
}

// Restart listens again on the same address after Close (a backend that
// recovered). Counters, models and the fault are kept; like a restarted
// process it holds no model in memory (nothing is resident until used or
// loaded), its prefix cache is empty and vLLM's and SGLang's /metrics state
// a new process_start_time_seconds. It is an error to restart a running server.
func (s *Server) Restart() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil {
		return errors.New("sim: server " + s.Addr + " is running")
	}
	var ln net.Listener
	var err error
	// The port was just released; retry for a while in case the OS, on a
	// busy machine, is slow to let it go.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if ln, err = net.Listen("tcp", s.Addr); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		return err
	}
	s.Sim.unloadAll()
	// a new process: a later start time, never the same millisecond
	s.Sim.started.Store(max(time.Now().UnixMilli(), s.Sim.started.Load()+1))
	s.srv = s.serve(ln)
	return nil
}

// Running reports whether the server is listening.
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.srv != nil
}
