package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
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
	"github.com/mailtel/mailtel/pipeline/replay"
	"github.com/mailtel/mailtel/schema"
)

var types = []string{"auth.success", "auth.failed", "smtp.connection-start", "delivery.delivered", "acme.error"}

// events returns n events with ids <prefix>-<i>, of the types in turn,
// each with accountId = i.
func events(prefix string, n int) []schema.Event {
	evs := make([]schema.Event, n)
	for i := range evs {
		evs[i] = schema.Event{ID: fmt.Sprintf("%s-%05d", prefix, i), Type: types[i%len(types)], Host: "mx1", Server: "stalwart",
			Time:   time.Date(2026, 11, 21, 6, 0, 0, i, time.UTC),
			Fields: []schema.Field{{Key: "accountId", Value: schema.Uint(uint64(i))}}}
	}
	return evs
}

// testEnv is an embedded server, a configuration file for it and the
// configuration it holds.
type testEnv struct {
	env  *pipelinetest.Env
	cfg  *config.Config
	file string
}

func newTestEnv(t *testing.T, toml string) *testEnv {
	t.Helper()
	env := pipelinetest.Start(t)
	file := filepath.Join(t.TempDir(), "mailtel.toml")
	if err := os.WriteFile(file, []byte(toml), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	env.EnsureStreams(t, cfg)
	return &testEnv{env: env, cfg: cfg, file: file}
}

// run runs a sinks command against the test server.
func (e *testEnv) run(ctx context.Context, args ...string) (string, string, error) {
	var out, errOut bytes.Buffer
	args = append(args, "--config", e.file, "--nats", e.env.NATS.URL)
	err := run(ctx, args, &out, &errOut)
	return out.String(), errOut.String(), err
}

func (e *testEnv) publish(t *testing.T, evs []schema.Event) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	pub := pipeline.NewPublisher(e.env.JS, e.cfg.Levels, 512, nil)
	defer pub.Close(ctx)
	acks, err := pub.PublishAll(ctx, evs)
	if err != nil {
		t.Fatal(err)
	}
	for i, a := range acks {
		if a.Err != nil || a.Duplicate {
			t.Fatalf("publish %s: %+v", evs[i].ID, a)
		}
	}
}

// startRouter runs the real router of the configuration until the test ends.
func (e *testEnv) startRouter(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		pipeline.NewRouter(e.env.JS, pipeline.NewTable(e.cfg.SinkSpecs(), e.cfg.Levels), pipeline.RouterOptionsFrom(e.cfg),
			zerolog.Nop(), obs.NewMetrics(), obs.NewHealth()).Run(ctx)
	}()
	t.Cleanup(func() { cancel(); <-done })
}

// routedStream is the ROUTED stream of the sink a routed.<sink>... filter
// names.
func (e *testEnv) routedStream(t *testing.T, filter string) string {
	t.Helper()
	name, err := replay.StreamOf([]string{filter}, e.cfg.Streams)
	if err != nil {
		t.Fatal(err)
	}
	return name
}

// routedCount counts the messages on a ROUTED subject filter.
func (e *testEnv) routedCount(t *testing.T, filter string) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := e.env.JS.Stream(ctx, e.routedStream(t, filter))
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(filter))
	if err != nil {
		t.Fatal(err)
	}
	var n uint64
	for _, c := range info.State.Subjects {
		n += c
	}
	return n
}

// routed returns the messages on a ROUTED subject filter, in stream order.
func (e *testEnv) routed(t *testing.T, filter string) []jetstream.Msg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := e.env.JS.Stream(ctx, e.routedStream(t, filter))
	if err != nil {
		t.Fatal(err)
	}
	n := e.routedCount(t, filter)
	var out []jetstream.Msg
	if n == 0 {
		return out
	}
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}})
	if err != nil {
		t.Fatal(err)
	}
	for uint64(len(out)) < n {
		m, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

// logIDs returns the ids of the JSON lines of the files in dir, in order.
func logIDs(t *testing.T, dir string) []string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "*"))
	sort.Strings(files)
	var ids []string
	for _, f := range files {
		if strings.HasPrefix(filepath.Base(f), ".") {
			continue // the tracer's hidden sidecars (.ids, .idx)
		}
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range bytes.Split(bytes.TrimSpace(data), []byte("\n")) {
			if len(line) == 0 {
				continue
			}
			var rec struct{ ID string }
			if err := json.Unmarshal(line, &rec); err != nil {
				t.Fatalf("%s: %q: %v", f, line, err)
			}
			ids = append(ids, rec.ID)
		}
	}
	return ids
}

func decodeIDs(t *testing.T, msgs []jetstream.Msg) []string {
	t.Helper()
	ids := make([]string, len(msgs))
	for i, m := range msgs {
		var ev schema.Event
		if err := schema.Unmarshal(m.Data(), &ev); err != nil {
			t.Fatal(err)
		}
		ids[i] = ev.ID
	}
	return ids
}

// TestSinksReplayTimeRange routes two batches a second apart with the real
// router, then replays the first batch's time range of sink "log" into
// another directory: exactly its events, in ROUTED order, and the live
// durable consumer of the sink is untouched.
func TestSinksReplayTimeRange(t *testing.T) {
	live := t.TempDir()
	e := newTestEnv(t, `
[logging]
level = "error"
[tracer.log]
type = "log"
level = "trace"
path = "`+live+`"
prefix = "mailtel"
format = "json"
[tracer.sec]
type = "log"
path = "`+live+`"
prefix = "security"
events = ["auth.*"]
`)
	ctx := context.Background()
	// The sink's durable consumer, as `sinks run` creates it.
	durable, err := pipeline.NewSinkRunner(e.env.JS, "log", nil, pipeline.SinkOptionsFrom(e.cfg), zerolog.Nop(), obs.NewMetrics(), obs.NewHealth()).Consumer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	e.startRouter(t)

	t0 := time.Now()
	first := events("a", 300)
	e.publish(t, first)
	pipelinetest.WaitFor(t, 10*time.Second, "route the first batch", func() bool { return e.routedCount(t, "routed.log.>") == 300 })
	t1 := time.Now()
	time.Sleep(1100 * time.Millisecond)
	e.publish(t, events("b", 200))
	pipelinetest.WaitFor(t, 10*time.Second, "route the second batch", func() bool { return e.routedCount(t, "routed.log.>") == 500 })

	// What the range holds, read here from ROUTED by stream timestamps.
	var want []string
	for _, m := range e.routed(t, "routed.log.>") {
		md, _ := m.Metadata()
		if !md.Timestamp.Before(t0) && !md.Timestamp.After(t1) {
			want = append(want, decodeIDs(t, []jetstream.Msg{m})[0])
		}
	}
	if len(want) != 300 {
		t.Fatalf("%d ROUTED messages in the range, want the 300 of the first batch", len(want))
	}
	firstIDs := map[string]bool{}
	for _, ev := range first {
		firstIDs[ev.ID] = true
	}
	for _, id := range want {
		if !firstIDs[id] {
			t.Fatalf("%s is in the range but not in the first batch", id)
		}
	}

	to := t.TempDir()
	args := []string{"replay", "--sink", "log", "--since", t0.Format(time.RFC3339Nano), "--until", t1.Format(time.RFC3339Nano), "--to", to}
	out, errOut, err := e.run(ctx, args...)
	if err != nil {
		t.Fatalf("replay: %v\n%s", err, errOut)
	}
	if !strings.Contains(out, "replayed sink log: written 300, skipped 0, failed 0") {
		t.Errorf("stdout %q", out)
	}
	if !strings.Contains(errOut, "replay log 300/300 events (100%)") {
		t.Errorf("no final progress line on stderr: %q", errOut)
	}
	if got := logIDs(t, to); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("replay wrote %d events, want the %d of the range in stream order", len(got), len(want))
	}
	if files, _ := filepath.Glob(filepath.Join(to, "mailtel.replay.*")); len(files) == 0 {
		t.Errorf("no mailtel.replay.<date> file in %s", to)
	}

	// Again: the log sink has them already.
	out, _, err = e.run(ctx, args...)
	if err != nil || !strings.Contains(out, "written 0, skipped 300, failed 0") {
		t.Errorf("second replay: %v %q", err, out)
	}

	info, err := durable.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Delivered.Consumer != 0 || info.NumAckPending != 0 || info.NumPending != 500 {
		t.Errorf("the live consumer was touched: delivered %d, ack pending %d, pending %d", info.Delivered.Consumer, info.NumAckPending, info.NumPending)
	}
}

// TestSinksReplayWebhook replays a sequence range of a webhook sink to
// another receiver (--to), which rejects one chunk for good: the rest is
// delivered, the rejected events are listed and counted, the command fails.
func TestSinksReplayWebhook(t *testing.T) {
	var mu sync.Mutex
	var got []string
	var refuse string // a chunk with this event is refused
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var payload struct{ Events []struct{ ID string } }
		if err := json.Unmarshal(body, &payload); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		for _, ev := range payload.Events {
			if ev.ID == refuse {
				http.Error(w, "no thanks", http.StatusUnprocessableEntity)
				return
			}
		}
		for _, ev := range payload.Events {
			got = append(got, ev.ID)
		}
	}))
	defer recv.Close()
	e := newTestEnv(t, `
[logging]
level = "error"
[webhook.siem]
url = "http://127.0.0.1:1/unused"
events = ["auth.*"]
throttle = "1ms"
batch-size = 10
`)
	e.startRouter(t)
	e.publish(t, events("w", 500)) // 200 auth events
	pipelinetest.WaitFor(t, 10*time.Second, "route", func() bool { return e.routedCount(t, "routed.siem.>") == 200 })
	routed := e.routed(t, "routed.siem.>")
	md0, _ := routed[20].Metadata()
	md1, _ := routed[79].Metadata()
	want := decodeIDs(t, routed[20:80])
	// Writes of 20 events go out as chunks of 10: refuse the chunk of
	// want[30:40].
	mu.Lock()
	refuse = want[33]
	mu.Unlock()

	ctx := context.Background()
	out, errOut, err := e.run(ctx, "replay", "--sink", "siem", "--from-seq", fmt.Sprint(md0.Sequence.Stream),
		"--to-seq", fmt.Sprint(md1.Sequence.Stream), "--to", recv.URL+"/new", "--batch", "20")
	if err == nil || !strings.Contains(err.Error(), "rejected for good") {
		t.Fatalf("err = %v, want the rejected events reported\n%s\n%s", err, out, errOut)
	}
	if !strings.Contains(out, "written 50, skipped 0, failed 10") || !strings.Contains(errOut, "sink siem rejected 10 events ("+want[30]+", ") ||
		!strings.Contains(errOut, "answered 422") {
		t.Errorf("stdout %q\nstderr %q", out, errOut)
	}
	mu.Lock()
	defer mu.Unlock()
	wantSent := append(append([]string{}, want[:30]...), want[40:]...)
	// The chunks of one write are posted in parallel: compare sets.
	sort.Strings(got)
	sort.Strings(wantSent)
	if strings.Join(got, ",") != strings.Join(wantSent, ",") {
		t.Errorf("receiver got %d events %v, want %d", len(got), got, len(wantSent))
	}
}

func TestSinksReplayBadArgs(t *testing.T) {
	dir := t.TempDir()
	e := &testEnv{file: filepath.Join(dir, "mailtel.toml"), env: &pipelinetest.Env{NATS: config.NATS{URL: "nats://127.0.0.1:1"}}}
	os.WriteFile(e.file, []byte(`
[tracer.log]
type = "log"
path = "`+dir+`"
[tracer.console]
type = "console"
[webhook.siem]
url = "http://127.0.0.1:1/"
events = ["auth.*"]
[metrics.prometheus]
enable = true
`), 0o644)
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--since", "1h"}, "--sink is required (configured: console, log, metrics, siem)"},
		{[]string{"--sink", "nope", "--since", "1h"}, "no sink named nope in the configuration (configured: console, log, metrics, siem)"},
		{[]string{"--sink", "log"}, "say where the replay starts: --since DURATION|TIME or --from-seq N"},
		{[]string{"--sink", "log", "--since", "1h", "--from-seq", "5"}, "give --since or --from-seq, not both"},
		{[]string{"--sink", "log", "--since", "1h", "--until", "2h"}, "--until 2h is before --since 1h"},
		{[]string{"--sink", "log", "--since", "1h", "--until", "30m", "--to-seq", "9"}, "give --until or --to-seq, not both"},
		{[]string{"--sink", "log", "--since", "last tuesday"}, `--since: invalid time "last tuesday"`},
		{[]string{"--sink", "log", "--from-seq", "9", "--to-seq", "3"}, "--to-seq 3 is before --from-seq 9"},
		{[]string{"--sink", "log", "--from-seq", "x"}, "invalid value \"x\" for flag -from-seq"},
		{[]string{"--sink", "metrics", "--since", "1h"}, "sink metrics is the metrics sink"},
		{[]string{"--sink", "console", "--since", "1h", "--to", "/tmp"}, "--to applies to a log tracer (a directory), not to a console tracer"},
		{[]string{"--sink", "siem", "--since", "1h", "--to", "ftp://x"}, "url: want an absolute http:// or https:// URL"},
		{[]string{"--sink", "log", "--since", "1h", "extra"}, `unexpected argument "extra"`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			_, errOut, err := e.run(context.Background(), append([]string{"replay"}, tt.args...)...)
			if err == nil || !strings.Contains(err.Error()+errOut, tt.want) {
				t.Errorf("err = %v (stderr %q), want %q", err, errOut, tt.want)
			}
		})
	}
}

func TestHelpHasExamples(t *testing.T) {
	for _, cmd := range []string{"replay", "tail"} {
		var out, errOut bytes.Buffer
		run(context.Background(), []string{cmd, "--help"}, &out, &errOut)
		if help := errOut.String(); !strings.Contains(help, "Example:\n  sinks "+cmd) || !strings.Contains(help, "usage: sinks "+cmd) {
			t.Errorf("sinks %s --help:\n%s", cmd, help)
		}
	}
}

// TestSinksReplayServerFanOut replays a sink the server feeds: its stream
// holds every event, and the replay writes only those the sink's rules
// take, as the live sink does.
func TestSinksReplayServerFanOut(t *testing.T) {
	e := newTestEnv(t, `
[logging]
level = "error"
[tracer.sec]
type = "log"
level = "trace"
path = "`+t.TempDir()+`"
format = "json"
events = ["auth.*"]
[router]
server-fan-out = ["sec"]
`)
	evs := events("s", 100)
	e.publish(t, evs)
	pipelinetest.WaitFor(t, 10*time.Second, "the server to copy every event", func() bool { return e.routedCount(t, "routed.sec.>") == 100 })
	var want []string
	for _, ev := range evs {
		if strings.HasPrefix(ev.Type, "auth.") {
			want = append(want, ev.ID)
		}
	}
	to := t.TempDir()
	out, errOut, err := e.run(context.Background(), "replay", "--sink", "sec", "--from-seq", "1", "--to", to)
	if err != nil {
		t.Fatalf("replay: %v\n%s", err, errOut)
	}
	wantOut := fmt.Sprintf("replayed sink sec: written %d, skipped 0, failed 0, rejected by its rules %d", len(want), 100-len(want))
	if !strings.Contains(out, wantOut) {
		t.Errorf("stdout %q, want %q", out, wantOut)
	}
	if got := logIDs(t, to); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("replay wrote %v, want the auth.* events %v", got, want)
	}
}
