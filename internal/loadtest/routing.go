package main

// Routing quality (issues 11 and 20, `make loadtest-routing`): multi-turn chat
// sessions over simulated fleets whose latency depends on what routing
// does — queueing for slots, prefill of prompt tokens that are not in the
// server's prefix cache, and Ollama's model swaps — so that a balancer that
// only spreads requests evenly pays for it in time to first token.
//
// Each fleet runs every contender once, each against a fresh simulator
// process (cold caches, no model resident) and a fresh Caddy; the clients
// are the same script for every contender (seeded per user), so the
// contenders see the same conversations in the same order.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/caddy-olla/olla/balancer"
)

// fleet is one routing scenario: the simulated servers and the workload.
type fleet struct {
	key   string
	title string
	kind  string   // simulator kind and endpoint type: "vllm" or "ollama"
	opts  []string // per backend: the simulator options after the models
	// models are served by every backend; popularity is each one's share
	// of sessions (nil: the first model only).
	models     []string
	popularity []float64
	users      int              // concurrent users, each running sessions back to back
	think      [2]time.Duration // think time between turns, uniform in [0], [1]
	turns      [2]int           // turns per session, uniform in [0], [1]
	system     int              // bytes of each shared system prompt
	systems    int              // how many system prompts the sessions share
	userBytes  int              // bytes of each user message
	replyBytes int              // bytes of the assistant message resent when a turn got no answer
	// single: every request is a new one-turn conversation of userBytes
	// with nothing shared (no reuse at all).
	single bool
	// noSession: the clients send no session id, as Claude Code, Codex,
	// Open WebUI and the OpenAI SDKs do: affinity can only come from the
	// prompt itself.
	noSession bool
	// tools is the bytes of a tools array every request carries, the same
	// for every session (an agent's tool definitions); 0 for none.
	tools int
	// proxies is how many Caddy processes with one config serve the users
	// (0 or 1: one); each request goes to one drawn at random, as behind a
	// plain TCP balancer, so a conversation's turns cross proxies.
	proxies int
	// ctx is the simulators' context window in tokens (0: the default).
	ctx int
	// goal names the "Done when" row the fleet measures (see
	// printRoutingTargets); base is the fleet whose one-proxy prefix hit
	// ratio a two-proxy fleet must reach.
	goal, base string
	warmup     time.Duration
	// measure scales -routing-duration for this fleet: more for one whose
	// answers are few or bimodal (loaded model or not), less for one
	// whose answers all look alike (u keeps the full window: its p99 is
	// a target, and 10 s gave it only ~180 answers).
	measure float64
	load    string // offered load, for the report
}

// duration is the fleet's measured window.
func (f fleet) duration(base time.Duration) time.Duration {
	if f.measure <= 0 {
		return base
	}
	return time.Duration(float64(base) * f.measure).Round(time.Second)
}

func (f fleet) route() string { return f.kind }

// proxyCount is how many Caddy processes serve the fleet's users.
func (f fleet) proxyCount() int { return max(f.proxies, 1) }

// apiPath is the upstream chat path the fleet's servers take.
func (f fleet) apiPath() string {
	if f.kind == "ollama" {
		return "/api/chat"
	}
	return "/v1/chat/completions"
}

// chatURL is the URL clients send chat requests to through a contender.
func (f fleet) chatURL(port int) string {
	return "http://" + addrOf(port) + "/olla/" + f.route() + f.apiPath()
}

// Simulator options shared by the vLLM-like fleets: 8 slots in a batch with
// a long FIFO behind them; prefill of 1 ms per prompt token that is not in
// the prefix cache (a big model on a modest GPU: 1,000 tokens/s); decode of
// 24 tokens at 40/s, 4 % slower per other running request.
const (
	vllmSlots   = 8
	vllmBase    = "ttft=20ms;tps=40;tokens=24;slots=8;queue=512;slowdown=0.04"
	vllmPrefill = time.Millisecond
	slowFactor  = 3
)

// usersFor is how many users offer load (a fraction of the fleet's slots)
// when one request holds a slot for service and users think for think on
// average between requests.
func usersFor(load float64, slots int, service, think time.Duration) int {
	return int(load*float64(slots)*float64(service+think)/float64(service) + 0.5)
}

// fleets lists the routing scenarios in report order, by the issue's
// workloads: (a) multi-turn chat with no session id and K shared system
// prompts, K below and above the number of servers; (b) agent-shaped
// sessions, a long shared tools+system prefix and growing conversations
// with short answers; (c) Ollama residency; (d) a mixed fleet with one
// 3x slower box, with and without session ids; (e) uniform requests with
// nothing to reuse; (f) two proxies side by side; (g) the session-header
// fleets of issue 11.
//
// The chat sessions: one of K system prompts of 4,000 bytes (1,000
// tokens), 3 to 10 turns of a 150-byte question and the server's answer
// (24 words, about 140 bytes), which the client sends back, so turn k
// sends about 4,000 + 330k bytes. A server that answered the previous turn
// has all of it cached but the new question (it caches the blocks it
// decoded, as vLLM does), and prefills about 50 tokens; one that did not,
// everything after the system prompt. The prefix cache holds 2,500 blocks
// of 16 tokens per server, shared with the running requests' KV: not every
// user's history fits in every server.
//
// Offered load is counted against the least work the fleet can do: every
// request's history cached, so its slot is held for 20 ms + 50 ms prefill
// + 24 tokens at 40/s slowed by the batch (about 0.8 s in all).
func fleets() []fleet {
	const (
		think   = 2 * time.Second // mean of [1s, 3s]
		service = 840 * time.Millisecond
	)
	vllmCache := vllmBase + ";prefill=" + vllmPrefill.String() + ";cache=2500;block=16"
	chat := fleet{kind: "vllm", models: []string{"Qwen/Qwen2.5-7B-Instruct"}, think: [2]time.Duration{time.Second, 3 * time.Second},
		turns: [2]int{3, 10}, system: 4000, systems: 4, userBytes: 150, replyBytes: 350, warmup: 5 * time.Second,
		opts: repeat(vllmCache, 4)}
	at := func(f fleet, key, load string, share float64, title string) fleet {
		f.key, f.load, f.title = key, load, title
		f.users = usersFor(share, 4*vllmSlots, service, think)
		return f
	}

	// (a): no session id; K = 2 and 8 system prompts on 4 servers
	a := chat
	a.noSession, a.goal = true, "a"
	a.systems = 2
	a270 := at(a, "a2-70", "~70 %", 0.7, "(a) 4 vLLM-like servers (8 slots, prefix cache, 1 ms prefill per uncached token), multi-turn chat, no session id, 2 shared system prompts, ~70 % load")
	a2100 := at(a, "a2-100", "~100 %", 1.0, "(a) the same at ~100 % load")
	a.systems = 8
	a870 := at(a, "a8-70", "~70 %", 0.7, "(a) 4 vLLM-like servers, multi-turn chat, no session id, 8 shared system prompts, ~70 % load")
	a8100 := at(a, "a8-100", "~100 %", 1.0, "(a) the same at ~100 % load")

	// (b): agents. A 32,000-byte system prompt (8,000 tokens) and a tools
	// array shared by every session, 4 to 12 turns each adding a
	// 2,000-byte tool result, answers of 12 tokens. Prefill is 0.25 ms a
	// token, so a turn on a server holding the previous one costs ~0.15 s
	// of prefill and one on another up to ~1.6 s. 10,000 blocks of cache
	// per server hold every session's history once, not four times.
	const agentService = 450 * time.Millisecond // 20 ms + ~500 tokens at 0.25 ms + 12 at 40/s
	agentOpts := "ttft=20ms;tps=40;tokens=12;slots=8;queue=512;slowdown=0.04;prefill=250us;cache=10000;block=16"
	b := fleet{kind: "vllm", models: chat.models, think: chat.think, turns: [2]int{4, 12}, system: 32000, systems: 1,
		tools: 1500, userBytes: 2000, replyBytes: 100, warmup: 8 * time.Second, opts: repeat(agentOpts, 4),
		noSession: true, goal: "a", ctx: 32768}
	b70, b100 := b, b
	b70.key, b70.load = "b-70", "~70 %"
	b70.title = "(b) agent-shaped sessions on 4 vLLM-like servers: 8,000 shared tokens of tools and system prompt, 4-12 turns of 2,000-byte tool results, 12-token answers, no session id, ~70 % load"
	b70.users = usersFor(0.7, 4*vllmSlots, agentService, think)
	b100.key, b100.load, b100.title = "b-100", "~100 %", "(b) the same at ~100 % load"
	b100.users = usersFor(1.0, 4*vllmSlots, agentService, think)

	// Ollama: each server holds one model at a time and takes 3 s to load
	// another; three models, 50/30/20 % of sessions. Each server has 4
	// slots; a request holds one about 0.45 s (30 ms + prefill of ~500
	// tokens at 0.2 ms + 16 tokens at 50/s) and thinks 2 s, so 24 users
	// keep ~4.4 of the 12 slots busy, the popular model ~2.2 of 4: one
	// server per model can carry it, and a server that swaps on
	// (1 - 0.5² - 0.3² - 0.2²) = 62 % of arrivals spends them loading.
	ollama := fleet{kind: "ollama", load: "~37 % of the slots (without loads)",
		models:     []string{"llama3.2:3b", "qwen2.5:7b", "mistral:7b"},
		popularity: []float64{0.5, 0.3, 0.2},
		opts:       repeat("ttft=30ms;tps=50;tokens=16;slots=4;queue=64;prefill=200us;maxloaded=1;load=3s", 3),
		users:      24, think: chat.think, turns: [2]int{2, 6}, system: 1000, systems: 2, userBytes: 150, replyBytes: 350,
		warmup: 8 * time.Second, measure: 5.0 / 3}
	c := ollama
	c.key, c.goal, c.noSession = "c", "c", true
	c.title = "(c) 3 Ollama-like servers holding one model each (3 s to load another), 3 models used by 50/30/20 % of sessions, no session id"

	// (c) where one warm server is not enough: two models, 80/20 % of
	// sessions, and 38 users. The popular model offers 38 x 0.8 x 0.45 s /
	// 2.45 s = 5.6 busy slots against one server's 4, so its queue there
	// grows without end; the right answer is to load it on a second server
	// once, when the wait has come to cost more than a load (3 s: about
	// 6.7 rounds of 0.45 s, i.e. ~27 requests queued on 4 slots), and then
	// to keep both warm. The other model (1.4 slots) keeps the third
	// server. Everything together is 7 of 12 slots (58 %).
	hot := ollama
	hot.models, hot.popularity, hot.users = ollama.models[:2], []float64{0.8, 0.2}, 38
	hot.noSession, hot.goal = true, "c"
	cHot := hot
	cHot.key, cHot.load = "c-hot", "~58 % of the slots; the popular model 1.4x one server"
	cHot.title = "(c) the popular model needs more than one warm server: 3 Ollama-like servers (3 s loads), 2 models used by 80/20 % of sessions, no session id"
	// the same with loads of 300 ms: less than one round of a full
	// server's queue (0.45 s), so loading the popular model on a second
	// server as soon as the first is full beats queueing there
	cFast := hot
	cFast.key, cFast.load = "c-fast", cHot.load
	cFast.opts = repeat(strings.Replace(ollama.opts[0], "load=3s", "load=300ms", 1), 3)
	cFast.title = "(c-hot) with loads of 300 ms, cheaper than a round of a full server's queue"
	// with loads this cheap the baselines pay little for them (their p50
	// is within 1.3x of a warm answer's), so (c)'s 0.2x cannot apply: the
	// goal is to be no worse than the best of them at p50 and p99
	cFast.goal = "c-fast"

	// One server of four is 3x slower in every phase. No prefix cache, so
	// only speed and queueing tell them apart. Offered load ~60 % of what
	// the fleet can do (3 fast servers + a third of one).
	// Prefill is faster here (0.3 ms a token), so a request takes ~1.2 s
	// and the run collects enough answers for a p99.
	const fastPrefill = 300 * time.Microsecond
	slow := fmt.Sprintf("ttft=%s;tps=%g;tokens=24;slots=8;queue=512;slowdown=0.04;prefill=%s",
		20*time.Millisecond*slowFactor, 40.0/slowFactor, fastPrefill*slowFactor)
	d := chat
	d.key, d.load, d.goal, d.noSession = "d", "~60 %", "d", true
	d.title = "(d) 4 vLLM-like servers, one 3x slower (time to first token, prefill and decode), no prefix cache, no session id"
	d.opts = append(repeat(vllmBase+";prefill="+fastPrefill.String(), 3), slow)
	// the fleet's slots (three fast servers and a third of one) and a
	// request's service without a cache: 20 ms + ~1,600 tokens of prefill
	// + decode
	const dSlots, dService = 3*vllmSlots + vllmSlots/slowFactor, 1240 * time.Millisecond
	d.users = usersFor(0.6, dSlots, dService, think)
	// its p99 is a target: twice the window gives ~400 answers, not ~190
	d.measure = 2
	dsid := d
	dsid.key, dsid.noSession = "d-sid", false
	dsid.title = "(d) and (g) the same with session ids"

	// the same on LM Studio-like servers, which state no decode totals:
	// only our own timing of their streams tells the slow box
	dtt := d
	dtt.key, dtt.kind = "d-ttft", "lm-studio"
	dtt.title = "(d) on LM Studio-like servers, which state no decode rate nor slots (speed judged on our timing of their streams)"
	dttsid := dtt
	dttsid.key, dttsid.noSession = "d-ttft-sid", false
	dttsid.title = "(d) on LM Studio-like servers, with session ids"
	// and on llama.cpp-like servers: slots on /slots, decode totals on
	// /metrics (read beside it)
	dlc := d
	dlc.key, dlc.kind = "d-slots", "llamacpp"
	dlc.title = "(d) on llama.cpp-like servers (slots stated on /slots, decode totals on /metrics)"

	// (d) at the whole fleet's capacity: the three fast servers alone would
	// be at ~110 %, so a router that keeps everything off the slow box
	// queues on the fast ones (herding); the slow box's third must be used.
	// No target of the issue's; the shipped config must not lose to
	// round_robin here either.
	dfull := d
	dfull.key, dfull.load, dfull.goal = "d-100", "~100 %", ""
	dfull.title = "(d) at ~100 % of the fleet's capacity (the fast servers alone would be at ~110 %)"
	dfull.users = usersFor(1.0, dSlots, dService, think)
	dttfull := dfull
	dttfull.key, dttfull.kind = "d-ttft-100", "lm-studio"
	dttfull.title = "(d) on LM Studio-like servers at ~100 % of the fleet's capacity"

	e := fleet{key: "e", kind: "vllm", load: "~70 %", goal: "e", noSession: true,
		title:  "(e) uniform: 4 equal vLLM-like servers, one-turn requests of 2,000 bytes with nothing shared",
		models: chat.models, opts: repeat(vllmBase+";prefill="+vllmPrefill.String(), 4),
		think: chat.think, userBytes: 2000, single: true, warmup: 5 * time.Second}
	// service: 20 ms + 520 tokens of prefill + decode
	e.users = usersFor(0.7, 4*vllmSlots, 1300*time.Millisecond, think)

	f := a270
	f.key, f.goal, f.base, f.proxies = "f", "f", a270.key, 2
	f.title = "(f) (a2-70) through two Caddy processes with one config, each request to either at random"

	// (g): the session-header fleets of issue 11
	g170 := at(chat, "g-r1-70", "~70 %", 0.7, "(g) 4 vLLM-like servers, multi-turn chat with session ids, 4 system prompts, ~70 % load")
	g1100 := at(chat, "g-r1-100", "~100 %", 1.0, "(g) the same at ~100 % load")
	g170.goal, g1100.goal = "g", "g"
	g2 := ollama
	g2.key, g2.goal = "g-r2", "g"
	g2.title = "(g) (c) with session ids"
	return []fleet{a270, a870, a2100, a8100, b70, b100, c, cHot, cFast, d, dsid, dtt, dttsid, dlc, dfull, dttfull, e, f, g170, g1100, g2}
}

func repeat(s string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = s
	}
	return out
}

// pickFleets parses the -routing list ("all" for every fleet).
func pickFleets(list string) ([]fleet, error) {
	all := fleets()
	if strings.TrimSpace(list) == "all" {
		return all, nil
	}
	var out []fleet
	for _, k := range strings.Split(list, ",") {
		k = strings.ToLower(strings.TrimSpace(k))
		if k == "" {
			continue
		}
		i := slices.IndexFunc(all, func(f fleet) bool { return f.key == k })
		if i < 0 {
			var keys []string
			for _, f := range all {
				keys = append(keys, f.key)
			}
			return nil, fmt.Errorf("unknown routing fleet %q (have %s, or all)", k, strings.Join(keys, ", "))
		}
		if !slices.ContainsFunc(out, func(f fleet) bool { return f.key == k }) {
			out = append(out, all[i])
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no routing fleet given")
	}
	return out, nil
}

// routingContender is one Caddy configuration in the routing runs.
type routingContender struct {
	name   string
	policy string // reverse_proxy lb_policy; empty for olla
	lb     string // olla load_balancer
	sticky bool   // olla sticky_sessions with its defaults, as the README and examples ship it
	// baseline: one of the contenders the ratios are against (the
	// best of Caddy's round_robin and least_conn and our least-connections)
	baseline bool
	// bin is the Caddy binary to run (empty: -caddy): -routing-baseline
	// adds the shipped config on another build, to compare against.
	bin string
	// off is a scorer whose weight is 0 in an ablation contender
	// (-routing-ablate): the shipped config without it
	off string
	// penalty is a release penalty other than the default (-routing-penalty)
	penalty string
}

// shippedName is the contender that runs the config the README ships.
const shippedName = "olla adaptive+sticky"

func routingContenders() []routingContender {
	return []routingContender{
		{name: "caddy round_robin", policy: "round_robin", baseline: true},
		{name: "caddy least_conn", policy: "least_conn", baseline: true},
		{name: "olla round-robin", lb: "round-robin"},
		{name: "olla least-connections", lb: "least-connections", baseline: true},
		{name: "olla adaptive", lb: "adaptive"},
		{name: shippedName, lb: "adaptive", sticky: true},
	}
}

// adaptive reports whether c is one of the contenders the targets are for.
func (c routingContender) adaptive() bool {
	return c.lb == "adaptive" && c.off == "" && c.penalty == ""
}

// ablations are the shipped config with each adaptive scorer off in turn.
func ablations() []routingContender {
	var out []routingContender
	for _, name := range slices.Sorted(maps.Keys(balancer.AdaptiveWeights())) {
		out = append(out, routingContender{name: "ablate " + name, lb: "adaptive", sticky: true, off: name})
	}
	return out
}

// slug is the contender's name as a file name.
func (c routingContender) slug() string {
	return strings.NewReplacer(" ", "-", "+", "-").Replace(c.name)
}

// sessionHeader carries the session key, the standalone's header.
const sessionHeader = "X-Olla-Session-ID"

// caddyfile renders c for f's backends.
func (c routingContender) caddyfile(f fleet, backends []string, port, admin int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# generated by internal/loadtest (routing fleet %s) for %s\n", f.key, c.name)
	fmt.Fprintf(&b, "{\n\tadmin %s\n\tauto_https off\n\tpersist_config off\n}\n\n", addrOf(admin))
	fmt.Fprintf(&b, "http://:%d {\n\tbind 127.0.0.1\n", port)
	if c.policy != "" {
		fmt.Fprintf(&b, "\thandle_path /olla/%s/* {\n\t\treverse_proxy %s {\n\t\t\tlb_policy %s\n\t\t\tflush_interval -1\n\t\t}\n\t}\n}\n",
			f.route(), strings.Join(backends, " "), c.policy)
		return b.String()
	}
	fmt.Fprintf(&b, "\tolla {\n\t\tengine olla\n\t\tload_balancer %s", c.lb)
	if c.off != "" {
		fmt.Fprintf(&b, " {\n\t\t\t%s 0\n\t\t}", c.off)
	}
	b.WriteByte('\n')
	if c.sticky {
		b.WriteString("\t\tsticky_sessions\n")
	}
	if c.penalty != "" {
		fmt.Fprintf(&b, "\t\tprefix_affinity {\n\t\t\trelease_penalty %s\n\t\t}\n", c.penalty)
	}
	for i, a := range backends {
		fmt.Fprintf(&b, "\t\tendpoint sim-%c {\n\t\t\turl http://%s\n\t\t\ttype %s\n\t\t\tcheck_interval 2s\n\t\t\tcheck_timeout 1s\n\t\t}\n",
			'a'+i, a, f.kind)
	}
	b.WriteString("\t}\n}\n")
	return b.String()
}

// routingStats is what one contender's run on one fleet came to.
type routingStats struct {
	skipped string // why the contender did not run (its config was refused)
	ok      int64
	shed429 int64
	shed503 int64
	failed  int64 // transport errors, other statuses, truncated answers
	ttftP50 time.Duration
	ttftP99 time.Duration
	prompt  int64 // prompt tokens the servers saw
	cached  int64 // of which from their prefix caches
	// ideal is the prefix hit ratio of the answered requests had each
	// session's every turn gone to a server holding its previous turn
	ideal     float64
	loads     int64 // model loads
	rejected  int64 // the servers' own 503s for want of a slot
	split     []int64
	samples   []string
	logErrors int
	loadSplit []int64 // model loads per backend
	// idleWarm is how many of idleSamples readings of the servers showed
	// a warm server idle while another holding the same model queued, and
	// idleLasting how many of those showed the same pair as the reading
	// before (see idleWarm)
	idleWarm, idleLasting, idleSamples int
	// learned are the load times the proxy learned, one per endpoint and
	// model that has one (olla contenders on fleets with model loads)
	learned []time.Duration
}

func (s routingStats) total() int64 { return s.ok + s.shed429 + s.shed503 + s.failed }

func (s routingStats) hitRatio() float64 {
	if s.prompt == 0 {
		return 0
	}
	return float64(s.cached) / float64(s.prompt)
}

// routingPorts: the simulators and the one contender running at a time
// (its second process, for a two-proxy fleet, on port+1 and admin+1).
type routingPorts struct {
	sims  []string
	port  int
	admin int
}

// maxProxies is how many Caddy processes a fleet may run side by side.
const maxProxies = 2

func newRoutingPorts(portBase, adminBase int) routingPorts {
	p := routingPorts{port: portBase + 50, admin: adminBase + 10}
	for i := 0; i < 4; i++ {
		p.sims = append(p.sims, addrOf(portBase+41+i))
	}
	return p
}

// runRouting runs every fleet with every contender and prints the tables.
func runRouting(ctx context.Context, o options, fleetsToRun []fleet, sup *supervisor, work workDirs, stdout, stderr io.Writer) int {
	logf := func(format string, a ...any) { fmt.Fprintf(stderr, "loadtest: "+format+"\n", a...) }
	ports := newRoutingPorts(o.portBase, o.adminBase)
	if err := checkPortsFree(append(slices.Clone(ports.sims), addrOf(ports.port), addrOf(ports.admin),
		addrOf(ports.port+maxProxies-1), addrOf(ports.admin+maxProxies-1))); err != nil {
		logf("%v", err)
		return 1
	}
	cs := routingContenders()
	if o.routingAblate {
		cs = append(cs, ablations()...)
	}
	for _, pen := range strings.Split(o.routingPenalty, ",") {
		if pen = strings.TrimSpace(pen); pen != "" {
			cs = append(cs, routingContender{name: "penalty " + pen, lb: "adaptive", sticky: true, penalty: pen})
		}
	}
	if o.routingBaseline != "" {
		cs = append(cs, routingContender{name: "baseline adaptive+sticky", lb: "adaptive", sticky: true, bin: o.routingBaseline})
	}
	if o.routingOnly != "" {
		names := strings.Split(o.routingOnly, ",")
		for i := range names {
			names[i] = strings.TrimSpace(names[i])
		}
		cs = slices.DeleteFunc(cs, func(c routingContender) bool { return !slices.Contains(names, c.name) })
		if len(cs) == 0 {
			logf("-routing-only %q names no contender", o.routingOnly)
			return 2
		}
	}
	var est time.Duration
	for _, f := range fleetsToRun {
		est += time.Duration(len(cs)) * (f.warmup + f.duration(o.routingDuration) + 4*time.Second)
	}
	logf("routing: %d fleets x %d contenders, %s measured each; about %s", len(fleetsToRun), len(cs), o.routingDuration, est.Round(time.Second))
	results := make([][]routingStats, len(fleetsToRun))
	for fi, f := range fleetsToRun {
		results[fi] = make([]routingStats, len(cs))
		for k := range cs {
			ci := (fi + k) % len(cs) // rotate who goes first, so drift is shared out
			st, err := runRoutingOne(ctx, o, f, cs[ci], ports, sup, work)
			if err != nil {
				if ctx.Err() != nil {
					return 130
				}
				logf("fleet %s, %s: %v", f.key, cs[ci].name, err)
				st = routingStats{skipped: skipReason(err)}
			}
			results[fi][ci] = st
			printRoutingProgress(stderr, f, cs[ci], st)
		}
	}
	fmt.Fprintln(stdout)
	for fi, f := range fleetsToRun {
		printRoutingTable(stdout, f, cs, results[fi], o.routingDuration)
		fmt.Fprintln(stdout)
	}
	printRoutingTargets(stdout, fleetsToRun, cs, results)
	return 0
}

// skipReason says why a contender did not run: Caddy's own complaint when
// it refused the config (a feature another branch has not landed yet, say).
func skipReason(err error) string {
	s := err.Error()
	for _, line := range strings.Split(s, "\n") {
		var entry struct {
			Level string `json:"level"`
			Msg   string `json:"msg"`
		}
		if json.Unmarshal([]byte(line), &entry) == nil && entry.Level == "error" {
			return clip(entry.Msg, 200)
		}
	}
	return firstLine(s)
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return clip(s, 160)
}

// runRoutingOne starts f's simulators and c's Caddy, drives the users and
// reads the servers' counters.
func runRoutingOne(ctx context.Context, o options, f fleet, c routingContender, ports routingPorts,
	sup *supervisor, work workDirs) (routingStats, error) {
	backends := ports.sims[:len(f.opts)]
	logName := fmt.Sprintf("routing-%s-%s", f.key, c.slug())
	sims, err := startFleet(ctx, sup, o.simBin, f, backends, logName)
	if err != nil {
		return routingStats{}, err
	}
	defer sims.proc.stop(3 * time.Second)

	var urls []string
	var procs []*child
	defer func() {
		for _, p := range procs {
			p.stop(3 * time.Second)
		}
	}()
	for i := range f.proxyCount() {
		name := logName
		if i > 0 {
			name += fmt.Sprintf("-proxy%d", i+1)
		}
		cfg := filepath.Join(o.out, name+".Caddyfile")
		if err := os.WriteFile(cfg, []byte(c.caddyfile(f, backends, ports.port+i, ports.admin+i)), 0o644); err != nil {
			return routingStats{}, err
		}
		url := f.chatURL(ports.port + i)
		ready := []byte(fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":"ready?"}],"stream":false}`, f.models[0]))
		bin := work.caddy
		if c.bin != "" {
			bin = c.bin
		}
		p, err := startCaddyReady(ctx, sup, bin, cfg, name, url, ready)
		if err != nil {
			return routingStats{}, err
		}
		procs = append(procs, p)
		urls = append(urls, url)
	}

	w := newWindow(time.Now(), f.warmup, f.duration(o.routingDuration))
	resetDone := make(chan error, 1)
	go func() {
		if !sleepUntil(ctx, w.measureFrom) {
			resetDone <- ctx.Err()
			return
		}
		resetDone <- sims.resetStats(ctx)
	}()
	idleDone := make(chan [3]int, 1)
	if f.loadTime() > 0 {
		go func() { idleDone <- sims.idleWarm(ctx, w) }()
	} else {
		idleDone <- [3]int{}
	}
	out := driveSessions(ctx, f, urls, w)
	idle := <-idleDone
	if err := <-resetDone; err != nil {
		return routingStats{}, err
	}
	if ctx.Err() != nil {
		return routingStats{}, ctx.Err()
	}
	for _, p := range procs {
		if p.exited() {
			return routingStats{}, fmt.Errorf("%w (%v); log %s:\n%s", errProcessGone, p.err, p.log, p.logTail(15))
		}
	}
	st := out
	st.idleWarm, st.idleLasting, st.idleSamples = idle[0], idle[1], idle[2]
	if c.policy == "" && f.loadTime() > 0 {
		st.learned = learnedLoads(ctx, "http://"+addrOf(ports.port))
	}
	caps, split, err := sims.capacityStats(ctx, f.apiPath())
	if err != nil {
		return routingStats{}, err
	}
	for _, cp := range caps {
		st.prompt += cp.PromptTokens
		st.cached += cp.CachedTokens
		st.loads += cp.Loads
		st.loadSplit = append(st.loadSplit, cp.Loads)
		st.rejected += cp.Rejected
	}
	st.split = split
	for _, p := range procs {
		n, _ := logErrorLines(p.log)
		st.logErrors += n
	}
	return st, nil
}

// idleSampleEvery is how often idleWarm reads the servers.
const idleSampleEvery = 250 * time.Millisecond

// idleWarm reads, every idleSampleEvery over w's measured window, each
// server's resident models (/api/ps) and queue (/_sim/stats), and counts
// the readings where a server holding a model runs nothing while another
// holding it has requests waiting for a slot: the issue's "never a warm
// endpoint idle while another warm one queues". It returns that count and
// how many of them repeat the previous reading's pair, and the readings
// taken. (The servers are read one after another, so a reading spans a
// few milliseconds, and a request ending on one while the next arrives at
// another can show as one reading: a pair that lasts two readings is no
// such moment.)
func (s *simSet) idleWarm(ctx context.Context, w window) [3]int {
	if !sleepUntil(ctx, w.measureFrom) {
		return [3]int{}
	}
	var bad, lasting, samples int
	last := ""
	t := time.NewTicker(idleSampleEvery)
	defer t.Stop()
	for time.Now().Before(w.stopAt) {
		select {
		case <-ctx.Done():
			return [3]int{bad, lasting, samples}
		case <-t.C:
		}
		servers := make([]idleReading, len(s.urls))
		ok := true
		for i, u := range s.urls {
			var ps struct {
				Models []struct {
					Name string `json:"name"`
				} `json:"models"`
			}
			var st struct {
				Capacity *simCapacity `json:"capacity"`
			}
			if controlCall(ctx, http.MethodGet, u+"/api/ps", "", &ps) != nil ||
				controlCall(ctx, http.MethodGet, u+"/_sim/stats", "", &st) != nil || st.Capacity == nil {
				ok = false
				break
			}
			for _, m := range ps.Models {
				servers[i].models = append(servers[i].models, m.Name)
			}
			servers[i].running, servers[i].waiting = st.Capacity.Running, st.Capacity.Waiting
		}
		if !ok {
			continue
		}
		samples++
		now := idleWhileQueued(servers)
		if now != "" {
			bad++
			if now == last {
				lasting++
			}
		}
		last = now
	}
	return [3]int{bad, lasting, samples}
}

// idleWhileQueued names the first pair of servers (idle one, queueing
// one) that hold a model alike, or "".
func idleWhileQueued(servers []idleReading) string {
	for i, a := range servers {
		if a.running > 0 || a.waiting > 0 {
			continue
		}
		for j, b := range servers {
			if i != j && b.waiting > 0 && slices.ContainsFunc(a.models, func(m string) bool { return slices.Contains(b.models, m) }) {
				return fmt.Sprintf("%d>%d", i, j)
			}
		}
	}
	return ""
}

// idleReading is one server as idleWarm read it.
type idleReading struct {
	models           []string
	running, waiting int64
}

// learnedLoads reads the load times an olla proxy learned (its
// /internal/status/endpoints), sorted; none when it shows none.
func learnedLoads(ctx context.Context, base string) []time.Duration {
	sc := statusClient{base: base}
	eps, err := sc.endpoints(ctx)
	if err != nil {
		return nil
	}
	var out []time.Duration
	for _, ep := range eps {
		if ep.Signals == nil {
			continue
		}
		for _, m := range ep.Signals.Learned {
			if m.LoadMs > 0 {
				out = append(out, time.Duration(m.LoadMs*float64(time.Millisecond)))
			}
		}
	}
	slices.Sort(out)
	return out
}

// loadTime is the simulators' time to load a cold model (0: none).
func (f fleet) loadTime() time.Duration {
	for _, o := range strings.Split(f.opts[0], ";") {
		if v, ok := strings.CutPrefix(o, "load="); ok {
			d, _ := time.ParseDuration(v)
			return d
		}
	}
	return 0
}

// learnedText says what st's proxy learned of the load time, beside the
// simulators' true one.
func learnedText(st routingStats) string {
	switch len(st.learned) {
	case 0:
		return "-"
	case 1:
		return fmtMS(st.learned[0])
	}
	return fmt.Sprintf("%s-%s (%d)", fmtMS(st.learned[0]), fmtMS(st.learned[len(st.learned)-1]), len(st.learned))
}

// startFleet starts one simulator process serving f's backends.
func startFleet(ctx context.Context, sup *supervisor, bin string, f fleet, addrs []string, logName string) (*simSet, error) {
	var args []string
	s := &simSet{}
	for i, a := range addrs {
		opts := f.opts[i]
		if f.ctx > 0 {
			opts += fmt.Sprintf(";ctx=%d", f.ctx)
		}
		args = append(args, "-sim", fmt.Sprintf("%s@%s=%s;name=sim-%c;norecord;%s", f.kind, a, strings.Join(f.models, ","), 'a'+i, opts))
		s.urls = append(s.urls, "http://"+a)
	}
	p, err := sup.start("olla-sim", logName+"-sim", bin, args...)
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
			p.stop(3 * time.Second)
			return nil, fmt.Errorf("simulator %s: %w", u, err)
		}
	}
	return s, nil
}

// simCapacity is the part of GET /_sim/stats the routing runs read.
type simCapacity struct {
	Running      int64 `json:"running"`
	Waiting      int64 `json:"waiting"`
	PeakRunning  int64 `json:"peak_running"`
	Rejected     int64 `json:"rejected"`
	Loads        int64 `json:"loads"`
	PromptTokens int64 `json:"prompt_tokens"`
	CachedTokens int64 `json:"cached_tokens"`
}

// capacityStats reads every backend's capacity counters and how many chat
// requests (POST path) each received.
func (s *simSet) capacityStats(ctx context.Context, path string) ([]simCapacity, []int64, error) {
	caps := make([]simCapacity, len(s.urls))
	split := make([]int64, len(s.urls))
	for i, u := range s.urls {
		var st struct {
			ByPath   map[string]int64 `json:"by_path"`
			Capacity *simCapacity     `json:"capacity"`
		}
		if err := controlCall(ctx, http.MethodGet, u+"/_sim/stats", "", &st); err != nil {
			return nil, nil, err
		}
		if st.Capacity != nil {
			caps[i] = *st.Capacity
		}
		split[i] = st.ByPath["POST "+path]
	}
	return caps, split, nil
}

// startCaddyReady starts Caddy with config and waits until body POSTed to
// url answers 200. A config Caddy refuses comes back as the error, with the
// log's last lines.
func startCaddyReady(ctx context.Context, sup *supervisor, caddyBin, config, logName, url string, body []byte) (*child, error) {
	var err error
	for attempt := 1; attempt <= 3; attempt++ {
		var p *child
		p, err = sup.start("caddy", logName, caddyBin, "run", "--config", config, "--adapter", "caddyfile")
		if err != nil {
			return nil, err
		}
		err = waitHTTP(ctx, p, 30*time.Second, func(hc *http.Client) bool {
			res, err := hc.Post(url, "application/json", bytes.NewReader(body))
			if err != nil {
				return false
			}
			drain(res.Body)
			return res.StatusCode == http.StatusOK
		})
		if err == nil {
			return p, nil
		}
		p.stop(3 * time.Second)
		if !errors.Is(err, errExitedEarly) || ctx.Err() != nil || strings.Contains(err.Error(), "adapting config") ||
			strings.Contains(err.Error(), "loading config") {
			return nil, err
		}
		if !sleepUntil(ctx, time.Now().Add(time.Second)) {
			return nil, ctx.Err()
		}
	}
	return nil, err
}

// ---- the users ----

// userRecord is one user's measurements; only its goroutine writes it.
type userRecord struct {
	ttft                     []time.Duration
	shed429, shed503, failed int64
	sample                   string
	// the prompt tokens of the answered requests and how many of them a
	// server would have had cached with perfect affinity (see idealCached)
	idealPrompt, idealCached int64
}

// driveSessions runs f's users over w, each request to one of urls (the
// fleet's proxies), and merges what they measured.
func driveSessions(ctx context.Context, f fleet, urls []string, w window) routingStats {
	ctx, cancel := context.WithDeadline(ctx, w.stopAt.Add(drainLimit))
	defer cancel()
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConnsPerHost: f.users + 10,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr}
	systems := make([]string, max(f.systems, 1))
	for i := range systems {
		systems[i] = filler(rand.New(rand.NewPCG(7, uint64(i))), f.system)
	}
	tools := toolsJSON(f.tools)
	recs := make([]userRecord, f.users)
	var wg sync.WaitGroup
	for i := range recs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// the proxy draws come from a source of their own, so the
			// script is the same whatever the number of proxies
			u := &user{f: f, id: i, hc: hc, urls: urls, systems: systems, tools: tools,
				rng: rand.New(rand.NewPCG(42, uint64(i))), proxyRNG: rand.New(rand.NewPCG(43, uint64(i))),
				buf: make([]byte, 16<<10)}
			// users start spread over the warm-up's first half
			u.run(ctx, w.start.Add(time.Duration(i)*f.warmup/2/time.Duration(f.users)), w, &recs[i])
		}()
	}
	wg.Wait()
	var st routingStats
	var ttft []time.Duration
	var idealPrompt, idealCached int64
	seen := map[string]bool{}
	for i := range recs {
		r := &recs[i]
		ttft = append(ttft, r.ttft...)
		st.shed429 += r.shed429
		st.shed503 += r.shed503
		st.failed += r.failed
		idealPrompt += r.idealPrompt
		idealCached += r.idealCached
		if r.sample != "" && !seen[r.sample] && len(st.samples) < maxErrorSamples {
			seen[r.sample] = true
			st.samples = append(st.samples, r.sample)
		}
	}
	slices.Sort(ttft)
	if idealPrompt > 0 {
		st.ideal = float64(idealCached) / float64(idealPrompt)
	}
	st.ok = int64(len(ttft))
	st.ttftP50, st.ttftP99 = percentile(ttft, 0.5), percentile(ttft, 0.99)
	return st
}

// user runs chat sessions back to back: each turn resends the whole
// conversation with one more question, then the user thinks.
type user struct {
	f        fleet
	id       int
	hc       *http.Client
	urls     []string
	systems  []string
	tools    string
	rng      *rand.Rand
	proxyRNG *rand.Rand
	buf      []byte
	term     terminatorScan
	answer   answerScan
}

func (u *user) run(ctx context.Context, begin time.Time, w window, rec *userRecord) {
	if !sleepUntil(ctx, begin) {
		return
	}
	f := u.f
	var body bytes.Buffer
	var msgs []byte
	for session := 0; ; session++ {
		sid := fmt.Sprintf("user%d-session%d", u.id, session)
		model := f.models[pickWeighted(u.rng, f.popularity)]
		turns := 1
		msgs = msgs[:0]
		shared := 0 // bytes of the messages array this request shares with one a server saw
		if !f.single {
			turns = f.turns[0] + u.rng.IntN(f.turns[1]-f.turns[0]+1)
			msgs = appendMessage(msgs, "system", u.systems[u.rng.IntN(len(u.systems))])
			shared = 1 + len(msgs) // "[" and the shared system prompt
		}
		for t := 0; t < turns; t++ {
			msgs = appendMessage(msgs, "user", fmt.Sprintf("[%s turn %d] ", sid, t)+filler(u.rng, f.userBytes))
			body.Reset()
			fmt.Fprintf(&body, `{"model":%q,"stream":true,`, model)
			if u.tools != "" {
				fmt.Fprintf(&body, `"tools":%s,`, u.tools)
			}
			body.WriteString(`"messages":[`)
			body.Write(msgs)
			body.WriteString("]}")
			start := time.Now()
			if !start.Before(w.stopAt) || ctx.Err() != nil {
				return
			}
			ttft, status, detail := u.once(ctx, body.Bytes(), sid)
			answered := status == http.StatusOK && detail == ""
			if !start.Before(w.measureFrom) {
				switch {
				case answered:
					rec.ttft = append(rec.ttft, ttft)
					prompt, cached := idealCached(len(msgs)+2, shared)
					rec.idealPrompt += prompt
					rec.idealCached += cached
				case status == http.StatusTooManyRequests:
					rec.shed429++
				case status == http.StatusServiceUnavailable:
					rec.shed503++
				default:
					rec.failed++
					if rec.sample == "" {
						rec.sample = fmt.Sprintf("status %d: %s", status, detail)
					}
				}
			}
			// The conversation goes on whatever the answer was, so every
			// contender sees the same script: the reply is drawn every
			// time, and sent back only if the server gave none. A client
			// resends the answer it was given, and a server caches the
			// blocks it decoded, so the next turn shares the answer too.
			reply, given := filler(u.rng, f.replyBytes), answered && u.answer.text.Len() > 0
			if given {
				reply = u.answer.text.String()
			}
			msgs = appendMessage(msgs, "assistant", reply)
			shared = 1 + len(msgs)
			if !given { // no server decoded this reply, so none has it cached
				shared -= len(reply) + len(`,{"role":"assistant","content":""}`)
			}
			think := f.think[0] + time.Duration(u.rng.Int64N(int64(f.think[1]-f.think[0])+1))
			if !sleepUntil(ctx, time.Now().Add(think)) {
				return
			}
		}
	}
}

// once sends one chat request and reads the stream to its end. It returns
// the time to the first body byte (the first token: the servers send
// nothing before it), the status, and a description when the answer was
// not a complete 200.
func (u *user) once(ctx context.Context, body []byte, sid string) (time.Duration, int, string) {
	url := u.urls[0]
	if len(u.urls) > 1 {
		url = u.urls[u.proxyRNG.IntN(len(u.urls))]
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, 0, err.Error()
	}
	req.Header.Set("Content-Type", "application/json")
	if !u.f.noSession {
		req.Header.Set(sessionHeader, sid)
	}
	start := time.Now()
	res, err := u.hc.Do(req)
	if err != nil {
		return 0, 0, err.Error()
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		n, _ := io.ReadFull(res.Body, u.buf[:200])
		_, _ = io.Copy(io.Discard, res.Body)
		return 0, res.StatusCode, string(bytes.TrimSpace(u.buf[:n]))
	}
	u.term.reset(ndjsonDone)
	if strings.HasPrefix(res.Header.Get("Content-Type"), "text/event-stream") {
		u.term.reset(sseDone)
	}
	u.answer.reset()
	var first time.Time
	for {
		n, err := res.Body.Read(u.buf)
		if n > 0 {
			if first.IsZero() {
				first = time.Now()
			}
			u.term.feed(u.buf[:n])
			u.answer.feed(u.buf[:n])
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return 0, res.StatusCode, "read: " + err.Error()
		}
	}
	if !u.term.found {
		return 0, res.StatusCode, "truncated: no " + u.term.pat
	}
	return first.Sub(start), res.StatusCode, ""
}

// answerScan collects a streamed answer's text from its lines: OpenAI
// chunks' delta.content (SSE) or Ollama's message.content (NDJSON).
type answerScan struct {
	line []byte
	text strings.Builder
}

// maxAnswerLine bounds a line kept while it is incomplete.
const maxAnswerLine = 64 << 10

func (a *answerScan) reset() { a.line, a.text = a.line[:0], strings.Builder{} }

func (a *answerScan) feed(p []byte) {
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			if len(a.line)+len(p) <= maxAnswerLine {
				a.line = append(a.line, p...)
			}
			return
		}
		a.line = append(a.line, p[:i]...)
		a.parse(a.line)
		a.line, p = a.line[:0], p[i+1:]
	}
}

func (a *answerScan) parse(line []byte) {
	line = bytes.TrimPrefix(bytes.TrimSpace(line), []byte("data:"))
	line = bytes.TrimSpace(line)
	if len(line) == 0 || line[0] != '{' {
		return
	}
	var chunk struct {
		Choices []struct {
			Delta struct {
				Content string `json:"content"`
			} `json:"delta"`
		} `json:"choices"`
		Message struct {
			Content string `json:"content"`
		} `json:"message"`
	}
	if json.Unmarshal(line, &chunk) != nil {
		return
	}
	for _, c := range chunk.Choices {
		a.text.WriteString(c.Delta.Content)
	}
	a.text.WriteString(chunk.Message.Content)
}

// idealCached is a request's prompt tokens and how many of them a server
// holding shared bytes of its messages array would find cached, as the
// simulator counts them: 20 + bytes/4 tokens, cached in whole blocks of 16
// tokens (64 bytes) from the start.
func idealCached(messagesLen, shared int) (prompt, cached int64) {
	prompt = int64(20 + messagesLen/4)
	cached = min(int64(shared/64)*16, prompt)
	return prompt, cached
}

// toolsJSON is a tools array of about n bytes that every session of a
// fleet sends alike (0: none). The simulators do not count it as prompt;
// it is there so that the proxy hashes what an agent's request carries.
func toolsJSON(n int) string {
	if n <= 0 {
		return ""
	}
	rng := rand.New(rand.NewPCG(9, 9))
	var b strings.Builder
	b.WriteByte('[')
	for i := 0; b.Len() < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"type":"function","function":{"name":"tool%d","description":%q,"parameters":{"type":"object","properties":{"path":{"type":"string"}}}}}`,
			i, filler(rng, 300))
	}
	b.WriteByte(']')
	return b.String()
}

// appendMessage adds one chat message to a JSON array's contents; text
// needs no escaping (filler is letters and spaces, the tag plain ASCII).
func appendMessage(msgs []byte, role, text string) []byte {
	if len(msgs) > 0 {
		msgs = append(msgs, ',')
	}
	msgs = append(msgs, `{"role":"`...)
	msgs = append(msgs, role...)
	msgs = append(msgs, `","content":"`...)
	msgs = append(msgs, text...)
	return append(msgs, `"}`...)
}

var fillerWords = strings.Fields("the model answers each question with care and a little more detail than " +
	"asked so that routing has real prompts to cache tokens blocks prefix server queue slot batch decode " +
	"prefill latency first token time session turn system prompt user assistant context window memory")

// filler is n bytes of words drawn from rng.
func filler(rng *rand.Rand, n int) string {
	var b strings.Builder
	b.Grow(n + 16)
	for b.Len() < n {
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(fillerWords[rng.IntN(len(fillerWords))])
	}
	return b.String()[:n]
}

// pickWeighted draws an index with the given weights (nil: 0).
func pickWeighted(rng *rand.Rand, weights []float64) int {
	if len(weights) == 0 {
		return 0
	}
	x := rng.Float64()
	for i, w := range weights {
		if x < w {
			return i
		}
		x -= w
	}
	return len(weights) - 1
}

// ---- report ----

func printRoutingProgress(w io.Writer, f fleet, c routingContender, st routingStats) {
	if st.skipped != "" {
		fmt.Fprintf(w, "loadtest: routing %-6s %-24s not run: %s\n", f.key, c.name, st.skipped)
		return
	}
	learned := ""
	if f.loadTime() > 0 {
		learned = fmt.Sprintf(" %v, learned load %s (true %s), warm idle while warm queued %d/%d (lasting %d)", st.loadSplit, learnedText(st), f.loadTime(),
			st.idleWarm, st.idleSamples, st.idleLasting)
	}
	fmt.Fprintf(w, "loadtest: routing %-6s %-24s ok %d, shed %d/%d, failed %d, TTFT p50 %s p99 %s, prefix hit %.2f, loads %d%s, split %v\n",
		f.key, c.name, st.ok, st.shed429, st.shed503, st.failed, st.ttftP50.Round(time.Millisecond), st.ttftP99.Round(time.Millisecond),
		st.hitRatio(), st.loads, learned, st.split)
	for _, s := range st.samples {
		fmt.Fprintf(w, "loadtest:   %s\n", clip(s, 200))
	}
}

// printRoutingTable prints one fleet's markdown table.
func printRoutingTable(w io.Writer, f fleet, cs []routingContender, res []routingStats, routingDurationShown time.Duration) {
	fmt.Fprintf(w, "### (%s) %s\n\n%d users, think %s-%s, offered load %s, %s measured; TTFT is the client's time to the first streamed byte\n\n",
		f.key, f.title, f.users, f.think[0], f.think[1], f.load, f.duration(routingDurationShown))
	if strings.Contains(f.opts[0], "cache=") {
		fmt.Fprintf(w, "Prefix hit: cached prompt tokens over prompt tokens at the servers; with every turn on a server holding the previous one it would be %.3f.\n\n", idealOf(res))
	}
	loads := f.loadTime() > 0
	head, rule := "", ""
	if loads {
		fmt.Fprintf(w, "Learned load: the load times the proxy learned per endpoint and model (/internal/status/endpoints), lowest-highest (how many); the simulators take %s. Idle warm: readings of the servers every %s in which one holding a model ran nothing while another holding it queued, of all readings (in brackets those where the same pair did in the reading before).\n\n",
			f.loadTime(), idleSampleEvery)
		head, rule = " learned load | idle warm |", "---:|---:|"
	}
	fmt.Fprintln(w, "| contender | TTFT p50 | TTFT p99 | answered | success | shed 429/503 | failed | prefix hit | model loads |"+head+" backend 503s | requests per backend |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|"+rule+"---:|---|")
	for i, c := range cs {
		st := res[i]
		if st.skipped != "" {
			fmt.Fprintf(w, "| %s | not run: %s |||||||||\n", c.name, clip(strings.ReplaceAll(st.skipped, "|", "/"), 110))
			continue
		}
		succ := 0.0
		if st.total() > 0 {
			succ = 100 * float64(st.ok) / float64(st.total())
		}
		learned := ""
		if loads {
			learned = fmt.Sprintf(" %s | %d/%d (%d) |", learnedText(st), st.idleWarm, st.idleSamples, st.idleLasting)
		}
		fmt.Fprintf(w, "| %s | %s | %s | %d | %.1f %% | %d/%d | %d | %.3f | %d |%s %d | %s |\n", c.name,
			fmtMS(st.ttftP50), fmtMS(st.ttftP99), st.total(), succ, st.shed429, st.shed503, st.failed, st.hitRatio(),
			st.loads, learned, st.rejected, joinInts(st.split))
	}
}

// idealOf is the ideal prefix hit ratio of a fleet's run (the same script
// for every contender, so the first that ran says it).
func idealOf(res []routingStats) float64 {
	for _, st := range res {
		if st.ok > 0 {
			return st.ideal
		}
	}
	return 0
}

func fmtMS(d time.Duration) string {
	if d >= 10*time.Second {
		return fmt.Sprintf("%.1f s", d.Seconds())
	}
	return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond))
}

func joinInts(v []int64) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = fmt.Sprint(n)
	}
	return strings.Join(s, " / ")
}

// bestOther is the index of the baseline contender that does best on
// value (lower is better), or -1.
func bestOther(cs []routingContender, res []routingStats, value func(routingStats) float64) int {
	best := -1
	for i, c := range cs {
		if !c.baseline || res[i].skipped != "" || res[i].ok == 0 {
			continue
		}
		if best < 0 || value(res[i]) < value(res[best]) {
			best = i
		}
	}
	return best
}

// printRoutingTargets prints, per fleet and adaptive contender, the issue's
// "Done when" rows as ratios against the best baseline contender (Caddy's
// round_robin and least_conn, our least-connections) in the same run.
func printRoutingTargets(w io.Writer, fs []fleet, cs []routingContender, results [][]routingStats) {
	fmt.Fprintln(w, "### Targets (issue 20): ratios against the best of caddy round_robin, caddy least_conn and olla least-connections in the same run")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| fleet | contender | measure | value | against | ratio | target | met |")
	fmt.Fprintln(w, "|---|---|---|---:|---|---:|---|---|")
	p50 := func(s routingStats) float64 { return float64(s.ttftP50) }
	p99 := func(s routingStats) float64 { return float64(s.ttftP99) }
	loads := func(s routingStats) float64 { return float64(s.loads) }
	ms := func(v float64) string { return fmtMS(time.Duration(v)) }
	count := func(v float64) string { return fmt.Sprint(int64(v)) }
	rr := slices.IndexFunc(cs, func(c routingContender) bool { return c.policy == "round_robin" })
	baseline := slices.IndexFunc(cs, func(c routingContender) bool { return c.bin != "" })
	for fi, f := range fs {
		res := results[fi]
		for i, c := range cs {
			if !c.adaptive() || c.bin != "" {
				continue
			}
			st := res[i]
			if st.skipped != "" {
				fmt.Fprintf(w, "| %s | %s | not run | | | | | |\n", f.key, c.name)
				continue
			}
			row := func(measure string, value func(routingStats) float64, show func(float64) string, target float64, against int) {
				if against < 0 || res[against].skipped != "" || res[against].ok == 0 {
					fmt.Fprintf(w, "| %s | %s | %s | %s | none | | <= %.2fx | |\n", f.key, c.name, measure, show(value(st)), target)
					return
				}
				ratio := 0.0
				if v := value(res[against]); v > 0 {
					ratio = value(st) / v
				} else if value(st) == 0 {
					ratio = 1
				} else {
					ratio = 999
				}
				fmt.Fprintf(w, "| %s | %s | %s | %s | %s (%s) | %.2fx | <= %.2fx | %s |\n", f.key, c.name, measure, show(value(st)),
					cs[against].name, show(value(res[against])), ratio, target, yesNo(ratio <= target))
			}
			full := strings.Contains(f.load, "100")
			switch f.goal {
			case "a":
				if full {
					row("TTFT p50", p50, ms, 1.05, bestOther(cs, res, p50))
					row("TTFT p99", p99, ms, 1.05, bestOther(cs, res, p99))
					break
				}
				row("TTFT p50", p50, ms, 0.6, bestOther(cs, res, p50))
				row("TTFT p99", p99, ms, 0.8, bestOther(cs, res, p99))
				fmt.Fprintf(w, "| %s | %s | prefix hit ratio | %.3f | ideal for this script %.3f | %.2fx of ideal | >= 0.90x | %s |\n", f.key, c.name,
					st.hitRatio(), st.ideal, st.hitRatio()/max(st.ideal, 1e-9), yesNo(st.hitRatio() >= 0.9*st.ideal))
			case "c":
				row("TTFT p50", p50, ms, 0.2, bestOther(cs, res, p50))
				row("model loads", loads, count, 0.3, bestOther(cs, res, loads))
				if f.key != "c" {
					row("TTFT p99", p99, ms, 1.0, bestOther(cs, res, p99))
				}

			case "c-fast":
				row("TTFT p50", p50, ms, 1.0, bestOther(cs, res, p50))
				row("TTFT p99", p99, ms, 1.0, bestOther(cs, res, p99))
			}
			if f.goal == "c" || f.goal == "c-fast" {
				fmt.Fprintf(w, "| %s | %s | readings with a warm server idle while another warm one queued | %d of %d (%d for two readings) | | | 0 | %s |\n",
					f.key, c.name, st.idleWarm, st.idleSamples, st.idleLasting, yesNo(st.idleWarm == 0))
			}
			switch f.goal {
			case "d":
				row("TTFT p99", p99, ms, 0.7, bestOther(cs, res, p99))
			case "e":
				row("TTFT p50", p50, ms, 1.05, bestOther(cs, res, p50))
				row("TTFT p99", p99, ms, 1.05, bestOther(cs, res, p99))
			case "f":
				bi := slices.IndexFunc(fs, func(g fleet) bool { return g.key == f.base })
				if bi < 0 || results[bi][i].skipped != "" || results[bi][i].ok == 0 {
					fmt.Fprintf(w, "| %s | %s | prefix hit ratio vs one proxy | %.3f | run fleet %s in the same run | | >= 0.95x | |\n", f.key, c.name, st.hitRatio(), f.base)
					break
				}
				one := results[bi][i].hitRatio()
				fmt.Fprintf(w, "| %s | %s | prefix hit ratio vs one proxy | %.3f | %s, one proxy (%.3f) | %.2fx | >= 0.95x | %s |\n", f.key, c.name,
					st.hitRatio(), f.base, one, st.hitRatio()/max(one, 1e-9), yesNo(st.hitRatio() >= 0.95*one))
			case "g":
				row("TTFT p50", p50, ms, 1.05, bestOther(cs, res, p50))
				row("TTFT p99", p99, ms, 1.05, bestOther(cs, res, p99))
			}
			if f.key == "d-sid" {
				row("TTFT p99 (with session ids)", p99, ms, 0.7, bestOther(cs, res, p99))
			}
			if baseline >= 0 && c.name == shippedName {
				row("TTFT p50 vs the baseline build", p50, ms, 1.05, baseline)
				row("TTFT p99 vs the baseline build", p99, ms, 1.05, baseline)
			}
			if c.name == shippedName {
				row("TTFT p50 vs caddy round_robin", p50, ms, 1.0, rr)
				row("TTFT p99 vs caddy round_robin", p99, ms, 1.0, rr)
			}
			fmt.Fprintf(w, "| %s | %s | failed requests (shed + failed) | %d | | | 0 | %s |\n", f.key, c.name,
				st.shed429+st.shed503+st.failed, yesNo(st.shed429+st.shed503+st.failed == 0))
		}
	}
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "**no**"
}

// fleetHelp describes the fleets for -h.
func fleetHelp() string {
	var parts []string
	for _, f := range fleets() {
		parts = append(parts, "("+f.key+") "+f.title)
	}
	return strings.Join(parts, "; ")
}
