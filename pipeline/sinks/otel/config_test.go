package otel_test

import (
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/mailtel/mailtel/pipeline/config/value"
	"github.com/mailtel/mailtel/pipeline/sink"
	"github.com/mailtel/mailtel/pipeline/sinks/otel"
)

// sections decodes the [tracer.<id>] sections of a TOML file, each over
// DefaultConfig, as the config package does through the registry.
func sections(t *testing.T, path string) map[string]otel.Config {
	t.Helper()
	var doc struct {
		Tracer map[string]toml.Primitive `toml:"tracer"`
	}
	md, err := toml.DecodeFile(path, &doc)
	if err != nil {
		t.Fatalf("decode %s: %v", path, err)
	}
	out := map[string]otel.Config{}
	for id, p := range doc.Tracer {
		c := *otel.DefaultConfig()
		if err := md.PrimitiveDecode(p, &c); err != nil {
			t.Fatalf("%s: tracer.%s: %v", path, id, err)
		}
		out[id] = c
	}
	for _, k := range md.Undecoded() {
		if k[0] == "tracer" {
			t.Fatalf("%s: key %s not decoded", path, k)
		}
	}
	return out
}

func ptr[T any](v T) *T { return &v }

func TestGoodConfigs(t *testing.T) {
	got := sections(t, "testdata/good.toml")
	want := map[string]otel.Config{
		"stalwart-http": {Type: "open-telemetry", Transport: "http", Endpoint: "https://tracing.example.test/v1/otel",
			Headers: otel.Headers{"Authorization": "Bearer abc%20def", "X-Scope-OrgID": "mail"}, LevelRule: sink.LevelRule{Level: "debug"},
			Enable: otel.Enable{Tracer: ptr(true)}},
		"stalwart-grpc": {Type: "otel", Transport: "grpc", LevelRule: sink.LevelRule{Level: "info"}},
		"full": {Type: "open-telemetry", Transport: "http", Endpoint: "http://127.0.0.1:4318/v1/logs",
			Headers: otel.Headers{"X-Api-Key": "k"}, Timeout: value.Duration(5 * time.Second),
			Throttle: value.Duration(250 * time.Millisecond), LevelRule: sink.LevelRule{Level: "warn",
				DisabledEvents: []string{"telemetry.*", "*-raw-input"}, Events: []string{"auth.*", "smtp.*"},
				EventsPolicy: "include"}, Lossy: true, BatchSize: 200, Concurrency: 2,
			Retry:  sink.Retry{DiscardAfter: value.Duration(2 * time.Hour), MaxBackoff: value.Duration(10 * time.Second)},
			Enable: otel.Enable{LogExporter: ptr(true), SpanExporter: ptr(false)}},
		"off": {Type: "open-telemetry", Transport: "carrier-pigeon", LevelRule: sink.LevelRule{Level: "info"}, Enable: otel.Enable{Tracer: ptr(false)}},
	}
	def := *otel.DefaultConfig()
	for id, c := range want {
		t.Run(id, func(t *testing.T) {
			// Keys a section leaves out keep their defaults.
			if c.Timeout == 0 {
				c.Timeout = def.Timeout
			}
			if c.Throttle == 0 {
				c.Throttle = def.Throttle
			}
			if c.BatchSize == 0 {
				c.BatchSize, c.Concurrency = def.BatchSize, def.Concurrency
			}
			g := got[id]
			if !reflect.DeepEqual(g, c) {
				t.Errorf("decoded\n%+v\nwant\n%+v", g, c)
			}
			if err := g.Validate(); err != nil {
				t.Errorf("Validate: %v", err)
			}
		})
	}
	if len(got) != len(want) {
		t.Errorf("%d sections, want %d", len(got), len(want))
	}
}

// TestStalwartTestConfig: the OpenTelemetry section of Stalwart's own test
// configuration (kept verbatim in pipeline/config/testdata) decodes and
// validates.
func TestStalwartTestConfig(t *testing.T) {
	got := sections(t, "../../config/testdata/stalwart-otel-test.toml")
	c := got["otel"]
	if c.Type != "otel" || c.Transport != "grpc" || c.Endpoint != "http://127.0.0.1:4317" || c.Level != "trace" {
		t.Fatalf("decoded %+v", c)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
}

func TestBadConfigs(t *testing.T) {
	got := sections(t, "testdata/bad.toml")
	want := map[string][]string{
		"no-endpoint": {"endpoint: required for transport http"},
		"bad-values": {
			`transport: want http or grpc, not "smoke-signals"`,
			"timeout: must be positive",
			"batch-size: must be at least 1",
			"concurrency: must be at least 1",
		},
		"secret-url":    {"endpoint: not a valid URL"},
		"grpc-userinfo": {"endpoint: user info is not supported with transport grpc"},
		"no-logs":       {"enable.log-exporter: false leaves this sink nothing to do"},
		"bad-header":    {`headers: "Bad Name" is not a valid header name`, "headers.X-Ok: the value has a character"},
		"wrong-type":    {`type: want "open-telemetry" or "otel", not "log"`},
	}
	for id, wants := range want {
		t.Run(id, func(t *testing.T) {
			c, ok := got[id]
			if !ok {
				t.Fatalf("no section %s", id)
			}
			err := c.Validate()
			if err == nil {
				t.Fatal("Validate passed")
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != len(wants) {
				t.Errorf("%d errors, want %d:\n%v", len(lines), len(wants), err)
			}
			for _, w := range wants {
				if !slices.ContainsFunc(lines, func(l string) bool { return strings.HasPrefix(l, w) }) {
					t.Errorf("no error starting %q in:\n%v", w, err)
				}
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("an error repeats a secret:\n%v", err)
			}
			if _, err := otel.New(id, c, otel.Options{}); err == nil || !strings.HasPrefix(err.Error(), "otel "+id+": ") {
				t.Errorf("New: %v", err)
			}
		})
	}
}

// TestDecodeErrors: malformed enable and headers values fail to decode
// with the key path, never quoting a header value.
func TestDecodeErrors(t *testing.T) {
	for _, tc := range []struct{ doc, want string }{
		{`headers = ["Authorization Bearer hunter2"]`, `headers[0]: want "Name: value"`},
		{`headers = [3]`, `headers[0]: want a "Name: value" string`},
		{`headers = "X: y"`, "headers: want a list"},
		{`enable = "yes"`, "enable: want true, false, or a table"},
		{`enable.logs = true`, "enable.logs: unknown key"},
		{`enable.log-exporter = "no"`, "enable.log-exporter: want true or false"},
	} {
		c := *otel.DefaultConfig()
		_, err := toml.Decode(tc.doc, &c)
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%s: %v, want %q", tc.doc, err, tc.want)
		}
	}
}

func TestDefaultConfig(t *testing.T) {
	c := *otel.DefaultConfig()
	if c.Transport != "http" || c.Timeout.D() != 10*time.Second || c.Throttle.D() != time.Second || c.Level != "info" ||
		c.BatchSize != 500 || c.Concurrency != 4 || !c.Enabled() {
		t.Fatalf("%+v", c)
	}
	if err := c.Validate(); err == nil || err.Error() != "endpoint: required for transport http (the collector's URL, e.g. http://collector:4318/v1/logs)" {
		t.Fatalf("Validate of the defaults alone: %v", err)
	}
}
