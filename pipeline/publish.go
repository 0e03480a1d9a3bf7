package pipeline

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mailtel/mailtel/catalog"
	"github.com/mailtel/mailtel/pipeline/delivery"
	"github.com/mailtel/mailtel/pipeline/obs"
	"github.com/mailtel/mailtel/schema"
)

// Ack is JetStream's answer to one published event.
type Ack struct {
	// Duplicate is true when the stream already held an event with the same
	// id (a sender's retry): nothing new was stored.
	Duplicate bool
	// Seq is the EVENTS stream sequence of the event.
	Seq uint64
	// Err is non-nil when the event could not be stored after retries.
	Err error
}

// Publisher publishes events to the EVENTS stream asynchronously, with at
// most MaxInFlight publishes awaiting JetStream's acknowledgement. Every
// message carries Nats-Msg-Id = event id, so a retry of the same event is
// stored once. Publish is safe for concurrent use.
type Publisher struct {
	js      jetstream.JetStream
	nc      *nats.Conn // js's connection: its max payload bounds an event
	levels  *catalog.Levels
	pending chan pendingPub
	wg      sync.WaitGroup
	retries int

	metrics *obs.Metrics // may be nil

	// ackTimer bounds await's wait for a future; only collect uses it.
	ackTimer *time.Timer

	mu     sync.Mutex
	closed bool
	done   chan struct{}
}

type pendingPub struct {
	fut  jetstream.PubAckFuture
	msg  *nats.Msg
	done func(Ack)
}

// PublishRetries is how many times a publish that failed (timeout, no
// responders while a leader is elected) is retried, with backoff, before
// its Ack carries the error.
const PublishRetries = 8

// PublishAckTimeout bounds the wait for JetStream's acknowledgement of one
// publish attempt. An acknowledgement can be lost for good (the stream
// leader died after the message reached it); the attempt then counts as
// failed and is retried with the same Nats-Msg-Id, so the event is stored
// once whether or not the lost attempt was.
const PublishAckTimeout = 5 * time.Second

// NewPublisher returns a publisher that stamps each event with its
// effective level from levels and keeps about maxInFlight publishes
// unacknowledged (at most twice that). Outcomes are counted in
// m.Published when m is not nil.
func NewPublisher(js jetstream.JetStream, levels *catalog.Levels, maxInFlight int, m *obs.Metrics) *Publisher {
	if maxInFlight < 1 {
		maxInFlight = 1
	}
	p := &Publisher{js: js, nc: js.Conn(), levels: levels, pending: make(chan pendingPub, maxInFlight), retries: PublishRetries,
		done: make(chan struct{}), metrics: m, ackTimer: time.NewTimer(PublishAckTimeout)}
	p.ackTimer.Stop()
	go p.collect()
	return p
}

// ErrPublisherClosed is returned by Publish after Close.
var ErrPublisherClosed = errors.New("publisher closed")

// PayloadHeadroom is what Publish keeps free under the server's max
// payload: an event is refused when its encoding is larger than
// MaxPayload - PayloadHeadroom. The event travels on with headers: its
// own Nats-Msg-Id (at most 128 bytes of id), the router's copy with a
// Nats-Msg-Id of its own, the server's stream sources add
// Nats-Stream-Source, and a sink that gives up on it dead-letters it with
// the source's headers and the Mailtel-* ones (the reason cut to
// MaxReasonLen). 4 KiB holds all of these, so an event stored in EVENTS
// can always be copied onward whole.
const PayloadHeadroom = 4 << 10

// TooLargeError is returned (wrapped) by Publish for an event whose
// encoding does not fit in a message of the connected server. Retrying
// cannot help: the event is bad input.
type TooLargeError struct {
	Size       int   // bytes of the encoded event
	Limit      int64 // bytes an encoded event may have
	MaxPayload int64 // the server's max payload
}

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("event encodes to %d bytes, more than the limit of %d bytes (the NATS server's max payload of %d bytes less %d for headers)",
		e.Size, e.Limit, e.MaxPayload, e.MaxPayload-e.Limit)
}

// MaxEventSize returns the largest encoded event Publish takes for a
// server with the given max payload: maxPayload - PayloadHeadroom, but at
// least half of maxPayload (for a server configured with a max payload
// under 8 KiB).
func MaxEventSize(maxPayload int64) int64 {
	return max(maxPayload-PayloadHeadroom, maxPayload/2)
}

// Publish stamps ev.Level with the event's effective level, encodes ev and
// publishes it to events.<type>. It blocks while MaxInFlight publishes are
// unacknowledged (back-pressure) or until ctx ends. done is called exactly
// once, from another goroutine, when JetStream has stored the event or the
// retries are exhausted; it is never called when Publish returns an error.
// An event whose encoding is larger than MaxEventSize of the server's max
// payload is refused with a *TooLargeError. ev may be reused once Publish
// returns.
func (p *Publisher) Publish(ctx context.Context, ev *schema.Event, done func(Ack)) error {
	if ev.ID == "" {
		return fmt.Errorf("publish %s: %w", ev.Type, errors.New("event has no id"))
	}
	if !schema.ValidType(ev.Type) {
		return fmt.Errorf("publish event %s: type %q is not a valid event id", ev.ID, ev.Type)
	}
	ev.Level = p.levels.Of(ev.Type)
	data, err := schema.Marshal(ev)
	if err != nil {
		return fmt.Errorf("publish event %s: %w", ev.ID, err)
	}
	// The size is checked here, on the bytes that are published, so the
	// event is encoded once. nats.go refuses a message over the max payload
	// too, but only later, in collect, where it would be retried for
	// seconds and then look like a failure to store (a 503 to an HTTP
	// sender, who would retry it for ever).
	if mp := p.maxPayload(); mp > 0 {
		if limit := MaxEventSize(mp); int64(len(data)) > limit {
			return fmt.Errorf("publish event %s: %w", ev.ID, &TooLargeError{Size: len(data), Limit: limit, MaxPayload: mp})
		}
	}
	msg := &nats.Msg{Subject: ev.Subject(), Data: data, Header: nats.Header{}}
	msg.Header.Set(jetstream.MsgIDHeader, ev.ID)
	// Reserve a slot first: this is where back-pressure blocks.
	select {
	case <-ctx.Done():
		return fmt.Errorf("publish %s: %w", msg.Subject, ctx.Err())
	case p.pending <- pendingPub{msg: msg, done: done}:
	}
	return nil
}

// maxPayload returns the connected server's max payload, 0 when unknown.
func (p *Publisher) maxPayload() int64 {
	if p.nc == nil {
		return 0
	}
	return p.nc.MaxPayload()
}

// collect publishes and awaits acknowledgements in order. Publishing here,
// not in Publish, keeps the future and its message in one place.
func (p *Publisher) collect() {
	defer close(p.done)
	ctx := context.Background()
	// Publish ahead up to the window; the channel holds what is not yet sent.
	var window []pendingPub
	for {
		// Fill: take everything queued (without blocking once we have work).
		if len(window) == 0 {
			pp, ok := <-p.pending
			if !ok {
				return
			}
			window = append(window, p.send(pp))
		}
	fill:
		for len(window) < cap(p.pending) {
			select {
			case pp, ok := <-p.pending:
				if !ok {
					break fill
				}
				window = append(window, p.send(pp))
			default:
				break fill
			}
		}
		head := window[0]
		window = window[1:]
		a := p.await(ctx, head)
		p.count(a)
		head.done(a)
	}
}

func (p *Publisher) count(a Ack) {
	if p.metrics == nil {
		return
	}
	switch {
	case a.Err != nil:
		p.metrics.Published.WithLabelValues("failed").Inc()
	case a.Duplicate:
		p.metrics.Published.WithLabelValues("duplicate").Inc()
	default:
		p.metrics.Published.WithLabelValues("stored").Inc()
	}
}

func (p *Publisher) send(pp pendingPub) pendingPub {
	fut, err := p.js.PublishMsgAsync(pp.msg)
	if err != nil {
		return pendingPub{msg: pp.msg, done: pp.done} // fut nil: await retries synchronously
	}
	pp.fut = fut
	return pp
}

// await waits for the future and retries a failed publish synchronously
// with backoff. Retries carry the same Nats-Msg-Id, so they never store a
// second copy.
func (p *Publisher) await(ctx context.Context, pp pendingPub) Ack {
	var err error
	if pp.fut != nil {
		// The JetStream context's own async timeout (Connect sets
		// PublishAckTimeout) also fails the future; the timer covers a
		// context made without one. One timer, reset for every wait,
		// keeps the wait free of allocations.
		p.ackTimer.Reset(PublishAckTimeout)
		select {
		case a := <-pp.fut.Ok():
			p.ackTimer.Stop()
			return Ack{Duplicate: a.Duplicate, Seq: a.Sequence}
		case err = <-pp.fut.Err():
			p.ackTimer.Stop()
		case <-p.ackTimer.C:
			err = fmt.Errorf("no acknowledgement within %v", PublishAckTimeout)
		}
	}
	backoff := 50 * time.Millisecond
	for i := 0; i < p.retries; i++ {
		actx, cancel := context.WithTimeout(ctx, PublishAckTimeout)
		a, perr := p.js.PublishMsg(actx, pp.msg)
		cancel()
		if perr == nil {
			return Ack{Duplicate: a.Duplicate, Seq: a.Sequence}
		}
		err = perr
		time.Sleep(delivery.Jitter(backoff))
		backoff = min(backoff*2, 2*time.Second)
	}
	return Ack{Err: fmt.Errorf("publish %s: %w", pp.msg.Subject, err)}
}

// Close waits until every accepted publish has been acknowledged (or ctx
// ends), then stops the publisher. It is idempotent.
func (p *Publisher) Close(ctx context.Context) error {
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		close(p.pending)
	}
	p.mu.Unlock()
	select {
	case <-p.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("close publisher: %w", ctx.Err())
	}
}

// PublishAll publishes evs and waits until JetStream answered for every one
// of them. It returns one Ack per event, in order.
func (p *Publisher) PublishAll(ctx context.Context, evs []schema.Event) ([]Ack, error) {
	acks := make([]Ack, len(evs))
	var wg sync.WaitGroup
	for i := range evs {
		wg.Add(1)
		if err := p.Publish(ctx, &evs[i], func(a Ack) { acks[i] = a; wg.Done() }); err != nil {
			wg.Done()
			acks[i] = Ack{Err: err}
		}
	}
	waited := make(chan struct{})
	go func() { wg.Wait(); close(waited) }()
	select {
	case <-waited:
		return acks, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("wait for acknowledgements: %w", ctx.Err())
	}
}
