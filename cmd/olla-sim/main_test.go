package main

import (
	"bytes"
	"errors"
	"flag"
	"strings"
	"testing"
)

func TestParseFlags(t *testing.T) {
	var out bytes.Buffer
	specs, err := parseFlags([]string{"-sim", "ollama@:11434=a,b;tps=5", "-sim", "vllm@127.0.0.1:8000"}, &out)
	if err != nil || len(specs) != 2 || specs[0].Addr != "127.0.0.1:11434" || specs[0].Config.TokensPerSecond != 5 ||
		specs[1].Config.Kind != "vllm" {
		t.Fatalf("specs %+v, err %v, output %s", specs, err, out.String())
	}

	for _, args := range [][]string{
		{},
		{"-sim", "bogus@:1"},
		{"-sim", "ollama@:1;ttft=x"},
		{"-sim", "ollama@:1", "extra"},
		{"-nope"},
		{"-sim", "ollama@:1", "-sim", "vllm@127.0.0.1:1"},
	} {
		out.Reset()
		if _, err := parseFlags(args, &out); err == nil || errors.Is(err, flag.ErrHelp) {
			t.Errorf("parseFlags(%q) accepted", args)
		}
		if !strings.Contains(out.String(), "usage: olla-sim") && !strings.Contains(out.String(), "more than one") {
			t.Errorf("parseFlags(%q) printed %q", args, out.String())
		}
		if code := run(args, &out); code != 2 {
			t.Errorf("run(%q) = %d, want 2", args, code)
		}
	}

	out.Reset()
	if code := run([]string{"-h"}, &out); code != 0 || !strings.Contains(out.String(), "SPEC is") {
		t.Errorf("-h: code %d, output %s", code, out.String())
	}
}
