package integration

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/caddy-olla/olla/internal/sim"
)

// otlpReceiver is an OTLP/HTTP trace receiver: it decodes every export
// Caddy's tracing exporter sends and keeps the spans.
type otlpReceiver struct {
	mu    sync.Mutex
	spans []*tracepb.Span
	bad   []string
}

func (o *otlpReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<20))
	var req coltracepb.ExportTraceServiceRequest
	if err == nil {
		err = proto.Unmarshal(body, &req)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if err != nil || r.URL.Path != "/v1/traces" {
		o.bad = append(o.bad, r.URL.Path+": "+r.Header.Get("Content-Type")+" "+errString(err))
		http.Error(w, "bad export", http.StatusBadRequest)
		return
	}
	for _, rs := range req.ResourceSpans {
		for _, ss := range rs.ScopeSpans {
			o.spans = append(o.spans, ss.Spans...)
		}
	}
	out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.Write(out)
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// trace is the spans of one trace id, once its request span has arrived.
func (o *otlpReceiver) trace(named func(*tracepb.Span) bool) []*tracepb.Span {
	o.mu.Lock()
	defer o.mu.Unlock()
	var id []byte
	for _, s := range o.spans {
		if named(s) {
			id = s.TraceId
		}
	}
	var out []*tracepb.Span
	for _, s := range o.spans {
		if id != nil && bytes.Equal(s.TraceId, id) {
			out = append(out, s)
		}
	}
	return out
}

// attrs flattens a span's attributes to strings (arrays joined by ",").
func attrs(kvs []*commonpb.KeyValue) map[string]string {
	out := map[string]string{}
	for _, kv := range kvs {
		out[kv.Key] = anyString(kv.Value)
	}
	return out
}

func anyString(v *commonpb.AnyValue) string {
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		return x.StringValue
	case *commonpb.AnyValue_IntValue:
		return strconv.FormatInt(x.IntValue, 10)
	case *commonpb.AnyValue_BoolValue:
		if x.BoolValue {
			return "true"
		}
		return "false"
	case *commonpb.AnyValue_DoubleValue:
		return "double"
	case *commonpb.AnyValue_ArrayValue:
		var parts []string
		for _, e := range x.ArrayValue.Values {
			parts = append(parts, anyString(e))
		}
		return strings.Join(parts, ",")
	}
	return ""
}

// TestGenAITraces: with Caddy's tracing directive on and its exporter
// pointed (OTEL_EXPORTER_OTLP_* variables) at a receiver in this test, a
// streamed chat that fails over from a busy endpoint to another is one
// trace: Caddy's server span, our request span under it with the GenAI
// attributes (operation, request and response model, token usage, finish
// reasons, the answering endpoint as server.address) and the routing
// decision, and one client span per attempt under that (the busy one's
// 503 marked as an error), with the first token as an event.
func TestGenAITraces(t *testing.T) {
	rcv := &otlpReceiver{}
	collector := httptest.NewServer(rcv)
	defer collector.Close()
	t.Setenv("OTEL_TRACES_EXPORTER", "otlp")
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", collector.URL+"/v1/traces")
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
	t.Setenv("OTEL_TRACES_SAMPLER", "always_on")

	busy := startSim(t, sim.Config{Kind: sim.OpenAI, Name: "busy", Models: []string{"m-olla", "m-sherpa"}, Tokens: 4})
	good := startSim(t, sim.Config{Kind: sim.OpenAI, Name: "good", Models: []string{"m-olla", "m-sherpa"}, Tokens: 4})
	// both engines: each calls the picker and the stream's end its own way
	for _, engine := range []string{"olla", "sherpa"} {
		t.Run(engine, func(t *testing.T) {
			model := "m-" + engine
			cfg := site(endpointBlock("busy", busy.URL, "openai-compatible", "\t\t\tpriority 100") +
				endpointBlock("good", good.URL, "openai-compatible", "\t\t\tpriority 50") + "engine " + engine + "\n")
			cfg = strings.Replace(cfg, "\tolla {", "\ttracing {\n\t\tspan caddy-in\n\t}\n\tolla {", 1)
			load(t, cfg)
			waitRoutable(t, "busy", "good")
			busy.SetFault(sim.Fault{Mode: sim.FaultStatus, Status: 503, Path: "/v1/chat/completions", Times: 1})
			res := post(t, "/olla/openai/v1/chat/completions",
				`{"model":"`+model+`","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}`)
			body := readAll(t, res)
			if res.StatusCode != 200 || res.Header.Get("X-Olla-Endpoint") != "good" {
				t.Fatalf("the failover: %d from %q: %s", res.StatusCode, res.Header.Get("X-Olla-Endpoint"), body)
			}

			isRequest := func(s *tracepb.Span) bool {
				return s.Name == "chat "+model && s.Kind == tracepb.Span_SPAN_KIND_INTERNAL
			}
			var spans []*tracepb.Span
			waitFor(t, "the trace at the receiver", 30*time.Second, func() bool {
				spans = rcv.trace(isRequest)
				return len(spans) >= 4
			})
			rcv.mu.Lock()
			if len(rcv.bad) > 0 {
				t.Errorf("exports the receiver could not decode: %v", rcv.bad)
			}
			rcv.mu.Unlock()

			var server, request *tracepb.Span
			var attempts []*tracepb.Span
			for _, s := range spans {
				switch {
				case s.Name == "caddy-in":
					server = s
				case isRequest(s):
					request = s
				case s.Kind == tracepb.Span_SPAN_KIND_CLIENT:
					attempts = append(attempts, s)
				}
			}
			if server == nil || request == nil {
				t.Fatalf("no caddy span or no request span in %v", names(spans))
			}
			if !bytes.Equal(request.ParentSpanId, server.SpanId) {
				t.Errorf("the request span is not a child of caddy's span")
			}
			a := attrs(request.Attributes)
			t.Logf("request span %q: %v", request.Name, a)
			for _, s := range attempts {
				t.Logf("attempt span %q: %v", s.Name, attrs(s.Attributes))
			}
			for key, want := range map[string]string{
				"gen_ai.operation.name":          "chat",
				"gen_ai.request.model":           model,
				"gen_ai.response.model":          model,
				"gen_ai.provider.name":           "openai-compatible",
				"gen_ai.response.finish_reasons": "stop",
				"server.address":                 "127.0.0.1",
				"olla.endpoint":                  "good",
				"olla.load_balancer":             "priority",
				"olla.attempts":                  "2",
				"http.response.status_code":      "200",
			} {
				if got, ok := a[key]; !ok || got != want {
					t.Errorf("request span %s = %q (present %v), want %q", key, got, ok, want)
				}
			}
			if a["olla.routing.strategy"] == "" || a["olla.routing.reason"] == "" || a["olla.routing.decision"] == "" {
				t.Errorf("no routing decision on the request span: %v", a)
			}
			if a["gen_ai.usage.input_tokens"] == "" || a["gen_ai.usage.input_tokens"] == "0" || a["gen_ai.usage.output_tokens"] != "4" {
				t.Errorf("usage on the request span: in %q out %q", a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"])
			}
			if !hasEvent(request, "olla.first_token") {
				t.Errorf("no first-token event on the request span")
			}

			// one span per attempt, in order, under the request span
			if len(attempts) != 2 {
				t.Fatalf("%d attempt spans, want 2: %v", len(attempts), names(spans))
			}
			slices.SortFunc(attempts, func(x, y *tracepb.Span) int {
				return strings.Compare(attrs(x.Attributes)["olla.attempt"], attrs(y.Attributes)["olla.attempt"])
			})
			for i, want := range []struct{ endpoint, status, errType string }{{"busy", "503", "503"}, {"good", "200", ""}} {
				s := attempts[i]
				at := attrs(s.Attributes)
				if !bytes.Equal(s.ParentSpanId, request.SpanId) || s.Name != "chat "+model {
					t.Errorf("attempt %d: %q not under the request span", i+1, s.Name)
				}
				if at["olla.endpoint"] != want.endpoint || at["http.response.status_code"] != want.status ||
					at["error.type"] != want.errType || at["server.address"] != "127.0.0.1" || at["server.port"] == "" ||
					at["gen_ai.request.model"] != model {
					t.Errorf("attempt %d: %v, want endpoint %s status %s error.type %q", i+1, at, want.endpoint, want.status, want.errType)
				}
				failed := s.Status.GetCode() == tracepb.Status_STATUS_CODE_ERROR
				if failed != (want.errType != "") {
					t.Errorf("attempt %d: status %v", i+1, s.Status)
				}
			}
			if !hasEvent(attempts[1], "olla.first_token") || hasEvent(attempts[0], "olla.first_token") {
				t.Errorf("the first token should be an event of the second attempt only")
			}
		})
	}
}

func hasEvent(s *tracepb.Span, name string) bool {
	for _, e := range s.Events {
		if e.Name == name {
			return true
		}
	}
	return false
}

func names(spans []*tracepb.Span) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.Name+"/"+s.Kind.String())
	}
	return out
}
