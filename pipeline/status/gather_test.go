package status

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/mailtel/mailtel/pipeline"
	"github.com/mailtel/mailtel/pipeline/config"
	"github.com/mailtel/mailtel/pipeline/obs"
	"github.com/mailtel/mailtel/pipeline/pipelinetest"
	"github.com/mailtel/mailtel/pipeline/sink"
	"github.com/mailtel/mailtel/pipeline/synth"
	"github.com/mailtel/mailtel/schema"
)

// countingSink writes nothing and counts what it was given.
type countingSink struct{ n atomic.Int64 }

func (s *countingSink) Write(_ context.Context, batch []*schema.Event) error {
	s.n.Add(int64(len(batch)))
	return nil
}
func (s *countingSink) Close(context.Context) error { return nil }

var _ sink.Sink = (*countingSink)(nil)

const twoSinks = `
[logging]
level = "error"
[tracer.log]
type = "log"
level = "info"
path = "/tmp/mailtel-status-test-unused"
[webhook.siem]
url = "http://127.0.0.1:1/"
events = ["auth.*", "smtp.*"]
`

// TestGather routes synthetic events with the real router, dead-letters a
// few, and checks the numbers Gather reads: messages per stream, pending per
// consumer, dead letters per stage and sink, and the sinks' states as the
// sinks start, fall behind and pause.
func TestGather(t *testing.T) {
	env := pipelinetest.Start(t)
	cfg, err := config.Parse([]byte(twoSinks))
	if err != nil {
		t.Fatal(err)
	}
	env.EnsureStreams(t, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	const n = 400
	g := synth.New(synth.Options{Seed: 3})
	evs := make([]schema.Event, n)
	table := pipeline.NewTable(cfg.SinkSpecs(), cfg.Levels)
	copies := map[string]uint64{}
	for i := range evs {
		g.Next(&evs[i])
		targets, _ := table.Route(evs[i].Type)
		for _, tg := range targets {
			copies[tg.Sink]++
		}
	}
	if copies["log"] == 0 || copies["siem"] == 0 || copies["siem"] == copies["log"] {
		t.Fatalf("synthetic traffic routes %v: want copies for both sinks, in different numbers", copies)
	}
	pub := pipeline.NewPublisher(env.JS, cfg.Levels, 1024, nil)
	if _, err := pub.PublishAll(ctx, evs); err != nil {
		t.Fatal(err)
	}
	pub.Close(ctx)

	router := pipeline.NewRouter(env.JS, table, pipeline.RouterOptionsFrom(cfg), zerolog.Nop(), obs.NewMetrics(), obs.NewHealth())
	go router.Run(ctx)
	cons, err := router.Consumer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the router to route every event", func() bool {
		info, err := cons.Info(ctx)
		return err == nil && info.NumPending == 0 && info.NumAckPending == 0 && info.AckFloor.Stream == n
	})

	letters := []pipeline.Letter{
		{Stage: "sink.siem", EventID: "auth.failed", SourceSeq: 1},
		{Stage: "sink.siem", EventID: "auth.failed", SourceSeq: 2},
		{Stage: "sink.siem", EventID: "smtp.connection-start", SourceSeq: 3},
		{Stage: "ingest", MsgID: "ingest-1"},
		{Stage: "ingest", EventID: "auth.success", MsgID: "ingest-2"},
		{Stage: "router", EventID: "auth.success", SourceSeq: 9},
	}
	for _, l := range letters {
		l.Data, l.Reason = []byte("x"), errors.New("test")
		if err := pipeline.PublishLetter(ctx, env.JS, l); err != nil {
			t.Fatal(err)
		}
	}

	opts := OptionsFrom(cfg)
	opts.Endpoints = nil
	gt := NewGatherer(env.JS, opts)

	// No sink has started: both are behind by their whole stream.
	st, err := gt.Gather(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wantStreams := map[string]uint64{"EVENTS": n, "ROUTED_log": copies["log"], "ROUTED_siem": copies["siem"], "DLQ": uint64(len(letters))}
	if len(st.Streams) != len(wantStreams) {
		t.Errorf("streams %+v, want %v", st.Streams, wantStreams)
	}
	for _, s := range st.Streams {
		if s.Messages != wantStreams[s.Name] || s.Missing {
			t.Errorf("stream %s: %d messages (missing %v), want %d", s.Name, s.Messages, s.Missing, wantStreams[s.Name])
		}
		// Everything was stored within the windows (10m, 2m).
		if s.WindowIDs != s.Messages || s.WindowBytes != s.Messages*BytesPerID || s.First == nil || s.Last == nil {
			t.Errorf("stream %s: window ids %d (%d bytes), first %v last %v; want every message", s.Name, s.WindowIDs, s.WindowBytes, s.First, s.Last)
		}
	}
	if got := fmt.Sprint(st.DeadLetters); got != "[{ingest 2} {router 1} {sink.siem 3}]" {
		t.Errorf("dead letters %s", got)
	}
	if len(st.Consumers) != 1 || st.Consumers[0].Name != "router" || st.Consumers[0].State != StateUp ||
		st.Consumers[0].Pending != 0 || st.Consumers[0].AckFloor != n || st.Consumers[0].Waiting == 0 {
		t.Errorf("consumers %+v, want only the running router's, all acked", st.Consumers)
	}
	sinks := bySink(st)
	for name, want := range map[string]Sink{
		"log":  {Name: "log", State: StateNoConsumer, FedBy: "router", Behind: copies["log"]},
		"siem": {Name: "siem", State: StateNoConsumer, FedBy: "router", Behind: copies["siem"], DeadLetters: 3},
	} {
		got := sinks[name]
		got.Reason = ""
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("sink %s: %+v, want %+v", name, got, want)
		}
	}
	if st.RateInterval != 0 || st.Consumers[0].Rate != nil {
		t.Errorf("first sample has rates: interval %v, router %v", st.RateInterval, st.Consumers[0].Rate)
	}

	// The log sink runs and catches up; siem's consumer exists, unread.
	written := &countingSink{}
	logRunner := pipeline.NewSinkRunner(env.JS, "log", written, pipeline.SinkOptionsFor(cfg, cfg.SinkSpecs()[0]), zerolog.Nop(), obs.NewMetrics(), obs.NewHealth())
	go logRunner.Run(ctx)
	siemRunner := pipeline.NewSinkRunner(env.JS, "siem", &countingSink{}, pipeline.SinkOptionsFor(cfg, cfg.SinkSpecs()[1]), zerolog.Nop(), obs.NewMetrics(), obs.NewHealth())
	if _, err := siemRunner.Consumer(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the log sink to write every copy", func() bool { return uint64(written.n.Load()) == copies["log"] })
	waitFor(t, "the log sink's ack floor to reach its last copy", func() bool {
		st, err = gt.Gather(ctx)
		return err == nil && bySink(st)["log"].Behind == 0 && consumer(st, "sink-log").AckFloor == copies["log"]
	})
	time.Sleep(20 * time.Millisecond)
	if st, err = gt.Gather(ctx); err != nil { // a second sample of sink-log: its rate
		t.Fatal(err)
	}
	sinks = bySink(st)
	if k := sinks["log"]; k.State != StateUp || k.Rate == nil || *k.Rate != 0 {
		t.Errorf("sink log: %+v, want up, at rate 0 now that it caught up", k)
	}
	if k := sinks["siem"]; k.State != StateNotRunning || k.Behind != copies["siem"] {
		t.Errorf("sink siem: %+v, want not running, %d behind", k, copies["siem"])
	}
	if c := consumer(st, "sink-siem"); c.Pending != copies["siem"] || c.AckPending != 0 || c.Waiting != 0 || c.Sink != "siem" || c.LastActive != nil {
		t.Errorf("consumer sink-siem: %+v", c)
	}
	if st.RateInterval <= 0 {
		t.Errorf("second sample: rate interval %v", st.RateInterval)
	}

	// A sinks process says siem is paused: /readyz and mailtel_sink_up.
	m, h := obs.NewMetrics(), obs.NewHealth()
	h.Set("sink:siem", nil)
	h.Degrade("sink:siem", errors.New("destination failing since 2026-11-21T11:58:00Z: 503; try later"))
	m.SinkUp.WithLabelValues("siem").Set(0)
	m.Written.WithLabelValues("siem").Add(7)
	srv := httptest.NewServer(obs.Handler(m, h))
	defer srv.Close()
	opts.Endpoints = []string{srv.Listener.Addr().String(), "127.0.0.1:1"}
	st, err = NewGatherer(env.JS, opts).Gather(ctx)
	if err != nil {
		t.Fatal(err)
	}
	k := bySink(st)["siem"]
	if k.State != StatePaused || k.Reason != "destination failing since 2026-11-21T11:58:00Z: 503; try later" || k.Written == nil || *k.Written != 7 {
		t.Errorf("sink siem with a degraded /readyz: %+v", k)
	}
	if c := consumer(st, "sink-siem"); c.State != StatePaused {
		t.Errorf("consumer sink-siem: state %q, want the sink's", c.State)
	}
	if len(st.Endpoints) != 2 || st.Endpoints[0].Error != "" || !strings.HasPrefix(st.Endpoints[0].Ready, "ready, degraded: sink:siem") ||
		!strings.Contains(st.Endpoints[1].Error, "no answer") {
		t.Errorf("endpoints %+v", st.Endpoints)
	}
}

// The duplicate window counts the messages stored within it, found by
// the server from the time; a message deleted at the window's start is
// stepped over.
func TestIDsInWindow(t *testing.T) {
	env := pipelinetest.Start(t)
	ctx := context.Background()
	s, err := env.JS.CreateStream(ctx, jetstream.StreamConfig{Name: "WIN", Subjects: []string{"win.>"}, Duplicates: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	publish := func(k int) {
		for i := 0; i < k; i++ {
			if _, err := env.JS.Publish(ctx, "win.a", []byte("x")); err != nil {
				t.Fatal(err)
			}
		}
	}
	publish(5)
	time.Sleep(1200 * time.Millisecond)
	publish(3) // sequences 6, 7, 8
	g := NewGatherer(env.JS, Options{})
	ids := func() uint64 {
		t.Helper()
		si, err := s.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		n, err := g.idsInWindow(ctx, si, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if got := ids(); got != 3 {
		t.Errorf("ids in a 1s window = %d, want the 3 messages of the last second", got)
	}
	if err := s.DeleteMsg(ctx, 6); err != nil {
		t.Fatal(err)
	}
	if got := ids(); got != 2 {
		t.Errorf("ids with the window's first message deleted = %d, want 2", got)
	}
	time.Sleep(1100 * time.Millisecond)
	if got := ids(); got != 0 {
		t.Errorf("ids once the window passed = %d, want 0", got)
	}
}

// Messages the stream's limits deleted inside the window still have their
// ids in the server's window: a stream that keeps 5 of 20 messages
// published within it holds 20 ids.
func TestIDsInWindowCountsMessagesLimitsDeleted(t *testing.T) {
	env := pipelinetest.Start(t)
	ctx := context.Background()
	s, err := env.JS.CreateStream(ctx, jetstream.StreamConfig{Name: "LIM", Subjects: []string{"lim.>"}, Duplicates: time.Minute, MaxMsgs: 5})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		if _, err := env.JS.Publish(ctx, "lim.a", []byte("x"), jetstream.WithMsgID(fmt.Sprint("id-", i))); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Millisecond) // a stored span to take the rate from
	}
	// The server still knows the ids of the deleted messages.
	if _, err := env.JS.Publish(ctx, "lim.a", []byte("x"), jetstream.WithMsgID("id-0")); err != nil {
		t.Fatal(err)
	}
	si, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if si.State.Msgs != 5 || si.State.LastSeq != 20 {
		t.Fatalf("stream holds %d messages up to sequence %d, want 5 up to 20 (id-0 again is a duplicate)", si.State.Msgs, si.State.LastSeq)
	}
	n, err := NewGatherer(env.JS, Options{}).idsInWindow(ctx, si, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if n != 20 {
		t.Errorf("ids in the window = %d, want 20: 5 stored and the 15 the limits deleted", n)
	}
}

func bySink(st *Status) map[string]Sink {
	m := map[string]Sink{}
	for _, k := range st.Sinks {
		m[k.Name] = k
	}
	return m
}

func consumer(st *Status, name string) Consumer {
	for _, c := range st.Consumers {
		if c.Name == name {
			return c
		}
	}
	return Consumer{}
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
