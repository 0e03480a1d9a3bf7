package config

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestTyposSuggest(t *testing.T) {
	for _, tc := range []struct {
		name, doc string
		want      []string
	}{
		{"section tracr", "[tracr.log]\ntype = \"log\"\npath = \"/tmp\"\n", []string{"tracr: unknown section (did you mean tracer?)"}},
		{"section webhok", "[webhok.siem]\nurl = \"https://x.example\"\n", []string{"webhok: unknown section (did you mean webhook?)"}},
		{"section far from all", "[zzzzzzzz]\na = 1\n", []string{"zzzzzzzz: unknown section"}},
		{"key levle", "[tracer.log]\ntype = \"log\"\npath = \"/tmp\"\nlevle = \"info\"\n", []string{"tracer.log.levle: unknown key (did you mean level?)"}},
		{"key of an enabled foreign tracer", "[tracer.j]\ntype = \"journal\"\nidentifier = \"x\"\n", []string{`tracer.j.type: unsupported tracer type "journal"`}}, // its keys are Stalwart's: the type is the error
		{"key in sinks", "[sinks]\ndiscard-aftr = \"1h\"\n", []string{"sinks.discard-aftr: unknown key (did you mean discard-after?)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.doc))
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
}

// TestRealStalwartConfigs: Stalwart's own default configuration file
// validates whole, and so does the OpenTelemetry configuration of
// Stalwart's test suite, whose tracer becomes an OpenTelemetry sink.
func TestRealStalwartConfigs(t *testing.T) {
	c, err := Load(filepath.Join("testdata", "stalwart-default.toml"))
	if err != nil {
		t.Fatalf("Stalwart's default config.toml: %v", err)
	}
	if specs := c.SinkSpecs(); len(specs) != 1 || specs[0].Name != "stdout" || specs[0].Kind != "stdout" {
		t.Errorf("sinks of Stalwart's default config.toml: %+v, want its stdout tracer", specs)
	}
	c, err = Load(filepath.Join("testdata", "stalwart-otel-test.toml"))
	if err != nil {
		t.Fatalf("Stalwart's otel test config: %v", err)
	}
	if specs := c.SinkSpecs(); len(specs) != 1 || specs[0].Name != "otel" || specs[0].Kind != "open-telemetry" {
		t.Errorf("sinks of Stalwart's otel test config: %+v, want its otel tracer", specs)
	}
}
