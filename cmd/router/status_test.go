package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailtel/mailtel/pipeline"
	"github.com/mailtel/mailtel/pipeline/config"
	"github.com/mailtel/mailtel/pipeline/pipelinetest"
	"github.com/mailtel/mailtel/pipeline/status"
)

// statusEnv is a server with the streams of a two-sink configuration, 5
// events in EVENTS and one dead letter of sink b.
func statusEnv(t *testing.T) (*pipelinetest.Env, string) {
	t.Helper()
	env := pipelinetest.Start(t)
	file := filepath.Join(t.TempDir(), "mailtel.toml")
	os.WriteFile(file, []byte("[tracer.a]\ntype = \"log\"\npath = \"/tmp/mailtel-unused\"\n[webhook.b]\nurl = \"http://127.0.0.1:1/\"\nevents = [\"*\"]\n"), 0o644)
	cfg, err := config.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	env.EnsureStreams(t, cfg)
	ctx := context.Background()
	for i := 0; i < 5; i++ {
		if _, err := env.JS.Publish(ctx, "events.auth.success", []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	if err := pipeline.PublishLetter(ctx, env.JS, pipeline.Letter{Stage: "sink.b", EventID: "auth.success", Data: []byte("x"), Reason: errors.New("400")}); err != nil {
		t.Fatal(err)
	}
	return env, file
}

func TestStatusCommandJSON(t *testing.T) {
	env, file := statusEnv(t)
	out, errOut, err := runCmd(t, "status", "--json", "--config", file, "--nats", env.NATS.URL, "--http", "none", "--sample", "0")
	if err != nil {
		t.Fatalf("%v\n%s", err, errOut)
	}
	var st status.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("%v:\n%s", err, out)
	}
	var names []string
	for _, s := range st.Streams {
		names = append(names, s.Name)
		if s.Name == "EVENTS" && s.Messages != 5 {
			t.Errorf("EVENTS holds %d messages, want 5", s.Messages)
		}
	}
	if got := strings.Join(names, " "); got != "EVENTS ROUTED_a ROUTED_b DLQ" {
		t.Errorf("streams %s", got)
	}
	if len(st.Sinks) != 2 || st.Sinks[1].Name != "b" || st.Sinks[1].DeadLetters != 1 || st.Sinks[1].State != status.StateNoConsumer {
		t.Errorf("sinks %+v", st.Sinks)
	}
	if len(st.Consumers) != 1 || st.Consumers[0].Name != "router" || st.Consumers[0].State != status.StateNoConsumer {
		t.Errorf("consumers %+v, want the router's, missing", st.Consumers)
	}
	if len(st.Endpoints) != 0 {
		t.Errorf("--http none asked %+v", st.Endpoints)
	}

	// Only [nats] from the configuration: the sinks are found from their
	// streams.
	out, errOut, err = runCmd(t, "status", "--nats", env.NATS.URL, "--http", "none", "--sample", "0")
	if err != nil {
		t.Fatalf("%v\n%s", err, errOut)
	}
	for _, want := range []string{"SINK  STATE", "\na     no consumer", "\nb     no consumer", "EVENTS", "sink.b", "duplicate windows: 6 message ids"} {
		if !strings.Contains(out, want) {
			t.Errorf("status without a configuration lacks %q:\n%s", want, out)
		}
	}
}

// --watch refreshes until the context ends; not on a terminal, one block
// per refresh separated by a blank line, with no escape sequences.
func TestStatusCommandWatch(t *testing.T) {
	env, _ := statusEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2500*time.Millisecond)
	defer cancel()
	var out, errOut bytes.Buffer
	if err := run(ctx, []string{"status", "--watch", "300ms", "--nats", env.NATS.URL, "--http", "none"}, &out, &errOut); err != nil {
		t.Fatalf("%v\n%s", err, errOut.String())
	}
	blocks := strings.Count(out.String(), "mailtel status at ")
	if blocks < 2 || strings.Count(out.String(), "\n\nmailtel status at ") != blocks-1 || strings.Contains(out.String(), "\x1b") {
		t.Errorf("%d blocks:\n%q", blocks, out.String())
	}
	if !strings.Contains(out.String(), "rates over ") {
		t.Errorf("watch shows no rates:\n%s", out.String())
	}
}

func TestStatusCommandFlags(t *testing.T) {
	out, errOut, err := runCmd(t, "status", "--help")
	if err == nil || !strings.Contains(errOut, "Example:\n  router status") || out != "" {
		t.Errorf("--help: %v\n%s", err, errOut)
	}
	out, _, _ = runCmd(t, "help")
	if !strings.Contains(out, "\n  status ") {
		t.Errorf("usage does not list status:\n%s", out)
	}
	for _, args := range [][]string{{"--watch", "0s"}, {"--watch=soon"}, {"extra"}} {
		if _, _, err := runCmd(t, append([]string{"status", "--nats", "nats://127.0.0.1:1"}, args...)...); err == nil {
			t.Errorf("status %v: no error", args)
		}
	}
	var w watchFlag
	fs := newTestFlagSet(&w)
	rest, err := parseStatusArgs(fs, []string{"--watch", "5s", "x"})
	if err != nil || !w.on || w.every != 5*time.Second || len(rest) != 1 || rest[0] != "x" {
		t.Errorf("--watch 5s x: %v %+v %v", err, w, rest)
	}
}

func newTestFlagSet(w *watchFlag) *flag.FlagSet {
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.Var(w, "watch", "")
	return fs
}
