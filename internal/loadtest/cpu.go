package main

// CPU accounting from /proc: how much CPU the contender's Caddy spent in the
// measured window, and how much the machine spent on processes that are not
// part of the run (other work on a shared box skews every number).

import (
	"bytes"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"time"
)

// cpuSnapshot is the CPU time counters at one instant, in clock ticks.
type cpuSnapshot struct {
	at        time.Time
	busy      int64 // machine: all non-idle time
	total     int64 // machine: busy + idle + iowait
	contender int64 // the contender's Caddy (user + system)
	ours      int64 // the harness, the simulator and the contender together
}

// takeCPUSnapshot reads the counters; pids are the run's processes, the
// contender first. The harness itself is always counted as ours.
func takeCPUSnapshot(contender int, others ...int) (cpuSnapshot, error) {
	s := cpuSnapshot{at: time.Now()}
	var err error
	if s.busy, s.total, err = machineTicks(); err != nil {
		return s, err
	}
	if s.contender, err = processTicks(contender); err != nil {
		return s, err
	}
	s.ours = s.contender
	for _, pid := range append(others, os.Getpid()) {
		t, err := processTicks(pid)
		if err != nil {
			return s, err
		}
		s.ours += t
	}
	return s, nil
}

// cpuUse is what happened between two snapshots.
type cpuUse struct {
	contenderSeconds float64 // CPU seconds the contender used
	foreignCores     float64 // average cores busy outside the run
}

// cpuBetween compares two snapshots. Ticks are converted with the machine's
// own rate (total ticks per core per second), so USER_HZ need not be known.
func cpuBetween(a, b cpuSnapshot) cpuUse {
	elapsed := b.at.Sub(a.at).Seconds()
	total := float64(b.total - a.total)
	if elapsed <= 0 || total <= 0 {
		return cpuUse{}
	}
	hz := total / float64(runtime.NumCPU()) / elapsed
	foreign := float64((b.busy-a.busy)-(b.ours-a.ours)) / hz / elapsed
	return cpuUse{
		contenderSeconds: float64(b.contender-a.contender) / hz,
		foreignCores:     max(0, foreign),
	}
}

// machineTicks reads the aggregate line of /proc/stat.
func machineTicks() (busy, total int64, err error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := bytes.Fields(line)
	if len(f) < 9 || string(f[0]) != "cpu" {
		return 0, 0, fmt.Errorf("unexpected /proc/stat line %q", line)
	}
	v := make([]int64, 8) // user nice system idle iowait irq softirq steal
	for i := range v {
		if v[i], err = strconv.ParseInt(string(f[i+1]), 10, 64); err != nil {
			return 0, 0, fmt.Errorf("/proc/stat: %w", err)
		}
	}
	busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7]
	return busy, busy + v[3] + v[4], nil
}

// processTicks reads utime + stime of pid (its own threads; children it
// waited for are not included).
func processTicks(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name may hold spaces and parentheses: fields start after
	// the last ')'. Then state is field 3, utime 14 and stime 15.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("unexpected /proc/%d/stat", pid)
	}
	f := bytes.Fields(b[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("short /proc/%d/stat", pid)
	}
	u, err1 := strconv.ParseInt(string(f[11]), 10, 64)
	s, err2 := strconv.ParseInt(string(f[12]), 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("unexpected /proc/%d/stat times", pid)
	}
	return u + s, nil
}
