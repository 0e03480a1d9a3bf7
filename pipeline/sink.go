package pipeline

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/mailtel/mailtel/pipeline/config"
	"github.com/mailtel/mailtel/pipeline/obs"
	"github.com/mailtel/mailtel/schema"
)

// Sink writes events to one destination (a log file, a webhook, metrics).
//
// Contract: Write is called by one goroutine at a time with a batch of
// events in stream order. It returns nil only when every event of the batch
// is written; the runtime then acks the batch. An error marked with
// Permanent sends the batch to the DLQ with the error as the reason; if the
// error names events (see EventIDs and FailedEventIDs), only those are
// dead-lettered and the rest are acked as written. Any other error is
// retried with exponential backoff and full jitter (no sooner than a
// RetryAfter error asks), and after MaxDeliver attempts the batch goes to
// the DLQ. A retried Write gets the same batch again, so a sink that wrote
// part of it must not write that part twice. Write must honour ctx.
// Close flushes and releases resources; it is idempotent and safe to call
// without a Write.
type Sink interface {
	Write(ctx context.Context, batch []*schema.Event) error
	Close(ctx context.Context) error
}

// SinkOptions configure the runtime of one sink.
type SinkOptions struct {
	// Routed is [streams] routed: the sink reads its own stream,
	// config.RoutedStream(Routed, name).
	Routed     string
	Batch      int
	MaxDeliver int // attempts before a failing batch is dead-lettered
	AckWait    time.Duration
	// BackoffBase and BackoffMax bound the retry backoff (full jitter).
	BackoffBase, BackoffMax time.Duration
	// ShutdownTimeout bounds how long a write in flight may take after the
	// runner was asked to stop.
	ShutdownTimeout time.Duration
	// Wants, when set, is the sink's routing rule: the runner acks the
	// messages whose event type it rejects without writing them, and
	// dead-letters those whose subject or payload names no event type. It
	// is set for a sink the server feeds every event (server fan-out).
	Wants func(eventID string) bool
}

// SinkOptionsFrom reads the sink runtime options from a configuration.
func SinkOptionsFrom(c *config.Config) SinkOptions {
	return SinkOptions{Routed: c.Streams.Routed, Batch: c.Sinks.Batch, MaxDeliver: c.Sinks.MaxDeliver,
		AckWait: c.Sinks.AckWait.D(), BackoffBase: 100 * time.Millisecond, BackoffMax: 30 * time.Second,
		ShutdownTimeout: 10 * time.Second}
}

// SinkOptionsFor returns the runtime options of one sink: those of
// SinkOptionsFrom, the webhook's max-backoff, and, for a sink the server
// feeds (spec.ServerFanOut), its routing rule as Wants.
func SinkOptionsFor(c *config.Config, spec config.SinkSpec) SinkOptions {
	o := SinkOptionsFrom(c)
	if spec.Webhook != nil && spec.Webhook.MaxBackoff > 0 {
		o.BackoffMax = spec.Webhook.MaxBackoff.D()
	}
	if spec.ServerFanOut {
		t := NewTable([]config.SinkSpec{spec}, c.Levels)
		o.Wants = func(id string) bool { return t.Wants(spec.Name, id) }
	}
	return o
}

// SinkRunner feeds one sink from its durable consumer on
// routed.<name>.>, shared by every instance of that sink.
type SinkRunner struct {
	js      jetstream.JetStream
	name    string
	stream  string // the sink's ROUTED stream
	sink    Sink
	opts    SinkOptions
	log     zerolog.Logger
	metrics *obs.Metrics
	health  *obs.Health
	// written holds the stream sequences this runner wrote recently, so a
	// message redelivered only because its ack came late is not written
	// twice.
	written  *seqSet
	filtered prometheus.Counter // messages Wants rejected
}

// NewSinkRunner returns a runner for the sink named name.
func NewSinkRunner(js jetstream.JetStream, name string, s Sink, opts SinkOptions, log zerolog.Logger, m *obs.Metrics, h *obs.Health) *SinkRunner {
	if opts.Batch < 1 {
		opts.Batch = 500
	}
	if opts.MaxDeliver < 1 {
		opts.MaxDeliver = 10
	}
	if opts.AckWait == 0 {
		opts.AckWait = time.Minute
	}
	if opts.BackoffBase == 0 {
		opts.BackoffBase = 100 * time.Millisecond
	}
	if opts.BackoffMax == 0 {
		opts.BackoffMax = 30 * time.Second
	}
	if opts.ShutdownTimeout == 0 {
		opts.ShutdownTimeout = 10 * time.Second
	}
	return &SinkRunner{js: js, name: name, stream: config.RoutedStream(opts.Routed, name), sink: s, opts: opts, log: log.With().Str("sink", name).Logger(), metrics: m, health: h,
		written: newSeqSet(1 << 16), filtered: m.Filtered.WithLabelValues(name)}
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

	it, err := cons.Messages(jetstream.PullMaxMessages(r.opts.Batch), jetstream.PullExpiry(pullExpiry))
	if err != nil {
		return fmt.Errorf("sink %s pull: %w", r.name, err)
	}
	msgs := make(chan jetstream.Msg, r.opts.Batch)
	go func() {
		defer close(msgs)
		for {
			m, err := it.Next()
			if err != nil {
				if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
					return
				}
				r.log.Warn().Err(err).Msg("pull")
				continue
			}
			select {
			case msgs <- m:
			case <-ctx.Done():
				m.Nak()
				return
			}
		}
	}()
	go func() { <-ctx.Done(); it.Stop() }()

	batch := make([]jetstream.Msg, 0, r.opts.Batch)
	for {
		// select picks at random among ready cases: check for shutdown
		// first so that no new batch starts after it.
		if ctx.Err() != nil {
			r.release(msgs)
			return nil
		}
		batch = batch[:0]
		select {
		case m, ok := <-msgs:
			if !ok {
				return nil
			}
			batch = append(batch, m)
		case <-ctx.Done():
			r.release(msgs)
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
		r.handle(ctx, batch)
	}
}

// release naks what was fetched but will not be written, so another
// instance gets it at once instead of after AckWait.
func (r *SinkRunner) release(msgs <-chan jetstream.Msg) {
	for {
		select {
		case m, ok := <-msgs:
			if !ok {
				return
			}
			m.Nak()
		default:
			return
		}
	}
}

// handle decodes a batch, writes it with retries and acks it.
func (r *SinkRunner) handle(ctx context.Context, batch []jetstream.Msg) {
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
					m.Ack()
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
				m.Ack()
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

	// Attempts count within this process: deliveries that ended in a crash
	// say nothing about whether the destination works.
	attempt := 0
	for {
		attempt++
		err := r.write(wctx, events, good)
		if err == nil {
			for i, m := range good {
				r.written.add(seqs[i])
				m.Ack()
			}
			r.metrics.Written.WithLabelValues(r.name).Add(float64(len(events)))
			return
		}
		if IsPermanent(err) || attempt >= r.opts.MaxDeliver {
			r.giveUp(events, good, err, attempt)
			return
		}
		if ctx.Err() != nil {
			// Stopping: no retries now; another instance (or this one
			// after a restart) gets the batch at once.
			r.log.Warn().Err(err).Msg("write failed while stopping; releasing the batch")
			for _, m := range good {
				m.Nak()
			}
			return
		}
		r.metrics.Retried.WithLabelValues("sink:" + r.name).Inc()
		wait := Backoff(attempt, r.opts.BackoffBase, r.opts.BackoffMax)
		var ra RetryAfter
		if errors.As(err, &ra) {
			wait = max(wait, ra.RetryAfter())
		}
		r.log.Warn().Err(err).Int("attempt", attempt).Dur("backoff", wait).Msg("write failed; retrying")
		if !r.sleep(ctx, wait, good) {
			// Stopping: leave the batch unacked for redelivery.
			for _, m := range good {
				m.Nak()
			}
			return
		}
	}
}

// WrittenChecker is implemented by sinks that can tell whether events were
// already written, for instance before a crash that lost their acks. The
// runner asks only about redelivered messages; since is the earliest time
// one of them was stored in ROUTED, so nothing older need be searched.
// Written must be safe to call between Writes.
type WrittenChecker interface {
	Written(ctx context.Context, events []*schema.Event, since time.Time) (map[string]bool, error)
}

// dropWritten acks, without writing, the redelivered events the sink says
// it already wrote, and returns the rest.
func (r *SinkRunner) dropWritten(ctx context.Context, events []*schema.Event, msgs []jetstream.Msg, seqs []uint64, redelivered []int, since time.Time) ([]*schema.Event, []jetstream.Msg, []uint64) {
	wc, ok := r.sink.(WrittenChecker)
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
			msgs[i].Ack()
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

// giveUp dead-letters what a failed write is about: only the events the
// error names when it names some (the others were written and are acked),
// else the whole batch.
func (r *SinkRunner) giveUp(events []*schema.Event, msgs []jetstream.Msg, err error, attempt int) {
	reason := err
	if !IsPermanent(err) {
		reason = fmt.Errorf("gave up after %d attempts: %w", attempt, err)
	}
	failed := map[string]bool{}
	for _, id := range FailedEventIDs(err) {
		failed[id] = true
	}
	r.log.Error().Err(reason).Int("events", len(events)).Int("named", len(failed)).Msg("dead-lettering")
	written := 0
	for i, m := range msgs {
		if len(failed) > 0 && !failed[events[i].ID] {
			m.Ack()
			written++
			continue
		}
		r.deadLetter(m, reason)
	}
	r.metrics.Written.WithLabelValues(r.name).Add(float64(written))
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
		m.Nak()
		return
	}
	r.metrics.DeadLettered.WithLabelValues("sink:" + r.name).Inc()
	m.Ack()
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
