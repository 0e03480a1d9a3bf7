package replay_test

import (
	"context"
	"net/netip"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailtel/mailtel/catalog"
	"github.com/mailtel/mailtel/pipeline/replay"
	"github.com/mailtel/mailtel/schema"
)

// TestTailOverlappingSubjects follows two overlapping filters (which the
// server would refuse together) with a level threshold: it shows each
// matching event once, in stream order, and nothing else.
func TestTailOverlappingSubjects(t *testing.T) {
	env, cfg := start(t)
	since := time.Now()
	out := &testSink{}
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
		err := replay.Tail(context.Background(), env.JS, replay.TailOptions{Streams: cfg.Streams, Subjects: subjects, Out: &testSink{}})
		if err == nil {
			t.Errorf("Tail(%q) succeeded", subjects)
		}
	}
}

func TestWhere(t *testing.T) {
	ev := &schema.Event{ID: "e1", Type: "auth.failed", Level: catalog.LevelInfo, Host: "mx1", Server: "stalwart",
		Time: time.Date(2026, 11, 21, 6, 0, 0, 0, time.UTC),
		Fields: []schema.Field{
			{Key: "remoteIp", Value: schema.IP(netip.MustParseAddr("203.0.113.7"))},
			{Key: "accountName", Value: schema.String("alice@example.com")},
			{Key: "elapsed", Value: schema.Duration(1500 * time.Millisecond)},
			{Key: "size", Value: schema.Uint(2048)},
			{Key: "ratio", Value: schema.Float(0.5)},
			{Key: "tls", Value: schema.Bool(true)},
			{Key: "to", Value: schema.List(schema.String("a@x.org"), schema.String("b@y.org"))},
			{Key: "path", Value: schema.String("/var/mail/a.b")},
		}}
	tests := []struct {
		cond string
		want bool
	}{
		{"remoteIp=203.0.113.7", true},
		{"remoteIp=203.0.113.*", true},
		{"remoteIp=203.0.113.70", false},
		{"remoteIp!=203.0.113.7", false},
		{"accountName=alice@example.com", true},
		{"accountName=*@example.com", true},
		{"accountName=*@example.org", false},
		{"accountName=?lice@*", true},
		{"elapsed=1500", true},
		{"size=2048", true},
		{"ratio=0.5", true},
		{"tls=true", true},
		{"to=b@y.org", true},
		{"to=c@*", false},
		{"path=/var/*", true},
		{"type=auth.*", true},
		{"type!=auth.*", false},
		{"level=info", true},
		{"host=mx1", true},
		{"source=stalwart", true},
		{"server=dovecot", false},
		{"id=e1", true},
		{"time=2026-11-21T06:00:00*", true},
		{"queueName=*", false},
		{"queueName!=x", true},
		{"accountName=", false},
		{"note==", false},
	}
	for _, tt := range tests {
		t.Run(tt.cond, func(t *testing.T) {
			w, err := replay.ParseWhere(tt.cond)
			if err != nil {
				t.Fatal(err)
			}
			if got := w.Match(ev); got != tt.want {
				t.Errorf("Match = %v, want %v", got, tt.want)
			}
			if w.String() != tt.cond {
				t.Errorf("String() = %q, want %q", w.String(), tt.cond)
			}
		})
	}
	for _, bad := range []string{"remoteIp", "", "=x", "!=x"} {
		if _, err := replay.ParseWhere(bad); err == nil {
			t.Errorf("ParseWhere(%q) succeeded", bad)
		}
	}
}

// TestTailUntil ends by itself at the end of the range, with counts, even
// while new events arrive.
func TestTailUntil(t *testing.T) {
	env, cfg := start(t)
	since := time.Now().Add(-time.Minute)
	evs := events("u", 50)
	publish(t, env.JS, cfg, evs)
	until := time.Now()
	publish(t, env.JS, cfg, events("later", 10))
	w, err := replay.ParseWhere("type=auth.*")
	if err != nil {
		t.Fatal(err)
	}
	out := &testSink{}
	var counts replay.TailCounts
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := replay.Tail(ctx, env.JS, replay.TailOptions{Streams: cfg.Streams, Subjects: []string{"events.>"}, Since: since, Until: until,
		Where: []replay.Where{w}, Out: out, Counts: &counts}); err != nil {
		t.Fatal(err)
	}
	if ctx.Err() != nil {
		t.Fatal("Tail with Until did not end by itself")
	}
	if want := (replay.TailCounts{Read: 50, Shown: 20, Filtered: 30}); counts != want || len(out.written) != 20 {
		t.Errorf("counts %+v, %d written; want %+v", counts, len(out.written), want)
	}
}
