package pipeline

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/mailtel/mailtel/pipeline/config"
	"github.com/mailtel/mailtel/pipeline/delivery"
	"github.com/mailtel/mailtel/pipeline/obs"
	"github.com/mailtel/mailtel/pipeline/sink"
	"github.com/mailtel/mailtel/schema"
)

// SinkOptions configure the runtime of one sink.
type SinkOptions struct {
	// Routed is [streams] routed: the sink reads its own stream,
	// config.RoutedStream(Routed, name).
	Routed  string
	Batch   int
	AckWait time.Duration
	// Retry is how failing writes are retried and when they are given up
	// (zero fields take delivery's defaults).
	Retry delivery.Policy
	// ShutdownTimeout bounds how long a write in flight may take after the
	// runner was asked to stop.
	ShutdownTimeout time.Duration
	// Wants, when set, is the sink's routing rule: the runner acks the
	// messages whose event type it rejects without writing them, and
	// dead-letters those whose subject or payload names no event type. It
	// is set for a sink the server feeds every event (server fan-out).
	Wants func(eventID string) bool
}

// SinkOptionsFor returns the runtime options of one sink: [sinks] batch and
// ack-wait, its retry policy (config.Config.RetryOf), and, for a sink the
// server feeds (spec.ServerFanOut), its routing rule as Wants.
func SinkOptionsFor(c *config.Config, spec config.SinkSpec) SinkOptions {
	o := SinkOptions{Routed: c.Streams.Routed, Batch: c.Sinks.Batch, AckWait: c.Sinks.AckWait.D(),
		Retry: RetryPolicy(c, spec), ShutdownTimeout: 10 * time.Second}
	if spec.ServerFanOut {
		t := NewTable([]config.SinkSpec{spec}, c.Levels)
		o.Wants = func(id string) bool { return t.Wants(spec.Name, id) }
	}
	return o
}

// SinkOptionsFrom returns the runtime options that [sinks] gives every
// sink, for a sink that has no section of its own.
func SinkOptionsFrom(c *config.Config) SinkOptions { return SinkOptionsFor(c, config.SinkSpec{}) }

// RetryPolicy is the retry policy of one sink: its own discard-after and
// max-backoff, else those of [sinks]. The live runner and both replays
// take it from here.
func RetryPolicy(c *config.Config, spec config.SinkSpec) delivery.Policy {
	r := c.RetryOf(spec)
	return delivery.Policy{Max: r.MaxBackoff.D(), DiscardAfter: r.DiscardAfter.D()}.WithDefaults()
}

// SinkRunner feeds one sink from its durable consumer on
// routed.<name>.>, shared by every instance of that sink.
//
// While the sink's destination fails, the runner pauses: it stops pulling,
// releases what it had fetched beyond the batch it is retrying, and probes
// the destination with one event per backoff (see package delivery). The
// backlog waits in JetStream, /readyz reports the sink degraded and
// mailtel_sink_up is 0. The first write that succeeds resumes pulling.
type SinkRunner struct {
	js      jetstream.JetStream
	name    string
	stream  string // the sink's ROUTED stream
	sink    sink.Sink
	opts    SinkOptions
	log     zerolog.Logger
	metrics *obs.Metrics
	health  *obs.Health
	// written holds the stream sequences this runner wrote recently, so a
	// message redelivered only because its ack came late is not written
	// twice.
	written  *seqSet
	filtered prometheus.Counter // messages Wants rejected
	up       prometheus.Gauge   // mailtel_sink_up
	held     prometheus.Gauge   // mailtel_sink_held: taken, not yet acked or let go
	// failing is set from a failed write until the next that succeeds.
	failing bool
	// lastLog is when a failing destination was last logged, so an outage
	// of hours, or a destination that keeps failing and recovering, logs
	// once a minute, not at every probe; loggedFailure asks for a line
	// when it recovers.
	lastLog       time.Time
	loggedFailure bool
}

// failureLogEvery is how often a sink whose destination keeps failing says
// so in the log.
const failureLogEvery = time.Minute

// NewSinkRunner returns a runner for the sink named name.
func NewSinkRunner(js jetstream.JetStream, name string, s sink.Sink, opts SinkOptions, log zerolog.Logger, m *obs.Metrics, h *obs.Health) *SinkRunner {
	if opts.Batch < 1 {
		opts.Batch = 500
	}
	if opts.AckWait == 0 {
		opts.AckWait = time.Minute
	}
	opts.Retry = opts.Retry.WithDefaults()
	if opts.ShutdownTimeout == 0 {
		opts.ShutdownTimeout = 10 * time.Second
	}
	r := &SinkRunner{js: js, name: name, stream: config.RoutedStream(opts.Routed, name), sink: s, opts: opts, log: log.With().Str("sink", name).Logger(), metrics: m, health: h,
		written: newSeqSet(1 << 16), filtered: m.Filtered.WithLabelValues(name), up: m.SinkUp.WithLabelValues(name),
		held: m.SinkHeld.WithLabelValues(name)}
	r.up.Set(1)
	return r
}

// SinkConsumerName is the durable consumer of a sink.
func SinkConsumerName(sink string) string { return "sink-" + sink }

// Consumer creates or binds the sink's durable consumer.
func (r *SinkRunner) Consumer(ctx context.Context) (jetstream.Consumer, error) {
	name := SinkConsumerName(r.name)
	var cons jetstream.Consumer
	err := retryManagement(ctx, func(ctx context.Context) (err error) {
		cons, err = r.js.CreateOrUpdateConsumer(ctx, r.stream, jetstream.ConsumerConfig{
			Durable:       name,
			FilterSubject: RoutedPrefix + r.name + ".>",
			AckPolicy:     jetstream.AckExplicitPolicy,
			AckWait:       r.opts.AckWait,
			MaxAckPending: max(r.opts.Batch*4, 4000),
			MaxDeliver:    -1, // the runner counts attempts and dead-letters itself
			DeliverPolicy: jetstream.DeliverAllPolicy,
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("create consumer %s on %s: %w", name, r.stream, err)
	}
	return cons, nil
}

// Run consumes until ctx ends. The batch being written when ctx ends is
// finished (within ShutdownTimeout); messages fetched but not yet written
// are released for redelivery.
func (r *SinkRunner) Run(ctx context.Context) error {
	cons, err := r.Consumer(ctx)
	if err != nil {
		return err
	}
	check := "sink:" + r.name
	r.health.Set(check, nil)
	defer r.health.Set(check, errors.New("stopped"))
	go watchLag(ctx, cons, r.stream, SinkConsumerName(r.name), r.metrics)
	for ctx.Err() == nil {
		if err := r.consume(ctx, cons); err != nil {
			return err
		}
	}
	return nil
}

// consume pulls and handles batches until ctx ends or the destination
// fails. On a failure it stops pulling at once and releases what was
// fetched beyond the batch being retried; it returns when that batch is
// finished, so that Run pulls again only once the destination works.
func (r *SinkRunner) consume(ctx context.Context, cons jetstream.Consumer) error {
	it, err := cons.Messages(jetstream.PullMaxMessages(r.opts.Batch), jetstream.PullExpiry(pullExpiry))
	if err != nil {
		return fmt.Errorf("sink %s pull: %w", r.name, err)
	}
	msgs := make(chan jetstream.Msg, r.opts.Batch)
	paused := make(chan struct{})
	var once sync.Once
	pause := func() {
		once.Do(func() {
			close(paused)
			it.Drain()
			r.release(msgs)
		})
	}
	go func() {
		defer close(msgs)
		for {
			m, err := it.Next()
			if err != nil {
				if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
					// What a last push raced into msgs after the pause.
					r.release(msgs)
					return
				}
				r.log.Warn().Err(err).Msg("pull")
				continue
			}
			r.held.Inc()
			select {
			case <-paused:
				r.letGo(m)
				continue
			default:
			}
			select {
			case msgs <- m:
			case <-paused:
				r.letGo(m)
			}
		}
	}()
	stop := context.AfterFunc(ctx, pause)
	defer stop()
	// Whatever ends this pull, nothing fetched is kept: it is given back
	// to JetStream (letGo) rather than held until AckWait. The iterator
	// may take a while to close after Drain; what it still delivers, the
	// goroutine above gives back, so this does not wait for it.
	defer func() {
		pause()
		r.release(msgs)
	}()

	batch := make([]jetstream.Msg, 0, r.opts.Batch)
	for {
		// select picks at random among ready cases: check for shutdown and
		// pause first so that no new batch starts after them.
		if ctx.Err() != nil {
			return nil
		}
		select {
		case <-paused:
			return nil
		default:
		}
		batch = batch[:0]
		select {
		case m, ok := <-msgs:
			if !ok {
				return nil
			}
			batch = append(batch, m)
		case <-paused:
			return nil
		case <-ctx.Done():
			return nil
		}
		if ctx.Err() != nil {
			r.letGo(batch[0])
			return nil
		}
	fill:
		for len(batch) < cap(batch) {
			select {
			case m, ok := <-msgs:
				if !ok {
					break fill
				}
				batch = append(batch, m)
			default:
				break fill
			}
		}
		r.handle(ctx, batch, pause)
	}
}

// release lets go of what was fetched but will not be written (see
// letGo).
func (r *SinkRunner) release(msgs <-chan jetstream.Msg) {
	for {
		select {
		case m, ok := <-msgs:
			if !ok {
				return
			}
			r.letGo(m)
		default:
			return
		}
	}
}

// releaseDelay is how long a message the runner lets go of waits before
// JetStream delivers it again: longer than a pull request of the stopped
// pull lives (pullExpiry), so that the server cannot hand it straight back
// to that request, and short enough that another instance, or this one
// once its destination is back, soon gets it.
const releaseDelay = 2 * pullExpiry

// letGo gives a message back to JetStream unwritten (nak), for
// redelivery after releaseDelay.
func (r *SinkRunner) letGo(m jetstream.Msg) {
	m.NakWithDelay(releaseDelay)
	r.held.Dec()
}

// ack acks a message that is written, filtered out or dead-lettered.
func (r *SinkRunner) ack(m jetstream.Msg) {
	m.Ack()
	r.held.Dec()
}

// handle decodes a batch, writes it as the retry policy says and acks what
// was written; pause is called at the first failed write.
func (r *SinkRunner) handle(ctx context.Context, batch []jetstream.Msg, pause func()) {
	r.metrics.Received.WithLabelValues("sink:" + r.name).Add(float64(len(batch)))
	events := make([]*schema.Event, 0, len(batch))
	good := make([]jetstream.Msg, 0, len(batch))
	seqs := make([]uint64, 0, len(batch))
	var redelivered []int // indexes into events of redelivered messages
	var since time.Time   // the oldest time one of them was stored
	for _, m := range batch {
		var seq uint64
		again := false
		if md, err := m.Metadata(); err == nil {
			seq = md.Sequence.Stream
			if md.NumDelivered > 1 {
				r.metrics.Redelivered.WithLabelValues("sink:" + r.name).Inc()
				if r.written.has(seq) {
					// Written by this instance already; only the ack was
					// late (the message waited behind a long retry).
					r.ack(m)
					continue
				}
				again = true
				if since.IsZero() || md.Timestamp.Before(since) {
					since = md.Timestamp
				}
			}
		}
		var id string
		if r.opts.Wants != nil {
			if id = SubjectEventID(m.Subject()); id == "" {
				r.deadLetter(m, fmt.Errorf("subject %q does not end in an event id", m.Subject()))
				continue
			}
			if !r.opts.Wants(id) {
				r.filtered.Inc()
				r.ack(m)
				continue
			}
		}
		ev := new(schema.Event)
		if err := schema.Unmarshal(m.Data(), ev); err != nil {
			r.deadLetter(m, err) // schema says what it was decoding
			continue
		}
		if id != "" && ev.Type != id {
			r.deadLetter(m, fmt.Errorf("event type %q does not match subject %q", ev.Type, m.Subject()))
			continue
		}
		if again {
			redelivered = append(redelivered, len(events))
		}
		events = append(events, ev)
		good = append(good, m)
		seqs = append(seqs, seq)
	}
	if len(redelivered) > 0 {
		events, good, seqs = r.dropWritten(ctx, events, good, seqs, redelivered, since)
	}
	if len(events) == 0 {
		return
	}
	// A write in flight is finished even when ctx ends, within a deadline.
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	stop := context.AfterFunc(ctx, func() {
		time.AfterFunc(r.opts.ShutdownTimeout, cancel)
	})
	defer stop()

	write := func(wctx context.Context, evs []*schema.Event) error { return r.write(wctx, evs, good) }
	out := r.opts.Retry.Do(wctx, events, write, delivery.Hooks{
		Written: func(idx []int) {
			for _, i := range idx {
				r.written.add(seqs[i])
				r.ack(good[i])
			}
			r.metrics.Written.WithLabelValues(r.name).Add(float64(len(idx)))
		},
		Failed: func(f delivery.Failure) {
			r.metrics.Retried.WithLabelValues("sink:" + r.name).Inc()
			if !r.failing {
				r.failing = true
				pause()
				r.up.Set(0)
				r.health.Degrade("sink:"+r.name, fmt.Errorf("destination failing since %s: %w", time.Now().UTC().Format(time.RFC3339), f.Err))
			}
			if time.Since(r.lastLog) >= failureLogEvery {
				r.lastLog, r.loggedFailure = time.Now(), true
				r.log.Warn().Err(f.Err).Int("attempt", f.Attempt).Str("failing_for", f.FailingFor.Round(time.Second).String()).
					Str("next_in", f.Wait.Round(time.Millisecond).String()).Str("discard_after", r.opts.Retry.DiscardAfter.String()).
					Msg("write failed; sink paused, probing the destination with one event at a time")
			}
		},
		Recovered: func(attempts int, failingFor time.Duration) {
			r.failing = false
			r.up.Set(1)
			r.health.Degrade("sink:"+r.name, nil)
			if r.loggedFailure {
				r.loggedFailure = false
				r.log.Info().Int("attempts", attempts).Str("failed_for", failingFor.Round(time.Second).String()).Msg("destination back; sink resumes")
			}
		},
		Sleep: func(_ context.Context, d time.Duration) bool { return r.sleep(ctx, d, good) },
	})
	if len(out.Rejected) > 0 {
		r.log.Error().Err(out.Reason).Int("events", len(out.Rejected)).Msg("dead-lettering")
		for _, i := range out.Rejected {
			r.deadLetter(good[i], out.Reason)
		}
	}
	if len(out.Unwritten) > 0 {
		// Stopping: another instance (or this one after a restart) gets
		// the events at once.
		r.log.Warn().Err(out.Stopped).Int("events", len(out.Unwritten)).Msg("write failed while stopping; releasing the events")
		for _, i := range out.Unwritten {
			r.letGo(good[i])
		}
	}
}

// dropWritten acks, without writing, the redelivered events the sink says
// it already wrote, and returns the rest.
func (r *SinkRunner) dropWritten(ctx context.Context, events []*schema.Event, msgs []jetstream.Msg, seqs []uint64, redelivered []int, since time.Time) ([]*schema.Event, []jetstream.Msg, []uint64) {
	wc, ok := r.sink.(sink.WrittenChecker)
	if !ok {
		return events, msgs, seqs
	}
	ask := make([]*schema.Event, len(redelivered))
	for i, j := range redelivered {
		ask[i] = events[j]
	}
	done, err := wc.Written(ctx, ask, since)
	if err != nil {
		r.log.Warn().Err(err).Msg("check redelivered events; writing them again")
		return events, msgs, seqs
	}
	if len(done) == 0 {
		return events, msgs, seqs
	}
	keep := 0
	for i := range events {
		if done[events[i].ID] {
			r.ack(msgs[i])
			r.metrics.Duplicates.WithLabelValues(r.name).Inc()
			continue
		}
		events[keep], msgs[keep], seqs[keep] = events[i], msgs[i], seqs[i]
		keep++
	}
	return events[:keep], msgs[:keep], seqs[:keep]
}

// write calls the sink, keeping the batch from being redelivered elsewhere
// while a slow write runs.
func (r *SinkRunner) write(ctx context.Context, events []*schema.Event, msgs []jetstream.Msg) error {
	done := make(chan struct{})
	defer close(done)
	go func() {
		t := time.NewTicker(r.opts.AckWait / 3)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				for _, m := range msgs {
					m.InProgress()
				}
			}
		}
	}()
	return r.sink.Write(ctx, events)
}

// sleep waits d while keeping the batch's messages from being redelivered
// elsewhere. It returns false if ctx ended.
func (r *SinkRunner) sleep(ctx context.Context, d time.Duration, msgs []jetstream.Msg) bool {
	deadline := time.Now().Add(d)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return true
		}
		step := min(left, r.opts.AckWait/3)
		select {
		case <-ctx.Done():
			return false
		case <-time.After(step):
		}
		for _, m := range msgs {
			m.InProgress()
		}
	}
}

func (r *SinkRunner) deadLetter(m jetstream.Msg, reason error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := DeadLetter(ctx, r.js, "sink."+r.name, m, reason); err != nil {
		r.log.Error().Err(err).Msg("dead-letter failed; message will be redelivered")
		r.letGo(m)
		return
	}
	r.metrics.DeadLettered.WithLabelValues("sink:" + r.name).Inc()
	r.ack(m)
}

// seqSet is a bounded set of the most recently added stream sequences.
// It is used by one goroutine.
type seqSet struct {
	set  map[uint64]struct{}
	ring []uint64
	next int
}

func newSeqSet(n int) *seqSet {
	return &seqSet{set: make(map[uint64]struct{}, n), ring: make([]uint64, n)}
}

func (s *seqSet) has(seq uint64) bool {
	_, ok := s.set[seq]
	return ok
}

func (s *seqSet) add(seq uint64) {
	if seq == 0 || s.has(seq) {
		return
	}
	if old := s.ring[s.next]; old != 0 {
		delete(s.set, old)
	}
	s.ring[s.next] = seq
	s.set[seq] = struct{}{}
	s.next = (s.next + 1) % len(s.ring)
}
