// Command loadtest is the load harness behind `make loadtest`. It measures
// the two Olla engines against Caddy's own reverse_proxy, the yardstick of
// DESIGN.md, with the same load on the same simulated backends in the same run.
//
// Layout of a run (everything on 127.0.0.1):
//
//   - one bin/olla-sim process serves two Ollama backends that both have the
//     model; each scenario sets their pacing through POST /_sim/timing;
//   - each contender is its own bin/caddy process with a generated
//     Caddyfile and its own admin address (for pprof): the olla engine, the
//     sherpa engine, and a plain reverse_proxy round-robin to the same
//     backends under the same /olla/ollama/ path space;
//   - every measured run starts a fresh Caddy for its contender, drives the
//     load (warm-up, then the measured window), reads the process's VmHWM
//     (peak RSS) from /proc and stops it, so no run inherits another's heap;
//   - rounds interleave the contenders (olla, sherpa, rp; then sherpa, rp,
//     olla; ...) and the report gives the median and range over rounds;
//   - scenario (h), hostile clients on loaded backends (hostile.go), is a
//     correctness check too: one run per contender, 1,000 paced streams
//     while the simulators' health route answers after the contenders'
//     check_timeout and 300 more clients keep resetting their connection
//     mid-stream; it counts what failed that a backend could serve, cut
//     streams, breakers opened and endpoints taken offline;
//   - scenario (r), reload under load (reload.go), is a correctness check
//     rather than a measurement: one run per contender, 200 long streams,
//     20 forced config reloads through the admin API while they run, then
//     a count of failed and truncated streams and a comparison of the
//     endpoints' health before and after.
//
// Three more modes replace -scenarios when given: -routing (routing.go,
// `make loadtest-routing`), multi-turn sessions on fleets whose latency
// depends on prefix caches, model residency and speed, with Caddy's and
// olla's balancers side by side; -overload (overload.go, `make
// loadtest-overload`), admission control when every backend is full; and
// -keylimits (keylimits.go, `make loadtest-keylimits`), the cost of
// key_limits in memory and in Redis against none.
// They print markdown tables.
//
// It prints one table per scenario, a one-line summary of the targets
// (report only: a miss never changes the exit status) and the top
// functions of the CPU profiles taken in round 1.
//
//	go run ./internal/loadtest -scenarios a -duration 3s -rounds 1
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"
	"time"
)

// options are the command-line flags.
type options struct {
	scenarios []scenario
	duration  time.Duration
	warmup    time.Duration
	rounds    int
	out       string
	caddyBin  string
	simBin    string
	goTool    string
	portBase  int
	adminBase int
	profile   string // scenario keys whose round 1 is CPU-profiled

	// routing fleets (routing.go) and the overload scenario (overload.go);
	// when either is given, only they run.
	routing         []fleet
	routingDuration time.Duration
	routingOnly     string
	routingBaseline string
	routingAblate   bool
	routingPenalty  string
	overload        bool
	keyLimits       bool
}

func main() {
	opts, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, opts, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// parseFlags reads the flags; errors are reported on stderr.
func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("loadtest", flag.ContinueOnError)
	fs.SetOutput(stderr)
	keys := fs.String("scenarios", "a,b,c,h,r", "scenarios to run, comma-separated: "+scenarioHelp())
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "measured time per run (after the warm-up)")
	fs.DurationVar(&o.warmup, "warmup", 2*time.Second, "warm-up per run, not measured (clients start spread over its first second)")
	fs.IntVar(&o.rounds, "rounds", 3, "rounds; each runs every contender once, in a rotated order")
	fs.StringVar(&o.out, "out", ".loadtest", "directory for generated Caddyfiles, logs and CPU profiles")
	fs.StringVar(&o.caddyBin, "caddy", "bin/caddy", "Caddy binary with the olla module (make build)")
	fs.StringVar(&o.simBin, "sim", "bin/olla-sim", "backend simulator binary (make build)")
	fs.StringVar(&o.goTool, "go", "go", "go command used for `go tool pprof` (empty: skip the profile summaries)")
	fs.IntVar(&o.portBase, "port-base", 31100, "first port: simulators on +1 and +2, contenders on +10, +20, +30\n"+
		"(keep all ports out of net.ipv4.ip_local_port_range, or a client connection's source port may take one)")
	fs.IntVar(&o.adminBase, "admin-base", 2100, "Caddy admin ports are this +1 (olla), +2 (sherpa), +3 (reverse_proxy)")
	fs.StringVar(&o.profile, "profile", "a,c", "scenarios whose round 1 fetches a CPU profile from each contender (empty: none)")
	routing := fs.String("routing", "", "routing-quality fleets to run instead of -scenarios, comma-separated or all: "+fleetHelp())
	fs.DurationVar(&o.routingDuration, "routing-duration", 15*time.Second, "measured time per routing run (after each fleet's warm-up)")
	fs.StringVar(&o.routingOnly, "routing-only", "", "run only the routing contenders named (comma-separated, exact names such as \"caddy least_conn,olla adaptive\"); empty: all")
	fs.BoolVar(&o.routingAblate, "routing-ablate", false, "add one contender per adaptive scorer: the shipped config with that scorer's weight 0 (\"ablate <scorer>\"), to see which weights earn their place")
	fs.StringVar(&o.routingPenalty, "routing-penalty", "", "comma-separated release penalties: one more contender each, the shipped config with prefix_affinity { release_penalty N } (\"penalty N\"); empty: none")
	fs.StringVar(&o.routingBaseline, "routing-baseline", "", "another Caddy build (say main's, before a change) to run the shipped config on as one more routing contender, \"baseline adaptive+sticky\"; empty: none")
	fs.BoolVar(&o.overload, "overload", false, "run the overload scenario (admission control, overload.go) instead of -scenarios")
	fs.BoolVar(&o.keyLimits, "keylimits", false, "measure key_limits' cost (off, in memory, in redis; keylimits.go) instead of -scenarios, with -rounds, -duration and -warmup")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if *routing != "" {
		fl, err := pickFleets(*routing)
		if err != nil {
			fmt.Fprintln(stderr, "loadtest:", err)
			return o, err
		}
		o.routing = fl
	}
	if fs.NArg() > 0 {
		err := fmt.Errorf("unexpected argument %q", fs.Arg(0))
		fmt.Fprintln(stderr, "loadtest:", err)
		return o, err
	}
	sc, err := pickScenarios(*keys)
	if err == nil && o.rounds < 1 {
		err = errors.New("-rounds must be at least 1")
	}
	if err == nil && o.duration < time.Second {
		err = errors.New("-duration must be at least 1s")
	}
	if err == nil && o.warmup < time.Second {
		err = errors.New("-warmup must be at least 1s (clients start spread over the first second)")
	}
	if err != nil {
		fmt.Fprintln(stderr, "loadtest:", err)
		return o, err
	}
	o.scenarios = sc
	return o, nil
}

// run performs the whole measurement and prints the report. It returns the
// process exit status: 0 when the runs completed (whatever the targets say),
// 1 on a setup failure, 130 when interrupted.
func run(ctx context.Context, o options, stdout, stderr io.Writer) int {
	began := time.Now()
	logf := func(format string, a ...any) { fmt.Fprintf(stderr, "loadtest: "+format+"\n", a...) }

	// The load client keeps up to a few hundred thousand latencies and one
	// buffer per client; trading memory for fewer collections leaves more
	// of the two cores to the contenders.
	debug.SetGCPercent(400)

	noFile, err := raiseNoFile(65536)
	if err != nil {
		logf("warning: %v", err)
	} else if noFile < 4096 {
		logf("warning: RLIMIT_NOFILE is only %d; scenario (c) needs about 3,000 descriptors per process", noFile)
	}

	work, err := prepareOut(o)
	if err != nil {
		logf("%v", err)
		return 1
	}
	sup := newSupervisor(work.logs, work.env)
	defer sup.stopAll()
	if o.keyLimits {
		code := runKeyLimits(ctx, o, sup, work, stdout, stderr)
		sup.stopAll()
		fmt.Fprintf(stdout, "\nlogs and Caddyfiles in %s; total time %s\n", o.out, time.Since(began).Round(time.Second))
		return exitCode(ctx, code)
	}
	if len(o.routing) > 0 || o.overload {
		return runAdmissionAndRouting(ctx, o, sup, work, stdout, stderr, began)
	}

	contenders := newContenders(o.portBase, o.adminBase)
	simAddrs := []string{addrOf(o.portBase + 1), addrOf(o.portBase + 2)}
	addrs := append(simAddrs, contenderAddrs(contenders)...)
	if err := checkPortsFree(addrs); err != nil {
		logf("%v", err)
		return 1
	}
	if msg := ephemeralClash(addrs); msg != "" {
		logf("warning: %s", msg)
	}
	for i := range contenders {
		c := &contenders[i]
		c.config = filepath.Join(o.out, c.name+".Caddyfile")
		c.altConfig = filepath.Join(o.out, c.name+".least-connections.Caddyfile")
		c.hostilePath = filepath.Join(o.out, c.name+".hostile.Caddyfile")
		for path, text := range map[string]string{c.config: c.caddyfile(simAddrs), c.altConfig: c.altCaddyfile(simAddrs),
			c.hostilePath: c.hostileConfig(simAddrs)} {
			if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
				logf("writing %s: %v", path, err)
				return 1
			}
		}
	}

	runs, reloadRuns, hostileRuns := 0, 0, 0
	for _, sc := range o.scenarios {
		switch {
		case sc.reload:
			reloadRuns += len(reloadContenders())
		case sc.hostile:
			hostileRuns += len(contenders)
		default:
			runs += o.rounds * len(contenders)
		}
	}
	perRun := o.warmup + o.duration + 1500*time.Millisecond
	const perReloadRun = 6500 * time.Millisecond
	perHostileRun := hostileWindow + 3*time.Second
	logf("%d runs of %s + %s warm-up, %d reload-under-load runs and %d hostile-client runs of %s; about %s in all (output in %s; RLIMIT_NOFILE %d, inherited by the children)",
		runs, o.duration, o.warmup, reloadRuns, hostileRuns, hostileWindow,
		(time.Duration(runs)*perRun + time.Duration(reloadRuns)*perReloadRun + time.Duration(hostileRuns)*perHostileRun).Round(time.Second),
		o.out, noFile)

	sims, err := startSims(ctx, sup, o.simBin, simAddrs)
	if err != nil {
		logf("%v", err)
		return exitCode(ctx, 1)
	}

	var results []scenarioResult
	var profiles []savedProfile
	code := 0
	for _, sc := range o.scenarios {
		var res scenarioResult
		var profs []savedProfile
		var err error
		switch {
		case sc.reload:
			res, err = runReloadScenario(ctx, sc, sup, work.caddy, contenders, sims, stderr)
		case sc.hostile:
			res, err = runHostileScenario(ctx, sc, sup, work.caddy, contenders, sims, stderr)
		default:
			res, profs, err = runScenario(ctx, o, sc, sup, work.caddy, contenders, sims, stderr)
		}
		results = append(results, res)
		profiles = append(profiles, profs...)
		if err != nil {
			logf("scenario (%s): %v", sc.key, err)
			code = 1
			break
		}
	}
	sup.stopAll()
	if ctx.Err() != nil {
		return 130
	}
	if code != 0 {
		fmt.Fprintln(stdout, "\nINCOMPLETE: the run failed (see above); what was measured before the failure:")
	}

	fmt.Fprintln(stdout)
	for _, res := range results {
		printTable(stdout, res, o)
		fmt.Fprintln(stdout)
	}
	fmt.Fprintln(stdout, targetsLine(results))
	fmt.Fprintln(stdout)
	printProfileTops(ctx, stdout, o.goTool, work.caddy, profiles)
	fmt.Fprintf(stdout, "peak RSS: VmHWM of a Caddy process started fresh for each run (warm-up included); "+
		"logs, Caddyfiles and profiles in %s; total time %s\n", o.out, time.Since(began).Round(time.Second))
	return exitCode(ctx, code)
}

// exitCode turns an interruption into the conventional 130.
func exitCode(ctx context.Context, code int) int {
	if ctx.Err() != nil {
		return 130
	}
	return code
}

// workDirs are the paths prepareOut set up.
type workDirs struct {
	logs  string   // one log per process
	caddy string   // the snapshot of the Caddy binary the runs use
	env   []string // environment for the children
}

// prepareOut creates the output directory and snapshots the Caddy binary, so
// a rebuild during the run cannot change the contenders halfway.
func prepareOut(o options) (workDirs, error) {
	var w workDirs
	for _, bin := range []string{o.caddyBin, o.simBin} {
		if _, err := os.Stat(bin); err != nil {
			return w, fmt.Errorf("%s not found (run make build first): %w", bin, err)
		}
	}
	w.logs = filepath.Join(o.out, "logs")
	home := filepath.Join(o.out, "caddy-home")
	for _, d := range []string{w.logs, home} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return w, err
		}
	}
	w.caddy = filepath.Join(o.out, "caddy")
	if err := copyFile(o.caddyBin, w.caddy); err != nil {
		return w, fmt.Errorf("snapshotting %s: %w", o.caddyBin, err)
	}
	abs, err := filepath.Abs(home)
	if err != nil {
		return w, err
	}
	// Caddy keeps its data and autosaved config under these; keep them out
	// of the user's home.
	w.env = append(os.Environ(), "XDG_CONFIG_HOME="+abs, "XDG_DATA_HOME="+abs)
	return w, nil
}

// copyFile copies src to dst with src's permission bits.
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return err
	}
	tmp := dst + ".tmp"
	out, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, st.Mode().Perm())
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, dst)
}

// wantsProfile reports whether round 1 of scenario key is profiled.
func wantsProfile(o options, key string) bool {
	for _, k := range strings.Split(o.profile, ",") {
		if strings.TrimSpace(k) == key {
			return true
		}
	}
	return false
}
