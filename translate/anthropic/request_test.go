package anthropic

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestParseRequestRejects(t *testing.T) {
	const msgs = `"messages":[{"role":"user","content":"hi"}]`
	cases := []struct {
		name, body, field string
	}{
		{"not json", `{`, ""},
		{"array body", `[]`, ""},
		{"null body", `null`, ""},
		{"missing model", `{"max_tokens":1,` + msgs + `}`, "model"},
		{"null model", `{"model":null,"max_tokens":1,` + msgs + `}`, "model"},
		{"numeric model", `{"model":42,"max_tokens":1,` + msgs + `}`, "model"},
		{"empty model", `{"model":"","max_tokens":1,` + msgs + `}`, "model"},
		{"missing max_tokens", `{"model":"m",` + msgs + `}`, "max_tokens"},
		{"zero max_tokens", `{"model":"m","max_tokens":0,` + msgs + `}`, "max_tokens"},
		{"negative max_tokens", `{"model":"m","max_tokens":-5,` + msgs + `}`, "max_tokens"},
		{"fractional max_tokens", `{"model":"m","max_tokens":1.5,` + msgs + `}`, "max_tokens"},
		{"string max_tokens", `{"model":"m","max_tokens":"10",` + msgs + `}`, "max_tokens"},
		{"huge max_tokens", `{"model":"m","max_tokens":1e300,` + msgs + `}`, "max_tokens"},
		{"missing messages", `{"model":"m","max_tokens":1}`, "messages"},
		{"empty messages", `{"model":"m","max_tokens":1,"messages":[]}`, "messages"},
		{"messages not array", `{"model":"m","max_tokens":1,"messages":"hi"}`, "messages"},
		{"message not object", `{"model":"m","max_tokens":1,"messages":[1]}`, "messages.0"},
		{"empty role", `{"model":"m","max_tokens":1,"messages":[{"role":"","content":"x"}]}`, "messages.0.role"},
		{"role not a string", `{"model":"m","max_tokens":1,"messages":[{"role":5,"content":"x"}]}`, "messages.0"},
		{"missing content", `{"model":"m","max_tokens":1,"messages":[{"role":"user"}]}`, "messages.0.content"},
		{"numeric content", `{"model":"m","max_tokens":1,"messages":[{"role":"user","content":5}]}`, "messages.0.content"},
		{"block without type", `{"model":"m","max_tokens":1,"messages":[{"role":"user","content":[{"text":"x"}]}]}`, "messages.0.content.0.type"},
		{"image without source", `{"model":"m","max_tokens":1,"messages":[{"role":"user","content":[{"type":"image"}]}]}`, "messages.0.content.0.source"},
		{"image bad source", `{"model":"m","max_tokens":1,"messages":[{"role":"user","content":[{"type":"image","source":{"type":"file"}}]}]}`, "messages.0.content.0.source"},
		{"tool_use without id", `{"model":"m","max_tokens":1,"messages":[{"role":"assistant","content":[{"type":"tool_use","name":"f","input":{}}]}]}`, "messages.0.content.0"},
		{"tool_use input not object", `{"model":"m","max_tokens":1,"messages":[{"role":"assistant","content":[{"type":"tool_use","id":"a","name":"f","input":[1]}]}]}`, "messages.0.content.0.input"},
		{"tool_result without id", `{"model":"m","max_tokens":1,"messages":[{"role":"user","content":[{"type":"tool_result","content":"x"}]}]}`, "messages.0.content.0.tool_use_id"},
		{"text block text not string", `{"model":"m","max_tokens":1,"messages":[{"role":"user","content":[{"type":"text","text":1}]}]}`, "messages.0.content.0"},
		{"temperature high", `{"model":"m","max_tokens":1,"temperature":1.5,` + msgs + `}`, "temperature"},
		{"temperature negative", `{"model":"m","max_tokens":1,"temperature":-0.1,` + msgs + `}`, "temperature"},
		{"temperature string", `{"model":"m","max_tokens":1,"temperature":"hot",` + msgs + `}`, "temperature"},
		{"top_p high", `{"model":"m","max_tokens":1,"top_p":1.01,` + msgs + `}`, "top_p"},
		{"top_k negative", `{"model":"m","max_tokens":1,"top_k":-1,` + msgs + `}`, "top_k"},
		{"top_k fractional", `{"model":"m","max_tokens":1,"top_k":2.5,` + msgs + `}`, "top_k"},
		{"stream not bool", `{"model":"m","max_tokens":1,"stream":"yes",` + msgs + `}`, "stream"},
		{"stop_sequences not strings", `{"model":"m","max_tokens":1,"stop_sequences":[1],` + msgs + `}`, "stop_sequences"},
		{"system numeric", `{"model":"m","max_tokens":1,"system":3,` + msgs + `}`, "system"},
		{"tools not array", `{"model":"m","max_tokens":1,"tools":{},` + msgs + `}`, "tools"},
		{"tool without name", `{"model":"m","max_tokens":1,"tools":[{"input_schema":{}}],` + msgs + `}`, "tools.0.name"},
		{"tool_choice without type", `{"model":"m","max_tokens":1,"tool_choice":{},` + msgs + `}`, "tool_choice.type"},
		{"tool_choice tool without name", `{"model":"m","max_tokens":1,"tool_choice":{"type":"tool"},` + msgs + `}`, "tool_choice.name"},
		{"metadata user_id numeric", `{"model":"m","max_tokens":1,"metadata":{"user_id":1},` + msgs + `}`, "metadata"},
		{"thinking without budget", `{"model":"m","max_tokens":1,"thinking":{"type":"enabled"},` + msgs + `}`, "thinking.budget_tokens"},
		{"tool_result nested in tool_result", `{"model":"m","max_tokens":1,"messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"a","content":[{"type":"tool_result","tool_use_id":"b","content":"x"}]}]}]}`, "messages.0.content.0.content.0.type"},
		{"thinking not object", `{"model":"m","max_tokens":1,"thinking":true,` + msgs + `}`, "thinking"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseRequest([]byte(c.body))
			var re *RequestError
			if !errors.As(err, &re) {
				t.Fatalf("err = %v, want a *RequestError", err)
			}
			if re.Field != c.field {
				t.Errorf("Field = %q, want %q (message %q)", re.Field, c.field, re.Message)
			}
			if c.field != "" && !strings.Contains(re.Message, c.field) {
				t.Errorf("message %q does not name the field %q", re.Message, c.field)
			}
			var env struct {
				Type  string `json:"type"`
				Error struct{ Type, Message string }
			}
			if err := json.Unmarshal(re.Body(), &env); err != nil || env.Type != "error" || env.Error.Type != "invalid_request_error" || env.Error.Message != re.Message || re.Status() != 400 {
				t.Errorf("Body() = %s, Status() = %d", re.Body(), re.Status())
			}
		})
	}
}

func TestParseRequestAccepts(t *testing.T) {
	for _, body := range []string{
		`{"model":"m","max_tokens":1,"messages":[{"role":"user","content":"hi"}]}`,
		`{"model":"m","max_tokens":1.0,"temperature":0,"top_p":1,"top_k":0,"messages":[{"role":"user","content":""}]}`,
		`{"model":"m","max_tokens":1,"temperature":1,"stream":null,"system":null,"tools":null,"messages":[{"role":"user","content":[]}]}`,
		`{"model":"m","max_tokens":8,"thinking":{"type":"disabled"},"messages":[{"role":"user","content":"x"}],"extra":"ignored"}`,
		// what newer clients send (Claude Code 2.1.197): a system message
		// mid-conversation, adaptive thinking, newer tool_choice forms
		`{"model":"m","max_tokens":8,"messages":[{"role":"user","content":"x"},{"role":"system","content":[{"type":"text","text":"s"}]}]}`,
		`{"model":"m","max_tokens":8,"thinking":{"type":"adaptive"},"output_config":{"effort":"high"},"messages":[{"role":"user","content":"x"}]}`,
		`{"model":"m","max_tokens":8,"tool_choice":{"type":"auto_v2"},"messages":[{"role":"user","content":"x"}]}`,
		`{"model":"m","max_tokens":8,"messages":[{"role":"developer","content":"x"}]}`,
	} {
		if _, err := ParseRequest([]byte(body)); err != nil {
			t.Errorf("ParseRequest(%s) = %v", body, err)
		}
	}
}

func TestFeatures(t *testing.T) {
	cases := []struct {
		name, body string
		want       Features
	}{
		{"plain", `{"model":"m","max_tokens":1,"messages":[{"role":"user","content":"hi"}]}`, Features{}},
		{"image", `{"model":"m","max_tokens":1,"messages":[{"role":"user","content":[{"type":"image","source":{"type":"url","url":"http://x"}}]}]}`, Features{Images: true}},
		{"image inside tool_result", `{"model":"m","max_tokens":1,"messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"a","content":[{"type":"image","source":{"type":"url","url":"http://x"}}]}]}]}`, Features{Images: true, Tools: true}},
		{"tools defined", `{"model":"m","max_tokens":1,"tools":[{"name":"f","input_schema":{}}],"messages":[{"role":"user","content":"x"}]}`, Features{Tools: true}},
		{"server tool", `{"model":"m","max_tokens":1,"tools":[{"type":"bash_20250124","name":"bash"}],"messages":[{"role":"user","content":"x"}]}`, Features{Tools: true, ServerTools: true}},
		{"thinking config", `{"model":"m","max_tokens":9,"thinking":{"type":"enabled","budget_tokens":5},"messages":[{"role":"user","content":"x"}]}`, Features{Thinking: true}},
		{"thinking disabled", `{"model":"m","max_tokens":9,"thinking":{"type":"disabled"},"messages":[{"role":"user","content":"x"}]}`, Features{}},
		{"thinking block", `{"model":"m","max_tokens":9,"messages":[{"role":"assistant","content":[{"type":"redacted_thinking","data":"x"}]}]}`, Features{Thinking: true}},
		{"text document", `{"model":"m","max_tokens":1,"messages":[{"role":"user","content":[{"type":"document","source":{"type":"text","data":"d"}}]}]}`, Features{Documents: true}},
		{"pdf document", `{"model":"m","max_tokens":1,"messages":[{"role":"user","content":[{"type":"document","source":{"type":"base64","media_type":"application/pdf","data":"x"}}]}]}`, Features{Documents: true, BinaryDocuments: true}},
		{"unknown roles, each once", `{"model":"m","max_tokens":1,"messages":[{"role":"developer","content":"x"},{"role":"system","content":"x"},{"role":"developer","content":"y"}]}`, Features{UnknownRoles: []string{"developer"}}},
		{"unknown blocks, each once", `{"model":"m","max_tokens":1,"system":[{"type":"mystery"}],"messages":[{"role":"user","content":[{"type":"search_result"},{"type":"mystery"},{"type":"search_result"}]}]}`, Features{UnknownBlocks: []string{"mystery", "search_result"}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, err := ParseRequest([]byte(c.body))
			if err != nil {
				t.Fatal(err)
			}
			if got := r.Features(); !reflect.DeepEqual(got, c.want) {
				t.Errorf("Features() = %+v, want %+v", got, c.want)
			}
		})
	}
}

// TestDeepToolResultNesting: nesting is refused at the second level, so a
// body nested thousands deep is not parsed once per level.
func TestDeepToolResultNesting(t *testing.T) {
	const depth = 3000 // 6000 JSON levels, under encoding/json's limit
	open := `{"type":"tool_result","tool_use_id":"a","content":[`
	body := `{"model":"m","max_tokens":1,"messages":[{"role":"user","content":[` +
		strings.Repeat(open, depth) + `{"type":"text","text":"x"}` + strings.Repeat("]}", depth) + `]}]}`
	_, err := ParseRequest([]byte(body))
	var re *RequestError
	if !errors.As(err, &re) || re.Field != "messages.0.content.0.content.0.type" {
		t.Fatalf("err = %v", err)
	}
}

func TestUnknownBlockTypesAreBounded(t *testing.T) {
	var b strings.Builder
	b.WriteString(`{"model":"m","max_tokens":1,"messages":[{"role":"user","content":[`)
	for i := 0; i < 1000; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`{"type":"t` + strings.Repeat("x", i%50) + string(rune('a'+i%26)) + `"}`)
	}
	b.WriteString(`]}]}`)
	r, err := ParseRequest([]byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(r.Features().UnknownBlocks); n == 0 || n > 16 {
		t.Errorf("UnknownBlocks holds %d types, want 1..16", n)
	}
}

func TestParseCountTokens(t *testing.T) {
	for _, tc := range []struct {
		body, field string
	}{
		{`{"model":"m","messages":[{"role":"user","content":"hi"}]}`, ""},
		{`{"model":"m","max_tokens":8,"messages":[{"role":"user","content":"hi"}]}`, ""},
		{`{"model":"m","max_tokens":0,"messages":[{"role":"user","content":"hi"}]}`, "max_tokens"},
		{`{"messages":[{"role":"user","content":"hi"}]}`, "model"},
		{`{"model":"m","messages":[]}`, "messages"},
	} {
		_, err := ParseCountTokens([]byte(tc.body))
		var bad *RequestError
		switch {
		case tc.field == "" && err != nil:
			t.Errorf("%s: %v", tc.body, err)
		case tc.field != "" && (!errors.As(err, &bad) || bad.Field != tc.field):
			t.Errorf("%s: error %v, want one naming %s", tc.body, err, tc.field)
		}
	}
	if _, err := ParseRequest([]byte(`{"model":"m","messages":[{"role":"user","content":"hi"}]}`)); err == nil {
		t.Error("ParseRequest took a request without max_tokens")
	}
}

// TestDropped: what a translation leaves out is named once each, top-level
// fields first (sorted), then the rest in order of first appearance.
func TestDropped(t *testing.T) {
	cases := []struct {
		name, body string
		want       []string
	}{
		{"nothing", `{"model":"m","max_tokens":1,"metadata":{"user_id":"u"},"thinking":{"type":"enabled","budget_tokens":9},"messages":[{"role":"user","content":"hi"}]}`, nil},
		{"agent", `{"model":"m","max_tokens":1,"output_config":{},"context_management":{},"system":[{"type":"text","text":"s","cache_control":{"type":"ephemeral"}}],` +
			`"messages":[{"role":"user","content":[{"type":"text","text":"x","cache_control":{"type":"ephemeral"}}]}],"thinking":{"type":"adaptive"}}`,
			[]string{"context_management", "output_config", "cache_control", "thinking"}},
		{"tool cache_control, citations, tool_choice", `{"model":"m","max_tokens":1,"tools":[{"name":"f","cache_control":{"type":"ephemeral"}}],"tool_choice":{"type":"newer"},` +
			`"messages":[{"role":"user","content":[{"type":"document","source":{"type":"text","data":"d"},"citations":{"enabled":true}}]}]}`,
			[]string{"citations", "cache_control", "tool_choice"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, err := ParseRequest([]byte(c.body))
			if err != nil {
				t.Fatal(err)
			}
			if got := r.Dropped(); !reflect.DeepEqual(got, c.want) {
				t.Errorf("Dropped() = %q, want %q", got, c.want)
			}
			if _, err := ToOpenAI(r); err != nil {
				t.Errorf("ToOpenAI: %v", err)
			}
		})
	}
}
