// Package sinktest is the conformance suite every mailtel sink passes.
//
// Run drives a sink the way production does: each sub-test starts a real
// embedded JetStream server (pipelinetest.Start), creates the streams,
// publishes events with a real pipeline.Publisher, routes them with a real
// pipeline.Router and feeds the sink from a real pipeline.SinkRunner. It
// then reads back, from the sink's destination, what was written:
//
//   - batch_written_once: every event is written exactly once;
//   - retryable_errors_retried: the destination fails retryably for a
//     while, then recovers: every event is written exactly once, none is
//     dead-lettered;
//   - retries_outlast_ack_wait: the same, with the destination failing for
//     longer than the consumer's AckWait (each write is shorter): the
//     events waiting behind the failing batch are not written twice;
//   - permanent_errors_dead_lettered: the destination refuses every event:
//     every event is in the DLQ on dlq.sink.<name>.> with a Mailtel-Reason
//     header, none is written;
//   - shutdown_drains: the runner is stopped while a write is in flight:
//     that batch is written, the rest is redelivered to a runner started
//     afterwards, and the union is written exactly once;
//   - replay_idempotent: events already written are delivered again (the
//     sink's durable consumer is deleted and recreated, so JetStream
//     redelivers the whole history) through the sink a restart gives: none
//     is written twice. Only for sinks that promise it (Harness.Replay).
//
// Sub-tests the destination cannot support for real (Harness.Fail or
// Harness.Replay nil) are skipped with the reason.
//
// The suite never fakes a sink's behaviour. Its one wrapper, used by
// shutdown_drains, holds the first Write call until the runner has been
// told to stop and then calls the sink's own Write with the runner's
// arguments: it only decides when the write happens.
package sinktest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/rs/zerolog"

	"github.com/mailtel/mailtel/catalog"
	"github.com/mailtel/mailtel/pipeline"
	"github.com/mailtel/mailtel/pipeline/config"
	"github.com/mailtel/mailtel/pipeline/delivery"
	"github.com/mailtel/mailtel/pipeline/obs"
	"github.com/mailtel/mailtel/pipeline/pipelinetest"
	"github.com/mailtel/mailtel/pipeline/sink"
	"github.com/mailtel/mailtel/schema"
)

// FailMode is how a destination answers writes.
type FailMode int

const (
	// FailNone: the destination works.
	FailNone FailMode = iota
	// FailRetryable: the destination fails in a way a retry can fix
	// (a 5xx, a 429, a timeout).
	FailRetryable
	// FailPermanent: the destination refuses the events for good (a 400).
	FailPermanent
)

func (m FailMode) String() string {
	switch m {
	case FailNone:
		return "none"
	case FailRetryable:
		return "retryable"
	case FailPermanent:
		return "permanent"
	}
	return "FailMode(" + strconv.Itoa(int(m)) + ")"
}

// FieldID is the key of a string field every event of the suite carries,
// holding the event's id, so that a harness whose output format has no id
// (Stalwart's text log line) can still tell events apart.
const FieldID = "conformanceId"

// DefaultName is the sink name used when Harness.Name is empty.
const DefaultName = "sut"

// Harness is one sink under test with its destination.
type Harness struct {
	// Name is the sink's name (routed.<Name>.>, dlq.sink.<Name>.>);
	// DefaultName when empty.
	Name string
	// Sink is the sink under test, writing to a destination of its own.
	// The suite closes it when the sub-test ends.
	Sink sink.Sink
	// Written reads the destination and returns how many times each event
	// was written, by Key. It is called from the test goroutine only.
	Written func(t *testing.T) map[string]int
	// Key is what Written counts an event under; nil means the event id.
	// The events of one sub-test have distinct ids and distinct types, so
	// a harness that can only count per type (the metrics sink) uses
	// func(ev) string { return ev.Type }.
	Key func(ev *schema.Event) string
	// Fail makes the destination answer every write as mode says, until
	// the next call. Nil when the destination cannot be made to fail for
	// real; the sub-tests that need failures are then skipped.
	Fail func(mode FailMode)
	// Replay returns the sink through which events already written must be
	// written nothing: for a sink idempotent across restarts, it closes Sink
	// and opens a new one on the same destination; for a sink idempotent
	// only within its process, it returns Sink. Nil when the sink makes no
	// such promise; replay_idempotent is then skipped.
	Replay func(t *testing.T) sink.Sink
}

// Factory builds a fresh Harness (a new sink on a new, empty destination)
// for each sub-test.
type Factory func(t *testing.T) *Harness

// Options of the runner in the suite: short backoffs so that retries take
// milliseconds.
const (
	batchSize   = 10
	backoffBase = time.Millisecond
	backoffMax  = 20 * time.Millisecond
	waitFor     = 15 * time.Second // bound of every wait
	// ackWait is long enough that nothing is redelivered by expiry unless
	// a sub-test means it to be.
	ackWait = 30 * time.Second
)

// Run runs the conformance suite against the sinks f builds.
func Run(t *testing.T, f Factory) {
	t.Run("batch_written_once", func(t *testing.T) { batchWrittenOnce(t, f) })
	t.Run("retryable_errors_retried", func(t *testing.T) { retryableRetried(t, f) })
	t.Run("retries_outlast_ack_wait", func(t *testing.T) { retriesOutlastAckWait(t, f) })
	t.Run("permanent_errors_dead_lettered", func(t *testing.T) { permanentDeadLettered(t, f) })
	t.Run("shutdown_drains", func(t *testing.T) { shutdownDrains(t, f) })
	t.Run("replay_idempotent", func(t *testing.T) { replayIdempotent(t, f) })
}

// fixture is one sub-test's pipeline: a server, streams, a router and the
// harness.
type fixture struct {
	t      *testing.T
	h      *Harness
	name   string
	env    *pipelinetest.Env
	cfg    *config.Config
	events []schema.Event
	key    func(*schema.Event) string
}

// setup builds the harness, skips the test with skip's reason if skip
// returns one, and starts the pipeline for n events.
func setup(t *testing.T, f Factory, n int, skip func(*Harness) string) *fixture {
	t.Helper()
	h := f(t)
	if h == nil || h.Sink == nil || h.Written == nil {
		t.Fatal("sinktest: the factory must return a Harness with Sink and Written")
	}
	if skip != nil {
		if reason := skip(h); reason != "" {
			h.Sink.Close(context.Background())
			t.Skip(reason)
		}
	}
	fx := &fixture{t: t, h: h, name: h.Name, key: h.Key}
	if fx.name == "" {
		fx.name = DefaultName
	}
	if fx.key == nil {
		fx.key = func(ev *schema.Event) string { return ev.ID }
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := h.Sink.Close(ctx); err != nil {
			t.Errorf("close sink: %v", err)
		}
	})
	fx.env = pipelinetest.Start(t)
	fx.cfg = config.Default()
	fx.cfg.NATS = fx.env.NATS
	fx.env.EnsureStreams(t, fx.cfg, fx.name)

	// The router, routing every event that is not disabled to the sink.
	ctx, cancel := context.WithCancel(context.Background())
	specs := []config.SinkSpec{{Name: fx.name, Kind: "conformance"}}
	ropts := pipeline.RouterOptions{Stream: fx.cfg.Streams.Events, Consumer: "router", Workers: 1, Batch: 100, AckWait: 5 * time.Second}
	r := pipeline.NewRouter(fx.env.JS, pipeline.NewTable(specs, fx.cfg.Levels), ropts, zerolog.Nop(), obs.NewMetrics(), obs.NewHealth())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("router: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("router did not stop within 10s")
		}
	})
	fx.events = Events(t.Name(), n)
	return fx
}

// Events returns n events of distinct catalog types (none disabled by
// default), with ids "<tag>-<i>" and FieldID set to the id. n must not
// exceed the number of such types (over 500).
func Events(tag string, n int) []schema.Event {
	var types []string
	for _, et := range catalog.All() {
		if et.Level != catalog.LevelDisable {
			types = append(types, et.ID)
		}
	}
	if n > len(types) {
		panic(fmt.Sprintf("sinktest: %d events asked, only %d distinct types", n, len(types)))
	}
	tag = strings.NewReplacer("/", "-", " ", "-").Replace(tag)
	start := time.Now().UTC().Truncate(time.Second)
	evs := make([]schema.Event, n)
	for i := range evs {
		id := fmt.Sprintf("%s-%04d", tag, i)
		server := schema.ServerStalwart
		if i%3 == 2 {
			server = schema.ServerDovecot
		}
		evs[i] = schema.Event{ID: id, Type: types[i*len(types)/n], Time: start.Add(time.Duration(i) * time.Millisecond),
			Host: "mx1.example.com", Server: server, Fields: []schema.Field{
				{Key: FieldID, Value: schema.String(id)},
				{Key: "accountName", Value: schema.String(fmt.Sprintf("user%d@example.com", i))},
				{Key: "elapsed", Value: schema.Duration(time.Duration(i) * time.Millisecond)},
			}}
	}
	return evs
}

// publish publishes evs to EVENTS and fails the test unless JetStream
// stored every one.
func (fx *fixture) publish(evs []schema.Event) {
	fx.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	pub := pipeline.NewPublisher(fx.env.JS, fx.cfg.Levels, 256, nil)
	acks, err := pub.PublishAll(ctx, slices.Clone(evs))
	if cerr := pub.Close(ctx); err == nil {
		err = cerr
	}
	if err != nil {
		fx.t.Fatalf("publish: %v", err)
	}
	for i, a := range acks {
		if a.Err != nil || a.Duplicate {
			fx.t.Fatalf("publish %s: stored %v, duplicate %v", evs[i].ID, a.Err == nil, a.Duplicate)
		}
	}
}

// runner is one SinkRunner running until stop.
type runner struct {
	metrics *obs.Metrics
	cancel  context.CancelFunc
	done    chan error
}

func (fx *fixture) options(ackWait time.Duration) pipeline.SinkOptions {
	return pipeline.SinkOptions{Routed: fx.cfg.Streams.Routed, Batch: batchSize, AckWait: ackWait,
		Retry: delivery.Policy{Base: backoffBase, Max: backoffMax}, ShutdownTimeout: 5 * time.Second}
}

// start runs a SinkRunner for s until stop is called (or the test ends).
func (fx *fixture) start(s sink.Sink, opts pipeline.SinkOptions) *runner {
	r := &runner{metrics: obs.NewMetrics(), done: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	sr := pipeline.NewSinkRunner(fx.env.JS, fx.name, s, opts, zerolog.Nop(), r.metrics, obs.NewHealth())
	go func() { r.done <- sr.Run(ctx) }()
	fx.t.Cleanup(func() { fx.stop(r) })
	return r
}

// stop cancels the runner and waits until Run returned. It is idempotent.
func (fx *fixture) stop(r *runner) {
	fx.t.Helper()
	r.cancel()
	select {
	case err, ok := <-r.done:
		if ok && err != nil {
			fx.t.Errorf("sink runner: %v", err)
		}
		if ok {
			close(r.done)
		}
	case <-time.After(10 * time.Second):
		fx.t.Fatal("sink runner did not stop within 10s of its context ending")
	}
}

// value returns the value of a counter.
func value(c prometheus.Counter) int {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	return int(m.GetCounter().GetValue())
}

// written returns the runner's mailtel_written_total for the sink.
func (fx *fixture) written(r *runner) int {
	return value((r.metrics.Written.WithLabelValues(fx.name)))
}

func (fx *fixture) retried(r *runner) int {
	return value((r.metrics.Retried.WithLabelValues("sink:" + fx.name)))
}

func (fx *fixture) deadLettered(r *runner) int {
	return value((r.metrics.DeadLettered.WithLabelValues("sink:" + fx.name)))
}

// poll calls cond every 10ms until it returns "" or waitFor passes; then
// it fails the test with cond's last answer.
func (fx *fixture) poll(what string, cond func() string) {
	fx.t.Helper()
	deadline := time.Now().Add(waitFor)
	for {
		msg := cond()
		if msg == "" {
			return
		}
		if time.Now().After(deadline) {
			fx.t.Fatalf("%s: still not done after %s: %s", what, waitFor, msg)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// keys returns the Key of every event of evs.
func (fx *fixture) keys(evs []schema.Event) map[string]bool {
	out := make(map[string]bool, len(evs))
	for i := range evs {
		out[fx.key(&evs[i])] = true
	}
	return out
}

// missing describes which keys of want Written does not have yet.
func (fx *fixture) missing(want map[string]bool) string {
	got := fx.h.Written(fx.t)
	n := 0
	for k := range want {
		if got[k] == 0 {
			n++
		}
	}
	if n == 0 {
		return ""
	}
	return fmt.Sprintf("%d of %d events not written", n, len(want))
}

// settled waits until the sink's consumer has every ROUTED message of the
// sink delivered and acknowledged: nothing the runner does afterwards can
// write more.
func (fx *fixture) settled() {
	fx.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	fx.poll("sink consumer acks everything", func() string {
		if err := pipelinetest.Settled(ctx, fx.env.JS, fx.cfg.Streams.RoutedStream(fx.name), pipeline.SinkConsumerName(fx.name)); err != nil {
			return err.Error()
		}
		return ""
	})
}

// exactlyOnce checks that Written holds each key of want once and nothing
// else.
func (fx *fixture) exactlyOnce(want map[string]bool) {
	fx.t.Helper()
	got := fx.h.Written(fx.t)
	var bad []string
	for k, c := range got {
		switch {
		case !want[k]:
			bad = append(bad, fmt.Sprintf("%s written %d times but never published", k, c))
		case c != 1:
			bad = append(bad, fmt.Sprintf("%s written %d times", k, c))
		}
	}
	for k := range want {
		if got[k] == 0 {
			bad = append(bad, k+" never written")
		}
	}
	sort.Strings(bad)
	if len(bad) > 0 {
		fx.t.Errorf("%d of %d events not written exactly once:\n%s", len(bad), len(want), strings.Join(bad[:min(len(bad), 20)], "\n"))
	}
}

// noDeadLetters fails the test if the DLQ holds a dead letter of the sink.
func (fx *fixture) noDeadLetters() {
	fx.t.Helper()
	if dl := DeadLetters(fx.t, fx.env.JS, fx.cfg.Streams.DLQ, fx.name); len(dl) > 0 {
		fx.t.Errorf("%d dead letters, want none; the first: %s", len(dl), dl[0].Reason)
	}
}

func batchWrittenOnce(t *testing.T, f Factory) {
	fx := setup(t, f, 60, nil)
	r := fx.start(fx.h.Sink, fx.options(ackWait))
	fx.publish(fx.events)
	want := fx.keys(fx.events)
	fx.poll("write every event", func() string { return fx.missing(want) })
	fx.settled()
	fx.exactlyOnce(want)
	fx.noDeadLetters()
	if n := fx.written(r); n != len(fx.events) {
		t.Errorf("runner counted %d events written, want %d", n, len(fx.events))
	}
}

func cannotFail(h *Harness) string {
	if h.Fail == nil {
		return "the harness cannot make this destination fail for real"
	}
	return ""
}

func retryableRetried(t *testing.T, f Factory) {
	fx := setup(t, f, 60, cannotFail)
	fx.h.Fail(FailRetryable)
	r := fx.start(fx.h.Sink, fx.options(ackWait))
	fx.publish(fx.events)
	// Recover only once the runner has retried failed writes.
	fx.poll("runner retries failed writes", func() string {
		if n := fx.retried(r); n < 3 {
			return fmt.Sprintf("%d retries", n)
		}
		return ""
	})
	fx.h.Fail(FailNone)
	want := fx.keys(fx.events)
	fx.poll("write every event after recovery", func() string { return fx.missing(want) })
	fx.settled()
	fx.exactlyOnce(want)
	fx.noDeadLetters()
	t.Logf("%d retries before the destination recovered and every event was written once", fx.retried(r))
}

// retriesOutlastAckWait fails the destination for longer than AckWait.
// The runner keeps the failing batch in progress while it backs off; the
// events it has fetched behind that batch must not be redelivered by
// expiry and written twice either.
func retriesOutlastAckWait(t *testing.T, f Factory) {
	const ackWait = 3 * time.Second // longer than any one write of the harnesses
	fx := setup(t, f, 60, cannotFail)
	fx.h.Fail(FailRetryable)
	// Attempts spaced enough for a failure this long.
	opts := fx.options(ackWait)
	opts.Retry.Max = 250 * time.Millisecond
	r := fx.start(fx.h.Sink, opts)
	fx.publish(fx.events)
	failing := time.Now()
	fx.poll("runner retries failed writes for longer than AckWait", func() string {
		if n, d := fx.retried(r), time.Since(failing); n < 3 || d < ackWait+ackWait/2 {
			return fmt.Sprintf("%d retries in %s", n, d.Round(time.Millisecond))
		}
		return ""
	})
	fx.h.Fail(FailNone)
	want := fx.keys(fx.events)
	fx.poll("write every event after recovery", func() string { return fx.missing(want) })
	fx.settled()
	fx.exactlyOnce(want)
	fx.noDeadLetters()
}

func permanentDeadLettered(t *testing.T, f Factory) {
	fx := setup(t, f, 30, cannotFail)
	fx.h.Fail(FailPermanent)
	r := fx.start(fx.h.Sink, fx.options(ackWait))
	fx.publish(fx.events)
	fx.poll("dead-letter every event", func() string {
		if n := fx.deadLettered(r); n < len(fx.events) {
			return fmt.Sprintf("%d of %d dead-lettered", n, len(fx.events))
		}
		return ""
	})
	fx.settled()
	ids := map[string]int{}
	for _, d := range DeadLetters(t, fx.env.JS, fx.cfg.Streams.DLQ, fx.name) {
		ids[d.EventID]++
		if d.Reason == "" {
			t.Errorf("dead letter %d (%s) has no %s header", d.Seq, d.Subject, pipeline.HeaderReason)
		}
		if d.Stage != "sink."+fx.name {
			t.Errorf("dead letter %d: stage %q, want %q", d.Seq, d.Stage, "sink."+fx.name)
		}
		if !strings.HasPrefix(d.Subject, pipeline.DLQPrefix+"sink."+fx.name+".") || !strings.HasSuffix(d.Subject, "."+d.Type) {
			t.Errorf("dead letter %d of a %s event is on subject %s", d.Seq, d.Type, d.Subject)
		}
	}
	for _, ev := range fx.events {
		if ids[ev.ID] != 1 {
			t.Errorf("event %s is in the DLQ %d times, want once", ev.ID, ids[ev.ID])
		}
	}
	if len(ids) != len(fx.events) {
		t.Errorf("DLQ holds %d events, want %d", len(ids), len(fx.events))
	}
	if got := fx.h.Written(t); len(got) > 0 {
		t.Errorf("%d events written although the destination refused every write", len(got))
	}
}

// gate holds the first Write until released, then calls the sink's own
// Write. Later Writes pass straight through and are counted.
type gate struct {
	sink.Sink
	started  chan struct{}
	release  chan struct{}
	mu       sync.Mutex
	first    []schema.Event // the held batch
	returned bool           // the held Write returned
	after    int            // Writes that began after it returned
	calls    int
}

func (g *gate) Write(ctx context.Context, batch []*schema.Event) error {
	g.mu.Lock()
	g.calls++
	first := g.calls == 1
	if first {
		for _, ev := range batch {
			g.first = append(g.first, *ev)
		}
	} else if g.returned {
		g.after++
	}
	g.mu.Unlock()
	if first {
		close(g.started)
		<-g.release
		defer func() { g.mu.Lock(); g.returned = true; g.mu.Unlock() }()
	}
	return g.Sink.Write(ctx, batch)
}

func shutdownDrains(t *testing.T, f Factory) {
	fx := setup(t, f, 80, nil)
	g := &gate{Sink: fx.h.Sink, started: make(chan struct{}), release: make(chan struct{})}
	// A short AckWait: a message the stopped runner had fetched but neither
	// wrote nor released comes back within it.
	opts := fx.options(2 * time.Second)
	r1 := fx.start(g, opts)
	fx.publish(fx.events)
	select {
	case <-g.started:
	case <-time.After(waitFor):
		t.Fatal("the runner never wrote")
	}
	r1.cancel() // stop while the write is in flight
	close(g.release)
	fx.stop(r1)

	g.mu.Lock()
	held, after, calls := g.first, g.after, g.calls
	g.mu.Unlock()
	got := fx.h.Written(t)
	for i := range held {
		if got[fx.key(&held[i])] != 1 {
			t.Errorf("event %s of the batch in flight at shutdown written %d times, want 1", held[i].ID, got[fx.key(&held[i])])
		}
	}
	if after > 0 {
		t.Errorf("the runner began %d more writes after the batch in flight finished, although its context had ended "+
			"(SinkRunner.Run must start no batch once ctx is done and release what it fetched)", after)
	}
	t.Logf("stopped runner wrote %d events (%d write calls); %d left for the next runner", fx.written(r1), calls, len(fx.events)-len(held))

	fx.start(fx.h.Sink, opts)
	want := fx.keys(fx.events)
	fx.poll("the next runner writes the rest", func() string { return fx.missing(want) })
	fx.settled()
	fx.exactlyOnce(want)
	fx.noDeadLetters()
}

func replayIdempotent(t *testing.T, f Factory) {
	fx := setup(t, f, 60, func(h *Harness) string {
		if h.Replay == nil {
			return "the sink does not promise idempotent redelivery"
		}
		return ""
	})
	opts := fx.options(ackWait)
	r1 := fx.start(fx.h.Sink, opts)
	fx.publish(fx.events)
	want := fx.keys(fx.events)
	fx.poll("write every event", func() string { return fx.missing(want) })
	fx.settled()
	fx.stop(r1)
	fx.exactlyOnce(want)

	replay := fx.h.Replay(t)
	t.Cleanup(func() { replay.Close(context.Background()) })
	// Delete the durable consumer: the next runner creates it again and
	// JetStream delivers the sink's whole history once more.
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := fx.env.JS.DeleteConsumer(ctx, fx.cfg.Streams.RoutedStream(fx.name), pipeline.SinkConsumerName(fx.name)); err != nil {
		t.Fatalf("delete the sink's consumer: %v", err)
	}
	r2 := fx.start(replay, opts)
	fx.poll("replay every event through the sink", func() string {
		if n := fx.written(r2); n < len(fx.events) {
			return fmt.Sprintf("%d of %d replayed", n, len(fx.events))
		}
		return ""
	})
	fx.settled()
	fx.exactlyOnce(want)
	fx.noDeadLetters()
}

// DeadLetter is a dead letter as the suite checks it.
type DeadLetter struct {
	Seq     uint64
	Subject string
	Stage   string
	Reason  string
	// EventID and Type are decoded from the payload ("" when it is not an
	// event).
	EventID, Type string
}

// DeadLetters returns the dead letters of the sink named sink in the DLQ
// stream, in stream order. It reads the stream message by message
// (JetStream's "next message for subject"), so it changes nothing.
func DeadLetters(t testing.TB, js jetstream.JetStream, stream, sink string) []DeadLetter {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatalf("dead letters: stream %s: %v", stream, err)
	}
	var out []DeadLetter
	filter := pipeline.DLQPrefix + "sink." + sink + ".>"
	for seq := uint64(1); ; {
		m, err := s.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(filter))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return out
		}
		if err != nil {
			t.Fatalf("dead letters: read %s from %d: %v", filter, seq, err)
		}
		d := DeadLetter{Seq: m.Sequence, Subject: m.Subject, Stage: m.Header.Get(pipeline.HeaderStage), Reason: m.Header.Get(pipeline.HeaderReason)}
		if id, typ, _, err := schema.Peek(m.Data); err == nil {
			d.EventID, d.Type = strings.Clone(id), strings.Clone(typ)
		}
		out = append(out, d)
		seq = m.Sequence + 1
	}
}
