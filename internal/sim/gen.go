package sim

import (
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"
	"unicode/utf8"
)

// ---- request decoding ----

// reqFields holds the few request fields the simulator looks at. Unknown
// fields are skipped. The raw values point into the request body buffer.
type reqFields struct {
	Model               string   `json:"model"`
	Name                string   `json:"name"` // Ollama /api/show legacy field
	Stream              optBool  `json:"stream"`
	StreamOptions       streamOp `json:"stream_options"`
	MaxTokens           float64  `json:"max_tokens"`
	MaxCompletionTokens float64  `json:"max_completion_tokens"`
	NPredict            float64  `json:"n_predict"`
	Options             options  `json:"options"`
	Messages            rawVal   `json:"messages"`
	Prompt              rawVal   `json:"prompt"`
	Input               rawVal   `json:"input"`
	MaxOutputTokens     float64  `json:"max_output_tokens"` // Responses API
	Dimensions          int      `json:"dimensions"`
	EncodingFormat      string   `json:"encoding_format"`
	KeepAlive           rawVal   `json:"keep_alive"` // Ollama: how long the model stays loaded after the answer
}

type streamOp struct {
	IncludeUsage bool `json:"include_usage"`
}

type options struct {
	NumPredict float64 `json:"num_predict"`
}

// optBool is a JSON boolean that remembers whether it was present.
type optBool uint8

const (
	boolUnset optBool = iota
	boolFalse
	boolTrue
)

var errNotBool = errors.New("json: cannot unmarshal non-boolean value into Go struct field .stream of type bool")

// UnmarshalJSON implements json.Unmarshaler.
func (o *optBool) UnmarshalJSON(b []byte) error {
	switch string(b) {
	case "true":
		*o = boolTrue
	case "false":
		*o = boolFalse
	case "null":
		*o = boolUnset
	default:
		return errNotBool
	}
	return nil
}

// rawVal is a JSON value kept as raw bytes (nil when absent or null). It
// aliases the request body, which outlives the handler's use of it.
type rawVal []byte

// UnmarshalJSON implements json.Unmarshaler.
func (r *rawVal) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*r = nil
		return nil
	}
	*r = b
	return nil
}

// empty reports whether the value is absent, null, "" or [].
func (r rawVal) empty() bool {
	return len(r) == 0 || string(r) == `""` || string(r) == "[]"
}

var errEmptyBody = errors.New("EOF")

// parse decodes the request body into c.sc.req.
func (c *call) parse() (*reqFields, error) {
	req := &c.sc.req
	*req = reqFields{}
	if len(trimSpace(c.body)) == 0 {
		return req, errEmptyBody
	}
	if err := json.Unmarshal(c.body, req); err != nil {
		return req, err
	}
	return req, nil
}

// tokenCap is the generation limit the request asks for (0 = none).
func (r *reqFields) tokenCap() int {
	for _, v := range [...]float64{r.Options.NumPredict, r.MaxTokens, r.MaxCompletionTokens, r.NPredict} {
		if v > 0 {
			return int(v)
		}
	}
	return 0
}

// promptTokens estimates the prompt length in tokens (about 4 bytes each,
// plus the chat template's overhead).
// promptBytes is what the prefix cache sees of a request: its messages or
// prompt as sent.
func promptBytes(r *reqFields) []byte {
	if len(r.Messages) > 0 {
		return r.Messages
	}
	return r.Prompt
}

func (r *reqFields) promptTokens() int {
	n := len(r.Messages) + len(r.Prompt)
	if len(r.Messages) > 0 {
		return 20 + n/4
	}
	return 1 + n/4
}

// ---- generation ----

// dialect is one (server, API) wire format.
type dialect uint8

const (
	dOllamaChat dialect = iota
	dOllamaGenerate
	dOllamaV1Chat
	dOllamaV1Completion
	dLlamaChat
	dLlamaCompletion
	dVLLMChat
	dVLLMCompletion
	dLMSChat
	dLMSCompletion
	dOpenAIChat
	dOpenAICompletion
	// Anthropic Messages: Ollama's shape, and the standard one (llama.cpp,
	// vLLM, LM Studio), which adds stop_sequence and cache counts
	dOllamaMessages
	dMessages
	// OpenAI's Responses API event stream (Ollama, vLLM, LM Studio)
	dResponses
)

// gen is the state of one generated answer.
type gen struct {
	d       dialect
	tool    string // Messages: the tool a non-stream answer calls, "" for text
	model   []byte // JSON string literal, quotes included
	id      []byte // completion id, plain ASCII
	created int64  // unix seconds
	n       int    // tokens to generate
	finish  string // "length" or "stop"
	prompt  int    // prompt tokens
	usage   bool   // stream_options.include_usage
	seed    uint64
	pre     int // events before the first token
	post    int // events after the last token
	ttft    time.Duration
	every   time.Duration // between tokens
	base    time.Duration // every as set by SetTiming when the request came, before the capacity model's slowdown
	start   time.Time
	first   time.Time // first token
	last    time.Time // end of generation
}

// words is the vocabulary of the simulated models (nonsense English, like
// the random-weight model of the fixtures). No entry needs JSON escaping.
var words = [...]string{
	" one", " world", " they", " forest", " happy", " spend", " tell", " ten",
	" bright", " love", " off", " your", " so", " fall", " yes", " write",
	" break", " smile", " my", " nothing", " hot", " candy", " coat", " dad",
	" die", " her", " into", " stop", " serve", " tomorrow", " with", " pay",
	" feel", " sometimes", " said", " have", " shiny", " appear", " down", " also",
	" produce", " saw", " only", " choose", " old", " king", " cover", " river",
	" high", " quiet", " does", " although", " find", " might", " first", " warm",
	" gentle", " never", " by", " sad", " silly", " may", " too", " box",
}

func (g *gen) word(i int) string {
	x := g.seed + uint64(i)*0x9E3779B97F4A7C15
	x ^= x >> 29
	x *= 0xBF58476D1CE4E5B9
	x ^= x >> 32
	return words[x%uint64(len(words))]
}

// newGen prepares the answer for req on dialect d.
// A prompt longer than the context window is truncated to it (the servers
// that reject such prompts did so before calling newGen).
func (s *Sim) newGen(c *call, d dialect, req *reqFields, model string, ctx int) *gen {
	g := &c.sc.g
	ttft, every, tokens := s.timing()
	*g = gen{d: d, created: c.start.Unix(), n: tokens, finish: "stop", prompt: min(req.promptTokens(), ctx),
		usage: req.StreamOptions.IncludeUsage, seed: rand.Uint64(), ttft: ttft, every: every, base: every, start: c.start}
	if capN := req.tokenCap(); capN > 0 && capN <= tokens {
		g.n, g.finish = capN, "length"
	}
	tmp := c.sc.tmp[:0]
	tmp = appendString(tmp, model)
	ml := len(tmp)
	tmp = appendID(tmp, d, g.seed)
	c.sc.tmp = tmp
	g.model, g.id = tmp[:ml], tmp[ml:]
	g.pre, g.post = g.plan()
	return g
}

const alnum = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// appendID appends a completion id in the server's style.
func appendID(b []byte, d dialect, seed uint64) []byte {
	r := rand.Uint64()
	switch d {
	case dOllamaChat, dOllamaGenerate:
		return b
	case dOllamaMessages:
		b = append(b, "msg_"...)
		for i := 0; i < 24; i++ {
			b = append(b, hexDigits[r>>(i%16*4)&15])
			if i == 15 {
				r = rand.Uint64()
			}
		}
		return b
	case dOllamaV1Chat:
		return strconv.AppendUint(append(b, "chatcmpl-"...), seed%1000, 10)
	case dOllamaV1Completion:
		return strconv.AppendUint(append(b, "cmpl-"...), seed%1000, 10)
	case dLlamaChat, dLlamaCompletion, dMessages:
		b = append(b, "chatcmpl-"...)
		for i := 0; i < 32; i++ {
			if i%10 == 0 {
				r = rand.Uint64()
			}
			b = append(b, alnum[r%62])
			r /= 62
		}
		return b
	case dVLLMChat, dVLLMCompletion:
		if d == dVLLMChat {
			b = append(b, "chatcmpl-"...)
		} else {
			b = append(b, "cmpl-"...)
		}
		const hexd = "0123456789abcdef"
		r2 := rand.Uint64()
		for i := 0; i < 16; i++ {
			b = append(b, hexd[r>>(i*4)&15])
		}
		for i := 0; i < 16; i++ {
			b = append(b, hexd[r2>>(i*4)&15])
		}
		return b
	case dLMSCompletion, dOpenAICompletion:
		b = append(b, "cmpl-"...)
	default:
		b = append(b, "chatcmpl-"...)
	}
	for i := 0; i < 24; i++ {
		if i%10 == 0 {
			r = rand.Uint64()
		}
		b = append(b, alnum[r%62])
		r /= 62
	}
	return b
}

// plan returns how many events come before the first token and after the
// last one in a stream.
func (g *gen) plan() (pre, post int) {
	u := 0
	if g.usage {
		u = 1
	}
	switch g.d {
	case dOllamaChat, dOllamaGenerate:
		return 0, 1 // final done:true line
	case dLlamaChat:
		return 1, 2 + u // role chunk; finish, [usage], [DONE]
	case dLlamaCompletion:
		return 0, 2 // finish (with usage when asked), [DONE]
	case dVLLMChat, dOpenAIChat:
		return 1, 2 + u
	case dOllamaMessages, dMessages:
		return 2, 3 // message_start, content_block_start; content_block_stop, message_delta, message_stop
	case dResponses:
		return 4, 4 // created, in_progress, output_item.added, content_part.added; the .done events, completed
	}
	return 0, 2 + u // finish, [usage], [DONE]
}

// pacer waits on one reusable timer and gives up when the client leaves.
type pacer struct {
	ctx context.Context
	t   *time.Timer
}

func (p *pacer) until(deadline time.Time) bool {
	d := time.Until(deadline)
	if d <= 0 {
		return p.ctx.Err() == nil
	}
	if p.t == nil {
		p.t = time.NewTimer(d)
	} else {
		p.t.Reset(d)
	}
	select {
	case <-p.t.C:
		return true
	case <-p.ctx.Done():
		p.t.Stop()
		return false
	}
}

// nextTokenDue waits for the token after the one due at prev and returns
// when it was due. A SetTiming during the wait takes effect at once. It
// reports false when the client went away.
func (s *Sim) nextTokenDue(p *pacer, g *gen, prev time.Time) (time.Time, bool) {
	for {
		changed := *s.retimed.Load() // before the rate, so no change is missed
		every := s.tokenInterval()
		if g.base > 0 && g.every != g.base { // the capacity model's slowdown, kept in proportion
			every = time.Duration(float64(every) * float64(g.every) / float64(g.base))
		}
		if every <= 0 {
			return time.Now(), p.ctx.Err() == nil
		}
		due := prev.Add(every)
		ok, again := p.untilOr(due, changed)
		if !ok || !again {
			return due, ok
		}
	}
}

// untilOr is until that also returns early, with again set, when wake is
// closed.
func (p *pacer) untilOr(deadline time.Time, wake <-chan struct{}) (ok, again bool) {
	d := time.Until(deadline)
	if d <= 0 {
		return p.ctx.Err() == nil, false
	}
	if p.t == nil {
		p.t = time.NewTimer(d)
	} else {
		p.t.Reset(d)
	}
	select {
	case <-p.t.C:
		return true, false
	case <-wake:
		p.t.Stop()
		return p.ctx.Err() == nil, true
	case <-p.ctx.Done():
		p.t.Stop()
		return false, false
	}
}

func (p *pacer) stop() {
	if p.t != nil {
		p.t.Stop()
	}
}

// streamHeaders sets the headers of a streamed answer.
func (s *Sim) streamHeaders(h http.Header, d dialect) {
	switch s.kind {
	case Ollama:
		switch d {
		case dOllamaChat, dOllamaGenerate:
			h["Content-Type"] = ctNDJSON
		case dOllamaMessages:
			h["Content-Type"] = ctSSE
			h["Cache-Control"] = hdrNoCache
		default:
			h["Content-Type"] = ctSSE
		}
	case LlamaCpp:
		llamaHeaders(h, true)
		h["X-Accel-Buffering"] = hdrNo
		h["Content-Type"] = ctSSE
	case LMStudio:
		h["Content-Type"] = ctSSE
		h["Cache-Control"] = hdrNoCache
	default:
		h["Content-Type"] = ctSSEUTF8
	}
}

// stream sends g as a stream: one NDJSON line or SSE event per write, each
// flushed. Ollama and llama.cpp send the headers with the first token, the
// others (Python/Node servers) at once.
func (s *Sim) stream(c *call, g *gen) {
	w := c.w
	s.streamHeaders(w.Header(), g.d)
	rc := http.NewResponseController(w)
	s.streams.Add(1)
	total := g.pre + g.n + g.post
	cut := -1
	if c.cut != nil {
		cut = min(c.cut.AfterChunks, total-1)
	}
	headerSent := false
	if s.kind != Ollama && s.kind != LlamaCpp {
		w.WriteHeader(http.StatusOK)
		if rc.Flush() != nil {
			return
		}
		headerSent = true
	}
	p := pacer{ctx: c.r.Context()}
	defer p.stop()
	if !p.until(g.start.Add(g.ttft)) {
		return
	}
	g.first = time.Now()
	g.last = g.first
	// Each token is due one interval after the previous one was due; the
	// interval is read afresh per token, so a SetTiming mid-stream holds
	// streams under way or lets them finish at once.
	due, ok := g.first, true
	sent := 0
	defer func() { s.tokensOut.Add(int64(sent)) }()
	buf := c.sc.buf
	defer func() { c.sc.buf = buf }()
	for k := 0; k < total; k++ {
		if k == cut {
			if !headerSent {
				w.WriteHeader(http.StatusOK)
				_ = rc.Flush()
			}
			c.cutNow()
			return
		}
		tok := k - g.pre
		if tok > 0 && tok < g.n {
			if due, ok = s.nextTokenDue(&p, g, due); !ok {
				return
			}
		}
		if tok == g.n {
			g.last = time.Now()
		}
		buf = s.appendEvent(buf[:0], g, k)
		if _, err := w.Write(buf); err != nil {
			return
		}
		if rc.Flush() != nil {
			return
		}
		headerSent = true
		if tok >= 0 && tok < g.n {
			sent++
		}
	}
}

// complete sends g as one JSON answer, when the stream would have ended.
func (s *Sim) complete(c *call, g *gen) {
	p := pacer{ctx: c.r.Context()}
	defer p.stop()
	end := g.start.Add(g.ttft)
	if g.n > 1 {
		end = end.Add(time.Duration(g.n-1) * g.every)
	}
	if !p.until(end) {
		return
	}
	g.first = g.start.Add(g.ttft)
	g.last = time.Now()
	b := s.appendFull(c.sc.buf[:0], g)
	c.sc.buf = b
	s.tokensOut.Add(int64(g.n))
	s.writeOK(c, b, g.d == dOllamaChat || g.d == dOllamaGenerate)
}

// writeOK writes a 200 JSON answer with the kind's content type and framing.
func (s *Sim) writeOK(c *call, b []byte, native bool) {
	switch s.kind {
	case Ollama:
		if native {
			c.writeBody(http.StatusOK, ctJSONUTF8, b, false)
		} else {
			c.writeBody(http.StatusOK, ctJSON, b, false)
		}
	case LlamaCpp:
		llamaHeaders(c.w.Header(), true)
		c.writeBody(http.StatusOK, ctJSONUTF8, b, true)
	case LMStudio:
		c.writeBody(http.StatusOK, ctJSONUTF8, b, true)
	default:
		c.writeBody(http.StatusOK, ctJSON, b, true)
	}
}

// ---- JSON appenders ----

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string literal, escaping like
// encoding/json (HTML-safe, invalid UTF-8 replaced).
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// appendText appends the whole generated text as a JSON string literal.
func (g *gen) appendText(b []byte) []byte {
	b = append(b, '"')
	for i := 0; i < g.n; i++ {
		b = append(b, g.word(i)...)
	}
	return append(b, '"')
}

func appendInt(b []byte, v int64) []byte { return strconv.AppendInt(b, v, 10) }

func appendMs(b []byte, d time.Duration) []byte {
	return strconv.AppendFloat(b, float64(d)/float64(time.Millisecond), 'f', -1, 64)
}

func (g *gen) genDur() time.Duration    { return max(g.last.Sub(g.first), time.Microsecond) }
func (g *gen) promptDur() time.Duration { return max(g.first.Sub(g.start), time.Microsecond) }

// appendOllamaStats appends the final-line statistics of Ollama's native API.
func (g *gen) appendOllamaStats(b []byte) []byte {
	pd := g.promptDur()
	b = append(b, `"total_duration":`...)
	b = appendInt(b, int64(max(time.Since(g.start), pd+g.genDur())))
	b = append(b, `,"load_duration":`...)
	b = appendInt(b, int64(pd/10))
	b = append(b, `,"prompt_eval_count":`...)
	b = appendInt(b, int64(g.prompt))
	b = append(b, `,"prompt_eval_duration":`...)
	b = appendInt(b, int64(pd-pd/10))
	b = append(b, `,"eval_count":`...)
	b = appendInt(b, int64(g.n))
	b = append(b, `,"eval_duration":`...)
	return appendInt(b, int64(g.genDur()))
}

// appendUsage appends an OpenAI usage object (prompt, completion, total order).
func (g *gen) appendUsage(b []byte) []byte {
	b = append(b, `"usage":{"prompt_tokens":`...)
	b = appendInt(b, int64(g.prompt))
	b = append(b, `,"completion_tokens":`...)
	b = appendInt(b, int64(g.n))
	b = append(b, `,"total_tokens":`...)
	b = appendInt(b, int64(g.prompt+g.n))
	return append(b, '}')
}

// appendVLLMUsage appends vLLM's usage object (prompt, total, completion order).
func (g *gen) appendVLLMUsage(b []byte, details bool) []byte {
	b = append(b, `"usage":{"prompt_tokens":`...)
	b = appendInt(b, int64(g.prompt))
	b = append(b, `,"total_tokens":`...)
	b = appendInt(b, int64(g.prompt+g.n))
	b = append(b, `,"completion_tokens":`...)
	b = appendInt(b, int64(g.n))
	if details {
		b = append(b, `,"prompt_tokens_details":null`...)
	}
	return append(b, '}')
}

// appendLlamaUsage appends llama-server's usage object.
func (g *gen) appendLlamaUsage(b []byte) []byte {
	b = append(b, `"usage":{"completion_tokens":`...)
	b = appendInt(b, int64(g.n))
	b = append(b, `,"prompt_tokens":`...)
	b = appendInt(b, int64(g.prompt))
	b = append(b, `,"total_tokens":`...)
	b = appendInt(b, int64(g.prompt+g.n))
	return append(b, `,"prompt_tokens_details":{"cached_tokens":0}}`...)
}

// appendTimings appends llama-server's non-standard timings object.
func (g *gen) appendTimings(b []byte) []byte {
	pd, gd := g.promptDur(), g.genDur()
	pms := float64(pd) / float64(time.Millisecond)
	gms := float64(gd) / float64(time.Millisecond)
	b = append(b, `"timings":{"cache_n":0,"prompt_n":`...)
	b = appendInt(b, int64(g.prompt))
	b = append(b, `,"prompt_ms":`...)
	b = appendMs(b, pd)
	b = append(b, `,"prompt_per_token_ms":`...)
	b = strconv.AppendFloat(b, pms/float64(max(g.prompt, 1)), 'f', -1, 64)
	b = append(b, `,"prompt_per_second":`...)
	b = strconv.AppendFloat(b, float64(g.prompt)*1000/pms, 'f', -1, 64)
	b = append(b, `,"predicted_n":`...)
	b = appendInt(b, int64(g.n))
	b = append(b, `,"predicted_ms":`...)
	b = appendMs(b, gd)
	b = append(b, `,"predicted_per_token_ms":`...)
	b = strconv.AppendFloat(b, gms/float64(max(g.n, 1)), 'f', -1, 64)
	b = append(b, `,"predicted_per_second":`...)
	b = strconv.AppendFloat(b, float64(g.n)*1000/gms, 'f', -1, 64)
	return append(b, '}')
}

func (g *gen) appendCreated(b []byte) []byte { return appendInt(b, g.created) }

func appendNow(b []byte) []byte {
	b = append(b, '"')
	b = time.Now().UTC().AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}

var (
	sseData = []byte("data: ")
	sseEnd  = []byte("\n\n")
	sseDone = []byte("data: [DONE]\n\n")
)
