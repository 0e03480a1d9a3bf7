package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailtel/mailtel/catalog"
	"github.com/mailtel/mailtel/pipeline/config/value"
	"github.com/mailtel/mailtel/pipeline/sinks/webhook"
)

func TestLoadStalwartPaste(t *testing.T) {
	c, err := Load(filepath.Join("testdata", "stalwart-paste.toml"))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	for _, tc := range []struct {
		id   string
		want catalog.Level
	}{
		{"auth.success", catalog.LevelDebug},
		{"delivery.dsn-perm-fail", catalog.LevelWarn},
		{"smtp.rcpt-to", catalog.LevelTrace},
	} {
		if got := c.Levels.Of(tc.id); got != tc.want {
			t.Errorf("Levels.Of(%s) = %v, want %v", tc.id, got, tc.want)
		}
	}
	specs := c.SinkSpecs()
	var names []string
	for _, s := range specs {
		names = append(names, s.Name+":"+s.Kind)
	}
	if got, want := strings.Join(names, ","), "log:log,metrics:metrics,siem:webhook"; got != want {
		t.Fatalf("sinks = %s, want %s", got, want)
	}
	if got := c.Streams.MaxAge.D(); got != 7*24*time.Hour {
		t.Errorf("streams.max-age = %v", got)
	}
	if c.Streams.MaxBytes != 10<<30 {
		t.Errorf("streams.max-bytes = %d", c.Streams.MaxBytes)
	}
	if w := c.Sink("siem").Config.(*webhook.Config); w.DiscardAfter.D() != 24*time.Hour || w.Headers["X-Tenant"] != "mail" {
		t.Errorf("webhook.siem = %+v", w)
	}
}

func TestSinkSpecWants(t *testing.T) {
	c, err := Load(filepath.Join("testdata", "stalwart-paste.toml"))
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]*SinkSpec{}
	specs := c.SinkSpecs()
	for i := range specs {
		byName[specs[i].Name] = &specs[i]
	}
	for _, tc := range []struct {
		sink, id string
		lv       catalog.Level
		want     bool
	}{
		{"log", "auth.success", catalog.LevelInfo, true},
		{"log", "auth.success", catalog.LevelDebug, false},            // below threshold
		{"log", "network.connection-start", catalog.LevelInfo, false}, // disabled-events prefix
		{"log", "acme.error", catalog.LevelError, true},
		{"log", "telemetry.update", catalog.LevelDisable, false},
		{"siem", "auth.failed", catalog.LevelTrace, true}, // webhooks ignore levels
		{"siem", "auth.success", catalog.LevelError, false},
		{"siem", "smtp.spf-ehlo-fail", catalog.LevelDebug, true},
		{"siem", "auth.banned", catalog.LevelDisable, false},
		{"metrics", "auth.success", catalog.LevelTrace, true},
		{"metrics", "telemetry.webhook-error", catalog.LevelWarn, false},
	} {
		t.Run(tc.sink+"/"+tc.id, func(t *testing.T) {
			if got := byName[tc.sink].Wants(tc.id, tc.lv); got != tc.want {
				t.Errorf("Wants(%s, %v) = %v, want %v", tc.id, tc.lv, got, tc.want)
			}
		})
	}
}

func TestInvalidConfigsReportEveryErrorWithItsPath(t *testing.T) {
	for _, tc := range []struct {
		name string
		toml string
		want []string
	}{
		{"bad level", "[tracing.level]\nauth.success = \"loud\"\n", []string{"tracing.level.auth.success: unknown level"}},
		{"level not a string", "[tracing.level]\n\"auth.success\" = 3\n", []string{"tracing.level.auth.success: want a level name"}},
		{"many errors at once", `
[tracer.a]
type = "log"
level = "chatty"
rotate = "weekly"
[webhook.a]
url = "ftp://x"
events = ["au**th"]
[streams]
replicas = 9
`, []string{"tracer.a.path: required", "tracer.a.level: unknown level", "tracer.a.rotate: want daily",
			"webhook.a: sink name \"a\" is already used by tracer.a", "webhook.a.url: want an http", "webhook.a.events[0]",
			"streams.replicas: must be between 1 and 5"}},
		{"unknown key in a known section", "[nats]\nurll = \"nats://x\"\n", []string{"nats.urll: unknown key"}},
		{"unsupported tracer", "[tracer.j]\ntype = \"journal\"\n", []string{"tracer.j.type: unsupported tracer type \"journal\""}},
		{"webhook without events", "[webhook.w]\nurl = \"http://127.0.0.1:1/\"\n", []string{"webhook.w.events: required"}},
		{"routed window shorter than redelivery", "[router]\nack-wait = \"90s\"\n[streams]\nrouted-duplicates = \"2m\"\n", []string{"streams.routed-duplicates: 2m0s is shorter than twice router.ack-wait (1m30s)"}},
		{"server fan-out of no sink", "[tracer.log]\ntype = \"stdout\"\n[router]\nserver-fan-out = [\"log\", \"lgo\"]\n", []string{"router.server-fan-out[1]: \"lgo\" is not a sink of this file"}},
		{"bad sink name", "[tracer.\"a b\"]\ntype = \"stdout\"\n", []string{"sink name \"a b\""}},
		{"bad duration", "[webhook.w]\nurl = \"http://h/\"\nevents=[\"*\"]\ntimeout = \"soon\"\n", []string{"invalid duration \"soon\""}},
		{"bad size", "[streams]\nmax-bytes = \"10 parsecs\"\n", []string{"invalid size"}},
		{"webhook url that does not parse", "[webhook.w]\nurl = \"https://u:pa55%zz@h/hook?key=k3y\"\nevents = [\"*\"]\n", []string{"webhook.w.url: not a valid URL: a bad %-escape"}},
		{"webhook url without host", "[webhook.w]\nurl = \"https:///hook\"\nevents = [\"*\"]\n", []string{"webhook.w.url: want an http:// or https:// URL with a host"}},
		{"metrics name taken", "[tracer.metrics]\ntype = \"stdout\"\n[metrics.prometheus]\nenable = true\n", []string{"metrics: sink name \"metrics\" is already used by tracer.metrics"}},
		{"not toml", "[[[", []string{"parse:"}},
		{"max-deliver is gone", "[sinks]\nmax-deliver = 10\n", []string{"sinks.max-deliver: no longer used", "discard-after"}},
		{"discard-after beyond retention", "[streams]\nmax-age = \"2d\"\n[webhook.w]\nurl = \"http://h/\"\nevents = [\"*\"]\ndiscard-after = \"3d\"\n", []string{"webhook.w.discard-after: 72h0m0s is longer than streams.max-age (48h0m0s)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.toml))
			if err == nil {
				t.Fatal("Parse accepted an invalid file")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\nlacks %q", err, w)
				}
			}
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.toml"))
	if err == nil || !os.IsNotExist(unwrapAll(err)) {
		t.Fatalf("Load of a missing file: %v", err)
	}
}

func unwrapAll(err error) error {
	for {
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return err
		}
		err = u.Unwrap()
	}
}

func TestPatterns(t *testing.T) {
	for _, tc := range []struct {
		pat, id string
		want    bool
	}{
		{"*", "auth.success", true},
		{"auth.*", "auth.success", true},
		{"auth.*", "authx.success", false},
		{"*-error", "acme.tls-alpn-error", true},
		{"*-error", "acme.error", false},
		{"auth.success", "auth.success", true},
		{"auth.success", "auth.successful", false},
		{"smtp.*-fail", "smtp.spf-ehlo-fail", true},
		{"smtp.*-fail", "smtp.spf-ehlo-pass", false},
		{"a.b*b.c", "a.b.c", false}, // prefix and suffix must not overlap
	} {
		p, err := ParsePattern(tc.pat)
		if err != nil {
			t.Fatalf("ParsePattern(%q): %v", tc.pat, err)
		}
		if got := p.Match(tc.id); got != tc.want {
			t.Errorf("%q.Match(%q) = %v, want %v", tc.pat, tc.id, got, tc.want)
		}
		if p.String() != tc.pat {
			t.Errorf("String() = %q, want %q", p.String(), tc.pat)
		}
	}
	for _, bad := range []string{"", "a**b", "**", "*a*", "Auth.Success", "auth", "auth.>", "a b*"} {
		if _, err := ParsePattern(bad); err == nil {
			t.Errorf("ParsePattern(%q) accepted", bad)
		}
	}
}

func TestUnits(t *testing.T) {
	for in, want := range map[string]time.Duration{"250ms": 250 * time.Millisecond, "7d": 7 * 24 * time.Hour, "2w": 14 * 24 * time.Hour, "1h30m": 90 * time.Minute} {
		if got, err := value.ParseDuration(in); err != nil || got != want {
			t.Errorf("value.ParseDuration(%q) = %v, %v", in, got, err)
		}
	}
	for in, want := range map[string]int64{"1024": 1024, "64k": 64 << 10, "512MB": 512 << 20, "10GiB": 10 << 30} {
		if got, err := value.ParseSize(in); err != nil || got != want {
			t.Errorf("value.ParseSize(%q) = %v, %v", in, got, err)
		}
	}
}

func TestSecretsFromEnvAndFiles(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "key"), []byte("from-file\n"), 0o600)
	t.Setenv("MAILTEL_TEST_TOKEN", "from-env")
	c, err := Parse([]byte(`
[publisher]
token = "%{env:MAILTEL_TEST_TOKEN}%"
signature-key = "%{file:` + filepath.Join(dir, "key") + `}%"
[webhook.w]
url = "http://127.0.0.1:1/"
events = ["*"]
signature-key = "literal"
headers = { "X-Api-Key" = "%{env:MAILTEL_TEST_TOKEN}%" }
`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Publisher.Token != "from-env" || c.Publisher.SignatureKey != "from-file" ||
		c.Sink("w").Config.(*webhook.Config).SignatureKey != "literal" || c.Sink("w").Config.(*webhook.Config).Headers["X-Api-Key"] != "from-env" {
		t.Errorf("secrets not expanded: %+v %+v", c.Publisher, c.Sink("w").Config)
	}

	_, err = Parse([]byte("[publisher]\ntoken = \"%{env:MAILTEL_TEST_UNSET_VAR}%\"\npassword = \"%{file:/nonexistent/secret}%\"\n"))
	if err == nil {
		t.Fatal("unset variable and missing file accepted")
	}
	for _, want := range []string{"publisher.token: environment variable MAILTEL_TEST_UNSET_VAR is not set", "publisher.password: read secret file"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

func TestParseErrorsNeverShowValues(t *testing.T) {
	// An unquoted secret is a TOML syntax error whose message would quote it.
	_, err := Parse([]byte("[nats]\ntoken = TokSecretXYZ123\n"))
	if err == nil {
		t.Fatal("accepted")
	}
	if strings.Contains(err.Error(), "TokSecret") || !strings.Contains(err.Error(), "line 2 (key nats.token)") {
		t.Errorf("error %q: want the line and key, not the value", err)
	}
}

// TestRoutedWindowFollowsAckWait: the ROUTED window covers a router's
// redelivery, so it defaults to twice [router] ack-wait, whatever that is.
func TestRoutedWindowFollowsAckWait(t *testing.T) {
	for _, tc := range []struct {
		doc        string
		routed, ev time.Duration
	}{
		{"", time.Minute, 2 * time.Minute},
		{"[router]\nack-wait = \"90s\"\n", 3 * time.Minute, 2 * time.Minute},
		{"[streams]\nrouted-duplicates = \"5m\"\nduplicates = \"10m\"\n", 5 * time.Minute, 10 * time.Minute},
	} {
		c, err := Parse([]byte(tc.doc))
		if err != nil {
			t.Fatalf("%q: %v", tc.doc, err)
		}
		if c.Streams.RoutedDuplicates.D() != tc.routed || c.Streams.Duplicates.D() != tc.ev {
			t.Errorf("%q: routed-duplicates %s, duplicates %s; want %s, %s", tc.doc,
				c.Streams.RoutedDuplicates.D(), c.Streams.Duplicates.D(), tc.routed, tc.ev)
		}
	}
}

func TestRetryOf(t *testing.T) {
	c, err := Parse([]byte("[sinks]\nmax-backoff = \"10s\"\n[tracer.a]\ntype = \"stdout\"\n[webhook.b]\nurl = \"http://h/\"\nevents = [\"*\"]\ndiscard-after = \"2h\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]Retry{}
	for _, s := range c.SinkSpecs() {
		got[s.Name] = c.RetryOf(s)
	}
	if want := (Retry{DiscardAfter: Duration(24 * time.Hour), MaxBackoff: Duration(10 * time.Second)}); got["a"] != want {
		t.Errorf("tracer a: %+v, want [sinks]' %+v", got["a"], want)
	}
	if want := (Retry{DiscardAfter: Duration(2 * time.Hour), MaxBackoff: Duration(10 * time.Second)}); got["b"] != want {
		t.Errorf("webhook b: %+v, want its own discard-after and [sinks]' max-backoff: %+v", got["b"], want)
	}
}

func TestErrorsNeverShowSecrets(t *testing.T) {
	// A bad value next to a secret: the error names keys, not the secret.
	_, err := Parse([]byte("[webhook.w]\nurl = \"ftp://x\"\nevents = [\"*\"]\nsignature-key = \"hunter2-secret\"\n[publisher]\npassword = \"pa55-secret\"\nmax-in-flight = -1\n"))
	if err == nil {
		t.Fatal("accepted")
	}
	if strings.Contains(err.Error(), "secret") && (strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), "pa55")) {
		t.Errorf("error shows a secret: %v", err)
	}
}

func TestURLErrorsNeverShowSecrets(t *testing.T) {
	// URLs that do not parse, each with a password and a query key.
	for _, u := range []string{"https://u:pa55%zz@h/hook?key=k3y", "https://u:pa55/x@h/hook?key=k3y", "https://u:pa55@h:x/hook?key=k3y"} {
		_, err := Parse([]byte("[webhook.w]\nurl = \"" + u + "\"\nevents = [\"*\"]\n"))
		if err == nil {
			t.Errorf("accepted %s", u)
			continue
		}
		if strings.Contains(err.Error(), "pa55") || strings.Contains(err.Error(), "k3y") {
			t.Errorf("error shows a secret: %v", err)
		}
	}
}
