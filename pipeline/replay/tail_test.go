package replay_test

import (
	"context"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailtel/mailtel/catalog"
	"github.com/mailtel/mailtel/pipeline/replay"
)

// TestTailOverlappingSubjects follows two overlapping filters (which the
// server would refuse together) with a level threshold: it shows each
// matching event once, in stream order, and nothing else.
func TestTailOverlappingSubjects(t *testing.T) {
	env, cfg := start(t)
	since := time.Now()
	out := &sink{}
	var malformed atomic.Int32
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- replay.Tail(ctx, env.JS, replay.TailOptions{Streams: cfg.Streams, Subjects: []string{"events.auth.>", "events.*.error"},
			Since: since, ByLevel: true, MinLevel: catalog.LevelInfo, Out: out,
			Malformed: func(replay.Message, error) { malformed.Add(1) }})
	}()
	evs := events("t", 100) // auth.success (info), auth.failed (debug), smtp.connection-start, delivery.delivered, acme.error (error)
	publish(t, env.JS, cfg, evs)
	if _, err := env.JS.Publish(ctx, "events.auth.success", []byte("garbage")); err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, ev := range evs {
		if ev.Type == "auth.success" || ev.Type == "acme.error" {
			want = append(want, ev.ID)
		}
	}
	waitFor(t, 10*time.Second, func() bool {
		out.mu.Lock()
		defer out.mu.Unlock()
		return len(out.written) >= len(want) && malformed.Load() == 1
	})
	time.Sleep(200 * time.Millisecond) // anything extra shows up now
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Tail returned %v after cancel, want nil", err)
	}
	got := out.written
	if strings.Join(got, ",") != strings.Join(want, ",") {
		sort.Strings(got)
		t.Errorf("tail showed %d events, want the %d auth.success and acme.error ones in order", len(got), len(want))
	}
}

func TestTailBadSubjects(t *testing.T) {
	env, cfg := start(t)
	for _, subjects := range [][]string{{"events.auth.>", "routed.siem.>"}, {"events..x"}, {"mail.>"}} {
		err := replay.Tail(context.Background(), env.JS, replay.TailOptions{Streams: cfg.Streams, Subjects: subjects, Out: &sink{}})
		if err == nil {
			t.Errorf("Tail(%q) succeeded", subjects)
		}
	}
}
