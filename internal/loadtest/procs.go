package main

// Child processes: the simulator and the Caddy contenders. Every child runs
// in its own process group, so stopping it stops everything it started, and
// the supervisor stops whatever is left on exit (normal, failure or Ctrl-C).

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// supervisor starts child processes and remembers them until they stop.
type supervisor struct {
	logDir string
	env    []string

	mu       sync.Mutex
	children map[*child]struct{}
}

// child is one running process.
type child struct {
	name string
	cmd  *exec.Cmd
	log  string        // path of its combined stdout/stderr
	done chan struct{} // closed when the process has exited
	err  error         // its exit status, valid after done
	sup  *supervisor
}

// newSupervisor returns a supervisor writing child logs under logDir.
func newSupervisor(logDir string, env []string) *supervisor {
	return &supervisor{logDir: logDir, env: env, children: map[*child]struct{}{}}
}

// start runs bin with args in a new process group. Its output goes to
// logDir/<logName>.log.
func (s *supervisor) start(name, logName, bin string, args ...string) (*child, error) {
	path := filepath.Join(s.logDir, logName+".log")
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = s.env
	cmd.Stdout, cmd.Stderr = f, f
	// Own process group: a terminal's Ctrl-C reaches only us, and we stop
	// the group. Pdeathsig is the backstop if this process dies hard.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	c := &child{name: name, cmd: cmd, log: path, done: make(chan struct{}), sup: s}
	s.mu.Lock()
	s.children[c] = struct{}{}
	s.mu.Unlock()
	go func() {
		c.err = cmd.Wait()
		f.Close()
		s.mu.Lock()
		delete(s.children, c)
		s.mu.Unlock()
		close(c.done)
	}()
	return c, nil
}

// pid is the child's process id (also its process group id).
func (c *child) pid() int { return c.cmd.Process.Pid }

// exited reports whether the process has ended.
func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM to the child's process group, then SIGKILL if it has
// not exited within grace, and waits for it.
func (c *child) stop(grace time.Duration) {
	if c.exited() {
		return
	}
	_ = syscall.Kill(-c.pid(), syscall.SIGTERM)
	select {
	case <-c.done:
		return
	case <-time.After(grace):
	}
	_ = syscall.Kill(-c.pid(), syscall.SIGKILL)
	select {
	case <-c.done:
	case <-time.After(5 * time.Second):
	}
}

// stopAll stops every child still running.
func (s *supervisor) stopAll() {
	s.mu.Lock()
	left := make([]*child, 0, len(s.children))
	for c := range s.children {
		left = append(left, c)
	}
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, c := range left {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.stop(3 * time.Second)
		}()
	}
	wg.Wait()
}

// logTail returns the last lines of the child's log, for error messages.
func (c *child) logTail(lines int) string {
	b, err := os.ReadFile(c.log)
	if err != nil {
		return ""
	}
	all := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}

// raiseNoFile lifts RLIMIT_NOFILE to want (or as far as the hard limit
// allows). Setting it explicitly also makes os/exec children inherit the
// raised limit instead of the original one. It returns the soft limit now
// in force.
func raiseNoFile(want uint64) (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("reading RLIMIT_NOFILE: %w", err)
	}
	if lim.Cur >= want {
		return lim.Cur, syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	}
	if lim.Max < want {
		raised := syscall.Rlimit{Cur: want, Max: want}
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised); err == nil {
			return want, nil
		}
		want = lim.Max // not privileged: settle for the hard limit
	}
	lim.Cur = want
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("raising RLIMIT_NOFILE to %d: %w", want, err)
	}
	return lim.Cur, nil
}

// peakRSS reads VmHWM (the resident set's high-water mark) of pid in KiB.
func peakRSS(pid int) (int64, error) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			fields := strings.Fields(rest)
			if len(fields) == 0 {
				break
			}
			return strconv.ParseInt(fields[0], 10, 64)
		}
	}
	return 0, fmt.Errorf("no VmHWM in /proc/%d/status", pid)
}

// addrOf is the loopback address of port.
func addrOf(port int) string { return "127.0.0.1:" + strconv.Itoa(port) }

// checkPortsFree fails if any address is already taken, so a stray process
// is named up front instead of surfacing as odd results.
func checkPortsFree(addrs []string) error {
	for _, a := range addrs {
		l, err := net.Listen("tcp", a)
		if err != nil {
			return fmt.Errorf("%s is not free (another run still going? see -port-base/-admin-base): %w", a, err)
		}
		l.Close()
	}
	return nil
}

// ephemeralClash reports which of addrs lie in the kernel's range of
// ephemeral ports, where an outgoing connection may hold one as its source
// port and make the listen fail; "" when none do or the range is unknown.
func ephemeralClash(addrs []string) string {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return ""
	}
	lo, err1 := strconv.Atoi(f[0])
	hi, err2 := strconv.Atoi(f[1])
	if err1 != nil || err2 != nil {
		return ""
	}
	var clash []string
	for _, a := range addrs {
		_, p, _ := net.SplitHostPort(a)
		if n, err := strconv.Atoi(p); err == nil && n >= lo && n <= hi {
			clash = append(clash, p)
		}
	}
	if len(clash) == 0 {
		return ""
	}
	return fmt.Sprintf("ports %s are in the ephemeral range %d-%d; under load a connection may take one first (choose -port-base/-admin-base below %d)",
		strings.Join(clash, ", "), lo, hi, lo)
}

// startContender starts c's Caddy and waits until a chat request through it
// succeeds (for the olla engine: until the first health probe and model
// discovery made the backends routable).
//
// A process that exits at once (its port briefly still held, say) is
// started again, up to three times.
func startContender(ctx context.Context, sup *supervisor, caddyBin string, c contender, logName string) (*child, error) {
	var err error
	for attempt := 1; attempt <= 3; attempt++ {
		var p *child
		p, err = startContenderOnce(ctx, sup, caddyBin, c, logName)
		if err == nil || !errors.Is(err, errExitedEarly) || ctx.Err() != nil {
			return p, err
		}
		if !sleepUntil(ctx, time.Now().Add(time.Second)) {
			return nil, ctx.Err()
		}
	}
	return nil, err
}

// startContenderOnce is one attempt of startContender.
func startContenderOnce(ctx context.Context, sup *supervisor, caddyBin string, c contender, logName string) (*child, error) {
	p, err := sup.start(c.name, logName, caddyBin, "run", "--config", c.config, "--adapter", "caddyfile")
	if err != nil {
		return nil, err
	}
	body := requestBody(false)
	err = waitHTTP(ctx, p, 20*time.Second, func(hc *http.Client) bool {
		res, err := hc.Post(c.chatURL(), "application/json", bytes.NewReader(body))
		if err != nil {
			return false
		}
		drain(res.Body)
		return res.StatusCode == http.StatusOK
	})
	if err != nil {
		p.stop(3 * time.Second)
		return nil, fmt.Errorf("%s did not become ready: %w", c.name, err)
	}
	return p, nil
}

// waitHTTP polls ok every 50 ms until it reports true, the process exits,
// ctx ends or limit passes.
func waitHTTP(ctx context.Context, p *child, limit time.Duration, ok func(*http.Client) bool) error {
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 2 * time.Second}
	deadline := time.Now().Add(limit)
	for {
		if ok(hc) {
			return nil
		}
		if p.exited() {
			return fmt.Errorf("%w (%v); log %s:\n%s", errExitedEarly, p.err, p.log, p.logTail(15))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %s (log %s)", limit, p.log)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// logErrorLines counts the error-level entries in a Caddy log and returns
// the first one, to point at a contender's own complaints.
func logErrorLines(path string) (int, string) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, ""
	}
	n, first := 0, ""
	for _, line := range bytes.Split(b, []byte("\n")) {
		if bytes.Contains(line, []byte(`"level":"error"`)) {
			if n == 0 {
				first = string(line)
			}
			n++
		}
	}
	return n, first
}

// drain reads a little of body and closes it, so the connection is reused.
func drain(body io.ReadCloser) {
	_, _ = io.Copy(io.Discard, io.LimitReader(body, 1<<20))
	body.Close()
}

// Sentinel errors: a process that ended before it was ready, and a
// contender that died during its run.
var (
	errExitedEarly = errors.New("process exited")
	errProcessGone = errors.New("contender process exited during the run")
)
