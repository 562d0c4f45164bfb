package integration

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddy-olla/olla/internal/sim"
)

const chatM1 = `{"model":"m1","stream":false,"messages":[{"role":"user","content":"hi"}]}`

// usageStats reads /internal/stats/usage.
type usageRow struct {
	Name      string  `json:"name"`
	Requests  int64   `json:"requests"`
	Input     int64   `json:"input_tokens"`
	Output    int64   `json:"output_tokens"`
	Cost      float64 `json:"cost"`
	Estimated int64   `json:"estimated_requests"`
	Refused   int64   `json:"refused"`
	Shadowed  int64   `json:"would_refuse"`
	Windows   []struct {
		Limit string  `json:"limit"`
		Used  float64 `json:"used"`
		Max   float64 `json:"max"`
	} `json:"windows"`
}

type usageBody struct {
	Keys      []usageRow `json:"keys"`
	Models    []usageRow `json:"models"`
	Endpoints []usageRow `json:"endpoints"`
	Shadow    bool       `json:"shadow"`
}

func usageStats(t *testing.T) usageBody {
	t.Helper()
	res, err := client.Get(base + "/internal/stats/usage?top=1000")
	if err != nil {
		t.Fatal(err)
	}
	var u usageBody
	if err := json.Unmarshal([]byte(readAll(t, res)), &u); err != nil {
		t.Fatal(err)
	}
	return u
}

// keyRow is the row of the key whose hash starts with nothing we know: the
// stats show hashes only, so tests find a key by its requests.
func rowWith(rows []usageRow, pred func(usageRow) bool) (usageRow, bool) {
	for _, r := range rows {
		if pred(r) {
			return r, true
		}
	}
	return usageRow{}, false
}

// freshMinute waits for the next UTC minute when less than need is left of
// this one: per-minute limits count in calendar minutes, and a test's
// requests must all fall in one however slowly a busy machine sends them.
func freshMinute(t testing.TB, need time.Duration) {
	t.Helper()
	now := time.Now()
	if left := now.Truncate(time.Minute).Add(time.Minute).Sub(now); left < need {
		t.Logf("waiting %s for a fresh minute", left.Round(time.Millisecond))
		time.Sleep(left + 10*time.Millisecond)
	}
}

// TestKeyLimitsRefuseInEachFormat: a key over its tokens per minute gets
// 429 with Retry-After and the limit named, in the format of the API it
// spoke (Ollama, OpenAI, Anthropic); another key is not affected; a
// request without a key is refused when anonymous is refuse; the key is
// never shown raw.
func TestKeyLimitsRefuseInEachFormat(t *testing.T) {
	s := startSim(t, sim.Config{Kind: sim.Ollama, Name: "kl1", Models: []string{"m1"}, Tokens: 20})
	load(t, site(endpointBlock("kl1", s.URL, "ollama")+`
		key_limits {
			key {http.request.header.X-Team}
			anonymous refuse
			tokens_per_minute 50
		}`))
	waitRoutable(t, "kl1")
	freshMinute(t, 40*time.Second)

	res := post(t, "/olla/ollama/api/chat", chatM1)
	if body := readAll(t, res); res.StatusCode != 401 || !strings.Contains(body, `"error":"this proxy requires a key`) {
		t.Fatalf("no key: %d %s", res.StatusCode, body)
	}
	// each answer is 20 tokens out plus the prompt: the limit of 50 is
	// reached after the second or third
	admitted := 0
	for ; admitted < 10; admitted++ {
		res := post(t, "/olla/ollama/api/chat", chatM1, "X-Team", "sk-alice-secret")
		body := readAll(t, res)
		if res.StatusCode == 429 {
			var e struct {
				Error string `json:"error"`
			}
			if json.Unmarshal([]byte(body), &e) != nil || !strings.Contains(e.Error, "tokens_per_minute limit of 50") {
				t.Errorf("Ollama 429 body: %s", body)
			}
			if ra, err := strconv.Atoi(res.Header.Get("Retry-After")); err != nil || ra < 1 || ra > 60 {
				t.Errorf("Retry-After %q", res.Header.Get("Retry-After"))
			}
			if res.Header.Get("X-Olla-Limit") != "tokens_per_minute" {
				t.Errorf("X-Olla-Limit %q", res.Header.Get("X-Olla-Limit"))
			}
			break
		}
		if res.StatusCode != 200 {
			t.Fatalf("request %d: %d %s", admitted, res.StatusCode, body)
		}
	}
	if admitted < 2 || admitted > 3 {
		t.Fatalf("admitted %d requests of 20+ tokens under a limit of 50", admitted)
	}
	// the same key in the OpenAI and Anthropic formats
	res = post(t, "/olla/openai/v1/chat/completions", chatM1, "X-Team", "sk-alice-secret")
	body := readAll(t, res)
	var oe struct {
		Error struct {
			Type, Code, Message string
		}
	}
	if res.StatusCode != 429 || json.Unmarshal([]byte(body), &oe) != nil || oe.Error.Type != "rate_limit_error" ||
		oe.Error.Code != "rate_limit_exceeded" || !strings.Contains(oe.Error.Message, "tokens_per_minute") || res.Header.Get("Retry-After") == "" {
		t.Errorf("OpenAI 429: %d %s", res.StatusCode, body)
	}
	res = post(t, "/olla/anthropic/v1/messages", `{"model":"m1","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}`, "X-Team", "sk-alice-secret")
	body = readAll(t, res)
	var ae struct {
		Type  string
		Error struct{ Type, Message string }
	}
	if res.StatusCode != 429 || json.Unmarshal([]byte(body), &ae) != nil || ae.Type != "error" || ae.Error.Type != "rate_limit_error" ||
		!strings.Contains(ae.Error.Message, "tokens_per_minute") || res.Header.Get("Retry-After") == "" {
		t.Errorf("Anthropic 429: %d %s", res.StatusCode, body)
	}
	// another key is not affected
	res = post(t, "/olla/ollama/api/chat", chatM1, "X-Team", "sk-bob")
	if readAll(t, res); res.StatusCode != 200 {
		t.Errorf("another key: %d", res.StatusCode)
	}
	// stats: hashed keys, the counts reported by the backend, the
	// refusals (one per format)
	u := usageStats(t)
	raw, _ := json.Marshal(u)
	if strings.Contains(string(raw), "alice") || strings.Contains(string(raw), "sk-bob") {
		t.Fatalf("a raw key in the stats: %s", raw)
	}
	alice, ok := rowWith(u.Keys, func(r usageRow) bool { return r.Refused == 3 })
	if !ok || alice.Requests != int64(admitted) || alice.Output != int64(20*admitted) || alice.Estimated != 0 || !strings.HasPrefix(alice.Name, "k:") {
		t.Fatalf("alice's row: %+v in %s", alice, raw)
	}
	if len(alice.Windows) != 1 || alice.Windows[0].Limit != "tokens_per_minute" || alice.Windows[0].Used != float64(alice.Input+alice.Output) {
		t.Errorf("alice's window: %+v", alice.Windows)
	}
	if m, ok := rowWith(u.Models, func(r usageRow) bool { return r.Name == "m1" }); !ok || m.Output != int64(20*(admitted+1)) {
		t.Errorf("model row: %+v", u.Models)
	}
	if e, ok := rowWith(u.Endpoints, func(r usageRow) bool { return r.Name == "kl1" }); !ok || e.Requests != int64(admitted+1) {
		t.Errorf("endpoint row: %+v", u.Endpoints)
	}
	metrics := readAll(t, getOK(t, "/internal/metrics"))
	for _, want := range []string{`olla_key_limit_refusals_total{limit="tokens_per_minute",mode="enforced"} 3`, `olla_key_tokens_total{direction="out",key="` + alice.Name + `"} ` + strconv.Itoa(20*admitted)} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// getOK gets a path and fails on anything but 200.
func getOK(t *testing.T, path string) *http.Response {
	t.Helper()
	res, err := client.Get(base + path)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("GET %s: %v %v", path, res, err)
	}
	return res
}

// TestKeyBudgetEndsAtTheRightRequest: with output tokens priced at 1 and a
// day's budget of 50, answers of 20 tokens are admitted at 0, 20 and 40
// used (the third, a stream, crosses the budget and still finishes whole),
// and the fourth is refused with insufficient_quota.
func TestKeyBudgetEndsAtTheRightRequest(t *testing.T) {
	s := startSim(t, sim.Config{Kind: sim.Ollama, Name: "a", Models: []string{"m"}, Tokens: 20})
	load(t, site(endpointBlock("a", s.URL, "ollama")+`
		key_limits {
			key {http.request.header.Authorization}
			budget_day 50
			cost {
				input 0
				output 1
			}
		}`))
	waitRoutable(t, "a")
	for i := range 2 {
		res := post(t, "/olla/openai/v1/chat/completions", chatBodyM, "Authorization", "Bearer team-1")
		if body := readAll(t, res); res.StatusCode != 200 {
			t.Fatalf("request %d: %d %s", i, res.StatusCode, body)
		}
	}
	// the third streams, with usage in its last chunk; it crosses 50
	res := post(t, "/olla/openai/v1/chat/completions", `{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}`, "Authorization", "Bearer team-1")
	if res.StatusCode != 200 {
		t.Fatalf("stream: %d %s", res.StatusCode, readAll(t, res))
	}
	chunks, done := 0, false
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "data: {") && strings.Contains(line, `"finish_reason":null`) {
			chunks++
		}
		done = done || line == "data: [DONE]"
	}
	res.Body.Close()
	if chunks != 20 || !done {
		t.Fatalf("the stream that crossed the budget was cut: %d chunks, [DONE] %v", chunks, done)
	}
	res = post(t, "/olla/openai/v1/chat/completions", chatBodyM, "Authorization", "Bearer team-1")
	body := readAll(t, res)
	if res.StatusCode != 429 || !strings.Contains(body, `"code":"insufficient_quota"`) || !strings.Contains(body, "budget_day limit of 50 is reached (used 60)") {
		t.Fatalf("the fourth request: %d %s", res.StatusCode, body)
	}
	// until tomorrow (UTC midnight)
	if ra, _ := strconv.Atoi(res.Header.Get("Retry-After")); ra < 1 || ra > 86400 {
		t.Errorf("Retry-After %q", res.Header.Get("Retry-After"))
	}
	u := usageStats(t)
	row, ok := rowWith(u.Keys, func(r usageRow) bool { return r.Refused == 1 })
	if !ok || row.Cost != 60 || row.Requests != 3 {
		t.Errorf("usage: %+v", u.Keys)
	}
}

// TestKeyLimitsShadow: shadow mode refuses nothing and reports what it
// would have refused; a stream without usage is estimated and marked so.
func TestKeyLimitsShadow(t *testing.T) {
	s := startSim(t, sim.Config{Kind: sim.OpenAI, Name: "a", Models: []string{"m"}, Tokens: 10})
	load(t, site(endpointBlock("a", s.URL, "openai-compatible")+`
		key_limits {
			key {http.request.header.X-Team}
			requests_per_minute 2
			shadow
		}`))
	waitRoutable(t, "a")
	freshMinute(t, 40*time.Second)
	var shadowed []string
	for i := range 4 {
		res := post(t, "/olla/openai/v1/chat/completions", `{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}`, "X-Team", "shadow-team")
		if body := readAll(t, res); res.StatusCode != 200 || !strings.Contains(body, "[DONE]") {
			t.Fatalf("request %d in shadow mode: %d %s", i, res.StatusCode, body)
		}
		shadowed = append(shadowed, res.Header.Get("X-Olla-Limit-Shadow"))
	}
	if fmt.Sprint(shadowed) != "[  requests_per_minute requests_per_minute]" {
		t.Errorf("X-Olla-Limit-Shadow: %q", shadowed)
	}
	u := usageStats(t)
	row, ok := rowWith(u.Keys, func(r usageRow) bool { return r.Shadowed == 2 })
	if !u.Shadow || !ok || row.Refused != 0 || row.Requests != 4 {
		t.Fatalf("usage: %+v", u)
	}
	// no usage in these streams: estimated from their events, and marked
	if row.Estimated != 4 || row.Output < 4*8 || row.Output > 4*12 || row.Input <= 0 {
		t.Errorf("estimated usage: %+v", row)
	}
	if len(row.Windows) != 1 || row.Windows[0].Used != 4 {
		t.Errorf("shadow mode did not count: %+v", row.Windows)
	}
	metrics := readAll(t, getOK(t, "/internal/metrics"))
	if !strings.Contains(metrics, `olla_key_limit_refusals_total{limit="requests_per_minute",mode="shadow"} 2`) {
		t.Errorf("shadow refusals not in the metrics")
	}
	// the dashboard's usage panel reads the same rows
	var d struct {
		Usage struct {
			Keys []usageRow `json:"keys"`
		} `json:"usage"`
	}
	if err := json.Unmarshal([]byte(readAll(t, getOK(t, "/internal/ui/data"))), &d); err != nil {
		t.Fatal(err)
	}
	if r, ok := rowWith(d.Usage.Keys, func(r usageRow) bool { return r.Name == row.Name }); !ok || r.Shadowed != 2 {
		t.Errorf("dashboard usage: %+v", d.Usage)
	}
}

// TestKeyUsageThatLies: a backend whose usage is negative, 1e18, NaN or
// absurdly large charges the key what the exchange could hold (clamped)
// or an estimate, never a negative count or an exhausted budget; a key
// header of 1 MB is taken, hashed, and costs the stats 18 bytes.
func TestKeyUsageThatLies(t *testing.T) {
	answer := `{"id":"x","object":"chat.completion","model":"liar","choices":[{"index":0,"message":{"role":"assistant","content":"hello there"},"finish_reason":"stop"}],"usage":%s}`
	liar := badServer(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v1/models":
			fmt.Fprint(w, `{"object":"list","data":[{"id":"liar","object":"model"}]}`)
		case "/v1/chat/completions":
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, answer, r.Header.Get("X-Usage"))
		default:
			fmt.Fprint(w, `{}`)
		}
	})
	// the server takes headers of 2 MB, so a 1 MB key reaches olla
	cfg := strings.Replace(site(endpointBlock("liar", liar, "openai-compatible")+`
		request_limits {
			max_header_size 2MiB
		}
		key_limits {
			key {http.request.header.X-Team}
			tokens_per_minute 100000
		}`), "grace_period 1s\n", "grace_period 1s\n\tservers {\n\t\tmax_header_size 2MiB\n\t}\n", 1)
	load(t, cfg)
	waitRoutable(t, "liar")
	body := `{"model":"liar","messages":[{"role":"user","content":"hi"}]}`
	for _, u := range []string{
		`{"prompt_tokens":-5,"completion_tokens":-7}`,
		`{"prompt_tokens":1e18,"completion_tokens":1e18}`,
		`{"prompt_tokens":NaN,"completion_tokens":NaN}`,
		`{"prompt_tokens":900000000000,"completion_tokens":900000000000}`,
	} {
		res := post(t, "/olla/openai/v1/chat/completions", body, "X-Team", "liars-victim", "X-Usage", u)
		if b := readAll(t, res); res.StatusCode != 200 {
			t.Fatalf("usage %s: %d %s", u, res.StatusCode, b)
		}
	}
	// still admitted: no lie exhausted the limit
	res := post(t, "/olla/openai/v1/chat/completions", body, "X-Team", "liars-victim", "X-Usage", `{"prompt_tokens":1,"completion_tokens":1}`)
	if readAll(t, res); res.StatusCode != 200 {
		t.Fatalf("a lying backend exhausted the key: %d", res.StatusCode)
	}
	u := usageStats(t)
	row, ok := rowWith(u.Keys, func(r usageRow) bool { return r.Requests == 5 && r.Name != "anonymous" })
	if !ok {
		t.Fatalf("no row: %+v", u.Keys)
	}
	// three estimated (negative, exponent, NaN are no counts); the huge one
	// clamped to the response's size and the request's plus template slack
	if row.Estimated != 3 || row.Input < 0 || row.Output < 0 || row.Output > 5*400 || row.Input > 5*(int64(len(body))+8192) {
		t.Errorf("lying usage counted as %+v", row)
	}

	// a 1 MB key
	big := strings.Repeat("k", 1_000_000)
	res = post(t, "/olla/openai/v1/chat/completions", body, "X-Team", big, "X-Usage", `{"prompt_tokens":1,"completion_tokens":1}`)
	if b := readAll(t, res); res.StatusCode != 200 {
		t.Fatalf("1 MB key: %d %s", res.StatusCode, b)
	}
	u = usageStats(t)
	raw, _ := json.Marshal(u)
	if len(raw) > 100_000 || strings.Contains(string(raw), "kkkk") {
		t.Errorf("the 1 MB key reached the stats (%d bytes)", len(raw))
	}
}

// TestKeyLimitsCompositeKey: a key built of two placeholders and text is
// one key per combination (the single-placeholder fast path must not take
// it), and a key of one placeholder reads the same value.
func TestKeyLimitsCompositeKey(t *testing.T) {
	s := startSim(t, sim.Config{Kind: sim.Ollama, Name: "klc", Models: []string{"m1"}, Tokens: 2})
	load(t, site(endpointBlock("klc", s.URL, "ollama")+`
		key_limits {
			key team={http.request.header.X-Team}/user={http.request.header.X-User}
			requests_per_minute 1
		}`))
	waitRoutable(t, "klc")
	freshMinute(t, 20*time.Second)
	status := func(team, user string) int {
		t.Helper()
		res := post(t, "/olla/ollama/api/chat", chatM1, "X-Team", team, "X-User", user)
		readAll(t, res)
		return res.StatusCode
	}
	if got := status("a", "1"); got != 200 {
		t.Fatalf("a/1 first: %d", got)
	}
	if got := status("a", "1"); got != 429 {
		t.Fatalf("a/1 second: %d, want 429", got)
	}
	if got := status("a", "2"); got != 200 {
		t.Fatalf("a/2 shares a/1's key: %d", got)
	}
	if got := status("b", "1"); got != 200 {
		t.Fatalf("b/1 shares a/1's key: %d", got)
	}
}
