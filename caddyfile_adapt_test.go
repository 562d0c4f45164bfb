package olla_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddytest"

	_ "github.com/caddy-olla/olla"
)

// adaptDir holds the golden adapt cases. Each .caddyfiletest file is a
// Caddyfile, a line of ten dashes, then either the expected JSON (starting
// with `{`) or what the adapt error must contain: one substring per line
// (a single line is Caddy's own format; several lines let a message that
// lists every valid value be checked without the list, which grows). One of
// the lines must name the file and line (`Caddyfile:<n>`), so a message that
// loses its position fails the test.
const adaptDir = "testdata/caddyfile_adapt"

var (
	crlf = regexp.MustCompile(`\r?\n`)
	// errLine is the position Caddyfile errors end with.
	errLine = regexp.MustCompile(`Caddyfile:\d+`)
	// urlPassword finds the password of a URL with userinfo in a Caddyfile.
	urlPassword = regexp.MustCompile(`://[^\s/@:]+:([^\s/@]+)@`)
	// urlSecret finds what lies between a url's scheme (if any) and its
	// last '@': a password even when it holds '/' or a bad escape, or the
	// URL has no scheme.
	urlSecret = regexp.MustCompile(`url\s+(?:[a-z]+://)?[^\s@:]+:([^\s]+)@`)
)

func TestCaddyfileAdapt(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(adaptDir, "*.caddyfiletest"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no .caddyfiletest files in %s", adaptDir)
	}
	for _, path := range files {
		name := filepath.Base(path)
		t.Run(name, func(t *testing.T) {
			caddyfile, expected := readAdaptCase(t, path)

			if strings.HasPrefix(expected, "{") {
				// file_server hides the Caddyfile by its OS-specific path.
				hide, _ := json.Marshal("." + string(filepath.Separator) + "Caddyfile")
				expected = strings.ReplaceAll(expected, `"./Caddyfile"`, string(hide))
				if !caddytest.CompareAdapt(t, name, caddyfile, "caddyfile", expected) {
					t.Errorf("%s: adapted JSON differs from the golden JSON (diff above)", name)
				}
				return
			}

			if !errLine.MatchString(expected) {
				t.Fatalf("%s: an expected error must name the line (Caddyfile:<n>), got %q", name, expected)
			}
			_, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), nil)
			if err == nil {
				t.Fatalf("%s: expected an error containing %q, got none", name, expected)
			}
			got := crlf.ReplaceAllString(err.Error(), "\n")
			for _, want := range strings.Split(expected, "\n") {
				if want = strings.TrimSpace(want); want != "" && !strings.Contains(got, want) {
					t.Errorf("%s: error\n\t%s\ndoes not contain\n\t%s", name, got, want)
				}
			}
			for _, m := range append(urlPassword.FindAllStringSubmatch(caddyfile, -1), urlSecret.FindAllStringSubmatch(caddyfile, -1)...) {
				if strings.Contains(got, m[1]) {
					t.Errorf("%s: error leaks the URL password %q: %s", name, m[1], got)
				}
			}
		})
	}
}

// readAdaptCase splits a .caddyfiletest file into its Caddyfile (with the
// trailing newline the formatter expects) and its expected output.
func readAdaptCase(t *testing.T, path string) (caddyfile, expected string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	text := crlf.ReplaceAllString(string(data), "\n")
	before, after, ok := strings.Cut(text, "\n----------\n")
	if !ok {
		t.Fatalf("%s: no line of ten dashes between the Caddyfile and the expected output", path)
	}
	expected = strings.TrimSpace(after)
	if expected == "" {
		t.Fatalf("%s: empty expected output", path)
	}
	return strings.TrimSpace(before) + "\n", expected
}

// TestProvisionErrors covers configs that adapt but must not load: the
// errors only provisioning can find (placeholders, cross-field and
// cross-site checks). Each config is adapted, then validated with
// caddy.Validate, which provisions every module without starting anything.
func TestProvisionErrors(t *testing.T) {
	const unset = "OLLA_TEST_UNSET_VAR"
	t.Setenv(unset, "")
	if err := os.Unsetenv(unset); err != nil { // t.Setenv restores it afterwards
		t.Fatal(err)
	}
	t.Setenv("OLLA_TEST_TOKEN", "tok-123")

	site := func(port, endpoint string) string {
		return ":" + port + " {\n\tolla {\n" + endpoint + "\t}\n}\n"
	}
	tests := []struct {
		name      string
		caddyfile string
		want      []string // substrings of the error; none means it must load
		notWant   []string
	}{
		{
			name: "control: a plain endpoint loads",
			caddyfile: site("8080", `		endpoint local {
			url http://localhost:11434
			type ollama
			auth bearer {env.OLLA_TEST_TOKEN}
			check_interval 2s
			check_timeout 1s
		}
`),
		},
		{
			name: "placeholder in auth bearer resolves to nothing",
			caddyfile: site("8080", `		endpoint secured {
			url http://localhost:11434
			type ollama
			auth bearer {env.OLLA_TEST_UNSET_VAR}
		}
`),
			want: []string{`endpoint "secured"`, "auth", "OLLA_TEST_UNSET_VAR"},
		},
		{
			name: "placeholder in url resolves to nothing",
			caddyfile: site("8080", `		endpoint remote {
			url {env.OLLA_TEST_UNSET_VAR}
			type vllm
		}
`),
			want: []string{`endpoint "remote"`, "url", "OLLA_TEST_UNSET_VAR"},
		},
		{
			// Accepted as the standalone Olla accepts it: clamped to the
			// interval with a warning (TestCheckTimeoutClamped).
			name: "control: check_timeout above check_interval loads",
			caddyfile: site("8080", `		endpoint slow {
			url http://localhost:11434
			type ollama
			check_interval 1s
			check_timeout 5s
		}
`),
		},
		{
			name: "control: check_timeout equal to check_interval loads",
			caddyfile: site("8080", `		endpoint slow {
			url http://localhost:11434
			type ollama
			check_interval 2s
			check_timeout 2s
		}
`),
		},
		{
			name: "same endpoint name in two sites with different URLs",
			caddyfile: site("8080", `		endpoint shared {
			url http://localhost:11434
			type ollama
		}
`) + "\n" + site("8081", `		endpoint shared {
			url http://10.0.0.5:11434/base
			type ollama
		}
`),
			want: []string{`endpoint "shared"`, "http://localhost:11434", "http://10.0.0.5:11434/base", "different"},
		},
		{
			// Checks that span fields live in Validate, for the Caddyfile
			// as for JSON: they fail the load, not the adapt.
			name: "cors credentials with every origin",
			caddyfile: site("8080", `		endpoint local {
			url http://localhost:11434
			type ollama
		}
		cors {
			allowed_origins *
			allow_credentials
		}
`),
			want: []string{"allow_credentials", `"*"`},
		},
		{
			name: "model_discovery timeout above its interval",
			caddyfile: site("8080", `		endpoint local {
			url http://localhost:11434
			type ollama
		}
		model_discovery {
			interval 10s
			timeout  20s
		}
`),
			want: []string{"model_discovery timeout 20s", "interval 10s"},
		},
		{
			name: "model_discovery interval too short",
			caddyfile: site("8080", `		endpoint local {
			url http://localhost:11434
			type ollama
		}
		model_discovery {
			interval 500ms
		}
`),
			want: []string{"model_discovery interval 500ms", "at least 1s"},
		},
		{
			name: "tls on an http URL",
			caddyfile: site("8080", `		endpoint plain {
			url http://localhost:8000
			type vllm
			auth bearer {env.OLLA_TEST_TOKEN}
			tls {
				insecure_skip_verify
			}
		}
`),
			want:    []string{`endpoint "plain"`, "tls", "not https"},
			notWant: []string{"tok-123"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			adapted, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(tc.caddyfile), nil)
			if err != nil {
				t.Fatalf("adapt must succeed (the error belongs to provisioning): %v", err)
			}
			var cfg caddy.Config
			if err := json.Unmarshal(adapted, &cfg); err != nil {
				t.Fatalf("unmarshal adapted config: %v\n%s", err, adapted)
			}
			err = caddy.Validate(&cfg)
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("expected the config to load, got: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("expected a provisioning error containing %q, got none\n%s", tc.want, adapted)
			}
			t.Logf("provisioning error: %v", err)
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not contain %q:\n\t%v", w, err)
				}
			}
			for _, nw := range tc.notWant {
				if strings.Contains(err.Error(), nw) {
					t.Errorf("error must not contain %q:\n\t%v", nw, err)
				}
			}
		})
	}
}

// TestShippedConfigs: the configs the README points users at (the `make
// run` demo and Caddyfile.example) adapt without warnings, validate as Caddy
// validates them (every module provisioned and Validate()d, nothing
// started), and use the adaptive balancer as new configs should.
func TestShippedConfigs(t *testing.T) {
	for _, path := range []string{"examples/demo.Caddyfile", "Caddyfile.example"} {
		t.Run(path, func(t *testing.T) {
			body, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			adapted, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt(body, map[string]any{"filename": path})
			if err != nil {
				t.Fatalf("adapt: %v", err)
			}
			if len(warnings) > 0 {
				t.Errorf("adapt warnings: %+v", warnings)
			}
			if !strings.Contains(string(adapted), `"load_balancer":"adaptive"`) {
				t.Errorf("%s does not use load_balancer adaptive", path)
			}
			var cfg caddy.Config
			if err := json.Unmarshal(adapted, &cfg); err != nil {
				t.Fatal(err)
			}
			if err := caddy.Validate(&cfg); err != nil {
				t.Fatalf("validate: %v", err)
			}
		})
	}
}
