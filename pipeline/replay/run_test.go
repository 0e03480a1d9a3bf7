package replay_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailtel/mailtel/pipeline/delivery"
	"github.com/mailtel/mailtel/pipeline/sink"

	"github.com/mailtel/mailtel/pipeline/replay"
	"github.com/mailtel/mailtel/pipeline/sinks/tracer"
	"github.com/mailtel/mailtel/schema"
)

// sink records what it wrote; fail decides the outcome of each attempt.
type testSink struct {
	mu       sync.Mutex
	attempts int
	written  []string
	fail     func(attempt int, batch []*schema.Event) error
}

func (s *testSink) Write(_ context.Context, batch []*schema.Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.attempts++
	var err error
	if s.fail != nil {
		err = s.fail(s.attempts, batch)
	}
	if err != nil && !sink.IsPermanent(err) {
		return err
	}
	rejected := map[string]bool{}
	for _, id := range sink.FailedEventIDs(err) {
		rejected[id] = true
	}
	for _, ev := range batch {
		if err == nil || (len(rejected) > 0 && !rejected[ev.ID]) {
			s.written = append(s.written, ev.ID)
		}
	}
	return err
}

func (s *testSink) Close(context.Context) error { return nil }

// rejectedError names the events a receiver refused.
type rejectedError struct{ ids []string }

func (e *rejectedError) Error() string      { return "rejected " + strings.Join(e.ids, ",") }
func (e *rejectedError) EventIDs() []string { return e.ids }

func fast() replay.Options {
	return replay.Options{Batch: 25, FlushEvery: 10 * time.Second} // batches of exactly 25
}

// quick is a retry policy whose backoffs take milliseconds.
var quick = delivery.Policy{Base: time.Millisecond, Max: 5 * time.Millisecond}

func TestRunCountsRetriesAndFailures(t *testing.T) {
	env, cfg := start(t)
	ctx := context.Background()
	evs := events("r", 100)
	publish(t, env.JS, cfg, evs[:50])
	// Two messages that are not good events: garbage, and an event whose
	// type is not its subject's.
	if _, err := env.JS.Publish(ctx, "events.auth.success", []byte("\xc1 not msgpack")); err != nil {
		t.Fatal(err)
	}
	wrong := evs[0]
	wrong.ID, wrong.Type = "wrong", "auth.failed"
	data, _ := schema.Marshal(&wrong)
	if _, err := env.JS.Publish(ctx, "events.auth.success", data); err != nil {
		t.Fatal(err)
	}
	publish(t, env.JS, cfg, evs[50:])

	flaky := &testSink{fail: func(attempt int, _ []*schema.Event) error {
		if attempt <= 2 {
			return errors.New("receiver unavailable")
		}
		return nil
	}}
	picky := &testSink{fail: func(_ int, batch []*schema.Event) error {
		var ids []string
		for _, ev := range batch {
			if strings.HasSuffix(ev.ID, "7") {
				ids = append(ids, ev.ID)
			}
		}
		if len(ids) == 0 {
			return nil
		}
		return sink.Permanent(&rejectedError{ids})
	}}
	dir := t.TempDir()
	logSink := func() *tracer.Sink {
		s, err := tracer.New("log", &tracer.Config{Type: "log", Path: dir, Format: "json"}, tracer.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	log := logSink()
	outs := []replay.Output{{Name: "flaky", Sink: flaky, Retry: quick}, {Name: "picky", Sink: picky, Retry: quick}, {Name: "log", Sink: log, Retry: quick}}
	var failed []string
	var malformed []string
	o := fast()
	o.Failed = func(out string, ids []string, err error) { failed = append(failed, ids...) }
	o.Malformed = func(m replay.Message, err error) { malformed = append(malformed, err.Error()) }
	var progress []replay.Progress
	o.Progress = func(p replay.Progress) { progress = append(progress, p) }

	r, err := replay.Open(ctx, env.JS, replay.ReadOptions{Stream: cfg.Streams.Events, Subjects: []string{"events.>"}, Range: replay.Range{FromSeq: 1}})
	if err != nil {
		t.Fatal(err)
	}
	c, err := replay.Run(ctx, r, outs, replay.Every(len(outs)), o)
	r.Close()
	if err != nil {
		t.Fatal(err)
	}
	if c.Read != 102 || c.Malformed != 2 || c.Resume != 0 || len(malformed) != 2 {
		t.Errorf("counts %+v, malformed %q", c, malformed)
	}
	want := []replay.OutputCounts{
		{Name: "flaky", Selected: 100, Written: 100},
		{Name: "picky", Selected: 100, Written: 90, Failed: 10},
		{Name: "log", Selected: 100, Written: 100},
	}
	for i, w := range want {
		if c.Outputs[i] != w {
			t.Errorf("output %d: %+v, want %+v", i, c.Outputs[i], w)
		}
	}
	if strings.Join(flaky.written, ",") != strings.Join(idsOf(evs), ",") {
		t.Errorf("flaky sink wrote %d events, not the 100 once each in order", len(flaky.written))
	}
	if len(failed) != 10 || len(picky.written) != 90 {
		t.Errorf("picky: failed %v, wrote %d", failed, len(picky.written))
	}
	if p := progress[len(progress)-1]; !p.Final || p.Done != 102 || p.Total != 102 || p.Written != 290 || p.Skipped != 2 || p.Failed != 10 {
		t.Errorf("final progress %+v", p)
	}

	// The log sink is idempotent by event id: replaying again into it
	// skips everything, and says so.
	if err := log.Close(ctx); err != nil {
		t.Fatal(err)
	}
	log = logSink()
	defer log.Close(ctx)
	r, err = replay.Open(ctx, env.JS, replay.ReadOptions{Stream: cfg.Streams.Events, Subjects: []string{"events.>"}, Range: replay.Range{FromSeq: 1}})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	c, err = replay.Run(ctx, r, []replay.Output{{Name: "log", Sink: log, Retry: quick}}, replay.Every(1), fast())
	if err != nil {
		t.Fatal(err)
	}
	if w, s, f := c.Totals(); w != 0 || s != 102 || f != 0 || c.Outputs[0].Skipped != 100 {
		t.Errorf("second replay: written %d skipped %d failed %d (%+v)", w, s, f, c.Outputs[0])
	}
}

// TestRunStopsWhenSinkIsDown: a sink that keeps failing with a retryable
// error stops the replay once it has failed for discard-after, telling
// where to resume.
func TestRunStopsWhenSinkIsDown(t *testing.T) {
	env, cfg := start(t)
	ctx := context.Background()
	seqs := publish(t, env.JS, cfg, events("down", 100))
	down := &testSink{fail: func(attempt int, _ []*schema.Event) error {
		if attempt <= 2 {
			return nil // the first two batches are written
		}
		return errors.New("connection refused")
	}}
	r, err := replay.Open(ctx, env.JS, replay.ReadOptions{Stream: cfg.Streams.Events, Subjects: []string{"events.>"}, Range: replay.Range{FromSeq: 1}})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	p := quick
	p.DiscardAfter = 100 * time.Millisecond
	var retries int
	o := fast()
	o.Retrying = func(string, delivery.Failure) { retries++ }
	c, err := replay.Run(ctx, r, []replay.Output{{Name: "down", Sink: down, Retry: p}}, replay.Every(1), o)
	if err == nil || !strings.Contains(err.Error(), "gave up after failing for") || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("err = %v", err)
	}
	if c.Outputs[0].Written != 50 || c.Outputs[0].Failed != 0 || c.Resume != seqs[50] || down.attempts < 4 || retries != down.attempts-3 {
		t.Errorf("written %d, failed %d, resume %d (want %d), attempts %d, retries %d", c.Outputs[0].Written, c.Outputs[0].Failed, c.Resume, seqs[50], down.attempts, retries)
	}
}

// TestRunCanceled: ending the context stops the replay with the point to
// resume from.
func TestRunCanceled(t *testing.T) {
	env, cfg := start(t)
	publish(t, env.JS, cfg, events("c", 100))
	ctx, cancel := context.WithCancel(context.Background())
	slow := &testSink{fail: func(attempt int, _ []*schema.Event) error {
		if attempt == 2 {
			cancel()
			return context.Canceled
		}
		return nil
	}}
	r, err := replay.Open(ctx, env.JS, replay.ReadOptions{Stream: cfg.Streams.Events, Subjects: []string{"events.>"}, Range: replay.Range{FromSeq: 1}})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	c, err := replay.Run(ctx, r, []replay.Output{{Name: "slow", Sink: slow, Retry: quick}}, replay.Every(1), fast())
	if !errors.Is(err, context.Canceled) || c.Resume != 26 || c.Outputs[0].Written != 25 {
		t.Errorf("err %v, resume %d, written %d", err, c.Resume, c.Outputs[0].Written)
	}
}
