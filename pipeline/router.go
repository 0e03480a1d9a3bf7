package pipeline

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/mailtel/mailtel/catalog"
	"github.com/mailtel/mailtel/pipeline/config"
	"github.com/mailtel/mailtel/pipeline/delivery"
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
// that want them, except for the sinks whose ROUTED stream the server
// fills (config.SinkSpec.ServerFanOut; see EnsureStreams). Its workers,
// and those of every other router process, share one durable pull
// consumer, so adding workers or processes adds throughput.
//
// Contract: an EVENTS message is acked only after every copy is stored in
// ROUTED (a failed copy makes the message be redelivered; copies carry
// Nats-Msg-Id "<stream sequence>.<sink>", so those already stored are not
// stored twice). A message whose payload is not an event is stored in DLQ
// on dlq.router.<id> with the reason, then acked.
//
// The hot path decides from the subject alone (schema.Peek checks the
// payload's head without decoding fields), publishes the copies
// asynchronously, and learns of their acknowledgements from the JetStream
// context's ack handler, so no goroutine waits per event.
type Router struct {
	js      jetstream.JetStream   // for consumers and dead letters
	pub     jetstream.JetStream   // for copies; its handlers settle them
	table   atomic.Pointer[Table] // its RouterTable; SetTable replaces it
	opts    RouterOptions
	log     zerolog.Logger
	metrics *obs.Metrics
	health  *obs.Health

	received, redelivered, retried, dlqs prometheus.Counter
	// routed holds mailtel_routed_total by sink; SetTable replaces it with
	// a copy that has the new sinks too.
	routed atomic.Pointer[map[string]prometheus.Counter]

	mu      sync.Mutex
	pending map[*nats.Msg]*routing // copy -> its source
	// serverOnly is set when every sink is fed by the server: the router
	// then has nothing to copy and does not consume.
	serverOnly bool
	idle       *sync.Cond // signalled when pending empties
}

// routing is one EVENTS message whose copies are being stored.
type routing struct {
	msg    jetstream.Msg
	copies atomic.Int32 // copies not yet acknowledged
	failed atomic.Bool
}

// copyTimeout bounds how long a copy may wait for its acknowledgement
// before it counts as failed (and the source is redelivered).
const copyTimeout = 15 * time.Second

// pullExpiry is how long the router's and the sinks' pull requests stay
// open. The server sends heartbeats every half of it, and the client
// re-issues its pulls when two are missed, so it also bounds how long a
// consumer stalls after its leader moved to another node (the default, 30s,
// stalls the pipeline for half a minute on a cluster failover).
const pullExpiry = 5 * time.Second

// NewRouter returns a router over the table's sinks that are not fed by
// the server (Table.RouterTable). It uses js for its consumer and dead
// letters, and a JetStream context of its own on the same connection for
// the copies.
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
	r := &Router{js: js, opts: opts, log: log, metrics: m, health: h,
		received:    m.Received.WithLabelValues("router"),
		redelivered: m.Redelivered.WithLabelValues("router"),
		retried:     m.Retried.WithLabelValues("router"),
		dlqs:        m.DeadLettered.WithLabelValues("router"),
		pending:     map[*nats.Msg]*routing{},
	}
	r.idle = sync.NewCond(&r.mu)
	r.serverOnly = len(table.Specs()) > 0 && len(table.RouterTable().Specs()) == 0
	r.routed.Store(&map[string]prometheus.Counter{})
	r.SetTable(table)
	return r
}

// SetTable makes the router route by table from the next message on (a
// configuration reload). A message is routed by one table: the one in
// place when its handling began, and it is acked when the copies that
// table asked for are stored. SetTable returns what changed, or an error
// (and changes nothing) when the router cannot follow: a router that does
// not consume because the server feeds every sink ([router]
// server-fan-out) starts to consume only after a restart.
func (r *Router) SetTable(table *Table) (string, error) {
	rt := table.RouterTable()
	if r.serverOnly && len(rt.Specs()) > 0 {
		return "", fmt.Errorf("sinks %s are to be routed by the router, which does not consume while the NATS server feeds every sink ([router] server-fan-out): restart the router", specNames(rt.Specs()))
	}
	counters := map[string]prometheus.Counter{}
	for k, v := range *r.routed.Load() {
		counters[k] = v
	}
	for _, s := range rt.Specs() {
		if counters[s.Name] == nil {
			counters[s.Name] = r.metrics.Routed.WithLabelValues(s.Name)
		}
	}
	r.routed.Store(&counters)
	old := r.table.Swap(rt)
	if old == nil {
		return "", nil
	}
	return old.Diff(rt), nil
}

func specNames(specs []config.SinkSpec) string {
	names := make([]string, len(specs))
	for i, s := range specs {
		names[i] = s.Name
	}
	return strings.Join(names, ", ")
}

// RouterOptionsFrom reads the router options from a configuration.
func RouterOptionsFrom(c *config.Config) RouterOptions {
	return RouterOptions{Stream: c.Streams.Events, Consumer: c.Router.Consumer, Workers: c.Router.Workers,
		Batch: c.Router.Batch, AckWait: c.Router.AckWait.D()}
}

// Consumer creates or binds the durable consumer the routers share.
func (r *Router) Consumer(ctx context.Context) (jetstream.Consumer, error) {
	var cons jetstream.Consumer
	err := retryManagement(ctx, func(ctx context.Context) (err error) {
		cons, err = r.js.CreateOrUpdateConsumer(ctx, r.opts.Stream, jetstream.ConsumerConfig{
			Durable:       r.opts.Consumer,
			FilterSubject: EventsPrefix + ">",
			AckPolicy:     jetstream.AckExplicitPolicy,
			AckWait:       r.opts.AckWait,
			MaxAckPending: max(r.opts.Workers*r.opts.Batch*4, 20000),
			MaxDeliver:    -1,
			DeliverPolicy: jetstream.DeliverAllPolicy,
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("create router consumer %s on %s: %w", r.opts.Consumer, r.opts.Stream, err)
	}
	return cons, nil
}

// Run routes until ctx ends, then finishes the messages in flight (their
// copies are awaited, then they are acked). When the server feeds every
// sink, Run only waits for ctx: the router's consumer keeps its position,
// and a sink routed by the router later receives the events since then.
func (r *Router) Run(ctx context.Context) error {
	if r.serverOnly {
		r.log.Info().Msg("the NATS server copies events to every sink ([router] server-fan-out): nothing to route")
		r.health.Set("consumer", nil)
		<-ctx.Done()
		return nil
	}
	pub, err := jetstream.New(r.js.Conn(),
		jetstream.WithPublishAsyncMaxPending(max(r.opts.Workers*r.opts.Batch*4, 4096)),
		jetstream.WithPublishAsyncTimeout(copyTimeout),
		jetstream.WithPublishAsyncAckHandler(func(_ jetstream.JetStream, m *nats.Msg, _ *jetstream.PubAck) { r.settle(m, nil) }),
		jetstream.WithPublishAsyncErrHandler(func(_ jetstream.JetStream, m *nats.Msg, err error) { r.settle(m, err) }))
	if err != nil {
		return fmt.Errorf("router jetstream context: %w", err)
	}
	r.pub = pub
	cons, err := r.Consumer(ctx)
	if err != nil {
		return err
	}
	r.health.Set("consumer", nil)
	defer r.health.Set("consumer", errors.New("stopped"))
	go watchLag(ctx, cons, r.opts.Stream, r.opts.Consumer, r.metrics)

	ccs := make([]jetstream.ConsumeContext, 0, r.opts.Workers)
	for i := 0; i < r.opts.Workers; i++ {
		cc, err := cons.Consume(r.handle, jetstream.PullMaxMessages(r.opts.Batch), jetstream.PullExpiry(pullExpiry),
			jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
				r.log.Warn().Err(err).Msg("router pull")
			}))
		if err != nil {
			for _, c := range ccs {
				c.Stop()
			}
			return fmt.Errorf("router pull from %s: %w", r.opts.Consumer, err)
		}
		ccs = append(ccs, cc)
	}
	<-ctx.Done()
	// Stop pulling, let the handlers finish what they were given, then wait
	// for the copies in flight so their sources are acked, not redelivered.
	for _, cc := range ccs {
		cc.Drain()
	}
	for _, cc := range ccs {
		select {
		case <-cc.Closed():
		case <-time.After(copyTimeout):
		}
	}
	r.waitIdle(copyTimeout + time.Second)
	return nil
}

// handle routes one EVENTS message; it runs on a consume goroutine.
func (r *Router) handle(msg jetstream.Msg) {
	r.received.Inc()
	md, err := msg.Metadata()
	if err != nil {
		r.deadLetter(msg, fmt.Errorf("read message metadata: %w", err))
		return
	}
	if md.NumDelivered > 1 {
		r.redelivered.Inc()
	}
	id := SubjectEventID(msg.Subject())
	if id == "" {
		r.deadLetter(msg, fmt.Errorf("subject %q does not end in an event id", msg.Subject()))
		return
	}
	if _, typ, _, err := schema.Peek(msg.Data()); err != nil {
		r.deadLetter(msg, err) // schema says what it was decoding
		return
	} else if typ != id {
		r.deadLetter(msg, fmt.Errorf("event type %q does not match subject %q", typ, msg.Subject()))
		return
	}
	targets, known := r.table.Load().Route(id)
	if !known {
		r.metrics.UnknownTypes.Inc()
	}
	if len(targets) == 0 {
		msg.Ack()
		return
	}
	rt := &routing{msg: msg}
	rt.copies.Store(int32(len(targets)))
	seq := strconv.FormatUint(md.Sequence.Stream, 10)
	for i := range targets {
		out := &nats.Msg{Subject: targets[i].Subject, Data: msg.Data(),
			Header: nats.Header{jetstream.MsgIDHeader: []string{seq + "." + targets[i].Sink}}}
		r.mu.Lock()
		r.pending[out] = rt
		r.mu.Unlock()
		if _, err := r.pub.PublishMsgAsync(out); err != nil {
			r.settle(out, err)
		}
	}
}

// settle records the outcome of one copy; when the last copy of a source
// is settled, the source is acked, or nak'ed for redelivery if a copy
// failed. It runs on the ack-processing goroutine and must not block.
func (r *Router) settle(out *nats.Msg, err error) {
	r.mu.Lock()
	rt, ok := r.pending[out]
	delete(r.pending, out)
	if len(r.pending) == 0 {
		r.idle.Broadcast()
	}
	r.mu.Unlock()
	if !ok {
		return
	}
	if err != nil {
		rt.failed.Store(true)
		r.log.Warn().Err(err).Str("subject", out.Subject).Msg("store routed copy; the event will be redelivered")
	} else if c := (*r.routed.Load())[sinkOf(out.Subject)]; c != nil {
		c.Inc()
	}
	if rt.copies.Add(-1) > 0 {
		return
	}
	if rt.failed.Load() {
		r.retried.Inc()
		rt.msg.NakWithDelay(delivery.Jitter(time.Second))
		return
	}
	rt.msg.Ack()
}

// waitIdle waits until no copy is in flight, or d passed.
func (r *Router) waitIdle(d time.Duration) {
	timer := time.AfterFunc(d, func() { r.mu.Lock(); r.idle.Broadcast(); r.mu.Unlock() })
	defer timer.Stop()
	deadline := time.Now().Add(d)
	r.mu.Lock()
	for len(r.pending) > 0 && time.Now().Before(deadline) {
		r.idle.Wait()
	}
	r.mu.Unlock()
}

func (r *Router) deadLetter(msg jetstream.Msg, reason error) {
	r.log.Warn().Err(reason).Str("subject", msg.Subject()).Msg("dead-lettering message")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := DeadLetter(ctx, r.js, "router", msg, reason); err != nil {
		r.log.Error().Err(err).Msg("dead-letter failed; message will be redelivered")
		msg.NakWithDelay(delivery.Jitter(time.Second))
		return
	}
	r.dlqs.Inc()
	msg.Ack()
}

// sinkOf returns the sink token of a routed.<sink>.<category>.<event>
// subject.
func sinkOf(subject string) string {
	rest := strings.TrimPrefix(subject, RoutedPrefix)
	if i := strings.IndexByte(rest, '.'); i >= 0 {
		return rest[:i]
	}
	return rest
}

// SubjectEventID returns the event id carried by the last two tokens of a
// mailtel subject (events.<id>, routed.<sink>.<id>, dlq.<stage>.<id>), or
// "" when the subject has fewer than three tokens or they are not a valid
// event id.
func SubjectEventID(subject string) string {
	id := catalog.SubjectID(subject)
	if len(id) == len(subject) || !schema.ValidType(id) {
		return ""
	}
	return id
}

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
