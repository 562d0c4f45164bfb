package olla

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"go.uber.org/zap"

	"github.com/caddy-olla/olla/bench"
	"github.com/caddy-olla/olla/engines"
	"github.com/caddy-olla/olla/fleet"
	"github.com/caddy-olla/olla/profiles"
)

// `caddy olla-bench`: the glue between a config and the bench package. It
// reads the endpoints of a running config (the admin API) or of a config
// file, lists each one's models the way discovery does, and hands the
// endpoint × model targets (and, with --through, the same models through
// the proxy) to bench.Run.
func init() {
	fs := flag.NewFlagSet("olla-bench", flag.ExitOnError)
	fs.String("config", "", "a config file (Caddyfile or JSON) to read the endpoints from, instead of the running config")
	fs.String("adapter", "", "the config's adapter (default: caddyfile for a file named Caddyfile*, else json)")
	fs.String("address", "localhost:2019", "the admin API of the running Caddy, when --config is not given")
	fs.String("through", "", "also measure through the proxy at this base URL (e.g. http://127.0.0.1:40114), side by side")
	fs.String("model", "", "only these models (comma separated)")
	fs.String("endpoint", "", "only these endpoints (comma separated)")
	fs.Int("max-tokens", 32, "tokens per answer")
	fs.Duration("timeout", 30*time.Second, "per request; an endpoint that times out is not asked again")
	fs.String("json", "-", "where to write the JSON report: a file, or - for standard output after the table")
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "olla-bench",
		Usage: "[--config <path> [--adapter <name>] | --address <admin>] [--through <url>] [--model <a,b>] [--endpoint <a,b>] [--max-tokens <n>] [--timeout <d>] [--json <path>]",
		Short: "Benchmarks every olla endpoint x model: TTFT p50/p95, tokens/s, errors",
		Long: `
Sends a fixed set of short prompts to every endpoint x model of the olla
handlers in a config, one streamed request at a time, and prints a table of
time to first token (p50, p95), decode rate (tokens per second) and errors,
then a JSON report. The endpoints come from the running Caddy (its admin API,
--address) or from --config. With --through, each model is also measured
through the proxy (/olla/<type>/v1/chat/completions), so the rows show what
the proxy adds. An endpoint that does not answer within --timeout is not
asked again. The scheduler does not use these results.`,
		Flags: fs,
		Func:  cmdBench,
	})
}

func cmdBench(fl caddycmd.Flags) (int, error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	cfg, err := benchConfig(ctx, fl.String("config"), fl.String("adapter"), fl.String("address"))
	if err != nil {
		return 1, err
	}
	eps, err := benchEndpoints(cfg, splitList(fl.String("endpoint")))
	if err != nil {
		return 1, err
	}
	timeout := fl.Duration("timeout")
	targets, problems := benchTargets(ctx, eps, splitList(fl.String("model")), strings.TrimSuffix(fl.String("through"), "/"), timeout)
	for _, p := range problems {
		fmt.Fprintln(os.Stderr, "olla-bench:", p)
	}
	if len(targets) == 0 {
		return 1, errors.New("nothing to measure: no endpoint listed a model (see above)")
	}
	rep := bench.Run(ctx, targets, bench.Options{MaxTokens: fl.Int("max-tokens"), Timeout: timeout,
		Client: &http.Client{Transport: benchTransport(eps)}})
	if err := bench.WriteTable(os.Stdout, rep); err != nil {
		return 1, err
	}
	out, _ := json.MarshalIndent(rep, "", "  ")
	out = append(out, '\n')
	if path := fl.String("json"); path == "-" {
		fmt.Println()
		_, err = os.Stdout.Write(out)
	} else {
		err = os.WriteFile(path, out, 0o644)
	}
	if err != nil {
		return 1, err
	}
	return 0, nil
}

// benchConfig is the JSON config: adapted from a file, or the running one.
func benchConfig(ctx context.Context, path, adapter, address string) ([]byte, error) {
	if path != "" {
		body, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		if adapter == "" && strings.HasPrefix(strings.ToLower(filepath.Base(path)), "caddyfile") {
			adapter = "caddyfile"
		}
		if adapter == "" || adapter == "json" {
			return body, nil
		}
		a := caddyconfig.GetAdapter(adapter)
		if a == nil {
			return nil, fmt.Errorf("unknown config adapter %q", adapter)
		}
		out, _, err := a.Adapt(body, map[string]any{"filename": path})
		return out, err
	}
	if !strings.Contains(address, "://") {
		address = "http://" + address
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(address, "/")+"/config/", nil)
	if err != nil {
		return nil, err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("reading the running config from %s (is Caddy running? else give --config): %v", address, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, 64<<20))
	if err != nil || res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("reading the running config from %s: status %d %v", address, res.StatusCode, err)
	}
	return body, nil
}

// benchEndpoint is one endpoint, resolved as the proxy resolves it.
type benchEndpoint struct {
	s         *fleet.Settings
	transport *http.Transport
}

// benchEndpoints finds the endpoints of every olla handler in a JSON
// config (each name once) and resolves them; only, when given, keeps those.
func benchEndpoints(cfg []byte, only []string) ([]benchEndpoint, error) {
	var doc any
	if err := json.Unmarshal(cfg, &doc); err != nil {
		return nil, fmt.Errorf("the config is not JSON: %v", err)
	}
	var found []Endpoint
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			if x["handler"] == "olla" {
				if raw, err := json.Marshal(x["endpoints"]); err == nil {
					var eps []Endpoint
					if json.Unmarshal(raw, &eps) == nil {
						found = append(found, eps...)
					}
				}
			}
			for _, c := range x {
				walk(c)
			}
		case []any:
			for _, c := range x {
				walk(c)
			}
		}
	}
	walk(doc)
	seen := map[string]bool{}
	var out []benchEndpoint
	repl := caddy.NewReplacer()
	for i := range found {
		e := &found[i]
		if seen[e.Name] || len(only) > 0 && !slices.Contains(only, e.Name) {
			continue
		}
		seen[e.Name] = true
		s, err := e.resolve(repl, zap.NewNop())
		if err != nil {
			return nil, err
		}
		out = append(out, benchEndpoint{s: s, transport: fleet.NewTransport(s)})
	}
	if len(out) == 0 {
		return nil, errors.New("the config has no olla endpoints" + map[bool]string{true: " by those names", false: ""}[len(only) > 0])
	}
	return out, nil
}

// benchTargets lists each endpoint's models and makes the targets: each
// endpoint × model direct, and each type × model through the proxy.
func benchTargets(ctx context.Context, eps []benchEndpoint, models []string, through string, timeout time.Duration) ([]bench.Target, []string) {
	var targets []bench.Target
	var problems []string
	viaProxy := map[string]bool{}
	for _, ep := range eps {
		s := ep.s
		listed, err := benchModels(ctx, ep, min(timeout, 30*time.Second))
		if err != nil {
			problems = append(problems, fmt.Sprintf("endpoint %s: %v", s.Name, err))
			continue
		}
		chat := engines.UpstreamURL(s.URL, s.Profile.UpstreamPath("/v1/chat/completions"), "").String()
		for _, m := range listed {
			if len(models) > 0 && !slices.Contains(models, m.Name) {
				continue
			}
			targets = append(targets, bench.Target{Endpoint: s.Name, Type: s.Type, Model: m.Name, Via: "direct", URL: chat, Header: s.Header})
			key := s.Profile.Prefixes[0] + "\x00" + m.Name
			if through != "" && !viaProxy[key] {
				viaProxy[key] = true
				targets = append(targets, bench.Target{Type: s.Type, Model: m.Name, Via: "proxy",
					URL: through + "/olla/" + s.Profile.Prefixes[0] + "/v1/chat/completions"})
			}
		}
	}
	return targets, problems
}

// benchModels lists an endpoint's models as discovery does, bounded.
func benchModels(ctx context.Context, ep benchEndpoint, timeout time.Duration) ([]profiles.Model, error) {
	models, err := fleet.ListModels(ctx, ep.transport, ep.s, timeout)
	if err != nil {
		return nil, fmt.Errorf("listing models from %s: %v", redactURL(ep.s.ModelsURL), err)
	}
	return models, nil
}

// benchTransport sends each direct request over its endpoint's transport
// (its TLS settings), and proxy requests over a plain one.
func benchTransport(eps []benchEndpoint) http.RoundTripper {
	byHost := map[string]*http.Transport{}
	for _, ep := range eps {
		byHost[ep.s.URL.Scheme+"://"+ep.s.URL.Host] = ep.transport
	}
	return roundTripFunc(func(r *http.Request) (*http.Response, error) {
		if t := byHost[r.URL.Scheme+"://"+r.URL.Host]; t != nil {
			return t.RoundTrip(r)
		}
		return http.DefaultTransport.RoundTrip(r)
	})
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
