package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runCmd(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := run(context.Background(), args, &out, &errOut)
	return out.String(), errOut.String(), err
}

func catalogLevels(t *testing.T, out string) map[string][]string {
	t.Helper()
	rows := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		cols := strings.Split(line, "\t")
		if len(cols) != 5 {
			t.Fatalf("line %q has %d columns, want 5", line, len(cols))
		}
		rows[cols[0]] = cols
	}
	return rows
}

func TestCatalogCommand(t *testing.T) {
	out, _, err := runCmd(t, "catalog")
	if err != nil {
		t.Fatal(err)
	}
	rows := catalogLevels(t, out)
	if len(rows) != 569 {
		t.Errorf("catalog lists %d events, want 569 (541 Stalwart + 28 Dovecot)", len(rows))
	}
	for id, want := range map[string]string{"auth.success": "info", "telemetry.update": "disable", "delivery.dsn-perm-fail": "info", "auth.request-finished": "info", "auth.client-request-started": "debug"} {
		if got := rows[id][3]; got != want {
			t.Errorf("%s level %q, want %q", id, got, want)
		}
	}
	if got := strings.Join(rows["auth.request-finished"][:3], " "); got != "auth.request-finished dovecot auth_request_finished" {
		t.Errorf("dovecot row = %q", got)
	}

	cfg := filepath.Join(t.TempDir(), "mailtel.toml")
	os.WriteFile(cfg, []byte("[tracing.level]\nauth.success = \"debug\"\n"), 0o644)
	out, _, err = runCmd(t, "catalog", "--config", cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got := catalogLevels(t, out)["auth.success"][3]; got != "debug" {
		t.Errorf("with override auth.success is %q, want debug", got)
	}

	out, _, err = runCmd(t, "catalog", "--json", "--config", cfg)
	if err != nil {
		t.Fatal(err)
	}
	var entries []catalogEntry
	if err := json.Unmarshal([]byte(out), &entries); err != nil {
		t.Fatal(err)
	}
	if len(entries) != 569 {
		t.Fatalf("--json lists %d events", len(entries))
	}
	for _, e := range entries {
		if e.ID == "auth.success" && (e.Level.String() != "debug" || e.Default.String() != "info" || e.Source != "stalwart") {
			t.Errorf("auth.success JSON = %+v", e)
		}
	}
}

func TestValidateCommand(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.toml")
	os.WriteFile(good, []byte("[tracer.log]\ntype = \"log\"\npath = \"/tmp/x\"\n"), 0o644)
	out, _, err := runCmd(t, "validate", "--config", good)
	if err != nil || !strings.Contains(out, "is valid: 1 sinks (log:log)") {
		t.Errorf("validate good: %v %q", err, out)
	}
	bad := filepath.Join(dir, "bad.toml")
	os.WriteFile(bad, []byte("[tracer.log]\ntype = \"log\"\nlevel = \"loud\"\n[webhook.w]\nurl = \"x\"\n"), 0o644)
	_, errOut, err := runCmd(t, "validate", "--config", bad)
	if err == nil {
		t.Fatal("validate accepted a bad file")
	}
	for _, want := range []string{"tracer.log.path: required", "tracer.log.level: unknown level", "webhook.w.url", "webhook.w.events: required"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("validate output lacks %q:\n%s", want, errOut)
		}
	}
	// Every process refuses to start on an invalid file.
	if _, _, err := runCmd(t, "run", "--config", bad); err == nil {
		t.Error("router run started with an invalid config")
	}
}

// TestHelpListsCommands: --help (and its spellings) shows every command
// with a line each, not only the flags of the default one; --version
// prints the version.
func TestHelpListsCommands(t *testing.T) {
	for _, arg := range []string{"--help", "-h", "-help", "help"} {
		t.Run(arg, func(t *testing.T) {
			var out, errOut bytes.Buffer
			if err := run(context.Background(), []string{arg}, &out, &errOut); err != nil {
				t.Fatal(err)
			}
			for _, cmd := range []string{"run", "up", "replay", "status", "validate", "catalog"} {
				if !strings.Contains(out.String(), "\n  "+cmd+" ") {
					t.Errorf("%s does not list %s:\n%s", arg, cmd, out.String())
				}
			}
		})
	}
	var out bytes.Buffer
	if err := run(context.Background(), []string{"--version"}, &out, &out); err != nil || !strings.HasPrefix(out.String(), "router ") {
		t.Errorf("--version: %q, %v", out.String(), err)
	}
}
