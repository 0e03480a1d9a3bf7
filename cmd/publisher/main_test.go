package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailtel/mailtel/pipeline/config"
	"github.com/mailtel/mailtel/pipeline/pipelinetest"
)

func TestFileCommand(t *testing.T) {
	env := pipelinetest.Start(t)
	dir := t.TempDir()
	in := filepath.Join(dir, "events.jsonl")
	os.WriteFile(in, []byte(`{"id":"1","createdAt":"2025-11-27T14:59:28Z","type":"auth.success","data":{"accountName":"a"}}
{"event":"imap_command_finished","hostname":"imap1","start_time":"2026-11-21T12:19:56.588053Z","end_time":"2026-11-21T12:19:56.588270Z","fields":{"name":"SELECT"}}
this is not an event
`), 0o644)
	var out, errOut bytes.Buffer
	err := run(context.Background(), []string{"file", in, "--nats", env.NATS.URL}, strings.NewReader(""), &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "1 lines were not published") {
		t.Errorf("run error = %v, want one line not published", err)
	}
	if got := out.String(); !strings.Contains(got, "published 2, duplicate 0, rejected 1, failed 0, dead-lettered 1 in ") {
		t.Errorf("stdout %q", got)
	}
	if !strings.Contains(errOut.String(), "line 3: ") {
		t.Errorf("stderr %q does not name line 3", errOut.String())
	}

	// The same input from stdin, again: nothing new is stored.
	out.Reset()
	lines, _ := os.ReadFile(in)
	run(context.Background(), []string{"file", "--nats", env.NATS.URL, "-"}, bytes.NewReader(lines), &out, &errOut)
	if got := out.String(); !strings.Contains(got, "published 0, duplicate 2, rejected 1") {
		t.Errorf("second run stdout %q", got)
	}
}

// TestFileCommandSizes publishes lines over the limits: each is rejected
// with its reason and dead-lettered, the lines around it are published,
// and the summary and the exit say so.
func TestFileCommandSizes(t *testing.T) {
	env := pipelinetest.Start(t)
	event := func(id string, fields, size int) string {
		var b strings.Builder
		fmt.Fprintf(&b, `{"id":%q,"createdAt":"2025-11-27T14:59:28Z","type":"auth.failed","data":{"accountName":"a"`, id)
		for i := 0; i < fields; i++ {
			fmt.Fprintf(&b, `,"f%02d":"%s"`, i, strings.Repeat("x", size))
		}
		return b.String() + "}}\n"
	}
	for _, tc := range []struct {
		name, in, stdout, stderr string
	}{
		{"larger than the max payload", event("s1", 1, 5) + event("s2", 20, 60_000) + event("s3", 1, 5),
			"published 2, duplicate 0, rejected 1, failed 0, dead-lettered 1 in ", "line 2: stalwart event s2~"},
		{"over max-string", event("s4", 1, 70_000) + event("s5", 1, 5),
			"published 1, duplicate 0, rejected 1, failed 0, dead-lettered 1 in ", "line 1: stalwart event s4~"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			err := run(context.Background(), []string{"file", "--nats", env.NATS.URL, "-"}, strings.NewReader(tc.in), &out, &errOut)
			if err == nil || err.Error() != "1 lines were not published" {
				t.Errorf("run error = %v, want one line not published", err)
			}
			if !strings.Contains(out.String(), tc.stdout) {
				t.Errorf("stdout %q, want %q", out.String(), tc.stdout)
			}
			if !strings.Contains(errOut.String(), tc.stderr) || !strings.Contains(errOut.String(), "more than the limit of") {
				t.Errorf("stderr %.300q, want %q and the limit", errOut.String(), tc.stderr)
			}
		})
	}
}

func TestGenCommand(t *testing.T) {
	env := pipelinetest.Start(t)
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"gen", "--count", "500", "--seed", "3", "--nats", env.NATS.URL}, nil, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "published 500, duplicate 0, failed 0") {
		t.Errorf("stdout %q", out.String())
	}
	env.EnsureStreams(t, config.Default())
	s, err := env.JS.Stream(context.Background(), "EVENTS")
	if err != nil {
		t.Fatal(err)
	}
	info, _ := s.Info(context.Background())
	if info.State.Msgs != 500 {
		t.Errorf("EVENTS holds %d messages, want 500", info.State.Msgs)
	}
}

// TestIngestRefusesOpenListenerWithoutAuth: --listen beyond loopback
// without authentication is a configuration error (the one `router
// validate` reports for the file's [publisher] listen), found before
// anything starts.
func TestIngestRefusesOpenListenerWithoutAuth(t *testing.T) {
	var out, errOut bytes.Buffer
	err := run(context.Background(), []string{"ingest", "--listen", "0.0.0.0:0", "--nats", "nats://127.0.0.1:1"}, nil, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "publisher.listen: 0.0.0.0:0 is reachable from other hosts") {
		t.Errorf("err = %v", err)
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "mailtel.toml")
	os.WriteFile(file, []byte("[publisher]\nlisten = \"192.0.2.1:8025\"\n"), 0o644)
	err = run(context.Background(), []string{"ingest", "--config", file, "--nats", "nats://127.0.0.1:1"}, nil, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "publisher.listen: 192.0.2.1:8025 is reachable from other hosts") {
		t.Errorf("err = %v", err)
	}
}

func TestUsage(t *testing.T) {
	var out, errOut bytes.Buffer
	if err := run(context.Background(), nil, nil, &out, &errOut); err == nil {
		t.Error("no command accepted")
	}
	if err := run(context.Background(), []string{"frobnicate"}, nil, &out, &errOut); err == nil || !strings.Contains(err.Error(), "unknown command") {
		t.Errorf("unknown command: %v", err)
	}
	for _, cmd := range []string{"file", "ingest", "gen"} {
		errOut.Reset()
		run(context.Background(), []string{cmd, "--help"}, nil, &out, &errOut)
		if !strings.Contains(errOut.String(), "Example") {
			t.Errorf("%s --help has no example:\n%s", cmd, errOut.String())
		}
	}
}

// TestHelpAndVersion: --help lists every command with a line each;
// --version prints the version.
func TestHelpAndVersion(t *testing.T) {
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"--help"}, nil, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	for _, cmd := range []string{"file", "ingest", "gen"} {
		if !strings.Contains(out.String(), "\n  "+cmd+" ") {
			t.Errorf("--help does not list %s:\n%s", cmd, out.String())
		}
	}
	out.Reset()
	if err := run(context.Background(), []string{"--version"}, nil, &out, &errOut); err != nil || !strings.HasPrefix(out.String(), "publisher ") {
		t.Errorf("--version: %q, %v", out.String(), err)
	}
}
