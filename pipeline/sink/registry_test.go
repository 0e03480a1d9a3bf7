package sink_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/mailtel/mailtel/pipeline/config"
	"github.com/mailtel/mailtel/pipeline/sink"
	"github.com/mailtel/mailtel/pipeline/sinks"
	"github.com/mailtel/mailtel/schema"
)

// kafkaConfig is the configuration of a kind that exists only in this
// test: what the author of a new sink writes.
type kafkaConfig struct {
	Enable   *bool    `toml:"enable" doc:"false keeps the section without running it"`
	Brokers  []string `toml:"brokers" doc:"host:port of each broker"`
	Topic    string   `toml:"topic" doc:"the topic events are produced to"`
	Password string   `toml:"password" secret:"true" doc:"SASL password"`
	Events   []string `toml:"events" doc:"event id patterns produced"`
	sink.Retry
}

func (c *kafkaConfig) Enabled() bool    { return c.Enable == nil || *c.Enable }
func (c *kafkaConfig) Rule() sink.Rule  { return sink.Rule{Events: c.Events} }
func (c *kafkaConfig) Describe() string { return "produces to topic " + c.Topic }
func (c *kafkaConfig) Validate() error {
	var errs []error
	if len(c.Brokers) == 0 {
		errs = append(errs, errors.New("brokers: required"))
	}
	if c.Topic == "" {
		errs = append(errs, errors.New("topic: required"))
	}
	return errors.Join(errs...)
}

// kafkaSink records what it was built with.
type kafkaSink struct {
	name string
	cfg  *kafkaConfig
}

func (s *kafkaSink) Write(context.Context, []*schema.Event) error { return nil }
func (s *kafkaSink) Close(context.Context) error                  { return nil }

func init() {
	sink.Register(sink.Factory{
		Kind: "kafka", Section: "kafka", Doc: "events produced to a Kafka topic (test only)",
		NewConfig: func() sink.Config { return &kafkaConfig{Topic: "mailtel"} },
		New: func(cfg sink.Config, set sink.Settings) (sink.Sink, error) {
			return &kafkaSink{name: set.Name, cfg: cfg.(*kafkaConfig)}, nil
		},
	})
}

// TestANewKindIsOnePackage: a kind registered from its own package (here,
// this test's init) is decoded, validated, printed and built by the host
// with no change to the config package, the runtime or the commands.
func TestANewKindIsOnePackage(t *testing.T) {
	c, err := config.Parse([]byte(`
[kafka.audit]
brokers = ["127.0.0.1:9092"]
password = "hunter2-secret"
events = ["auth.*"]
max-backoff = "5s"
`))
	if err != nil {
		t.Fatalf("valid section refused: %v", err)
	}
	specs := c.SinkSpecs()
	if len(specs) != 1 || specs[0].Name != "audit" || specs[0].Kind != "kafka" || !specs[0].Include.Match("auth.success") || specs[0].Include.Match("smtp.connect") {
		t.Fatalf("specs = %+v", specs)
	}
	if r := c.RetryOf(specs[0]); r.MaxBackoff.D().String() != "5s" || r.DiscardAfter != c.Sinks.DiscardAfter {
		t.Errorf("retry = %+v: want its own max-backoff and [sinks]' discard-after", r)
	}
	s, err := sinks.Build(specs[0], sinks.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ks := s.(*kafkaSink)
	if ks.name != "audit" || ks.cfg.Topic != "mailtel" || ks.cfg.Password != "hunter2-secret" {
		t.Errorf("built %+v with %+v: want the name, the default topic and the password", ks, ks.cfg)
	}
	out := string(c.EffectiveTOML())
	for _, want := range []string{"[kafka.audit]", `topic = "mailtel"`, `password = "<redacted>"`, `max-backoff = "5s"`, `discard-after = "24h"`} {
		if !strings.Contains(out, want) {
			t.Errorf("router config lacks %s:\n%s", want, out)
		}
	}
	if strings.Contains(out, "hunter2") {
		t.Errorf("router config prints the password:\n%s", out)
	}

	_, err = config.Parse([]byte("[kafka.audit]\ntopik = \"x\"\nevents = [\"auth.bannd\", \"auth..x\"]\n"))
	for _, want := range []string{
		"line 2: kafka.audit.topik: unknown key (did you mean topic?)",
		"kafka.audit.brokers: required",
		"kafka.audit.events[1]: ",
		`warning: line 3: kafka.audit.events[0]: "auth.bannd" is not in the event catalog (did you mean auth.banned?)`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if _, err := config.Parse([]byte("[kafka.audit]\nenable = false\n")); err != nil {
		t.Errorf("a disabled section is validated: %v", err)
	}
}

func TestLookup(t *testing.T) {
	for _, tc := range []struct{ section, typ, kind string }{
		{"tracer", "log", "log"}, {"tracer", "otel", "open-telemetry"}, {"tracer", "open-telemetry", "open-telemetry"},
		{"webhook", "", "webhook"}, {"metrics", "", "metrics"}, {"kafka", "", "kafka"},
	} {
		f, ok := sink.Lookup(tc.section, tc.typ)
		if !ok || f.Kind != tc.kind {
			t.Errorf("Lookup(%s, %s) = %v, %v; want %s", tc.section, tc.typ, f, ok, tc.kind)
		}
	}
	if f, ok := sink.Lookup("tracer", "journal"); ok {
		t.Errorf("Lookup(tracer, journal) = %s", f.Kind)
	}
	var got []string
	for _, s := range sink.Sections() {
		got = append(got, fmt.Sprintf("%s%v", s.Name, s.Types))
	}
	if want := "kafka[] metrics[] tracer[console log open-telemetry otel stdout] webhook[]"; strings.Join(got, " ") != want {
		t.Errorf("Sections = %s, want %s", strings.Join(got, " "), want)
	}
}

func TestRegisterRefuses(t *testing.T) {
	newCfg := func() sink.Config { return &kafkaConfig{} }
	build := func(sink.Config, sink.Settings) (sink.Sink, error) { return nil, nil }
	for name, f := range map[string]sink.Factory{
		"no kind":              {Section: "x", NewConfig: newCfg, New: build},
		"no constructor":       {Kind: "x", Section: "x", NewConfig: newCfg},
		"not a struct pointer": {Kind: "x", Section: "x", NewConfig: func() sink.Config { return nil }, New: build},
		"taken name":           {Kind: "kafka", Section: "kafka", NewConfig: newCfg, New: build},
		"typed without type":   {Kind: "y", Section: "tracer", Typed: true, NewConfig: newCfg, New: build},
		"alias taken":          {Kind: "z", Aliases: []string{"otel"}, Section: "tracer", Typed: true, NewConfig: func() sink.Config { return &typedConfig{} }, New: build},
		"second untyped kind":  {Kind: "other", Section: "webhook", NewConfig: newCfg, New: build},
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("Register did not panic")
				}
			}()
			sink.Register(f)
		})
	}
}

type typedConfig struct {
	kafkaConfig
	Type string `toml:"type"`
}
