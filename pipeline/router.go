package pipeline

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/mailtel/mailtel/catalog"
	"github.com/mailtel/mailtel/pipeline/config"
	"github.com/mailtel/mailtel/pipeline/obs"
	"github.com/mailtel/mailtel/schema"
)

// RouterOptions configure a Router.
type RouterOptions struct {
	Stream   string // EVENTS stream name
	Consumer string // durable consumer name shared by every router
	Workers  int
	Batch    int // pull batch size
	AckWait  time.Duration
}

// Router copies events from EVENTS to the ROUTED subjects of the sinks
// that want them. Its workers, and those of every other router process,
// share one durable pull consumer, so adding workers or processes adds
// throughput.
//
// Contract: an EVENTS message is acked only after every copy is stored in
// ROUTED (a failed copy makes the message be redelivered; copies carry
// Nats-Msg-Id "<stream sequence>.<sink>", so those already stored are not
// stored twice). A message whose payload is not an event is stored in DLQ
// on dlq.router.<id> with the reason, then acked.
type Router struct {
	js      jetstream.JetStream
	table   *Table
	opts    RouterOptions
	log     zerolog.Logger
	metrics *obs.Metrics
	health  *obs.Health
}

// NewRouter returns a router over the table.
func NewRouter(js jetstream.JetStream, table *Table, opts RouterOptions, log zerolog.Logger, m *obs.Metrics, h *obs.Health) *Router {
	if opts.Workers < 1 {
		opts.Workers = 1
	}
	if opts.Batch < 1 {
		opts.Batch = 500
	}
	if opts.AckWait == 0 {
		opts.AckWait = 30 * time.Second
	}
	return &Router{js: js, table: table, opts: opts, log: log, metrics: m, health: h}
}

// RouterOptionsFrom reads the router options from a configuration.
func RouterOptionsFrom(c *config.Config) RouterOptions {
	return RouterOptions{Stream: c.Streams.Events, Consumer: c.Router.Consumer, Workers: c.Router.Workers,
		Batch: c.Router.Batch, AckWait: c.Router.AckWait.D()}
}

// Consumer creates or binds the durable consumer the routers share.
func (r *Router) Consumer(ctx context.Context) (jetstream.Consumer, error) {
	cons, err := r.js.CreateOrUpdateConsumer(ctx, r.opts.Stream, jetstream.ConsumerConfig{
		Durable:       r.opts.Consumer,
		FilterSubject: EventsPrefix + ">",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       r.opts.AckWait,
		MaxAckPending: max(r.opts.Workers*r.opts.Batch*4, 20000),
		MaxDeliver:    -1,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return nil, fmt.Errorf("create router consumer %s on %s: %w", r.opts.Consumer, r.opts.Stream, err)
	}
	return cons, nil
}

// Run routes until ctx ends, then finishes the messages in flight.
func (r *Router) Run(ctx context.Context) error {
	cons, err := r.Consumer(ctx)
	if err != nil {
		return err
	}
	r.health.Set("consumer", nil)
	defer r.health.Set("consumer", errors.New("stopped"))
	go watchLag(ctx, cons, r.opts.Stream, r.opts.Consumer, r.metrics)

	var wg sync.WaitGroup
	errs := make(chan error, r.opts.Workers)
	for i := 0; i < r.opts.Workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := r.work(ctx, cons); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

type routing struct {
	msg  jetstream.Msg
	futs []jetstream.PubAckFuture
	dlq  error // non-nil: dead-letter this message with the reason
}

func (r *Router) work(ctx context.Context, cons jetstream.Consumer) error {
	it, err := cons.Messages(jetstream.PullMaxMessages(r.opts.Batch))
	if err != nil {
		return fmt.Errorf("router pull from %s: %w", r.opts.Consumer, err)
	}
	go func() { <-ctx.Done(); it.Drain() }()

	inflight := make(chan routing, r.opts.Batch)
	ackDone := make(chan struct{})
	go func() { defer close(ackDone); r.acker(inflight) }()
	defer func() { close(inflight); <-ackDone }()

	received := r.metrics.Received.WithLabelValues("router")
	redelivered := r.metrics.Redelivered.WithLabelValues("router")
	for {
		msg, err := it.Next()
		if err != nil {
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return nil
			}
			r.log.Warn().Err(err).Msg("router pull")
			continue
		}
		received.Inc()
		md, err := msg.Metadata()
		if err != nil {
			inflight <- routing{msg: msg, dlq: fmt.Errorf("read message metadata: %w", err)}
			continue
		}
		if md.NumDelivered > 1 {
			redelivered.Inc()
		}
		inflight <- r.route(msg, md.Sequence.Stream)
	}
}

// route publishes the copies of one message asynchronously. Its decision
// reads the subject only; the payload is checked with schema.Peek, which
// decodes nothing but the envelope head.
func (r *Router) route(msg jetstream.Msg, seq uint64) routing {
	id := SubjectEventID(msg.Subject())
	if id == "" {
		return routing{msg: msg, dlq: fmt.Errorf("subject %q does not end in an event id", msg.Subject())}
	}
	if _, typ, _, err := schema.Peek(msg.Data()); err != nil {
		return routing{msg: msg, dlq: fmt.Errorf("decode event: %w", err)}
	} else if typ != id {
		return routing{msg: msg, dlq: fmt.Errorf("event type %q does not match subject %q", typ, msg.Subject())}
	}
	targets, known := r.table.Route(id)
	if !known {
		r.metrics.UnknownTypes.Inc()
	}
	rt := routing{msg: msg}
	if len(targets) == 0 {
		return rt
	}
	rt.futs = make([]jetstream.PubAckFuture, 0, len(targets))
	seqStr := strconv.FormatUint(seq, 10)
	for i := range targets {
		out := &nats.Msg{Subject: targets[i].Subject, Data: msg.Data(), Header: nats.Header{}}
		out.Header[jetstream.MsgIDHeader] = []string{seqStr + "." + targets[i].Sink}
		fut, err := r.js.PublishMsgAsync(out)
		if err != nil {
			rt.futs = append(rt.futs, failedFuture{msg: out, err: err})
			continue
		}
		rt.futs = append(rt.futs, fut)
	}
	return rt
}

// acker acks each source message once all its copies are stored, in the
// order the messages arrived.
func (r *Router) acker(in <-chan routing) {
	ctx := context.Background()
	dlqs := r.metrics.DeadLettered.WithLabelValues("router")
	retried := r.metrics.Retried.WithLabelValues("router")
	for rt := range in {
		if rt.dlq != nil {
			r.log.Warn().Err(rt.dlq).Str("subject", rt.msg.Subject()).Msg("dead-lettering message")
			if err := DeadLetter(ctx, r.js, "router", rt.msg, rt.dlq); err != nil {
				r.log.Error().Err(err).Msg("dead-letter failed; message will be redelivered")
				rt.msg.Nak()
				continue
			}
			dlqs.Inc()
			rt.msg.Ack()
			continue
		}
		ok := true
		for _, f := range rt.futs {
			select {
			case <-f.Ok():
				r.routedCounter(f.Msg().Subject).Inc()
			case err := <-f.Err():
				ok = false
				r.log.Warn().Err(err).Str("subject", f.Msg().Subject).Msg("store routed copy; the event will be redelivered")
			}
		}
		if !ok {
			retried.Inc()
			rt.msg.NakWithDelay(Jitter(time.Second))
			continue
		}
		rt.msg.Ack()
	}
}

func (r *Router) routedCounter(subject string) prometheus.Counter {
	// routed.<sink>.<category>.<event>
	rest := subject[len(RoutedPrefix):]
	sink := rest
	for i := 0; i < len(rest); i++ {
		if rest[i] == '.' {
			sink = rest[:i]
			break
		}
	}
	return r.metrics.Routed.WithLabelValues(sink)
}

// SubjectEventID returns the event id carried by the last two tokens of a
// mailtel subject (events.<id>, routed.<sink>.<id>, dlq.<stage>.<id>), or
// "" when the subject has fewer than three tokens or they are not a valid
// event id.
func SubjectEventID(subject string) string {
	id := catalog.SubjectID(subject)
	if len(id) == len(subject) || !config.ValidEventID(id) {
		return ""
	}
	return id
}

// failedFuture is a PubAckFuture for a publish that failed to start.
type failedFuture struct {
	msg *nats.Msg
	err error
}

func (f failedFuture) Ok() <-chan *jetstream.PubAck { return nil }
func (f failedFuture) Err() <-chan error {
	c := make(chan error, 1)
	c <- f.err
	return c
}
func (f failedFuture) Msg() *nats.Msg { return f.msg }

// watchLag updates the consumer lag gauge every few seconds.
func watchLag(ctx context.Context, cons jetstream.Consumer, stream, name string, m *obs.Metrics) {
	g := m.Lag.WithLabelValues(stream, name)
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		if info, err := cons.Info(ctx); err == nil {
			g.Set(float64(info.NumPending))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
