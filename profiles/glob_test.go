package profiles

import (
	"reflect"
	"testing"
)

func TestGlobMatch(t *testing.T) {
	tests := []struct {
		pattern, name string
		want          bool
	}{
		{"*", "anything", true},
		{"*", "", true},
		{"", "", true},
		{"", "a", false},
		{"llama*", "llama3.2:latest", true},
		{"LLAMA*", "llama3.2:latest", true},
		{"llama*", "Llama-3.1-8B", true},
		{"*latest", "llama3.2:latest", true},
		{"*:latest", "llama3.2:7b", false},
		{"*coder*", "Qwen2.5-Coder-7B", true},
		// An inner '*' matches (the reference's glob never did).
		{"qwen*coder*", "Qwen2.5-Coder-7B-Instruct", true},
		{"qwen*coder", "qwen2.5-coder", true},
		{"qwen*coder", "qwen2.5-coder-7b", false},
		{"a*b*c", "abc", true},
		{"a*b*c", "aXXbYYc", true},
		{"a*b*c", "aXXbYY", false},
		{"a*a*a", "aaaa", true},
		{"*a*a*", "ba", false},
		{"**", "x", true},
		{"?", "a", true},
		{"?", "", false},
		{"?", "ab", false},
		{"phi-?", "phi-4", true},
		{"phi-?", "phi-45", false},
		{"gpt-??", "gpt-4o", true},
		{"?*", "", false},
		{"?*", "x", true},
		{"exact", "exact", true},
		{"exact", "Exact", true},
		{"exact", "exactly", false},
		{"exact", "inexact", false},
		{"é*", "Éclair", true},     // case-insensitive beyond ASCII
		{"?clair", "éclair", true}, // '?' is one character, not one byte
		{"mistral:*", "mistral:7b-instruct-q4_K_M", true},
		{"*/*", "Qwen/Qwen2.5-7B", true},
		{"*/*", "llama3", false},
	}
	for _, tt := range tests {
		if got := GlobMatch(tt.pattern, tt.name); got != tt.want {
			t.Errorf("GlobMatch(%q, %q) = %v, want %v", tt.pattern, tt.name, got, tt.want)
		}
	}
}

func TestModelFilter(t *testing.T) {
	tests := []struct {
		name   string
		filter ModelFilter
		model  string
		want   bool
	}{
		{"zero allows all", ModelFilter{}, "x", true},
		{"include star", ModelFilter{Include: []string{"llama*", "*"}}, "qwen", true},
		{"include empty patterns only", ModelFilter{Include: []string{""}}, "qwen", true},
		{"include match", ModelFilter{Include: []string{"llama*", "qwen*"}}, "Qwen2.5", true},
		{"include miss", ModelFilter{Include: []string{"llama*"}}, "qwen2.5", false},
		{"exclude", ModelFilter{Exclude: []string{"*embed*"}}, "nomic-embed-text", false},
		{"exclude miss", ModelFilter{Exclude: []string{"*embed*"}}, "llama3", true},
		{"exclude wins over include", ModelFilter{Include: []string{"*"}, Exclude: []string{"*:70b"}}, "llama3:70b", false},
		{"exclude wins over match", ModelFilter{Include: []string{"llama*"}, Exclude: []string{"llama3*"}}, "llama3", false},
		{"inner star exclude", ModelFilter{Exclude: []string{"qwen*coder*"}}, "qwen2.5-coder:7b", false},
		{"empty exclude ignored", ModelFilter{Exclude: []string{""}}, "", true},
	}
	for _, tt := range tests {
		if got := tt.filter.Allows(tt.model); got != tt.want {
			t.Errorf("%s: %+v.Allows(%q) = %v, want %v", tt.name, tt.filter, tt.model, got, tt.want)
		}
	}
}

func TestModelFilterApply(t *testing.T) {
	models := []Model{{Name: "llama3"}, {Name: "nomic-embed-text"}, {Name: "qwen2.5"}}
	if got := (ModelFilter{}).Apply(models); !reflect.DeepEqual(got, models) {
		t.Errorf("zero filter changed the list: %+v", got)
	}
	got := ModelFilter{Exclude: []string{"*embed*"}}.Apply(models)
	if want := []Model{{Name: "llama3"}, {Name: "qwen2.5"}}; !reflect.DeepEqual(got, want) {
		t.Errorf("Apply = %+v, want %+v", got, want)
	}
	if got := (ModelFilter{Include: []string{"none*"}}).Apply(models); got == nil || len(got) != 0 {
		t.Errorf("Apply with no match = %#v, want empty non-nil", got)
	}
}
