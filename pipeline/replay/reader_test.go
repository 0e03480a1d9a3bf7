package replay_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mailtel/mailtel/pipeline"
	"github.com/mailtel/mailtel/pipeline/config"
	"github.com/mailtel/mailtel/pipeline/pipelinetest"
	"github.com/mailtel/mailtel/pipeline/replay"
	"github.com/mailtel/mailtel/schema"
)

var types = []string{"auth.success", "auth.failed", "smtp.connection-start", "delivery.delivered", "acme.error"}

// events returns n events with ids <prefix>-<i>, of the types in turn.
func events(prefix string, n int) []schema.Event {
	evs := make([]schema.Event, n)
	for i := range evs {
		evs[i] = schema.Event{ID: fmt.Sprintf("%s-%05d", prefix, i), Type: types[i%len(types)], Host: "mx1", Server: "stalwart",
			Time:   time.Date(2026, 11, 21, 6, 0, 0, i, time.UTC),
			Fields: []schema.Field{{Key: "accountId", Value: schema.Uint(uint64(i))}}}
	}
	return evs
}

// publish stores evs in EVENTS and returns their stream sequences.
func publish(t *testing.T, js jetstream.JetStream, cfg *config.Config, evs []schema.Event) []uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	pub := pipeline.NewPublisher(js, cfg.Levels, 512, nil)
	defer pub.Close(ctx)
	acks, err := pub.PublishAll(ctx, evs)
	if err != nil {
		t.Fatal(err)
	}
	seqs := make([]uint64, len(acks))
	for i, a := range acks {
		if a.Err != nil || a.Duplicate {
			t.Fatalf("publish %s: %+v", evs[i].ID, a)
		}
		seqs[i] = a.Seq
	}
	return seqs
}

func start(t *testing.T) (*pipelinetest.Env, *config.Config) {
	t.Helper()
	env := pipelinetest.Start(t)
	cfg := config.Default()
	env.EnsureStreams(t, cfg)
	return env, cfg
}

// readAll reads r to its end.
func readAll(t *testing.T, r *replay.Reader) []replay.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	var out []replay.Message
	for {
		m, err := r.Next(ctx)
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("after %d messages: %v", len(out), err)
		}
		out = append(out, m)
	}
}

func ids(t *testing.T, msgs []replay.Message) []string {
	t.Helper()
	out := make([]string, len(msgs))
	for i, m := range msgs {
		var ev schema.Event
		if err := schema.Unmarshal(m.Data, &ev); err != nil {
			t.Fatalf("message %d: %v", m.Seq, err)
		}
		out[i] = ev.ID
	}
	return out
}

func idsOf(evs []schema.Event) []string {
	out := make([]string, len(evs))
	for i := range evs {
		out[i] = evs[i].ID
	}
	return out
}

// TestReadTimeRange stores two batches a second apart and reads the time
// range of the first: exactly its events, in stream order, and Total
// counted them before the read.
func TestReadTimeRange(t *testing.T) {
	env, cfg := start(t)
	ctx := context.Background()
	t0 := time.Now()
	first := events("a", 300)
	seqs := publish(t, env.JS, cfg, first)
	t1 := time.Now()
	time.Sleep(1100 * time.Millisecond)
	publish(t, env.JS, cfg, events("b", 200))

	r, err := replay.Open(ctx, env.JS, replay.ReadOptions{Stream: cfg.Streams.Events, Subjects: []string{"events.>"},
		Range: replay.Range{Since: t0, Until: t1}, Buffer: 64})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if r.Total() != 300 {
		t.Errorf("Total = %d, want 300", r.Total())
	}
	got := readAll(t, r)
	if fmt.Sprint(ids(t, got)) != fmt.Sprint(idsOf(first)) {
		t.Fatalf("read %d events %v..., want the 300 of the first batch in order", len(got), ids(t, got)[:min(5, len(got))])
	}
	for i, m := range got {
		if m.Seq != seqs[i] {
			t.Fatalf("message %d has sequence %d, want %d (stream order)", i, m.Seq, seqs[i])
		}
		if m.Time.Before(t0) || m.Time.After(t1) {
			t.Errorf("message %d stored at %v, outside [%v, %v]", m.Seq, m.Time, t0, t1)
		}
	}
	if _, err := r.Next(ctx); !errors.Is(err, io.EOF) {
		t.Errorf("Next after the end = %v, want io.EOF", err)
	}

	// The second batch alone: from t1 on, to the end at open.
	r2, err := replay.Open(ctx, env.JS, replay.ReadOptions{Stream: cfg.Streams.Events, Subjects: []string{"events.auth.>"}, Range: replay.Range{Since: t1}})
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	got = readAll(t, r2)
	if len(got) != 80 || r2.Total() != 80 { // auth.success and auth.failed: 2 of every 5
		t.Errorf("second batch, auth only: read %d, Total %d, want 80", len(got), r2.Total())
	}
	for _, m := range got {
		if m.Subject != "events.auth.success" && m.Subject != "events.auth.failed" {
			t.Errorf("filter events.auth.> delivered %s", m.Subject)
		}
	}
}

func TestReadSequenceRange(t *testing.T) {
	env, cfg := start(t)
	ctx := context.Background()
	publish(t, env.JS, cfg, events("s", 100))
	tests := []struct {
		name      string
		rng       replay.Range
		from, to  uint64 // expected sequences; 0, 0 for none
		wantTotal uint64
	}{
		{"middle", replay.Range{FromSeq: 10, ToSeq: 20}, 10, 20, 11},
		{"to the end", replay.Range{FromSeq: 95}, 95, 100, 6},
		{"past the end", replay.Range{FromSeq: 101}, 0, 0, 0},
		{"to-seq beyond the end", replay.Range{FromSeq: 99, ToSeq: 1000}, 99, 100, 2},
		{"since in the future", replay.Range{Since: time.Now().Add(time.Hour)}, 0, 0, 0},
		{"whole stream", replay.Range{}, 1, 100, 100},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := replay.Open(ctx, env.JS, replay.ReadOptions{Stream: cfg.Streams.Events, Subjects: []string{"events.>"}, Range: tt.rng})
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			got := readAll(t, r)
			if tt.from == 0 {
				if len(got) != 0 {
					t.Fatalf("read %d messages, want none", len(got))
				}
				return
			}
			if uint64(len(got)) != tt.to-tt.from+1 || got[0].Seq != tt.from || got[len(got)-1].Seq != tt.to {
				t.Fatalf("read %d messages, sequences %d..%d, want %d..%d", len(got), got[0].Seq, got[len(got)-1].Seq, tt.from, tt.to)
			}
			if r.Total() != tt.wantTotal {
				t.Errorf("Total = %d, want %d", r.Total(), tt.wantTotal)
			}
		})
	}
	if _, err := replay.Open(ctx, env.JS, replay.ReadOptions{Stream: "NOPE", Subjects: []string{"events.>"}}); err == nil {
		t.Error("Open of a missing stream succeeded")
	}
	// Closed readers leave no consumer behind.
	st, err := env.JS.Stream(ctx, cfg.Streams.Events)
	if err != nil {
		t.Fatal(err)
	}
	if n := st.CachedInfo().State.Consumers; n != 0 {
		t.Errorf("%d consumers left on the stream after the readers closed", n)
	}
}

// TestReadEndsWhileEventsArrive: a bounded read with no end given stops at
// the last message stored when it opened, although new ones keep coming.
func TestReadEndsWhileEventsArrive(t *testing.T) {
	env, cfg := start(t)
	publish(t, env.JS, cfg, events("old", 500))
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // keep publishing new events until the read is done
		defer wg.Done()
		pub := pipeline.NewPublisher(env.JS, cfg.Levels, 64, nil)
		defer pub.Close(context.Background())
		for i := 0; ctx.Err() == nil && i < 100000; i++ {
			ev := events("new", 1)[0]
			ev.ID = fmt.Sprintf("new-%d", i)
			if err := pub.Publish(ctx, &ev, func(pipeline.Ack) {}); err != nil {
				return
			}
			if i%50 == 0 {
				time.Sleep(5 * time.Millisecond)
			}
		}
	}()
	r, err := replay.Open(ctx, env.JS, replay.ReadOptions{Stream: cfg.Streams.Events, Subjects: []string{"events.>"}, Range: replay.Range{FromSeq: 1}, Buffer: 50})
	if err != nil {
		t.Fatal(err)
	}
	got := readAll(t, r)
	r.Close()
	waitFor(t, 10*time.Second, func() bool { // the stream did grow past the end during the test
		info, err := env.JS.Stream(context.Background(), cfg.Streams.Events)
		return err == nil && info.CachedInfo().State.LastSeq > r.End()+100
	})
	cancel()
	wg.Wait()
	if r.End() < 500 || uint64(len(got)) != r.End() || got[len(got)-1].Seq != r.End() {
		t.Fatalf("read %d messages, end %d: want every message up to the end fixed at open (>= 500)", len(got), r.End())
	}
	t.Logf("the end was fixed at sequence %d while events kept arriving", r.End())
}

// TestReadEndDeleted: when the last message of the range is deleted during
// the read, the read still ends.
func TestReadEndDeleted(t *testing.T) {
	env, cfg := start(t)
	ctx := context.Background()
	seqs := publish(t, env.JS, cfg, events("d", 20))
	r, err := replay.Open(ctx, env.JS, replay.ReadOptions{Stream: cfg.Streams.Events, Subjects: []string{"events.>"}, Range: replay.Range{FromSeq: 1}, Buffer: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	st, err := env.JS.Stream(ctx, cfg.Streams.Events)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range seqs[15:] {
		if err := st.DeleteMsg(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	got := readAll(t, r)
	if len(got) < 15 || len(got) > 20 {
		t.Errorf("read %d messages, want the 15 left (and those fetched before the delete)", len(got))
	}
}

func waitFor(t *testing.T, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v", d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
