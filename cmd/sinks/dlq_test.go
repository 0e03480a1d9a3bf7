package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailtel/mailtel/pipeline/delivery"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/mailtel/mailtel/pipeline"
	"github.com/mailtel/mailtel/pipeline/config"
	"github.com/mailtel/mailtel/pipeline/dlqtool"
	"github.com/mailtel/mailtel/pipeline/obs"
	"github.com/mailtel/mailtel/pipeline/pipelinetest"
	"github.com/mailtel/mailtel/pipeline/sinks/webhook"
	"github.com/mailtel/mailtel/schema"
)

// siem is a webhook receiver that refuses every event with 400 until told
// to accept, then counts the events it gets.
type siem struct {
	mu     sync.Mutex
	accept bool
	got    map[string]int
}

func (s *siem) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.accept {
		http.Error(w, "schema violation: field accountName not allowed", http.StatusBadRequest)
		return
	}
	var req struct{ Events []struct{ ID string } }
	if err := json.Unmarshal(body, &req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	for _, e := range req.Events {
		s.got[e.ID]++
	}
}

func (s *siem) received() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, len(s.got))
	for k, v := range s.got {
		out[k] = v
	}
	return out
}

// dlqEnv is a NATS server with the streams, a router routing every event
// to the webhook sink "siem", and the receiver behind it.
type dlqEnv struct {
	env  *pipelinetest.Env
	cfg  *config.Config
	siem *siem
	sink *webhook.Sink
}

func newDLQEnv(t *testing.T) *dlqEnv {
	t.Helper()
	e := &dlqEnv{env: pipelinetest.Start(t), cfg: config.Default(), siem: &siem{got: map[string]int{}}}
	e.cfg.NATS = e.env.NATS
	e.env.EnsureStreams(t, e.cfg, "siem")
	srv := httptest.NewServer(e.siem)
	t.Cleanup(srv.Close)
	var err error
	e.sink, err = webhook.New("siem", &webhook.Config{URL: srv.URL, BatchSize: 10}, webhook.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.sink.Close(context.Background()) })

	ctx, cancel := context.WithCancel(context.Background())
	specs := []config.SinkSpec{{Name: "siem", Kind: "webhook"}}
	r := pipeline.NewRouter(e.env.JS, pipeline.NewTable(specs, e.cfg.Levels), pipeline.RouterOptionsFrom(e.cfg), zerolog.Nop(), obs.NewMetrics(), obs.NewHealth())
	done := make(chan struct{})
	go func() { defer close(done); r.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return e
}

// runSink runs the webhook sink from its durable consumer until the
// returned func is called.
func (e *dlqEnv) runSink(t *testing.T) (stop func()) {
	t.Helper()
	opts := pipeline.SinkOptions{Routed: e.cfg.Streams.Routed, Batch: 20, AckWait: 5 * time.Second,
		Retry: delivery.Policy{Base: time.Millisecond, Max: 20 * time.Millisecond, DiscardAfter: 300 * time.Millisecond}, ShutdownTimeout: 5 * time.Second}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	r := pipeline.NewSinkRunner(e.env.JS, "siem", e.sink, opts, zerolog.Nop(), obs.NewMetrics(), obs.NewHealth())
	go func() { defer close(done); r.Run(ctx) }()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return stop
}

// letters lists the dead letters f selects, with the package, not the
// command under test.
func (e *dlqEnv) letters(t *testing.T, f dlqtool.Filter) []dlqtool.Letter {
	t.Helper()
	ls, err := dlqtool.List(context.Background(), e.env.JS, e.cfg.Streams.DLQ, f)
	if err != nil {
		t.Fatal(err)
	}
	return ls
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	pipelinetest.WaitFor(t, 15*time.Second, what, cond)
}

func dlqCmd(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := run(ctx, append([]string{"dlq"}, args...), &out, &errOut)
	return out.String(), errOut.String(), err
}

// TestDLQListShowRedrive dead-letters 25 events through a real webhook sink
// whose receiver answers 400, then lists, shows and re-drives them with the
// dlq command once the receiver accepts them.
func TestDLQListShowRedrive(t *testing.T) {
	const n = 25
	e := newDLQEnv(t)
	url := e.env.NATS.URL
	ctx := context.Background()

	types := []string{"auth.failed", "auth.banned", "smtp.rcpt-to", "delivery.delivered", "imap.connection-start"}
	evs := make([]schema.Event, n)
	for i := range evs {
		id := fmt.Sprintf("dlq-%02d", i)
		evs[i] = schema.Event{ID: id, Type: types[i%len(types)], Time: time.Now().UTC(), Host: "mx1", Server: schema.ServerStalwart,
			Fields: []schema.Field{{Key: "accountName", Value: schema.String("user" + strconv.Itoa(i))}}}
	}
	stop := e.runSink(t)
	pub := pipeline.NewPublisher(e.env.JS, e.cfg.Levels, 64, nil)
	if _, err := pub.PublishAll(ctx, evs); err != nil {
		t.Fatal(err)
	}
	pub.Close(ctx)
	// And one message the router cannot decode: a router dead letter.
	if _, err := e.env.JS.Publish(ctx, "events.auth.failed", []byte("not msgpack")); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the sink dead-letters every event", func() bool { return len(e.letters(t, dlqtool.Filter{Sink: "siem"})) == n })
	waitUntil(t, "the router dead-letters the bad message", func() bool { return len(e.letters(t, dlqtool.Filter{Stage: "router"})) == 1 })
	stop()

	// list: every event with the receiver's answer as the reason.
	out, _, err := dlqCmd(t, "list", "--nats", url, "--sink", "siem")
	if err != nil {
		t.Fatalf("list: %v", err)
	}
	for _, ev := range evs {
		if !strings.Contains(out, ev.ID) {
			t.Errorf("list does not show event %s:\n%s", ev.ID, out)
		}
	}
	if got := strings.Count(out, "400 Bad Request: schema violation"); got != n {
		t.Errorf("list shows the 400 reason %d times, want %d:\n%s", got, n, out)
	}
	if !strings.Contains(out, fmt.Sprintf("%d dead letters on dlq.sink.siem.>", n)) {
		t.Errorf("list has no count line:\n%s", out)
	}

	// list --json, every stage: the sink's letters and the router's.
	out, _, err = dlqCmd(t, "list", "--nats", url, "--json")
	if err != nil {
		t.Fatalf("list --json: %v", err)
	}
	var all []dlqtool.Letter
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var l dlqtool.Letter
		if err := json.Unmarshal([]byte(line), &l); err != nil {
			t.Fatalf("list --json line %q: %v", line, err)
		}
		all = append(all, l)
	}
	if len(all) != n+1 {
		t.Fatalf("list --json printed %d dead letters, want %d", len(all), n+1)
	}
	var router dlqtool.Letter
	for _, l := range all {
		switch l.Stage {
		case "router":
			router = l
		case "sink.siem":
			if l.EventID == "" || l.Type == "" || l.SourceSeq == 0 || l.FailedAt.IsZero() || !strings.HasPrefix(l.SourceSubject, "routed.siem.") {
				t.Errorf("sink dead letter described incompletely: %+v", l)
			}
		default:
			t.Errorf("dead letter of unexpected stage %q: %+v", l.Stage, l)
		}
	}
	if router.DecodeError == "" || router.Type != "auth.failed" || router.Subject != "dlq.router.auth.failed" {
		t.Errorf("router dead letter: %+v", router)
	}

	// show: a sink dead letter decodes to its event; the router's does not.
	first := e.letters(t, dlqtool.Filter{Sink: "siem", Max: 1})[0]
	out, _, err = dlqCmd(t, "show", strconv.FormatUint(first.Seq, 10), "--nats", url)
	if err != nil {
		t.Fatalf("show: %v", err)
	}
	var d struct {
		Seq    uint64
		Header map[string][]string
		Event  struct {
			ID   string
			Type string
			Data map[string]any
		}
	}
	if err := json.Unmarshal([]byte(out), &d); err != nil {
		t.Fatalf("show printed no JSON: %v\n%s", err, out)
	}
	if d.Seq != first.Seq || d.Event.ID != first.EventID || d.Event.Type != first.Type || d.Event.Data["accountName"] == nil {
		t.Errorf("show %d printed %+v, want event %s", first.Seq, d, first.EventID)
	}
	if r := d.Header[pipeline.HeaderReason]; len(r) != 1 || !strings.Contains(r[0], "400") {
		t.Errorf("show: reason header %q", r)
	}
	out, _, err = dlqCmd(t, "show", "--nats", url, strconv.FormatUint(router.Seq, 10))
	if err != nil || !strings.Contains(out, `"decode_error"`) || !strings.Contains(out, `"payload"`) {
		t.Errorf("show of the router dead letter: %v\n%s", err, out)
	}

	// redrive --dry-run changes nothing.
	out, _, err = dlqCmd(t, "redrive", "--nats", url, "--sink", "siem", "--dry-run")
	if err != nil {
		t.Fatalf("redrive --dry-run: %v", err)
	}
	if got := strings.Count(out, "would redrive "); got != n+1 { // each letter, and the summary
		t.Errorf("dry run lists %d lines, want %d:\n%s", got, n+1, out)
	}
	if got := len(e.letters(t, dlqtool.Filter{Sink: "siem"})); got != n {
		t.Fatalf("after a dry run the DLQ holds %d of the sink's letters, want %d", got, n)
	}

	// The destination works again: re-drive 10, then the rest, to a running sink.
	e.siem.mu.Lock()
	e.siem.accept = true
	e.siem.mu.Unlock()
	e.runSink(t)
	out, _, err = dlqCmd(t, "redrive", "--nats", url, "--sink", "siem", "--max", "10")
	if err != nil || !strings.Contains(out, "redriven 10, skipped 0") {
		t.Fatalf("redrive --max 10: %v\n%s", err, out)
	}
	if got := len(e.letters(t, dlqtool.Filter{Sink: "siem"})); got != n-10 {
		t.Errorf("after re-driving 10 the DLQ holds %d of the sink's letters, want %d", got, n-10)
	}
	out, _, err = dlqCmd(t, "redrive", "--nats", url, "--sink", "siem")
	if err != nil || !strings.Contains(out, fmt.Sprintf("redriven %d, skipped 0", n-10)) {
		t.Fatalf("redrive: %v\n%s", err, out)
	}
	waitUntil(t, "the sink delivers every re-driven event", func() bool { return len(e.siem.received()) == n })
	waitUntil(t, "the sink's consumer acks everything", func() bool {
		return pipelinetest.Settled(ctx, e.env.JS, e.cfg.Streams.RoutedStream("siem"), pipeline.SinkConsumerName("siem")) == nil
	})

	// A second redrive sends nothing; the router's dead letter stays.
	out, _, err = dlqCmd(t, "redrive", "--nats", url, "--sink", "siem")
	if err != nil || !strings.Contains(out, "redriven 0, skipped 0") || !strings.Contains(out, "no dead letters of sink siem") {
		t.Errorf("second redrive: %v\n%s", err, out)
	}
	got := e.siem.received()
	for _, ev := range evs {
		if got[ev.ID] != 1 {
			t.Errorf("event %s delivered %d times after the redrives, want once", ev.ID, got[ev.ID])
		}
	}
	if len(got) != n {
		t.Errorf("receiver got %d events, want %d", len(got), n)
	}
	out, _, err = dlqCmd(t, "list", "--nats", url, "--sink", "siem")
	if err != nil || !strings.Contains(out, "no dead letters on dlq.sink.siem.>") {
		t.Errorf("list after redrive: %v\n%s", err, out)
	}
	if ls := e.letters(t, dlqtool.Filter{Stage: "router"}); len(ls) != 1 {
		t.Errorf("the router's dead letter is gone: %d left", len(ls))
	}
}

// TestDLQRedriveRepeatedAfterCrash re-drives a dead letter whose earlier
// redrive stored the copy but crashed before deleting it: the copy is not
// stored twice.
func TestDLQRedriveRepeatedAfterCrash(t *testing.T) {
	e := newDLQEnv(t)
	ctx := context.Background()
	ev := schema.Event{ID: "crash-1", Type: "auth.failed", Time: time.Now().UTC(), Server: schema.ServerStalwart}
	data, err := schema.Marshal(&ev)
	if err != nil {
		t.Fatal(err)
	}
	if err := pipeline.PublishLetter(ctx, e.env.JS, pipeline.Letter{Stage: "sink.siem", EventID: ev.Type, Data: data,
		Reason: fmt.Errorf("receiver answered 400"), SourceSubject: "routed.siem.auth.failed", SourceSeq: 7}); err != nil {
		t.Fatal(err)
	}
	l := e.letters(t, dlqtool.Filter{Sink: "siem"})
	if len(l) != 1 {
		t.Fatalf("%d dead letters, want 1", len(l))
	}
	// The crashed run: the copy is stored, the dead letter is not deleted.
	routedInfo := func() uint64 {
		s, err := e.env.JS.Stream(ctx, e.cfg.Streams.RoutedStream("siem"))
		if err != nil {
			t.Fatal(err)
		}
		return s.CachedInfo().State.Msgs
	}
	before := routedInfo()
	d, err := dlqtool.Show(ctx, e.env.JS, e.cfg.Streams.DLQ, l[0].Seq)
	if err != nil {
		t.Fatal(err)
	}
	stored := d.Stored
	if _, err := e.env.JS.PublishMsg(ctx, &nats.Msg{Subject: "routed.siem.auth.failed", Data: data}, jetstream.WithMsgID(dlqtool.RedriveMsgID("siem", l[0].Seq, stored))); err != nil {
		t.Fatal(err)
	}
	out, err := dlqtool.Redrive(ctx, e.env.JS, e.cfg.Streams.DLQ, "siem", dlqtool.RedriveOptions{RoutedStream: e.cfg.Streams.RoutedStream("siem")})
	if err != nil || len(out) != 1 || out[0].Skipped != "" {
		t.Fatalf("redrive: %v %+v", err, out)
	}
	if got := routedInfo() - before; got != 1 {
		t.Errorf("the crashed run and the redrive stored %d copies, want 1", got)
	}
	if ls := e.letters(t, dlqtool.Filter{Sink: "siem"}); len(ls) != 0 {
		t.Errorf("%d dead letters left after the redrive", len(ls))
	}
}

func TestDLQHelpAndBadArguments(t *testing.T) {
	for _, cmd := range []string{"list", "show", "redrive"} {
		t.Run("help_"+cmd, func(t *testing.T) {
			_, errOut, err := dlqCmd(t, cmd, "--help")
			if err != nil {
				t.Errorf("--help returned %v", err)
			}
			if !strings.Contains(errOut, "Example:") || !strings.Contains(errOut, "sinks dlq "+cmd) {
				t.Errorf("--help of %s has no example:\n%s", cmd, errOut)
			}
		})
	}
	out, _, err := dlqCmd(t, "help")
	if err != nil || !strings.Contains(out, "Example:") || !strings.Contains(out, "can be re-driven") {
		t.Errorf("dlq help: %v\n%s", err, out)
	}

	// Errors found before connecting: no server is needed.
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no command", nil, "a command is required"},
		{"unknown command", []string{"purge"}, `unknown command "purge"`},
		{"sink and stage", []string{"list", "--sink", "siem", "--stage", "router"}, "not both"},
		{"bad sink name", []string{"list", "--sink", "si.em"}, "not a sink name"},
		{"bad stage", []string{"list", "--stage", "sink.*"}, "want ingest, router, sink or sink.<name>"},
		{"negative max", []string{"list", "--max", "-1"}, "must not be negative"},
		{"list argument", []string{"list", "siem"}, `unexpected argument "siem"`},
		{"show no seq", []string{"show"}, "want one dead letter sequence number"},
		{"show bad seq", []string{"show", "abc"}, `"abc" is not a sequence number`},
		{"show zero", []string{"show", "0"}, `"0" is not a sequence number`},
		{"redrive no sink", []string{"redrive"}, "only a sink's dead letters"},
		{"redrive router", []string{"redrive", "--stage", "router"}, "flag provided but not defined: -stage"},
		{"redrive bad max", []string{"redrive", "--sink", "siem", "--max", "-3"}, "must not be negative"},
		{"redrive bad flag value", []string{"redrive", "--sink", "siem", "--max", "many"}, `invalid value "many" for flag -max`},
		{"bad timeout", []string{"list", "--timeout", "0s"}, "--timeout 0s: must be positive"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := dlqCmd(t, tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("dlq %v: error %v, want one containing %q", tc.args, err, tc.want)
			}
		})
	}

	// Errors that need the server.
	e := newDLQEnv(t)
	_, _, err = dlqCmd(t, "show", "--nats", e.env.NATS.URL, "12345")
	if err == nil || !strings.Contains(err.Error(), "no dead letter with this sequence") {
		t.Errorf("show of a missing sequence: %v", err)
	}
}
