package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/mailtel/mailtel/pipeline/config/value"
)

func TestFormatDuration(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{
		{0, "0s"}, {250 * time.Millisecond, "250ms"}, {1500 * time.Millisecond, "1.5s"}, {30 * time.Second, "30s"},
		{90 * time.Second, "1m30s"}, {2 * time.Minute, "2m"}, {time.Hour, "1h"}, {90 * time.Minute, "1h30m"},
		{24 * time.Hour, "24h"}, {36 * time.Hour, "36h"}, {48 * time.Hour, "2d"}, {7 * 24 * time.Hour, "7d"},
		{7*24*time.Hour + time.Hour, "169h"}, {time.Hour + 500*time.Millisecond, "1h0m0.5s"},
	} {
		got := value.FormatDuration(tc.d)
		if got != tc.want {
			t.Errorf("value.FormatDuration(%v) = %q, want %q", tc.d, got, tc.want)
		}
		if back, err := value.ParseDuration(got); err != nil || back != tc.d {
			t.Errorf("value.ParseDuration(%q) = %v, %v; want %v", got, back, err, tc.d)
		}
	}
}

func TestFormatSize(t *testing.T) {
	for _, tc := range []struct {
		n    int64
		want any
	}{
		{0, int64(0)}, {1000, int64(1000)}, {1024, "1KiB"}, {1536, int64(1536)}, {64 << 10, "64KiB"},
		{8 << 20, "8MiB"}, {10 << 30, "10GiB"}, {3 << 40, "3TiB"}, {1<<30 + 1<<20, "1025MiB"},
	} {
		got := value.FormatSize(tc.n)
		if got != tc.want {
			t.Errorf("value.FormatSize(%d) = %v, want %v", tc.n, got, tc.want)
		}
		if back, err := value.ParseSize(fmt.Sprint(got)); err != nil || back != tc.n {
			t.Errorf("value.ParseSize(%v) = %d, %v", got, back, err)
		}
	}
}

// The printed configuration loads, and prints the same again.
func TestEffectiveRoundTrip(t *testing.T) {
	docs := map[string][]byte{"defaults": nil}
	for _, f := range []string{filepath.Join("testdata", "stalwart-paste.toml"), filepath.Join("..", "..", "mailtel.toml")} {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		docs[f] = data
	}
	for name, doc := range docs {
		t.Run(name, func(t *testing.T) {
			c, err := Parse(doc)
			if err != nil {
				t.Fatal(err)
			}
			first := c.EffectiveTOML()
			again, err := Parse(first)
			if err != nil {
				t.Fatalf("the printed configuration does not load: %v\n%s", err, first)
			}
			if second := again.EffectiveTOML(); !bytes.Equal(first, second) {
				t.Errorf("printed twice differently:\n%s\n---\n%s", first, second)
			}
			if a, b := routing(c), routing(again); a != b || !reflect.DeepEqual(c.Tracing.Overrides, again.Tracing.Overrides) {
				t.Errorf("the printed configuration routes differently:\n%s\n---\n%s", a, b)
			}
			// JSON holds the same tree as the TOML.
			var fromTOML, fromJSON map[string]any
			if _, err := toml.Decode(string(first), &fromTOML); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(c.EffectiveJSON(), &fromJSON); err != nil {
				t.Fatalf("%v\n%s", err, c.EffectiveJSON())
			}
			viaJSON, _ := json.Marshal(fromTOML)
			var want map[string]any
			json.Unmarshal(viaJSON, &want)
			if !reflect.DeepEqual(want, fromJSON) {
				t.Errorf("JSON and TOML differ:\n%s\n---\n%s", c.EffectiveJSON(), viaJSON)
			}
		})
	}
}

// Every key mailtel reads is printed, with its default filled in; only
// what it accepts and ignores is left out.
func TestEffectivePrintsEveryKey(t *testing.T) {
	c, err := Parse([]byte("[tracer.t]\ntype = \"console\"\n[webhook.w]\nurl = \"http://127.0.0.1:1/\"\nevents = [\"*\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(c.EffectiveJSON(), &got); err != nil {
		t.Fatal(err)
	}
	ignored := map[string]bool{"tracer.t.buffered": true, "metrics.open-telemetry": true, "sinks.max-deliver": true}
	var check func(path []string, typ reflect.Type, v any)
	check = func(path []string, typ reflect.Type, v any) {
		for _, k := range knownKeys(path) {
			p := strings.Join(append(path[:len(path):len(path)], k), ".")
			m, _ := v.(map[string]any)
			sub, ok := m[k]
			if ignored[p] {
				if ok {
					t.Errorf("%s is printed", p)
				}
				continue
			}
			if !ok {
				t.Errorf("%s is not printed", p)
				continue
			}
			check(append(path[:len(path):len(path)], k), nil, sub)
		}
	}
	check([]string{"tracer", "t"}, nil, got["tracer"].(map[string]any)["t"])
	check([]string{"webhook", "w"}, nil, got["webhook"].(map[string]any)["w"])
	for _, s := range []string{"metrics", "nats", "streams", "publisher", "router", "sinks", "logging"} {
		check([]string{s}, nil, got[s])
	}
	for path, want := range map[string]any{
		"tracer.t.format": "text", "tracer.t.enable": true, "tracer.t.discard-after": "24h", "webhook.w.timeout": "30s",
		"webhook.w.batch-size": 100.0, "streams.max-age": "7d", "publisher.max-body": "8MiB", "nats.listen": "127.0.0.1:4222",
	} {
		var v any = got
		for _, k := range strings.Split(path, ".") {
			v = v.(map[string]any)[k]
		}
		if v != want {
			t.Errorf("%s = %#v, want %#v", path, v, want)
		}
	}
}

// No secret reaches the output, whichever way the file gives it; a
// reference prints as the reference.
func TestEffectiveRedactsSecrets(t *testing.T) {
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "secret")
	os.WriteFile(secretFile, []byte("sEcret-from-file\n"), 0o600)
	t.Setenv("MAILTEL_TEST_SECRET", "sEcret-from-env")
	doc := `
[nats]
url = "nats://sEcret-url-token@n1:4222,nats://mailtel:sEcret-url-pass@n2:4222"
user = "mailtel"
password = "sEcret-nats-password"
token = "%{env:MAILTEL_TEST_SECRET}%"
[publisher]
token = "sEcret-pub-token"
user = "ingest"
password = "%{file:` + secretFile + `}%"
signature-key = "sEcret-pub-sigkey"
[metrics.prometheus]
enable = true
[metrics.prometheus.auth]
username = "scraper"
secret = "sEcret-metrics"
[webhook.w]
url = "https://whuser:sEcret-wh-pass@h.example/hook?api_key=sEcret-wh-query&v=1"
events = ["*"]
signature-key = "sEcret-wh-sigkey"
[webhook.w.headers]
Authorization = "Bearer sEcret-wh-header"
X-Api-Key = "%{env:MAILTEL_TEST_SECRET}%"
[webhook.w.auth]
secret = "sEcret-wh-auth"
`
	c, err := Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	for name, out := range map[string][]byte{"TOML": c.EffectiveTOML(), "JSON": c.EffectiveJSON()} {
		if strings.Contains(strings.ToLower(string(out)), "secret-") {
			t.Errorf("%s shows a secret:\n%s", name, out)
		}
		for _, want := range []string{"%{env:MAILTEL_TEST_SECRET}%", "%{file:" + secretFile + "}%", RedactedSecret,
			"nats://xxxxx@n1:4222,nats://mailtel:xxxxx@n2:4222", "https://whuser:xxxxx@h.example/hook?api_key=xxxxx&v=xxxxx"} {
			if !strings.Contains(string(out), want) {
				t.Errorf("%s lacks %q:\n%s", name, want, out)
			}
		}
	}
	out := string(c.EffectiveTOML())
	for _, want := range []string{
		"token = \"%{env:MAILTEL_TEST_SECRET}%\"", "password = \"<redacted>\"", "user = \"mailtel\"", "username = \"scraper\"",
		"Authorization = \"<redacted>\"", "X-Api-Key = \"%{env:MAILTEL_TEST_SECRET}%\"",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("TOML lacks %q:\n%s", want, out)
		}
	}
	// The placeholders load: the printed file prints the same again.
	again, err := Parse([]byte(out))
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if string(again.EffectiveTOML()) != out {
		t.Errorf("printed twice differently:\n%s\n---\n%s", out, again.EffectiveTOML())
	}
}

// routing sums up what a configuration does with events: its sinks, their
// rules and retries.
func routing(c *Config) string {
	var b strings.Builder
	for _, s := range c.SinkSpecs() {
		fmt.Fprintf(&b, "%s %s %v %v include=%v exclude=%v fan-out=%v %+v\n", s.Name, s.Kind, s.LevelBased, s.Level,
			s.Include, s.Exclude, s.ServerFanOut, c.RetryOf(s))
	}
	return b.String()
}
