package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mailtel/mailtel/pipeline"
	"github.com/mailtel/mailtel/pipeline/benchkit"
)

// Baseline settings: what raw JetStream does on this machine, set up the
// way mailtel uses it (file storage, a duplicates window, Nats-Msg-Id,
// a durable pull consumer with explicit acks fetching 500 at a time).
const (
	baselineStream   = "BENCH"
	baselineSubject  = "bench.msg"
	baselineSize     = 200
	baselineInFlight = 4096 // like [publisher] max-in-flight
	baselinePull     = 500
)

// baseline measures raw JetStream: publish only (N into an empty stream,
// no consumer), consume only (the N stored), then publish and consume at
// once into a new stream: N / (first publish -> last ack).
func (b *bench) baseline(ctx context.Context) error {
	n := b.o.n
	b.setting("baseline.message_bytes", strconv.Itoa(baselineSize))
	b.setting("baseline.publish_window", strconv.Itoa(baselineInFlight))
	b.setting("baseline.pull_max_messages", strconv.Itoa(baselinePull))
	b.setting("streams.duplicates", b.streams.Duplicates.D().String())
	b.setting("streams.routed_duplicates", b.streams.RoutedDuplicates.D().String())

	var pubErrs atomic.Int64
	pubNC, err := nats.Connect(b.url, nats.Name("bench-baseline-publisher"))
	if err != nil {
		return fmt.Errorf("connect publisher: %w", err)
	}
	defer pubNC.Close()
	pubJS, err := jetstream.New(pubNC, jetstream.WithPublishAsyncMaxPending(baselineInFlight),
		jetstream.WithPublishAsyncErrHandler(func(jetstream.JetStream, *nats.Msg, error) { pubErrs.Add(1) }))
	if err != nil {
		return fmt.Errorf("jetstream context: %w", err)
	}
	conNC, err := nats.Connect(b.url, nats.Name("bench-baseline-consumer"))
	if err != nil {
		return fmt.Errorf("connect consumer: %w", err)
	}
	defer conNC.Close()
	conJS, err := jetstream.New(conNC)
	if err != nil {
		return fmt.Errorf("jetstream context: %w", err)
	}
	payload := make([]byte, baselineSize)
	for i := range payload {
		payload[i] = 'a' + byte(i%26)
	}
	sc := jetstream.StreamConfig{Name: baselineStream, Subjects: []string{"bench.>"}, Storage: jetstream.FileStorage,
		Retention: jetstream.LimitsPolicy, Duplicates: b.streams.Duplicates.D()}
	newStream := func() error {
		if err := b.deleteStreams(ctx, baselineStream); err != nil {
			return err
		}
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if _, err := pipeline.CreateOrUpdateStream(cctx, b.js, sc); err != nil {
			return fmt.Errorf("create stream %s: %w", baselineStream, err)
		}
		return nil
	}
	defer b.deleteStreams(context.Background(), baselineStream)

	// publish sends n messages with ids prefix<i> and waits for every ack.
	publish := func(ctx context.Context, prefix string) error {
		for i := 0; i < n; i++ {
			m := &nats.Msg{Subject: baselineSubject, Data: payload,
				Header: nats.Header{jetstream.MsgIDHeader: []string{prefix + strconv.Itoa(i)}}}
			for {
				_, err := pubJS.PublishMsgAsync(m)
				if err == nil {
					break
				}
				if !errors.Is(err, jetstream.ErrTooManyStalledMsgs) || ctx.Err() != nil {
					return fmt.Errorf("publish message %d: %w", i, err)
				}
			}
		}
		select {
		case <-pubJS.PublishAsyncComplete():
		case <-ctx.Done():
			return fmt.Errorf("wait for publish acks: %w (%d pending)", ctx.Err(), pubJS.PublishAsyncPending())
		case <-time.After(b.o.timeout):
			return fmt.Errorf("wait for publish acks: %d still pending after %s", pubJS.PublishAsyncPending(), b.o.timeout)
		}
		if e := pubErrs.Load(); e > 0 {
			return fmt.Errorf("%d async publishes failed", e)
		}
		return nil
	}
	stored := func() (uint64, error) {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		s, err := b.js.Stream(cctx, baselineStream)
		if err != nil {
			return 0, fmt.Errorf("stream info: %w", err)
		}
		return s.CachedInfo().State.Msgs, nil
	}

	// Publish only.
	if err := newStream(); err != nil {
		return err
	}
	b.progress("baseline: publish only, %d messages", n)
	cpu0, t0 := benchkit.SelfCPU(), time.Now()
	if err := publish(ctx, "p-"); err != nil {
		return err
	}
	pubDur, pubCPU := time.Since(t0), benchkit.SelfCPU()-cpu0
	if got, err := stored(); err != nil {
		return err
	} else if got != uint64(n) {
		return fmt.Errorf("publish only: stream holds %d messages, want %d", got, n)
	}
	b.rep.Add(scBaseline, "publish only", rate(int64(n), pubDur), "msg/s")

	// Consume only: what was just stored.
	b.progress("baseline: consume only, %d messages", n)
	c, err := b.newBaselineConsumer(ctx, conJS, "bench-consume-only")
	if err != nil {
		return err
	}
	cpu0, t0 = benchkit.SelfCPU(), time.Now()
	last, err := b.consume(ctx, c, n)
	if err != nil {
		return fmt.Errorf("consume only: %w", err)
	}
	conDur, conCPU := last.Sub(t0), benchkit.SelfCPU()-cpu0
	b.rep.Add(scBaseline, "consume only", rate(int64(n), conDur), "msg/s")

	// Both at once, into an empty stream.
	if err := newStream(); err != nil {
		return err
	}
	b.progress("baseline: publish and consume at once, %d messages", n)
	c, err = b.newBaselineConsumer(ctx, conJS, "bench-consume")
	if err != nil {
		return err
	}
	type result struct {
		last time.Time
		err  error
	}
	done := make(chan result, 1)
	cpu0, t0 = benchkit.SelfCPU(), time.Now()
	go func() {
		last, err := b.consume(ctx, c, n)
		done <- result{last, err}
	}()
	if err := publish(ctx, "c-"); err != nil {
		return err
	}
	pubBoth := time.Since(t0)
	r := <-done
	if r.err != nil {
		return fmt.Errorf("publish and consume: %w", r.err)
	}
	both, bothCPU := r.last.Sub(t0), benchkit.SelfCPU()-cpu0
	b.rep.Add(scBaseline, "publish+consume", rate(int64(n), both), "msg/s")
	b.rep.Add(scBaseline, "publish+consume wall", both.Seconds(), "s")
	b.rep.Add(scBaseline, "publish+consume: publish acked", rate(int64(n), pubBoth), "msg/s")
	b.rep.Add(scBaseline, "cpu publish only", perEvent(pubCPU, int64(n)), "µs/msg")
	b.rep.Add(scBaseline, "cpu consume only", perEvent(conCPU, int64(n)), "µs/msg")
	b.rep.Add(scBaseline, "cpu publish+consume", perEvent(bothCPU, int64(n)), "µs/msg")
	return nil
}

func (b *bench) newBaselineConsumer(ctx context.Context, js jetstream.JetStream, name string) (jetstream.Consumer, error) {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, err := js.CreateOrUpdateConsumer(cctx, baselineStream, jetstream.ConsumerConfig{
		Durable:       name,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       30 * time.Second,
		MaxAckPending: 20000, // as the router's consumer
		DeliverPolicy: jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return nil, fmt.Errorf("create consumer %s: %w", name, err)
	}
	return c, nil
}

// consume pulls n messages from c (PullMaxMessages 500), acking each, and
// returns when the n-th was acked.
func (b *bench) consume(ctx context.Context, c jetstream.Consumer, n int) (time.Time, error) {
	it, err := c.Messages(jetstream.PullMaxMessages(baselinePull))
	if err != nil {
		return time.Time{}, fmt.Errorf("pull: %w", err)
	}
	var acked, ackErrs atomic.Int64
	var last atomic.Int64
	go func() {
		for {
			m, err := it.Next()
			if err != nil {
				if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
					return
				}
				continue
			}
			if err := m.Ack(); err != nil {
				ackErrs.Add(1)
			}
			// One goroutine counts: store the time before the count
			// that makes the waiter return.
			if acked.Load() == int64(n-1) {
				last.Store(time.Now().UnixNano())
			}
			acked.Add(1)
		}
	}()
	defer it.Stop()
	err = b.waitUntil(ctx, "consume", func() (bool, int64) {
		a := acked.Load()
		return a >= int64(n), a
	}, func() string { return fmt.Sprintf("acked %d of %d", acked.Load(), n) })
	if err != nil {
		return time.Time{}, err
	}
	if e := ackErrs.Load(); e > 0 {
		return time.Time{}, fmt.Errorf("%d acks failed", e)
	}
	return time.Unix(0, last.Load()), nil
}
