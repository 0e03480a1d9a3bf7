package config

import (
	"errors"
	"strings"
	"testing"
)

func TestErrorsCarryTheirLine(t *testing.T) {
	doc := `[tracr.log]
type = "log"

[tracer.log]
type = "log"
path = "/tmp/x"
levle = "info"
level = "loud"
[webhook.siem]
url = "ftp://siem.example"
events = ["auth.bannd", "bad pattern!"]
[tracing.level]
auth.sucess = "debug"
"auth.faild" = "loud"
[publisher]
password = "%{env:MAILTEL_TEST_UNSET_VAR}%"
[nats.tls]
cert = "x"
`
	_, err := Parse([]byte(doc))
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{
		"line 1: tracr: unknown section (did you mean tracer?)", // a table opened implicitly: its first key
		"line 7: tracer.log.levle: unknown key (did you mean level?)",
		"line 8: tracer.log.level: unknown level",
		"line 10: webhook.siem.url: want an http:// or https:// URL",
		"line 11: webhook.siem.events[1]: event pattern",
		"line 14: tracing.level.auth.faild: unknown level",
		"line 16: publisher.password: environment variable MAILTEL_TEST_UNSET_VAR is not set",
		"line 17: nats.tls: cert and key go together",
		"\npublisher.user: required with publisher.password", // not in the file: no line
		"warning: line 13: tracing.level.auth.sucess: ",      // the dotted form
		"warning: line 11: webhook.siem.events[0]: ",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	var le *lineError
	if !errors.As(err, &le) || errors.Unwrap(le) == nil {
		t.Error("no line error in the tree, or it hides its cause")
	}

	// A valid file's warnings carry their line too.
	c, err := Parse([]byte("[router]\nworkers = 2\n[tracing.level]\n\"auth.sucess\" = \"debug\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Warnings) != 1 || !strings.HasPrefix(c.Warnings[0], "line 4: tracing.level.auth.sucess: ") {
		t.Errorf("warnings %q", c.Warnings)
	}
}

// With adjust (command-line flags), a value Validate complains about may
// be the flag's: its error names no line of the file. What the file alone
// decides (unknown keys, types, secrets), and the keys adjust left alone,
// keep their line.
func TestAdjustedValuesHaveNoLine(t *testing.T) {
	doc := "[publisher]\nlisten = \"127.0.0.1:8025\"\nlisten-addr = \"x\"\n[router]\nbatch = -1\n"
	_, err := ParseWith([]byte(doc), func(c *Config) { c.Publisher.Listen = "0.0.0.0:8025" })
	if err == nil {
		t.Fatal("accepted")
	}
	if s := err.Error(); !strings.Contains(s, "line 3: publisher.listen-addr: unknown key") ||
		!strings.Contains(s, "\npublisher.listen: 0.0.0.0:8025 is reachable") || !strings.Contains(s, "line 5: router.batch: must be at least 1") {
		t.Errorf("error:\n%s", s)
	}
	// An adjust that changes nothing (flags not given) hides no line.
	_, err = ParseWith([]byte("[publisher]\nlisten = \"0.0.0.0:8025\"\n"), func(c *Config) {})
	if err == nil || !strings.Contains(err.Error(), "line 2: publisher.listen: 0.0.0.0:8025 is reachable") {
		t.Errorf("error: %v", err)
	}
}

func TestKeyLines(t *testing.T) {
	lines := keyLines([]byte("a = 1\n[b]\nc = [\n  1,\n]\n[b.d]\ne = { f = 2 }\n[[g]]\nh = 1\n"))
	for k, want := range map[string]int{"a": 1, "b": 2, "b.c": 3, "b.d": 6, "b.d.e": 7, "b.d.e.f": 7, "g": 8} {
		if lines[k] != want {
			t.Errorf("line of %s = %d, want %d (%v)", k, lines[k], want, lines)
		}
	}
	if keyLines([]byte("a = ")) != nil {
		t.Error("lines of a document that does not parse")
	}
}
