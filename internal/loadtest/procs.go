package main

// Child processes: the simulator and the Caddy contenders. Every child runs
// in its own process group, so stopping it stops everything it started, and
// the supervisor stops whatever is left on exit (normal, failure or Ctrl-C).

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
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

// simSet is the simulator process and the base URLs of its backends.
type simSet struct {
	proc *child
	urls []string // "http://127.0.0.1:PORT"
}

// startSims starts one olla-sim process serving an Ollama backend with the
// test model on each address, and waits until all answer.
func startSims(ctx context.Context, sup *supervisor, bin string, addrs []string) (*simSet, error) {
	var args []string
	s := &simSet{}
	for i, a := range addrs {
		args = append(args, "-sim", fmt.Sprintf("ollama@%s=%s;name=sim-%c", a, testModel, 'a'+i))
		s.urls = append(s.urls, "http://"+a)
	}
	p, err := sup.start("olla-sim", "olla-sim", bin, args...)
	if err != nil {
		return nil, err
	}
	s.proc = p
	for _, u := range s.urls {
		if err := waitHTTP(ctx, p, 10*time.Second, func(c *http.Client) bool {
			res, err := c.Get(u + "/_sim/stats")
			if err != nil {
				return false
			}
			drain(res.Body)
			return res.StatusCode == http.StatusOK
		}); err != nil {
			return nil, fmt.Errorf("simulator %s: %w", u, err)
		}
	}
	return s, nil
}

// setTiming sets the pacing of every backend (see POST /_sim/timing).
func (s *simSet) setTiming(ctx context.Context, ttft time.Duration, tps float64, tokens int) error {
	body := fmt.Sprintf(`{"ttft":%q,"tokens_per_second":%g,"tokens":%d}`, ttft.String(), tps, tokens)
	for _, u := range s.urls {
		if err := controlCall(ctx, http.MethodPost, u+"/_sim/timing", body, nil); err != nil {
			return err
		}
	}
	return nil
}

// resetStats zeroes every backend's counters (DELETE /_sim/stats).
func (s *simSet) resetStats(ctx context.Context) error {
	for _, u := range s.urls {
		if err := controlCall(ctx, http.MethodDelete, u+"/_sim/stats", "", nil); err != nil {
			return err
		}
	}
	return nil
}

// inferenceCounts returns the /api/chat requests each backend received
// since the last reset.
func (s *simSet) inferenceCounts(ctx context.Context) ([]int64, error) {
	out := make([]int64, len(s.urls))
	for i, u := range s.urls {
		var st struct {
			ByPath map[string]int64 `json:"by_path"`
		}
		if err := controlCall(ctx, http.MethodGet, u+"/_sim/stats", "", &st); err != nil {
			return nil, err
		}
		out[i] = st.ByPath["POST "+chatPath]
	}
	return out, nil
}

// controlCall performs one simulator control request and decodes a JSON
// answer into into when it is not nil.
func controlCall(ctx context.Context, method, url, body string, into any) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	if err != nil {
		return err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, url, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, url, err)
	}
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %s: %s", method, url, res.Status, bytes.TrimSpace(b))
	}
	if into != nil {
		return json.Unmarshal(b, into)
	}
	return nil
}

// startContender starts c's Caddy and waits until a chat request through it
// succeeds (for the olla engine: until the first health probe and model
// discovery made the backends routable).
func startContender(ctx context.Context, sup *supervisor, caddyBin string, c contender, logName string) (*child, error) {
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
		return nil, fmt.Errorf("%s did not become ready: %w\n%s", c.name, err, p.logTail(15))
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
			return fmt.Errorf("process exited (%v); log %s:\n%s", p.err, p.log, p.logTail(15))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %s", limit)
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

// errProcessGone is reported when a contender died during its run.
var errProcessGone = errors.New("contender process exited during the run")
