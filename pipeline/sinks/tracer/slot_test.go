package tracer

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mailtel/mailtel/pipeline/sink"
	"github.com/rs/zerolog"
)

// TestInstanceSlots: sinks started without an instance name take the first
// free instance slot, "" (the file without an instance name), "2", "3",
// and say which; a slot freed by Close is taken again by the next; each
// writes its own file, and each finds, through Written, what the others
// wrote (a redelivery across slots is not written twice).
func TestInstanceSlots(t *testing.T) {
	for _, format := range []string{"json", "text"} {
		t.Run(format, func(t *testing.T) {
			dir := t.TempDir()
			cfg := logCfg(dir, format, "daily")
			now := func() time.Time { return t0 }
			since := time.Now()
			var sinks []*Sink
			for i, want := range []string{"", "2", "3"} {
				var log bytes.Buffer
				s := newSink(t, cfg, Options{AnySlot: true, Now: now, Log: zerolog.New(&log)})
				if got := s.Instance(); got != want {
					t.Fatalf("sink %d took slot %q, want %q", i+1, got, want)
				}
				if out := log.String(); !strings.Contains(out, `took instance slot \"`+want+`\"`) || !strings.Contains(out, `"instance":"`+want+`"`) || strings.Contains(out, "waiting") {
					t.Errorf("sink %d log:\n%s", i+1, out)
				}
				sinks = append(sinks, s)
			}
			write(t, sinks[0], evs("a"))
			write(t, sinks[1], evs("b1", "b2"))
			write(t, sinks[2], evs("c"))
			for name, want := range map[string][]string{"mail.2025-11-27": {"a"}, "mail.2.2025-11-27": {"b1", "b2"}, "mail.3.2025-11-27": {"c"}} {
				if got := ids(t, filepath.Join(dir, name)); !slices.Equal(got, want) {
					t.Errorf("%s holds %v, want %v", name, got, want)
				}
			}
			ask := []string{"a", "b1", "b2", "c", "none"}
			for _, s := range sinks {
				checkWritten(t, writtenOf(t, s, ask, since), []string{"a", "b1", "b2", "c"}, []string{"none"})
			}

			closeSink(t, sinks[1])
			again := newSink(t, cfg, Options{AnySlot: true, Now: now})
			if got := again.Instance(); got != "2" {
				t.Errorf("after slot 2 was closed, a sink took slot %q", got)
			}
			closeSink(t, sinks[0])
			first := newSink(t, cfg, Options{AnySlot: true, Now: now})
			if got := first.Instance(); got != "" {
				t.Errorf("after slot \"\" was closed, a sink took slot %q", got)
			}
			// A redelivered event a closed instance wrote is found.
			checkWritten(t, writtenOf(t, first, ask, since), []string{"a", "b1", "b2", "c"}, []string{"none"})
			write(t, first, evs("a", "d"))
			if got := ids(t, filepath.Join(dir, "mail.2025-11-27")); !slices.Equal(got, []string{"a", "d"}) {
				t.Errorf("slot \"\" file holds %v after a rewrite of a", got)
			}
		})
	}
}

// TestInstanceSlotsSkipHeldFiles: a slot whose file (current or previous
// period's) another process holds the lock on is not free, though its
// instance lock is (a predecessor of an older version, say); a sink
// without AnySlot or pinned to an instance takes no slot, and a replay's
// instance is not one.
func TestInstanceSlotsSkipHeldFiles(t *testing.T) {
	dir := t.TempDir()
	cfg := logCfg(dir, "json", "daily")
	now := func() time.Time { return t0 }
	holdLock(t, filepath.Join(dir, "mail.2025-11-27"))
	holdLock(t, filepath.Join(dir, "mail.2.2025-11-26")) // the previous period's
	s := newSink(t, cfg, Options{AnySlot: true, Now: now})
	if got := s.Instance(); got != "3" {
		t.Fatalf("took slot %q, want \"3\"", got)
	}
	write(t, s, evs("x"))
	if got := ids(t, filepath.Join(dir, "mail.3.2025-11-27")); !slices.Equal(got, []string{"x"}) {
		t.Errorf("slot 3 file holds %v", got)
	}
	replay := newSink(t, cfg, Options{Instance: "replay", AnySlot: true, Now: now})
	if got := replay.Instance(); got != "replay" {
		t.Errorf("replay sink writes instance %q", got)
	}
	write(t, replay, evs("r"))
	if got := ids(t, filepath.Join(dir, "mail.replay.2025-11-27")); !slices.Equal(got, []string{"r"}) {
		t.Errorf("replay file holds %v", got)
	}
}

// TestInstanceSlotHeldAcrossPeriods: a sink keeps its slot while it has
// not opened the file of a new period (no write for two periods), so a
// sink started then takes another slot rather than the file the first
// will open.
func TestInstanceSlotHeldAcrossPeriods(t *testing.T) {
	dir := t.TempDir()
	cfg := logCfg(dir, "json", "hourly")
	clk := &clock{t: t0}
	a := newSink(t, cfg, Options{AnySlot: true, Now: clk.now})
	write(t, a, evs("a1"))
	clk.set(t0.Add(2 * time.Hour)) // neither this period's file nor the previous one exists
	b := newSink(t, cfg, Options{AnySlot: true, Now: clk.now})
	if got := b.Instance(); got != "2" {
		t.Fatalf("second sink took slot %q, want \"2\"", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.Write(ctx, evs("a2")); err != nil {
		t.Fatalf("first sink after two periods: %v", err)
	}
	write(t, b, evs("b1"))
	if got := ids(t, filepath.Join(dir, "mail.2025-11-27T16")); !slices.Equal(got, []string{"a2"}) {
		t.Errorf("slot \"\" file of the new period holds %v", got)
	}
	if got := ids(t, filepath.Join(dir, "mail.2.2025-11-27T16")); !slices.Equal(got, []string{"b1"}) {
		t.Errorf("slot 2 file of the new period holds %v", got)
	}
}

// TestPinnedInstanceWaits: a sink pinned to an instance whose lock another
// sink holds (a predecessor still exiting, here one that took it as a
// free slot) does not take another: New succeeds, Write waits for the
// lock, with a retryable error when its context ends first, and writes to
// the instance's file once the holder is closed.
func TestPinnedInstanceWaits(t *testing.T) {
	for _, format := range []string{"json", "text"} {
		t.Run(format, func(t *testing.T) {
			dir := t.TempDir()
			cfg := logCfg(dir, format, "daily")
			now := func() time.Time { return t0 }
			newSink(t, cfg, Options{AnySlot: true, Now: now})
			holder := newSink(t, cfg, Options{AnySlot: true, Now: now})
			if holder.Instance() != "2" {
				t.Fatalf("holder took slot %q", holder.Instance())
			}
			write(t, holder, evs("h"))

			var log bytes.Buffer
			pinned := newSink(t, cfg, Options{Instance: "2", AnySlot: true, Now: now, Log: zerolog.New(&log)})
			if pinned.Instance() != "2" || pinned.file != nil {
				t.Fatalf("pinned sink: instance %q, file open %v", pinned.Instance(), pinned.file != nil)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			err := pinned.Write(ctx, evs("p"))
			cancel()
			if !errors.Is(err, ErrLocked) || !errors.Is(err, context.DeadlineExceeded) || sink.IsPermanent(err) {
				t.Fatalf("write while the instance is held: %v, want a retryable ErrLocked after the deadline", err)
			}
			if !strings.Contains(err.Error(), "mail.2.2025-11-27") || !strings.Contains(err.Error(), "--instance") {
				t.Errorf("error does not name the file and the fix: %v", err)
			}

			release := time.AfterFunc(300*time.Millisecond, func() { holder.Close(context.Background()) })
			defer release.Stop()
			ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := pinned.Write(ctx, evs("h", "p")); err != nil {
				t.Fatalf("write once the holder closed: %v", err)
			}
			closeSink(t, pinned)
			if got := ids(t, filepath.Join(dir, "mail.2.2025-11-27")); !slices.Equal(got, []string{"h", "p"}) {
				t.Errorf("instance 2 file holds %v", got)
			}
			out := log.String()
			if n := strings.Count(out, "waiting for it to release the lock"); n != 1 {
				t.Errorf("logged the wait %d times, want once:\n%s", n, out)
			}
			if !strings.Contains(out, "got the lock") {
				t.Errorf("no line says the wait ended:\n%s", out)
			}
		})
	}
}
