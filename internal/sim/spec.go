package sim

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// Spec is a simulator to start: where, and how it behaves.
type Spec struct {
	Addr   string // host:port to listen on
	Config Config
}

// SpecSyntax describes the text form ParseSpec accepts.
const SpecSyntax = "KIND@ADDR[=MODEL[,MODEL...]][;ttft=DURATION][;tps=N][;tokens=N][;name=LABEL][;dims=N][;norecord]" +
	"[;slots=N][;queue=N][;reject][;prefill=DURATION][;cache=BLOCKS][;block=TOKENS][;slowdown=F][;maxloaded=N][;load=DURATION][;router]"

// ParseSpec parses the text form of a simulator, as given to olla-sim's
// -sim flag:
//
//	KIND@ADDR[=MODEL[,MODEL...]][;ttft=100ms][;tps=50][;tokens=20][;name=x][;dims=768][;norecord]
//
// for example "ollama@127.0.0.1:11434=llama3.2:latest,phi4-mini;ttft=100ms;tps=50".
// The capacity options set Config.Capacity: slots=N parallel requests,
// queue=N waiting (or reject: 503 when every slot is busy, as llama-server
// does), prefill=DURATION per uncached prompt token, cache=BLOCKS of
// block=TOKENS for the prefix cache, slowdown=F per extra running request,
// maxloaded=N resident models and load=DURATION to load a cold one;
// ctx=TOKENS sets Config.ContextLength.
// norecord (also norecord=true or norecord=false) sets Config.NoRecord: the
// simulator stops keeping the last request for /_sim/last, which costs an
// allocation per request; load runs set it.
// KIND is a kind name or alias (see NormalizeKind). ADDR is host:port, :port
// or port; an empty host means 127.0.0.1 (give 0.0.0.0 to listen on every
// interface). Without models the simulator serves "tiny".
func ParseSpec(text string) (Spec, error) {
	var sp Spec
	kindText, rest, ok := strings.Cut(strings.TrimSpace(text), "@")
	if !ok {
		return sp, fmt.Errorf("sim spec %q: missing '@' (want %s)", text, SpecSyntax)
	}
	kind, ok := NormalizeKind(kindText)
	if !ok {
		return sp, fmt.Errorf("sim spec %q: unknown kind %q (want one of %s)", text, kindText, strings.Join(Kinds(), ", "))
	}
	sp.Config.Kind = kind

	end := strings.IndexAny(rest, "=;")
	if end < 0 {
		end = len(rest)
	}
	addr, err := normalizeAddr(rest[:end])
	if err != nil {
		return sp, fmt.Errorf("sim spec %q: %w", text, err)
	}
	sp.Addr = addr
	rest = rest[end:]

	if strings.HasPrefix(rest, "=") {
		modelsText := rest[1:]
		rest = ""
		if i := strings.IndexByte(modelsText, ';'); i >= 0 {
			modelsText, rest = modelsText[:i], modelsText[i:]
		}
		for _, m := range strings.Split(modelsText, ",") {
			m = strings.TrimSpace(m)
			if m == "" {
				return sp, fmt.Errorf("sim spec %q: empty model name", text)
			}
			sp.Config.Models = append(sp.Config.Models, m)
		}
	}

	seen := map[string]bool{}
	for _, opt := range strings.Split(strings.TrimPrefix(rest, ";"), ";") {
		opt = strings.TrimSpace(opt)
		if opt == "" {
			continue
		}
		key, val, ok := strings.Cut(opt, "=")
		key = strings.ToLower(strings.TrimSpace(key))
		val = strings.TrimSpace(val)
		if (key == "norecord" || key == "reject" || key == "router") && !ok {
			val, ok = "true", true // a bare flag
		}
		if !ok || val == "" {
			return sp, fmt.Errorf("sim spec %q: option %q needs a value (key=value)", text, opt)
		}
		if seen[key] {
			return sp, fmt.Errorf("sim spec %q: option %q given twice", text, key)
		}
		seen[key] = true
		switch key {
		case "ttft":
			d, err := time.ParseDuration(val)
			if err != nil || d < 0 {
				return sp, fmt.Errorf("sim spec %q: ttft %q is not a duration like 100ms", text, val)
			}
			sp.Config.TTFT = d
		case "tps":
			f, err := strconv.ParseFloat(val, 64)
			if err != nil || f < 0 || f != f || f > 1e9 {
				return sp, fmt.Errorf("sim spec %q: tps %q is not a non-negative number", text, val)
			}
			sp.Config.TokensPerSecond = f
		case "tokens":
			n, err := strconv.Atoi(val)
			if err != nil || n <= 0 {
				return sp, fmt.Errorf("sim spec %q: tokens %q is not a positive integer", text, val)
			}
			sp.Config.Tokens = n
		case "dims":
			n, err := strconv.Atoi(val)
			if err != nil || n <= 0 || n > maxEmbeddingDims {
				return sp, fmt.Errorf("sim spec %q: dims %q is not an integer in 1..%d", text, val, maxEmbeddingDims)
			}
			sp.Config.EmbeddingDims = n
		case "name":
			sp.Config.Name = val
		case "norecord":
			b, err := strconv.ParseBool(val)
			if err != nil {
				return sp, fmt.Errorf("sim spec %q: norecord %q is not true or false", text, val)
			}
			sp.Config.NoRecord = b
		case "ctx":
			n, err := strconv.Atoi(val)
			if err != nil || n <= 0 || n > 1<<22 {
				return sp, fmt.Errorf("sim spec %q: ctx %q is not a context length in 1..%d tokens", text, val, 1<<22)
			}
			sp.Config.ContextLength = n
		case "slots", "queue", "cache", "block", "maxloaded":
			n, err := strconv.Atoi(val)
			if err != nil || n < 0 || n > 1<<20 {
				return sp, fmt.Errorf("sim spec %q: %s %q is not an integer in 0..%d", text, key, val, 1<<20)
			}
			switch key {
			case "slots":
				sp.Config.Capacity.Slots = n
			case "queue":
				sp.Config.Capacity.QueueMax = n
			case "cache":
				sp.Config.Capacity.CacheBlocks = n
			case "block":
				sp.Config.Capacity.BlockTokens = n
			case "maxloaded":
				sp.Config.Capacity.MaxLoaded = n
			}
		case "prefill", "load":
			d, err := time.ParseDuration(val)
			if err != nil || d < 0 {
				return sp, fmt.Errorf("sim spec %q: %s %q is not a duration like 2ms", text, key, val)
			}
			if key == "prefill" {
				sp.Config.Capacity.PrefillPerToken = d
			} else {
				sp.Config.Capacity.LoadTime = d
			}
		case "slowdown":
			f, err := strconv.ParseFloat(val, 64)
			if err != nil || f < 0 || f != f || f > 100 {
				return sp, fmt.Errorf("sim spec %q: slowdown %q is not a number in 0..100", text, val)
			}
			sp.Config.Capacity.DecodeSlowdown = f
		case "router":
			b, err := strconv.ParseBool(val)
			if err != nil {
				return sp, fmt.Errorf("sim spec %q: router %q is not true or false", text, val)
			}
			sp.Config.Router = b
		case "reject":
			b, err := strconv.ParseBool(val)
			if err != nil {
				return sp, fmt.Errorf("sim spec %q: reject %q is not true or false", text, val)
			}
			sp.Config.Capacity.RejectWhenFull = b
		default:
			return sp, fmt.Errorf("sim spec %q: unknown option %q (want ttft, tps, tokens, name, dims, norecord, ctx, "+
				"slots, queue, reject, prefill, cache, block, slowdown, maxloaded, load or router)", text, key)
		}
	}
	if err := sp.Config.Validate(); err != nil {
		return sp, fmt.Errorf("sim spec %q: %w", text, err)
	}
	return sp, nil
}

func normalizeAddr(a string) (string, error) {
	a = strings.TrimSpace(a)
	if a == "" {
		return "", fmt.Errorf("missing address after '@'")
	}
	if _, err := strconv.ParseUint(a, 10, 16); err == nil {
		a = ":" + a
	}
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		return "", fmt.Errorf("bad address %q: %v", a, err)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return "", fmt.Errorf("bad port %q in address %q", port, a)
	}
	if host == "" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port), nil
}
