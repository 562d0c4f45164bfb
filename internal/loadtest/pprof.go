package main

// CPU profiles: fetched from a contender's admin endpoint during a measured
// window, summarized with `go tool pprof -top` once every run is over (so the
// summaries do not steal CPU from a measurement).

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"time"
)

// fetchProfile waits until at, then saves a CPU profile of secs seconds from
// the Caddy admin endpoint at adminURL to path.
func fetchProfile(ctx context.Context, adminURL string, at time.Time, secs int, path string) error {
	if !sleepUntil(ctx, at) {
		return ctx.Err()
	}
	ctx, cancel := context.WithTimeout(ctx, time.Duration(secs+15)*time.Second)
	defer cancel()
	url := fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", adminURL, secs)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(res.Body, 300))
		return fmt.Errorf("GET %s: %s: %s", url, res.Status, strings.TrimSpace(string(b)))
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, res.Body); err != nil {
		f.Close()
		return fmt.Errorf("GET %s: %w", url, err)
	}
	return f.Close()
}

// printProfileTops prints the ten functions with the most flat CPU time of
// each saved profile, using `go tool pprof`.
func printProfileTops(ctx context.Context, w io.Writer, goTool, caddyBin string, profiles []savedProfile) {
	if len(profiles) == 0 {
		return
	}
	fmt.Fprintln(w, "CPU profiles of round 1 (contender's Caddy process, via its admin /debug/pprof/profile):")
	usable := goTool != ""
	if usable {
		if _, err := exec.LookPath(goTool); err != nil {
			fmt.Fprintf(w, "  %s not found: profiles saved, not summarized\n", goTool)
			usable = false
		}
	}
	for _, p := range profiles {
		if p.err != nil {
			fmt.Fprintf(w, "  %s: no profile: %v\n", p.label, p.err)
			continue
		}
		if !usable {
			fmt.Fprintf(w, "  %s: %s\n", p.label, p.path)
			continue
		}
		fmt.Fprintf(w, "  %s: %s top -nodecount=10 (by flat CPU)\n", p.label, p.path)
		cctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		cmd := exec.CommandContext(cctx, goTool, "tool", "pprof", "-top", "-nodecount=10", caddyBin, p.path)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		cancel()
		if err != nil {
			fmt.Fprintf(w, "    go tool pprof failed: %v %s\n", err, clip(strings.TrimSpace(stderr.String()), 300))
			continue
		}
		for _, line := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
			if strings.HasPrefix(line, "File:") || strings.HasPrefix(line, "Build ID:") || strings.HasPrefix(line, "Time:") {
				continue
			}
			fmt.Fprintf(w, "    %s\n", line)
		}
	}
	fmt.Fprintln(w)
}
