package integration

import (
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/caddy-olla/olla/internal/sim"
)

// demoAddr is where the README's commands expect `make run`'s proxy.
const demoAddr = "http://127.0.0.1:40114"

// TestReadmeTryList runs every command of the README's "Try, with `make
// run` up" list against make run's own config (examples/demo.Caddyfile
// and the simulators scripts/run-demo.sh starts), each on this test's
// ports: a newcomer's first copy-paste must work.
func TestReadmeTryList(t *testing.T) {
	readme := readRepoFile(t, "README.md")
	_, after, ok := strings.Cut(readme, "Try, with `make run` up:\n\n```sh\n")
	block, _, ok2 := strings.Cut(after, "\n```")
	if !ok || !ok2 {
		t.Fatal("README.md has no \"Try, with `make run` up:\" sh block")
	}

	// the demo's simulators, as run-demo.sh starts them, on free ports
	script := readRepoFile(t, "scripts/run-demo.sh")
	pace := regexp.MustCompile(`pace="([^"]*)"`).FindStringSubmatch(script)
	specs := regexp.MustCompile(`-sim "([^"]+)"`).FindAllStringSubmatch(script, -1)
	if pace == nil || len(specs) == 0 {
		t.Fatal("scripts/run-demo.sh starts no simulators")
	}
	cfg := readRepoFile(t, "examples/demo.Caddyfile")
	var names []string
	for _, m := range specs {
		sp, err := sim.ParseSpec(strings.ReplaceAll(m[1], "$pace", "ttft=10ms;tps=0;tokens=5"))
		if err != nil {
			t.Fatal(err)
		}
		s := startSim(t, sp.Config)
		cfg = strings.ReplaceAll(cfg, "http://"+sp.Addr+"\n", s.URL+"\n")
		names = append(names, sp.Config.Name)
	}
	_, olla, _ := strings.Cut(cfg, "\tolla {\n")
	olla = olla[:strings.LastIndex(olla, "\t}\n}")]
	olla = strings.ReplaceAll(olla, "check_interval 2s", "check_interval 200ms")
	load(t, site(olla))
	waitRoutable(t, names...)

	lines := strings.Split(strings.ReplaceAll(block, "\\\n", ""), "\n")
	ran := 0
	for _, line := range lines {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if i := strings.Index(line, "  #"); i > 0 {
			line = strings.TrimSpace(line[:i])
		}
		ran++
		t.Run(line, func(t *testing.T) {
			req, showHeaders := curlRequest(t, line)
			res, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != http.StatusOK || len(body) == 0 {
				t.Fatalf("%d %s", res.StatusCode, body)
			}
			if showHeaders && res.Header.Get("X-Olla-Routing-Reason") == "" {
				t.Errorf("the headers it shows name no routing reason: %v", res.Header)
			}
		})
	}
	if ran < 5 {
		t.Fatalf("ran %d commands from the README's Try list", ran)
	}
}

func readRepoFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile("../../" + name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// curlRequest builds the request a curl command line sends (the flags the
// README uses: -s -N -D -o -H -d -X), its address moved to this test's
// site. showHeaders: the command prints the answer's headers (-D -).
func curlRequest(t *testing.T, line string) (*http.Request, bool) {
	t.Helper()
	args := shellWords(line)
	if len(args) == 0 || args[0] != "curl" {
		t.Fatalf("not a curl command: %s", line)
	}
	method, url, body, show := "", "", "", false
	header := http.Header{}
	for i := 1; i < len(args); i++ {
		switch a := args[i]; a {
		case "-s", "-N", "-sN":
		case "-D":
			i++
			show = args[i] == "-"
		case "-o":
			i++
		case "-H":
			i++
			k, v, _ := strings.Cut(args[i], ":")
			header.Set(strings.TrimSpace(k), strings.TrimSpace(v))
		case "-d":
			i++
			body = args[i]
		case "-X":
			i++
			method = args[i]
		default:
			if strings.HasPrefix(a, "-") || url != "" {
				t.Fatalf("curl argument %q: the test does not know it", a)
			}
			url = strings.Replace(a, demoAddr, base, 1)
		}
	}
	if method == "" {
		method = http.MethodGet
		if body != "" {
			method = http.MethodPost
		}
	}
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header = header
	if body != "" && req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded") // what curl -d sends
	}
	return req, show
}

// shellWords splits a command line on spaces, keeping single-quoted text
// whole (the README's quoting).
func shellWords(s string) []string {
	var out []string
	var cur strings.Builder
	quoted, inWord := false, false
	for _, r := range s {
		switch {
		case r == '\'':
			quoted, inWord = !quoted, true
		case r == ' ' && !quoted:
			if inWord {
				out = append(out, cur.String())
				cur.Reset()
			}
			inWord = false
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if inWord {
		out = append(out, cur.String())
	}
	return out
}
