package docs

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailtel/mailtel/pipeline/pipelinetest"
)

// TestReadmeShell checks the README's shell blocks as text: every block is
// valid shell, every router, sinks and publisher call expands (no command
// substitution, no variable the README does not set before), and no
// subject wildcard is left unquoted: `sinks tail events.auth.>` is a
// redirection to a file, and `events.*.error` a file name pattern.
func TestReadmeShell(t *testing.T) {
	cmds, err := Commands(readme(t))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, c := range cmds {
		for _, p := range c.Problems {
			t.Error(p)
		}
		for _, call := range c.Calls {
			seen[call.Program]++
			if call.Unexpandable != "" {
				t.Errorf("README.md:%d: %s call cannot be expanded: %s", call.Line, call.Program, call.Unexpandable)
			}
		}
	}
	for p := range Programs {
		if seen[p] == 0 {
			t.Errorf("the README has no %s call: are its blocks still found (```sh fences)?", p)
		}
	}
}

// TestReadmeFlags runs every router, sinks and publisher call of the
// README's shell blocks with its real arguments against the real binaries,
// so that the real flag sets and dispatchers parse them; nothing is
// duplicated here, and nothing in the commands is added for tests.
//
// A call must get past its flags without doing any harm, so each runs in a
// temporary directory holding the files the README's calls name (a copy
// of mailtel.toml with [webhook.siem] uncommented, as the README invites;
// new.toml; events.jsonl; deploy/mailtel.cluster.toml), with its NATS
// address replaced by a listener of this test: the value of its --nats
// flag, or else a "--nats ADDR" inserted before its first flag. Every
// command that takes --nats parses all its flags and arguments, and loads
// its configuration, before it connects; so the moment the call connects
// to the listener proves that it parsed, and the test kills it there,
// before it reads or writes anything. A call that does not take --nats
// ("flag provided but not defined: -nats": router catalog, validate) runs
// again without it and must exit 0. Any other outcome fails, with the
// call's stderr: a flag error ("flag provided but not defined", "invalid
// value"), an unknown command, a missing argument, an exit before
// connecting. TestReadmeFlagsCatch proves that such mistakes are caught.
func TestReadmeFlags(t *testing.T) {
	bin := buildBinaries(t)
	cmds, err := Commands(readme(t))
	if err != nil {
		t.Fatal(err)
	}
	dir := fixtures(t)
	n := 0
	for _, c := range cmds {
		for _, call := range c.Calls {
			n++
			t.Run(fmt.Sprintf("L%d_%s_%s", call.Line, call.Program, strings.ReplaceAll(call.Subcommand(), " ", "_")), func(t *testing.T) {
				if err := checkCall(bin, dir, call); err != nil {
					t.Errorf("README.md:%d: %s\n  README: %s", call.Line, err, c.Text)
				}
			})
		}
	}
	t.Logf("%d calls checked", n)
}

// TestReadmeFlagsCatch feeds TestReadmeFlags's checks README snippets with
// a mistake each, and wants every mistake reported.
func TestReadmeFlagsCatch(t *testing.T) {
	bin := buildBinaries(t)
	dir := fixtures(t)
	cases := []struct {
		name, command, want string
	}{
		{"unknown flag", "router --confg mailtel.toml", "flag provided but not defined: -confg"},
		{"unknown flag after a subject", "sinks tail 'events.auth.>' --sinze 10m", "flag provided but not defined: -sinze"},
		{"unknown flag through go run", "go run ./cmd/router validate --confg mailtel.toml", "flag provided but not defined: -confg"},
		{"bad value", "publisher gen --count many", "invalid value"},
		{"bad optional value", "router status --watch=5x", "invalid"},
		{"unknown command", "router frobnicate --config mailtel.toml", `unknown command "frobnicate"`},
		{"unknown dlq command", "sinks dlq lst --config mailtel.toml", `unknown command "lst"`},
		{"stray argument", "router replay --config new.toml --since 7d extra", `unexpected argument "extra"`},
		{"missing argument", "publisher file --config mailtel.toml", "want exactly one PATH"},
		{"missing file", "router validate --config missing.toml", "exit status 1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cmds, err := Commands([]byte("# T\n\n```sh\n" + tc.command + "\n```\n"))
			if err != nil {
				t.Fatal(err)
			}
			if len(cmds) != 1 || len(cmds[0].Calls) != 1 {
				t.Fatalf("%q: want one command of one call, got %+v", tc.command, cmds)
			}
			err = checkCall(bin, dir, cmds[0].Calls[0])
			if err == nil {
				t.Fatalf("%q passed; want an error with %q", tc.command, tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("%q: error %q does not say %q", tc.command, err, tc.want)
			}
		})
	}

	// The real README with one flag misspelt and one subject unquoted.
	real := string(readme(t))
	for _, tc := range []struct{ from, to, want string }{
		{"router --config mailtel.toml --workers 4", "router --config mailtel.toml --workerz 4", "flag provided but not defined: -workerz"},
		{"sinks dlq show --config mailtel.toml 42", "sinks dlq show --config mailtel.toml --sequence 42", "flag provided but not defined: -sequence"},
	} {
		t.Run("README with "+tc.to, func(t *testing.T) {
			if !strings.Contains(real, tc.from) {
				t.Skipf("the README no longer has %q", tc.from)
			}
			cmds, err := Commands([]byte(strings.Replace(real, tc.from, tc.to, 1)))
			if err != nil {
				t.Fatal(err)
			}
			var errs []string
			for _, c := range cmds {
				if c.Text == tc.to {
					if err := checkCall(bin, dir, c.Calls[0]); err != nil {
						errs = append(errs, err.Error())
					}
				}
			}
			if len(errs) != 1 || !strings.Contains(errs[0], tc.want) {
				t.Fatalf("want one error with %q, got %q", tc.want, errs)
			}
		})
	}
	t.Run("README with an unquoted subject", func(t *testing.T) {
		cmds, err := Commands([]byte(strings.Replace(real, "sinks tail 'events.*.error' --since 10m", "sinks tail events.*.error --since 10m", 1)))
		if err != nil {
			t.Fatal(err)
		}
		var problems []string
		for _, c := range cmds {
			problems = append(problems, c.Problems...)
		}
		if len(problems) != 1 || !strings.Contains(problems[0], `"events.*.error" has an unquoted "*"`) {
			t.Fatalf("want one problem about events.*.error, got %q", problems)
		}
	})

	shell := []struct {
		name, block, want string
	}{
		{"unquoted > before a flag", "sinks tail events.auth.> --since 10m", "takes for a redirection"},
		{"unquoted *", "sinks tail events.*.error", `unquoted "*"`},
		{"unquoted * through go run", "go run ./cmd/sinks tail 'events.auth.>' events.*.error", `unquoted "*"`},
		{"unquoted > at the end", "sinks tail events.auth.>\n", "shell syntax error"},
		{"unset variable", "router --nats $NOPE", "unbound variable"},
		{"command substitution", "router --config $(ls *.toml)", "command substitution"},
	}
	for _, tc := range shell {
		t.Run(tc.name, func(t *testing.T) {
			cmds, err := Commands([]byte("# T\n\n```sh\n" + tc.block + "\n```\n"))
			var got []string
			if err != nil {
				got = append(got, err.Error())
			}
			for _, c := range cmds {
				got = append(got, c.Problems...)
				for _, call := range c.Calls {
					if call.Unexpandable != "" {
						got = append(got, call.Unexpandable)
					}
				}
			}
			if !strings.Contains(strings.Join(got, "\n"), tc.want) {
				t.Fatalf("%q: got %q, want a report with %q", tc.block, got, tc.want)
			}
		})
	}
}

// TestCommands checks the splitting and classification the new-user
// session relies on.
func TestCommands(t *testing.T) {
	md := "# A\n\n```sh\n" +
		"go run ./cmd/router up        # the whole pipeline\n" +
		"NATS=nats://127.0.0.1:14222\n" +
		"NATS_TOKEN=x router --nats $NATS \\\n    --workers 2 && sinks tail 'events.auth.>' --until 0s; sinks dlq list\n" +
		"tail -F x.jsonl | publisher file -\n" +
		"go test ./...\n" +
		"```\n\n## B\n\n```console\n$ router status --watch\noutput line\n```\n\n```\nrouter not a shell block\n```\n"
	cmds, err := Commands([]byte(md))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range cmds {
		var calls []string
		for _, call := range c.Calls {
			calls = append(calls, fmt.Sprintf("%s[%s]%q%q", call.Program, call.Subcommand(), call.Env, call.Args))
		}
		got = append(got, fmt.Sprintf("%d %s %s | %s | %s", c.Line, c.Section, c.Kind, c.Text, strings.Join(calls, " ")))
	}
	want := []string{
		`4 A service | go run ./cmd/router up | router[up][]["up"]`,
		`5 A run | NATS=nats://127.0.0.1:14222 | `,
		`6 A service | NATS_TOKEN=x router --nats $NATS --workers 2 && sinks tail 'events.auth.>' --until 0s | ` +
			`router[run]["NATS_TOKEN=x"]["--nats" "nats://127.0.0.1:14222" "--workers" "2"] sinks[tail][]["tail" "events.auth.>" "--until" "0s"]`,
		`7 A run | sinks dlq list | sinks[dlq list][]["dlq" "list"]`,
		`8 A service | tail -F x.jsonl | publisher file - | publisher[file][]["file" "-"]`,
		`9 A slow | go test ./... | `,
		`15 B service | router status --watch | router[status][]["status" "--watch"]`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

var firstHour = flag.Bool("first-hour", false, "also run scripts/new-user-session.sh, a new user's session with the README (about 5 minutes; it clones the committed HEAD)")

var firstHourArgs = flag.String("first-hour.args", "", "options of new-user-session.sh, e.g. \"--max-bytes 2GiB\"")

// TestNewUserSession runs scripts/new-user-session.sh with -first-hour
// (go test ./docs -run TestNewUserSession -first-hour -v -timeout 20m).
func TestNewUserSession(t *testing.T) {
	if !*firstHour {
		t.Skip("run with -first-hour (or go tool task first-hour)")
	}
	cmd := exec.Command("bash", append([]string{filepath.Join("..", "scripts", "new-user-session.sh")}, strings.Fields(*firstHourArgs)...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	t.Log(out.String())
	if err != nil {
		t.Fatalf("new-user-session.sh: %v", err)
	}
}

func readme(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// checkCall runs call as TestReadmeFlags describes and returns why it did
// not parse.
func checkCall(bin, dir string, call Call) error {
	if call.Unexpandable != "" {
		return fmt.Errorf("%s: cannot expand the arguments: %s", call.Program, call.Unexpandable)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer ln.Close()
	connected := make(chan struct{})
	go func() {
		if c, err := ln.Accept(); err == nil {
			close(connected)
			c.Close()
		}
	}()
	args := withNATS(call.Args, "nats://"+ln.Addr().String())
	code, stderr, err := runCall(bin, dir, call, args, connected)
	if err != nil {
		return err
	}
	if code == -1 {
		return nil // connected: past its flags
	}
	if code != 0 && strings.Contains(stderr, "flag provided but not defined: -nats") {
		// The command does not connect to NATS: it must succeed alone.
		args = call.Args
		if code, stderr, err = runCall(bin, dir, call, args, nil); err != nil {
			return err
		}
	}
	if code != 0 {
		return fmt.Errorf("%s %s: exit status %d before connecting to NATS:\n%s", call.Program, shellQuote(args), code, indent(stderr))
	}
	for _, bad := range []string{"flag provided but not defined", "invalid value", "unknown command"} {
		if strings.Contains(stderr, bad) {
			return fmt.Errorf("%s %s: exit status 0, but stderr says %q:\n%s", call.Program, shellQuote(args), bad, indent(stderr))
		}
	}
	return nil
}

// runCall runs the call's program with args in dir. It returns exit code
// -1 when connected was closed first (the process is killed then).
func runCall(bin, dir string, call Call, args []string, connected chan struct{}) (int, string, error) {
	cmd := exec.Command(filepath.Join(bin, call.Program), args...)
	cmd.Dir = dir
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "SIEM_SIGNATURE_KEY=readme-test"}, call.Env...)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = new(bytes.Buffer), &stderr
	if err := cmd.Start(); err != nil {
		return 0, "", err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-connected:
		cmd.Process.Kill()
		<-done
		return -1, stderr.String(), nil
	case err := <-done:
		var exit *exec.ExitError
		if err != nil && !errors.As(err, &exit) {
			return 0, stderr.String(), err
		}
		return cmd.ProcessState.ExitCode(), stderr.String(), nil
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		<-done
		return 0, "", fmt.Errorf("%s %s: neither connected to NATS nor exited within 30s:\n%s", call.Program, shellQuote(args), indent(stderr.String()))
	}
}

// withNATS returns args with the value of their --nats flag replaced by
// url, or with "--nats url" inserted before their first flag (at the end
// when they have none).
func withNATS(args []string, url string) []string {
	out := append([]string(nil), args...)
	for i, a := range out {
		if a == "--" {
			break
		}
		switch name := strings.TrimLeft(a, "-"); {
		case !strings.HasPrefix(a, "-"):
		case name == "nats" && i+1 < len(out):
			out[i+1] = url
			return out
		case strings.HasPrefix(name, "nats="):
			out[i] = "--nats=" + url
			return out
		}
	}
	at := len(out)
	for i, a := range out {
		if strings.HasPrefix(a, "-") && a != "-" {
			at = i
			break
		}
	}
	return append(out[:at:at], append([]string{"--nats", url}, out[at:]...)...)
}

// fixtures returns a directory with the files the README's calls name.
func fixtures(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	shipped, err := os.ReadFile(filepath.Join("..", "mailtel.toml"))
	if err != nil {
		t.Fatal(err)
	}
	// [webhook.siem], which the README's siem examples use, uncommented.
	var b strings.Builder
	uncomment := false
	for _, line := range strings.SplitAfter(string(shipped), "\n") {
		if strings.HasPrefix(line, "# [webhook.siem]") {
			uncomment = true
		}
		if uncomment && strings.HasPrefix(line, "# ") && (strings.HasPrefix(line, "# [") || strings.Contains(line, " = ")) {
			line = strings.TrimPrefix(line, "# ")
		} else {
			uncomment = false
		}
		b.WriteString(line)
	}
	mailtel := b.String()
	if !strings.Contains(mailtel, "\n[webhook.siem]\n") {
		t.Fatal("mailtel.toml has no commented [webhook.siem] to uncomment any more: adjust the README test's fixtures")
	}
	cluster, err := os.ReadFile(filepath.Join("..", "deploy", "mailtel.cluster.toml"))
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"mailtel.toml":                mailtel,
		"new.toml":                    mailtel + "\n[webhook.newhook]\nurl = \"http://127.0.0.1:9/hook\"\nevents = [\"auth.*\"]\n",
		"deploy/mailtel.cluster.toml": string(cluster),
		"events.jsonl":                `{"id":"1","createdAt":"2026-11-27T14:59:28Z","type":"auth.success","data":{"accountName":"a@example.com"}}` + "\n",
	}
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// buildBinaries returns the directory of the router, sinks and publisher
// executables (see pipelinetest.Binaries).
func buildBinaries(t *testing.T) string { return pipelinetest.Binaries(t) }

func TestMain(m *testing.M) {
	code := m.Run()
	pipelinetest.RemoveBinaries()
	os.Exit(code)
}

func shellQuote(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		if a == "" || strings.ContainsAny(a, " '\"*?>$&|;()<\\") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		q[i] = a
	}
	return strings.Join(q, " ")
}

func indent(s string) string {
	s = strings.TrimRight(s, "\n")
	if len(s) > 2000 {
		s = s[:2000] + " ..."
	}
	return "    " + strings.ReplaceAll(s, "\n", "\n    ")
}
