// Command olla-sim runs simulated LLM backends (Ollama, LM Studio, vLLM,
// llama.cpp, OpenAI-compatible) for the demo, manual testing and load runs.
//
//	olla-sim -sim 'ollama@127.0.0.1:11434=llama3.2:latest,phi4-mini;ttft=100ms;tps=50' \
//	         -sim 'vllm@127.0.0.1:8000=Qwen/Qwen2.5-7B-Instruct;name=gpu'
//
// Each -sim starts one simulator (syntax: see -h). Every response carries
// an X-Sim-Name header (the name option, default KIND@ADDR). A running
// simulator is steered through its /_sim/ routes, for example
//
//	curl -d '{"mode":"status","status":429,"retry_after":5}' http://127.0.0.1:11434/_sim/fault
//	curl -d '{}' http://127.0.0.1:11434/_sim/fault          # clear
//	curl http://127.0.0.1:11434/_sim/stats
//	curl -d '["a","b"]' http://127.0.0.1:11434/_sim/models
//
// SIGINT or SIGTERM stops every simulator and exits 0. Bad flags exit 2; a
// failure to listen exits 1.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/caddy-olla/olla/internal/sim"
)

// specList is the repeatable -sim flag.
type specList []sim.Spec

func (l *specList) String() string {
	parts := make([]string, len(*l))
	for i, s := range *l {
		parts[i] = s.Config.Kind + "@" + s.Addr
	}
	return strings.Join(parts, " ")
}

func (l *specList) Set(v string) error {
	sp, err := sim.ParseSpec(v)
	if err != nil {
		return err
	}
	*l = append(*l, sp)
	return nil
}

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

func run(args []string, stderr io.Writer) int {
	logger := log.New(stderr, "olla-sim: ", log.LstdFlags)
	specs, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		return 2
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	var servers []*sim.Server
	closeAll := func() {
		for _, s := range servers {
			s.Close()
		}
	}
	for _, sp := range specs {
		cfg := sp.Config
		if cfg.Name == "" {
			cfg.Name = cfg.Kind + "@" + sp.Addr
		}
		s, err := sim.StartAt(sp.Addr, cfg)
		if err != nil {
			logger.Printf("%s %q: cannot listen on %s: %v", cfg.Kind, cfg.Name, sp.Addr, err)
			closeAll()
			return 1
		}
		servers = append(servers, s)
		ttft, tps, tokens := s.Timing()
		logger.Printf("%s %q listening on %s models=%s ttft=%s tps=%g tokens=%d",
			cfg.Kind, cfg.Name, s.URL, strings.Join(s.Models(), ","), ttft, tps, tokens)
	}

	<-ctx.Done()
	logger.Printf("shutting down %d simulator(s)", len(servers))
	closeAll()
	return 0
}

// parseFlags parses the command line. Errors are reported on stderr.
func parseFlags(args []string, stderr io.Writer) ([]sim.Spec, error) {
	var specs specList
	fs := flag.NewFlagSet("olla-sim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Var(&specs, "sim", "a simulator to start, repeatable: "+sim.SpecSyntax)
	fullUsage := func() {
		fmt.Fprintf(stderr, `usage: olla-sim -sim SPEC [-sim SPEC ...]

SPEC is %s
  KIND    %s (aliases: lm-studio, openai-compatible, llama.cpp)
  ADDR    host:port, :port or port; an empty host means 127.0.0.1
  MODEL   model names served (default: tiny)
  ttft    time to first token, e.g. 150ms        tps     tokens per second (0 = no pacing)
  tokens  tokens per completion (default 5)      name    label sent as X-Sim-Name (default KIND@ADDR)
  dims    embedding length (default 64)          norecord  (no value) keep no copy of requests for /_sim/last

example:
  olla-sim -sim 'ollama@127.0.0.1:11434=llama3.2:latest,phi4-mini;ttft=100ms;tps=50' \
           -sim 'vllm@:8000=Qwen/Qwen2.5-7B-Instruct;name=gpu'

Control a running simulator through /_sim/fault, /_sim/stats, /_sim/models,
/_sim/timing, /_sim/reset and /_sim/last (see package internal/sim).
`, sim.SpecSyntax, strings.Join(sim.Kinds(), ", "))
	}
	shortUsage := func() {
		fmt.Fprintln(stderr, "usage: olla-sim -sim "+sim.SpecSyntax+" [-sim ...]   (olla-sim -h for details)")
	}
	fs.Usage = func() {} // the flag package's own error line is enough; see below
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fullUsage()
		} else {
			shortUsage()
		}
		return nil, err
	}
	if fs.NArg() > 0 {
		err := fmt.Errorf("unexpected argument %q (each simulator needs its own -sim flag)", fs.Arg(0))
		fmt.Fprintln(stderr, "olla-sim:", err)
		shortUsage()
		return nil, err
	}
	if len(specs) == 0 {
		err := errors.New("no simulator given: at least one -sim is required")
		fmt.Fprintln(stderr, "olla-sim:", err)
		shortUsage()
		return nil, err
	}
	seen := map[string]bool{}
	for _, sp := range specs {
		if seen[sp.Addr] && !strings.HasSuffix(sp.Addr, ":0") {
			err := fmt.Errorf("address %s given to more than one -sim", sp.Addr)
			fmt.Fprintln(stderr, "olla-sim:", err)
			return nil, err
		}
		seen[sp.Addr] = true
	}
	return specs, nil
}
