package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/mailtel/mailtel/pipeline"
	"github.com/mailtel/mailtel/pipeline/config"
	"github.com/mailtel/mailtel/pipeline/obs"
	"github.com/mailtel/mailtel/pipeline/pipelinetest"
	"github.com/mailtel/mailtel/pipeline/synth"
	"github.com/mailtel/mailtel/schema"
)

// TestReplayDryRunMatchesRouter routes synthetic traffic with the real
// router, counts the copies in ROUTED per sink and type, and compares them
// with what `router replay --dry-run` says the same configuration selects;
// then runs the replay for real into two of the sinks and checks what they
// got.
func TestReplayDryRunMatchesRouter(t *testing.T) {
	var mu sync.Mutex
	webhookIDs := map[string]int{}
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var payload struct{ Events []struct{ ID string } }
		if err := json.Unmarshal(body, &payload); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		mu.Lock()
		for _, ev := range payload.Events {
			webhookIDs[ev.ID]++
		}
		mu.Unlock()
	}))
	defer recv.Close()

	env := pipelinetest.Start(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "new.toml")
	os.WriteFile(file, []byte(`
[logging]
level = "error"
[tracing.level]
"auth.success" = "debug"
"delivery.attempt-start" = "warn"
[tracer.errors]
type = "log"
level = "warn"
path = "`+dir+`"
prefix = "errors"
[tracer.sec]
type = "log"
level = "info"
path = "`+dir+`"
prefix = "security"
format = "text"
events = ["auth.*", "smtp.*"]
[webhook.siem]
url = "http://127.0.0.1:1/"
events = ["auth.*", "smtp.*-fail", "delivery.dsn-*"]
throttle = "1ms"
[metrics.prometheus]
enable = true
`), 0o644)
	cfg, err := config.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	env.EnsureStreams(t, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// History: synthetic traffic and one message that is not an event.
	const n = 3000
	g := synth.New(synth.Options{Seed: 7, Start: time.Date(2026, 11, 21, 0, 0, 0, 0, time.UTC)})
	evs := make([]schema.Event, n)
	for i := range evs {
		g.Next(&evs[i])
	}
	pub := pipeline.NewPublisher(env.JS, cfg.Levels, 1024, nil)
	if _, err := pub.PublishAll(ctx, evs); err != nil {
		t.Fatal(err)
	}
	pub.Close(ctx)
	if _, err := env.JS.Publish(ctx, "events.auth.failed", []byte("\xc1 garbage")); err != nil {
		t.Fatal(err)
	}

	// The real router, with the same configuration.
	router := pipeline.NewRouter(env.JS, pipeline.NewTable(cfg.SinkSpecs(), cfg.Levels), pipeline.RouterOptionsFrom(cfg), zerolog.Nop(), obs.NewMetrics(), obs.NewHealth())
	go router.Run(ctx)
	cons, err := router.Consumer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		info, err := cons.Info(ctx)
		if err == nil && info.NumPending == 0 && info.NumAckPending == 0 && info.Delivered.Stream >= n+1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the router did not finish: %+v %v", info, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	routed := routedCounts(t, env.JS, cfg)
	delete(routed, "metrics") // never replayed

	out, errOut, err := runReplayCmd(env, "--config", file, "--from-seq", "1", "--dry-run")
	if err != nil {
		t.Fatalf("dry run: %v\n%s", err, errOut)
	}
	dry := parseSelection(t, out)
	if len(routed) != 3 || len(routed["sec"]) < 5 || len(routed["siem"]) < 3 || len(routed["errors"]) < 3 {
		t.Fatalf("the traffic exercises too little of the rules to prove anything: %v", routed)
	}
	for sink, m := range routed {
		var s uint64
		for _, c := range m {
			s += c
		}
		t.Logf("sink %s: %d copies of %d types routed", sink, s, len(m))
	}
	if fmt.Sprint(dry) != fmt.Sprint(routed) {
		t.Errorf("dry run selects\n%v\nthe router routed\n%v", dry, routed)
	}
	if !strings.Contains(out, fmt.Sprintf("read %d events:", n+1)) || !strings.Contains(out, "1 skipped (not events)") {
		t.Errorf("dry run summary: %q", out)
	}
	if !strings.Contains(errOut, "not replaying into sink metrics") {
		t.Errorf("stderr %q", errOut)
	}
	if files, _ := filepath.Glob(filepath.Join(dir, "*.replay.*")); len(files) != 0 {
		t.Errorf("the dry run wrote %v", files)
	}

	// --sink limits the dry run.
	out, _, err = runReplayCmd(env, "--config", file, "--from-seq", "1", "--dry-run", "--sink", "siem")
	if sel := parseSelection(t, out); err != nil || len(sel) != 1 || fmt.Sprint(sel["siem"]) != fmt.Sprint(routed["siem"]) {
		t.Errorf("--sink siem dry run: %v %v", err, sel)
	}

	// The real replay into the webhook (sent to the test receiver) and the
	// errors log.
	recvCfg := strings.Replace(mustRead(t, file), "http://127.0.0.1:1/", recv.URL, 1)
	os.WriteFile(file, []byte(recvCfg), 0o644)
	out, errOut, err = runReplayCmd(env, "--config", file, "--from-seq", "1", "--sink", "siem,errors")
	if err != nil {
		t.Fatalf("replay: %v\n%s", err, errOut)
	}
	total := func(m map[string]uint64) (s uint64) {
		for _, c := range m {
			s += c
		}
		return s
	}
	for _, want := range []string{
		fmt.Sprintf("sink errors: written %d, skipped 0, failed 0", total(routed["errors"])),
		fmt.Sprintf("sink siem: written %d, skipped 0, failed 0", total(routed["siem"])),
	} {
		if !strings.Contains(out, want) {
			t.Errorf("stdout lacks %q:\n%s", want, out)
		}
	}
	mu.Lock()
	if uint64(len(webhookIDs)) != total(routed["siem"]) {
		t.Errorf("webhook got %d events, want %d", len(webhookIDs), total(routed["siem"]))
	}
	for id, c := range webhookIDs {
		if c != 1 {
			t.Errorf("webhook got %s %d times", id, c)
		}
	}
	mu.Unlock()
	files, _ := filepath.Glob(filepath.Join(dir, "errors.replay.*"))
	lines := 0
	for _, f := range files {
		lines += bytes.Count([]byte(mustRead(t, f)), []byte("\n"))
	}
	if uint64(lines) != total(routed["errors"]) {
		t.Errorf("errors log has %d lines in %v, want %d", lines, files, total(routed["errors"]))
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func runReplayCmd(env *pipelinetest.Env, args ...string) (string, string, error) {
	var out, errOut bytes.Buffer
	err := run(context.Background(), append(append([]string{"replay"}, args...), "--nats", env.NATS.URL), &out, &errOut)
	return out.String(), errOut.String(), err
}

// routedCounts counts the ROUTED messages per sink and event type, from
// the stream's per-subject counts.
func routedCounts(t *testing.T, js jetstream.JetStream, cfg *config.Config) map[string]map[string]uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	subjects := map[string]uint64{}
	for _, sink := range cfg.SinkNames() {
		st, err := js.Stream(ctx, cfg.Streams.RoutedStream(sink))
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			continue // the sink was never routed to
		}
		if err != nil {
			t.Fatal(err)
		}
		info, err := st.Info(ctx, jetstream.WithSubjectFilter("routed.>"))
		if err != nil {
			t.Fatal(err)
		}
		maps.Copy(subjects, info.State.Subjects)
	}
	out := map[string]map[string]uint64{}
	for subj, c := range subjects {
		sink, typ, _ := strings.Cut(strings.TrimPrefix(subj, "routed."), ".")
		if out[sink] == nil {
			out[sink] = map[string]uint64{}
		}
		out[sink][typ] += c
	}
	return out
}

// parseSelection reads the dry run's table, checking each sink's total row.
func parseSelection(t *testing.T, out string) map[string]map[string]uint64 {
	t.Helper()
	sel := map[string]map[string]uint64{}
	totals := map[string]uint64{}
	lines := strings.Split(out, "\n")
	if len(lines) == 0 || strings.Join(strings.Fields(lines[0]), " ") != "SINK TYPE COUNT" {
		t.Fatalf("no table header in %q", out)
	}
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		if len(f) != 3 {
			continue
		}
		c, err := strconv.ParseUint(f[2], 10, 64)
		if err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		if f[1] == "total" {
			totals[f[0]] = c
			continue
		}
		if sel[f[0]] == nil {
			sel[f[0]] = map[string]uint64{}
		}
		sel[f[0]][f[1]] = c
	}
	for sink, m := range sel {
		var s uint64
		for _, c := range m {
			s += c
		}
		if totals[sink] != s {
			t.Errorf("sink %s: total row %d, rows sum to %d", sink, totals[sink], s)
		}
	}
	return sel
}

func TestReplayBadArgs(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "new.toml")
	os.WriteFile(file, []byte("[tracer.log]\ntype = \"log\"\npath = \""+dir+"\"\n[metrics.prometheus]\nenable = true\n"), 0o644)
	empty := filepath.Join(dir, "empty.toml")
	os.WriteFile(empty, nil, 0o644)
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--since", "1h"}, "--config is required"},
		{[]string{"--config", file}, "say where the replay starts: --since DURATION|TIME or --from-seq N"},
		{[]string{"--config", file, "--since", "2h", "--from-seq", "1"}, "give --since or --from-seq, not both"},
		{[]string{"--config", file, "--since", "1h", "--until", "3h"}, "--until 3h is before --since 1h"},
		{[]string{"--config", file, "--since", "2026-13-01"}, `--since: invalid time "2026-13-01"`},
		{[]string{"--config", file, "--from-seq", "10", "--to-seq", "2"}, "--to-seq 2 is before --from-seq 10"},
		{[]string{"--config", file, "--since", "1h", "--sink", "siem"}, "no sink named siem in the configuration (configured: log, metrics)"},
		{[]string{"--config", file, "--since", "1h", "--sink", "metrics"}, "sink metrics is the metrics sink"},
		{[]string{"--config", empty, "--since", "1h"}, "no sink to replay into"},
		{[]string{"--config", file, "--since", "1h", "now"}, `unexpected argument "now"`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var out, errOut bytes.Buffer
			err := run(context.Background(), append([]string{"replay", "--nats", "nats://127.0.0.1:1"}, tt.args...), &out, &errOut)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v (stderr %q), want %q", err, errOut.String(), tt.want)
			}
		})
	}
	var out, errOut bytes.Buffer
	run(context.Background(), []string{"replay", "--help"}, &out, &errOut)
	if help := errOut.String(); !strings.Contains(help, "usage: router replay") || !strings.Contains(help, "Example:\n  router replay --config new.toml --since 12h --dry-run") {
		t.Errorf("router replay --help:\n%s", help)
	}
}
