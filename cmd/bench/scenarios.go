package main

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mailtel/mailtel/pipeline"
	"github.com/mailtel/mailtel/pipeline/benchkit"
	"github.com/mailtel/mailtel/pipeline/sinks/webhook"
	"github.com/mailtel/mailtel/pipeline/synth"
	"github.com/mailtel/mailtel/schema"
)

// throughput publishes evs as fast as the Publisher takes them and reports
// events/s from the first publish to the last sink write, the router's
// cost, and checks that every sink wrote what the routing table sends it
// (and the log sink's files hold exactly those lines).
func (b *bench) throughput(ctx context.Context, sc string, fanout bool, evs []schema.Event) error {
	b.progress("%s: %d events: publisher -> %s -> %s", sc, len(evs), copier(sc), map[bool]string{false: "log sink", true: "log, metrics and webhook sinks"}[fanout])
	s, err := b.startStage(ctx, sc, fanout, nil, "")
	if err != nil {
		return err
	}
	defer s.close()
	b.setting("sink.log", "type=log level=trace format=json rotate=daily")
	b.setting("router", fmt.Sprintf("workers=%d batch=%d", s.cfg.Router.Workers, s.cfg.Router.Batch))
	b.setting("publisher.max_in_flight", strconv.Itoa(s.cfg.Publisher.MaxInFlight))
	b.setting("sinks.batch", strconv.Itoa(s.cfg.Sinks.Batch))
	if fanout {
		w := s.cfg.Sink(hookSink).Config.(*webhook.Config)
		b.setting("sink.hook", fmt.Sprintf("webhook to 127.0.0.1 events=* batch-size=%d concurrency=%d throttle=%s (default 1s)",
			w.BatchSize, w.Concurrency, w.Throttle.D()))
	}

	n := int64(len(evs))
	expected := map[string]int64{}
	for i := range evs {
		ts, _ := s.table.Route(evs[i].Type)
		for _, t := range ts {
			expected[t.Sink]++
		}
	}
	r0, err := s.router.sample(ctx)
	if err != nil {
		return err
	}
	var published, acked, failed, dups, lastAck atomic.Int64
	pctx, pcancel := context.WithCancel(ctx)
	defer pcancel()
	pubErr := make(chan error, 1)
	cpu0, t0 := benchkit.SelfCPU(), time.Now()
	go func() {
		for i := range evs {
			err := s.pub.Publish(pctx, &evs[i], func(a pipeline.Ack) {
				switch {
				case a.Err != nil:
					failed.Add(1)
				case a.Duplicate:
					dups.Add(1)
				}
				// Acks come from one goroutine: store the time first.
				if acked.Load() == n-1 {
					lastAck.Store(time.Now().UnixNano())
				}
				acked.Add(1)
			})
			if err != nil {
				pubErr <- err
				return
			}
			published.Add(1)
		}
		pubErr <- nil
	}()
	werr := b.waitUntil(ctx, sc, func() (bool, int64) {
		return s.done(expected) || failed.Load() > 0, s.progress() + acked.Load()
	}, func() string { return s.diag(ctx, published.Load(), acked.Load(), expected) })
	pcancel()
	if err := <-pubErr; err != nil && werr == nil {
		werr = err
	}
	if werr != nil {
		return werr
	}
	if f := failed.Load(); f > 0 {
		return fmt.Errorf("%d events could not be published", f)
	}
	end, cpu := s.lastWrite(), benchkit.SelfCPU()-cpu0
	r1, err := s.router.sample(ctx)
	if err != nil {
		return err
	}
	wall := end.Sub(t0)
	b.rep.Add(sc, "throughput", rate(n, wall), "events/s")
	b.rep.Add(sc, "wall", wall.Seconds(), "s")
	b.rep.Add(sc, "publish acked", rate(n, time.Unix(0, lastAck.Load()).Sub(t0)), "events/s")
	for _, name := range s.sinkNames {
		b.rep.Add(sc, "written "+name, float64(s.writtenBy(name)), "events")
	}
	if fanout {
		b.rep.Add(sc, "copies routed", r1.Routed-r0.Routed, "copies")
		b.rep.Add(sc, "webhook requests", float64(s.hookReqs.Load()), "requests")
	}
	b.addRouterRows(sc, r0, r1, n)
	b.rep.Add(sc, "bench process cpu", perEvent(cpu, n), "µs/event")

	// The outcome, checked: nothing duplicated, nothing dead-lettered, the
	// log files hold one line per event the log sink should get.
	if d := dups.Load(); d > 0 {
		return fmt.Errorf("JetStream called %d of %d fresh events duplicates", d, n)
	}
	if q, err := s.dlq(ctx); err != nil {
		return err
	} else if q > 0 {
		return fmt.Errorf("%d messages were dead-lettered; %s", q, s.diag(ctx, published.Load(), acked.Load(), expected))
	}
	lines, err := s.logLines()
	if err != nil {
		return err
	}
	if lines != expected[logSink] {
		return fmt.Errorf("the log sink's files hold %d lines, want %d", lines, expected[logSink])
	}
	return nil
}

// copier names what copies the events of scenario sc to the sinks.
func copier(sc string) string {
	if serverScenario(sc) {
		return "server fan-out"
	}
	return "router"
}

// soakMaxBytes is [streams] max-bytes of a soak and its sustained phase:
// it keeps the disk use of a long soak bounded.
const soakMaxBytes = "1GiB"

// paced publishes synthetic events at rate for d, in bursts every
// millisecond, through the single-sink pipeline, and measures for each
// event the time from just before Publish to the return of the log sink's
// Write that carried it. A soak also samples every process every -sample
// (see soakSampler) and reports per -interval and after -warmup.
func (b *bench) paced(ctx context.Context, sc string, r float64, d time.Duration) error {
	if !(r > 0) || math.IsInf(r, 0) {
		return fmt.Errorf("no rate to pace at (the single-sink scenario measured none; give -rate)")
	}
	soak := isSoak(sc)
	b.progress("%s: %.0f events/s for %s: publisher -> %s -> log sink", sc, r, d, copier(sc))
	rec := benchkit.NewLatencyRecorder()
	maxBytes := ""
	if soak {
		// A soak counts latencies in a histogram per interval, so that the
		// measuring takes no more memory as it goes on.
		rec = benchkit.NewBucketedRecorder(time.Now(), b.o.interval)
		maxBytes = soakMaxBytes
	}
	s, err := b.startStage(ctx, sc, false, rec, maxBytes)
	if err != nil {
		return err
	}
	defer s.close()
	b.setting(sc+".pacing", "bursts every 1ms")
	if maxBytes != "" {
		b.setting(sc+".streams_max_bytes", maxBytes)
	}

	gen := synth.New(synth.Options{Seed: b.o.seed + 1})
	var ev schema.Event
	expected := map[string]int64{}
	var acked, failed atomic.Int64
	var ackMu sync.Mutex
	var ackLat benchkit.Histogram
	r0, err := s.router.sample(ctx)
	if err != nil {
		return err
	}

	// Samples of every process (soak only).
	var sampler *soakSampler
	var sampleErr error
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	start := time.Now()
	if soak {
		rec.SetStart(start)
		sampler = newSoakSampler(b, s, sc, start, d)
		if err := sampler.sample(ctx); err != nil {
			return err
		}
	}
	go func() {
		defer close(sampled)
		if !soak {
			return
		}
		t := time.NewTicker(b.o.sample)
		defer t.Stop()
		for {
			select {
			case <-stopSampling:
				return
			case <-t.C:
			}
			if err := sampler.sample(ctx); err != nil {
				sampleErr = err
				return
			}
			b.progress("%s %s: %s, written %d", sc, time.Since(start).Round(time.Second), sampler.line(), s.writtenBy(logSink))
		}
	}()
	defer func() {
		select {
		case <-stopSampling:
		default:
			close(stopSampling)
		}
		<-sampled
	}()

	cpu0 := benchkit.SelfCPU()
	var sent int64
	lastProgress, lastWritten := start, int64(0)
	for {
		el := time.Since(start)
		if el >= d {
			break
		}
		for target := int64(el.Seconds()*r) + 1; sent < target; sent++ {
			gen.Next(&ev)
			ts, _ := s.table.Route(ev.Type)
			for _, t := range ts {
				expected[t.Sink]++
			}
			now := time.Now()
			if len(ts) > 0 {
				rec.Published(ev.ID, now)
			}
			err := s.pub.Publish(ctx, &ev, func(a pipeline.Ack) {
				lat := time.Since(now)
				if a.Err != nil {
					failed.Add(1)
				}
				ackMu.Lock()
				ackLat.Add(lat)
				ackMu.Unlock()
				acked.Add(1)
			})
			if err != nil {
				return fmt.Errorf("publish: %w", err)
			}
		}
		if f := failed.Load(); f > 0 {
			return fmt.Errorf("%d events could not be published", f)
		}
		if w := s.writtenBy(logSink); w != lastWritten {
			lastProgress, lastWritten = time.Now(), w
		} else if time.Since(lastProgress) > b.o.stall {
			return fmt.Errorf("the log sink wrote nothing for %s while events were published: %s", b.o.stall,
				s.diag(ctx, sent, acked.Load(), expected))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: %s", ctx.Err(), s.diag(ctx, sent, acked.Load(), expected))
		case <-time.After(time.Millisecond):
		}
	}
	pubDur := time.Since(start)
	close(stopSampling)
	<-sampled
	if sampleErr != nil {
		return sampleErr
	}
	if err := s.drain(ctx, sc, sent, &acked, &failed, expected); err != nil {
		return err
	}
	cpu := benchkit.SelfCPU() - cpu0
	r1, err := s.router.sample(ctx)
	if err != nil {
		return err
	}
	lat, unmatched, pending := rec.Result()
	if pending > 0 {
		return fmt.Errorf("%d published events were never written", pending)
	}
	l := benchkit.Summarize(lat)
	if soak {
		l = b.soakLatency(sc, rec.Histograms())
	}
	ackMu.Lock()
	al := ackLat.Summary()
	ackMu.Unlock()

	b.rep.Add(sc, "target rate", r, "events/s")
	b.rep.Add(sc, "published rate", rate(sent, pubDur), "events/s")
	b.rep.Add(sc, "duration", pubDur.Seconds(), "s")
	b.rep.Add(sc, "events measured", float64(l.N), "events")
	b.rep.Add(sc, "publish->write p50", ms(l.P50), "ms")
	b.rep.Add(sc, "publish->write p95", ms(l.P95), "ms")
	b.rep.Add(sc, "publish->write p99", ms(l.P99), "ms")
	b.rep.Add(sc, "publish->write max", ms(l.Max), "ms")
	b.rep.Add(sc, "publish->write mean", ms(l.Mean), "ms")
	b.rep.Add(sc, "publish->ack p50", ms(al.P50), "ms")
	b.rep.Add(sc, "publish->ack p99", ms(al.P99), "ms")
	if unmatched > 0 {
		b.rep.Add(sc, "writes of no pending event", float64(unmatched), "events")
	}
	b.addRouterRows(sc, r0, r1, sent)
	b.rep.Add(sc, "bench process cpu", perEvent(cpu, sent), "µs/event")

	if soak {
		// A last reading after the drain, so the last interval has one.
		if err := sampler.sample(ctx); err != nil {
			return err
		}
		sampler.heapProfile(ctx, "end")
		return b.soakRows(sc, sampler, rec.Histograms(), pubDur, sent)
	}
	return nil
}
