package main

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/mailtel/mailtel/pipeline"
	"github.com/mailtel/mailtel/pipeline/synth"
	"github.com/mailtel/mailtel/schema"
)

// Scenarios of the sustained maximum that a soak runs at half of.
const (
	scSustained       = "sustained"
	scSustainedServer = "sustained-server"
)

// sustainedOf returns the sustained-maximum scenario of soak scenario sc.
func sustainedOf(soak string) string {
	if serverScenario(soak) {
		return scSustainedServer
	}
	return scSustained
}

// sustainedBacklog is how many events the sustained phase lets be
// published and not yet written: a second's worth at the rates this
// machine reaches, enough to keep every stage busy and few enough that the
// phase measures what comes out, not what the stream buffers.
const sustainedBacklog = 20000

// The two parts of the sustained phase, which tests shorten: the fill (0:
// the stage's longest duplicate window) and the measured part after it,
// whose written rate is the phase's result.
var (
	sustainedFill    time.Duration
	sustainedMeasure = time.Minute
)

// longestWindow returns the longest duplicate window of the stage's
// streams: until it has passed, the server's memory of message ids is
// still filling and the pipeline is faster than it will stay.
func (s *stage) longestWindow() time.Duration {
	return max(s.cfg.Streams.Duplicates.D(), s.cfg.Streams.RoutedDuplicates.D())
}

// sustained measures the single-sink pipeline's sustained maximum, which
// the short single-sink phases do not: they run on empty duplicate
// windows, and the server's work grows with the message ids it keeps
// (measured: 43,000 events/s in a -short phase; a 10-minute soak at half
// of that, 21,500/s, fell behind minute by minute). It publishes synthetic
// events closed-loop, as fast as the log sink writes them with at most
// sustainedBacklog in between, for the longest duplicate window plus
// sustainedMeasure, and reports the rate written in that last part, when
// every window is full. It then drains and checks that nothing was lost,
// duplicated or dead-lettered.
func (b *bench) sustained(ctx context.Context, sc string) error {
	s, err := b.startStage(ctx, sc, false, nil, soakMaxBytes)
	if err != nil {
		return err
	}
	defer s.close()
	window := s.longestWindow()
	if sustainedFill > 0 {
		window = sustainedFill
	}
	d := window + sustainedMeasure
	b.progress("%s: closed loop for %s (the longest duplicate window %s, then %s measured): publisher -> %s -> log sink",
		sc, d, window, sustainedMeasure, copier(sc))
	b.setting(sc+".backlog", strconv.Itoa(sustainedBacklog)+" events published and not yet written, at most")

	gen := synth.New(synth.Options{Seed: b.o.seed + 2})
	var ev schema.Event
	expected := map[string]int64{}
	var acked, failed, dups atomic.Int64
	var sent int64
	start := time.Now()
	measureAt := start.Add(window)
	var written0 int64 = -1
	var t0 time.Time
	lastProgress, lastWritten := start, int64(0)
	for time.Since(start) < d {
		written := s.writtenBy(logSink)
		if written0 < 0 && !time.Now().Before(measureAt) {
			written0, t0 = written, time.Now()
		}
		for n := 0; n < 1000 && expected[logSink]-written < sustainedBacklog; n++ {
			gen.Next(&ev)
			ts, _ := s.table.Route(ev.Type)
			for _, t := range ts {
				expected[t.Sink]++
			}
			err := s.pub.Publish(ctx, &ev, func(a pipeline.Ack) {
				switch {
				case a.Err != nil:
					failed.Add(1)
				case a.Duplicate:
					dups.Add(1)
				}
				acked.Add(1)
			})
			if err != nil {
				return fmt.Errorf("publish: %w", err)
			}
			sent++
		}
		if f := failed.Load(); f > 0 {
			return fmt.Errorf("%d events could not be published", f)
		}
		if written != lastWritten {
			lastProgress, lastWritten = time.Now(), written
		} else if time.Since(lastProgress) > b.o.stall {
			return fmt.Errorf("the log sink wrote nothing for %s while events were published: %s", b.o.stall,
				s.diag(ctx, sent, acked.Load(), expected))
		}
		if expected[logSink]-written >= sustainedBacklog {
			select {
			case <-ctx.Done():
				return fmt.Errorf("%w: %s", ctx.Err(), s.diag(ctx, sent, acked.Load(), expected))
			case <-time.After(time.Millisecond):
			}
		}
	}
	written1, t1 := s.writtenBy(logSink), time.Now()
	pubDur := t1.Sub(start)
	if err := s.drain(ctx, sc, sent, &acked, &failed, expected); err != nil {
		return err
	}
	if n := dups.Load(); n > 0 {
		return fmt.Errorf("JetStream called %d of %d fresh events duplicates", n, sent)
	}
	if q, err := s.dlq(ctx); err != nil {
		return err
	} else if q > 0 {
		return fmt.Errorf("%d messages were dead-lettered", q)
	}
	if written0 < 0 {
		return fmt.Errorf("the phase ended before its measured part")
	}
	rate := float64(written1-written0) / t1.Sub(t0).Seconds()
	b.rep.Add(sc, "throughput", rate, "events/s")
	b.rep.Add(sc, "throughput, whole phase", float64(written1)/pubDur.Seconds(), "events/s")
	b.rep.Add(sc, "duplicate window", window.Seconds(), "s")
	b.rep.Add(sc, "measured", t1.Sub(t0).Seconds(), "s")
	b.rep.Add(sc, "events", float64(sent), "events")
	if v, ok := b.rep.Get(singleOf(sc), "throughput"); ok && v > 0 {
		b.rep.Add(scSummary, sc+"/"+singleOf(sc), rate/v, "ratio")
	}
	return nil
}
