package main

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name string, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs (go test -update rewrites it):\n%s", path, got)
	}
}

// The shipped mailtel.toml as router config prints it.
func TestConfigGolden(t *testing.T) {
	shipped := filepath.Join("..", "..", "mailtel.toml")
	for _, tc := range []struct {
		golden string
		args   []string
	}{
		{"config.golden", nil},
		{"config.json.golden", []string{"--json"}},
	} {
		out, errOut, err := runCmd(t, append([]string{"config", "--config", shipped}, tc.args...)...)
		if err != nil || errOut != "" {
			t.Fatalf("config %v: %v\n%s", tc.args, err, errOut)
		}
		golden(t, tc.golden, out)
	}
	var v map[string]any
	out, _, _ := runCmd(t, "config", "--config", shipped, "--json")
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Errorf("--json: %v", err)
	}
}

// What router config prints passes validate, and prints the same again.
func TestConfigRoundTrip(t *testing.T) {
	files := []string{
		filepath.Join("..", "..", "mailtel.toml"),
		"demo.toml",
		filepath.Join("..", "..", "pipeline", "config", "testdata", "stalwart-paste.toml"),
		"", // the defaults
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			args := []string{"config"}
			if f != "" {
				args = append(args, "--config", f)
			}
			first, errOut, err := runCmd(t, args...)
			if err != nil {
				t.Fatalf("%v\n%s", err, errOut)
			}
			printed := filepath.Join(t.TempDir(), "printed.toml")
			if err := os.WriteFile(printed, []byte(first), 0o644); err != nil {
				t.Fatal(err)
			}
			if out, errOut, err := runCmd(t, "validate", "--config", printed); err != nil || !strings.Contains(out, "is valid") {
				t.Fatalf("validate of the printed file: %v\n%s%s\n%s", err, out, errOut, first)
			}
			second, _, err := runCmd(t, "config", "--config", printed)
			if err != nil || second != first {
				t.Errorf("printed twice differently (%v):\n%s\n---\n%s", err, first, second)
			}
		})
	}
}

// Every kind of secret of the configuration, and a password in --nats:
// none is printed, in TOML or JSON.
func TestConfigRedactsSecrets(t *testing.T) {
	dir := t.TempDir()
	file := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	t.Setenv("MAILTEL_CONFIG_TEST_PUB_PASSWORD", "S3CRET-pub-password")
	t.Setenv("MAILTEL_CONFIG_TEST_HEADER", "S3CRET-wh-b-header")
	webhook := func(id, auth string) string {
		return `[webhook.` + id + `]
url = "https://whuser:S3CRET-wh-` + id + `-urlpass@h.example/hook/` + id + `?api_key=S3CRET-wh-` + id + `-query&v=1"
events = ["*"]
signature-key = "S3CRET-wh-` + id + `-sigkey"
[webhook.` + id + `.headers]
X-Api-Key = "S3CRET-wh-` + id + `-header"
Authorization = "Bearer S3CRET-wh-` + id + `-authz"
X-Ref = "%{env:MAILTEL_CONFIG_TEST_HEADER}%"
[webhook.` + id + `.auth]
` + auth + `secret = "%{file:` + file(id+"-auth", "S3CRET-wh-"+id+"-auth\n") + `}%"
`
	}
	embedded := file("embedded.toml", `
[nats]
token = "%{file:`+file("nats-token", "S3CRET-nats-token\n")+`}%"
[publisher]
token = "S3CRET-pub-token"
user = "ingest"
password = "%{env:MAILTEL_CONFIG_TEST_PUB_PASSWORD}%"
signature-key = "S3CRET-pub-sigkey"
[metrics.prometheus]
enable = true
[metrics.prometheus.auth]
username = "scraper"
secret = "S3CRET-metrics-secret"
`+webhook("a", "username = \"whuser\"\n")+webhook("b", ""))
	client := file("client.toml", `
[nats]
url = "nats://S3CRET-url-token@127.0.0.1:4222, nats://mailtel:S3CRET-url-pass@127.0.0.1:4223"
user = "mailtel"
password = "S3CRET-nats-password"
`)
	for _, args := range [][]string{
		{"--config", embedded},
		{"--config", embedded, "--json"},
		{"--config", client},
		{"--config", client, "--json"},
		{"--config", embedded, "--nats", "nats://mailtel:S3CRET-flag-pass@127.0.0.1:4222?x=S3CRET-flag-query"},
		{"--config", embedded, "--nats", "nats://mailtel:S3CRET-flag-pass@127.0.0.1:4222", "--json"},
	} {
		out, errOut, err := runCmd(t, append([]string{"config"}, args...)...)
		if err != nil {
			t.Fatalf("config %v: %v\n%s", args, err, errOut)
		}
		if strings.Contains(out+errOut, "S3CRET") {
			t.Errorf("config %v shows a secret:\n%s%s", args, out, errOut)
		}
		if !strings.Contains(out, "<redacted>") || !strings.Contains(out, "xxxxx") {
			t.Errorf("config %v shows no placeholder:\n%s", args, out)
		}
	}
	out, _, _ := runCmd(t, "config", "--config", embedded)
	for _, want := range []string{
		`token = "%{file:` + filepath.Join(dir, "nats-token") + `}%"`,
		`password = "%{env:MAILTEL_CONFIG_TEST_PUB_PASSWORD}%"`,
		`signature-key = "<redacted>"`,
		`X-Ref = "%{env:MAILTEL_CONFIG_TEST_HEADER}%"`,
		`url = "https://whuser:xxxxx@h.example/hook/a?api_key=xxxxx&v=xxxxx"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %s:\n%s", want, out)
		}
	}
}

func TestConfigCommandFlags(t *testing.T) {
	out, errOut, err := runCmd(t, "config", "--help")
	if err == nil || !strings.Contains(errOut, "usage: router config") || !strings.Contains(errOut, "Example:\n  router config") || out != "" {
		t.Errorf("--help: %v\n%s", err, errOut)
	}
	if out, _, _ := runCmd(t, "help"); !strings.Contains(out, "\n  config ") {
		t.Errorf("usage does not list config:\n%s", out)
	}
	if _, _, err := runCmd(t, "config", "extra"); err == nil {
		t.Error("an extra argument is accepted")
	}
	bad := filepath.Join(t.TempDir(), "bad.toml")
	os.WriteFile(bad, []byte("[router]\nbatch = -1\nwrokers = 2\n"), 0o644)
	out, _, err = runCmd(t, "config", "--config", bad)
	if err == nil || out != "" {
		t.Errorf("an invalid file: %v, stdout %q", err, out)
	}
	if s := err.Error(); !strings.Contains(s, "line 2: router.batch: must be at least 1") || !strings.Contains(s, "line 3: router.wrokers: unknown key") {
		t.Errorf("error: %s", s)
	}
	warn := filepath.Join(t.TempDir(), "warn.toml")
	os.WriteFile(warn, []byte("[tracing.level]\n\"auth.sucess\" = \"debug\"\n"), 0o644)
	out, errOut, err = runCmd(t, "config", "--config", warn)
	if err != nil || !strings.Contains(errOut, "warning: line 2: tracing.level.auth.sucess: ") || !strings.Contains(out, `"auth.sucess" = "debug"`) {
		t.Errorf("a file with a warning: %v\n%s%s", err, errOut, out)
	}
}
