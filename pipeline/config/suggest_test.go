package config

import (
	"os"
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
		{"key of an enabled foreign tracer", "[tracer.otel]\ntype = \"open-telemetry\"\nendpoint = \"x\"\n", []string{"tracer.otel.type: unsupported tracer type"}}, // its keys are Stalwart's: the type is the error
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
// validates whole; the OpenTelemetry configuration of Stalwart's test
// suite gets one error, the tracer type mailtel does not run (with what to
// do), and validates once that tracer is disabled.
func TestRealStalwartConfigs(t *testing.T) {
	c, err := Load(filepath.Join("testdata", "stalwart-default.toml"))
	if err != nil {
		t.Fatalf("Stalwart's default config.toml: %v", err)
	}
	if specs := c.SinkSpecs(); len(specs) != 1 || specs[0].Name != "stdout" || specs[0].Kind != KindStdout {
		t.Errorf("sinks of Stalwart's default config.toml: %+v, want its stdout tracer", specs)
	}
	data, err := os.ReadFile(filepath.Join("testdata", "stalwart-otel-test.toml"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = Parse(data)
	if err == nil || strings.Count(err.Error(), "\n") != 0 || !strings.Contains(err.Error(), `tracer.otel.type: unsupported tracer type "otel"`) {
		t.Errorf("Stalwart's otel test config: %v; want one error, the tracer type", err)
	}
	if _, err := Parse(append(data, "tracer.otel.enable = false\n"...)); err != nil {
		t.Errorf("Stalwart's otel test config, its tracer disabled: %v", err)
	}
}

func TestStalwartPasteStillValid(t *testing.T) {
	data, err := os.ReadFile("testdata/stalwart-paste.toml")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(data) + "\n[tracer.otel2]\ntype = \"open-telemetry\"\nenable = false\nendpoint = \"https://otel:4317\"\ntransport = \"grpc\"\n[session.rcpt]\ndirectory = \"'*'\"\n[spam-filter]\nenable = true\n[queue.outbound]\nhostname = \"x\"\n"
	if _, err := Parse([]byte(doc)); err != nil {
		t.Fatalf("Stalwart paste: %v", err)
	}
}

func TestSuggest(t *testing.T) {
	for _, tc := range []struct{ word, want string }{
		{"tracr", "tracer"}, {"webhok", "webhook"}, {"levle", "level"}, {"xyz", ""}, {"ab", ""},
	} {
		t.Run(tc.word, func(t *testing.T) {
			got := suggest(tc.word, []string{"tracer", "webhook", "level", "nats"})
			want := ""
			if tc.want != "" {
				want = " (did you mean " + tc.want + "?)"
			}
			if got != want {
				t.Errorf("suggest(%q) = %q, want %q", tc.word, got, want)
			}
		})
	}
}

func TestUnknownEventIDsWarn(t *testing.T) {
	for _, tc := range []struct {
		name, doc string
		want      []string
	}{
		{"override", "[tracing.level]\n\"auth.sucess\" = \"debug\"\n", []string{`tracing.level.auth.sucess: "auth.sucess" is not in the event catalog (did you mean auth.success?)`}},
		{"dotted override", "[tracing.level]\nauth.sucess = \"debug\"\n", []string{"(did you mean auth.success?)"}},
		{"webhook events", "[webhook.siem]\nurl = \"https://x.example\"\nevents = [\"auth.bannd\", \"auth.*\", \"*-fail\"]\n", []string{`webhook.siem.events[0]: "auth.bannd" is not in the event catalog (did you mean auth.banned?)`}},
		{"disabled events", "[tracer.log]\ntype = \"log\"\npath = \"/tmp\"\ndisabled-events = [\"network.*\", \"auth.succes\"]\n", []string{"tracer.log.disabled-events[1]: "}},
		{"metrics", "[metrics]\ndisabled-events = [\"zz.unheard-of\"]\n", []string{`metrics.disabled-events[0]: "zz.unheard-of" is not in the event catalog; it matches`}},
		{"known ids no warning", "[tracing.level]\n\"auth.success\" = \"debug\"\n[webhook.w]\nurl = \"https://x.example\"\nevents = [\"auth.banned\", \"smtp.*\"]\n", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte(tc.doc))
			if err != nil {
				t.Fatalf("a file with only warnings is valid: %v", err)
			}
			if len(c.Warnings) != len(tc.want) {
				t.Fatalf("warnings = %q, want %d", c.Warnings, len(tc.want))
			}
			for i, w := range tc.want {
				if !strings.Contains(c.Warnings[i], w) {
					t.Errorf("warning %q lacks %q", c.Warnings[i], w)
				}
			}
		})
	}
}

func TestEveryErrorInOneRun(t *testing.T) {
	for _, tc := range []struct {
		name, doc string
		want      []string
	}{
		{
			name: "type errors and a bad level",
			doc:  "[streams]\nmax-age = \"7 days\"\n[tracer.log]\ntype = \"log\"\npath = \"/tmp\"\nenable = \"yes\"\nlevel = \"loud\"\n",
			want: []string{
				`line 2: streams.max-age: invalid duration "7 days"`,
				"line 6: tracer.log.enable: want true or false, not a string",
				`tracer.log.level: unknown level "loud"`,
			},
		},
		{
			name: "type error, unknown key and unknown section",
			doc:  "[router]\nworkers = \"4\"\nbatchh = 10\n[tracr.log]\ntype = \"log\"\n",
			want: []string{
				"line 2: router.workers: want an integer, not a string",
				"router.batchh: unknown key (did you mean batch?)",
				"tracr: unknown section (did you mean tracer?)",
			},
		},
		{
			name: "not a table",
			doc:  "streams = 5\n[webhook.w]\nurl = \"https://x.example\"\nevents = [\"*\"]\nheaders = 5\n",
			want: []string{"streams: want a table, not an integer", "webhook.w.headers: want a table, not an integer"},
		},
		{
			name: "a type error never echoes a secret",
			doc:  "[nats]\ntoken = [\"TokSecret\"]\n[publisher]\npassword = 7\n",
			want: []string{"line 2: nats.token: want a string, not a list", "line 4: publisher.password: want a string, not an integer"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.doc))
			if err == nil {
				t.Fatal("accepted")
			}
			if strings.Contains(err.Error(), "TokSecret") {
				t.Errorf("error echoes the secret: %v", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
}

func TestInvalidFileListsWarningsToo(t *testing.T) {
	_, err := Parse([]byte("[tracing.level]\n\"auth.sucess\" = \"loud\"\n\"auth.faild\" = \"debug\"\n"))
	if err == nil {
		t.Fatal("accepted")
	}
	for _, w := range []string{"unknown level", "warning: line 3: tracing.level.auth.faild: \"auth.faild\" is not in the event catalog (did you mean auth.failed?)"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error lacks %q:\n%v", w, err)
		}
	}
}

func TestSyntaxErrorStopsAndIsRedacted(t *testing.T) {
	_, err := Parse([]byte("[streams]\nmax-age = \"7 days\"\n[nats]\ntoken = TokSecret123\n"))
	if err == nil {
		t.Fatal("accepted")
	}
	if strings.Contains(err.Error(), "TokSecret") || !strings.Contains(err.Error(), "line 4") {
		t.Errorf("syntax error = %v", err)
	}
}
