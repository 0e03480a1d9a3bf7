package replay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Message is one stream message as a Reader delivers it.
type Message struct {
	Subject string
	Data    []byte
	// Seq is the stream sequence and Time the time the stream stored it.
	Seq  uint64
	Time time.Time
}

// ReadOptions say what a Reader reads.
type ReadOptions struct {
	Stream string
	// Subjects filter the stream (wildcards allowed, see ValidateSubject);
	// they must not overlap (the server refuses overlapping filters).
	Subjects []string
	// Range is the part of the stream to read. A bounded reader (Follow
	// false) fixes the end of the range when it opens, see Open.
	Range Range
	// Follow reads on, waiting for new messages, until the reader is closed
	// or the context ends. Range.Until and Range.ToSeq must be zero; a
	// range without a start means new messages only.
	Follow bool
	// Buffer is how many messages are fetched ahead (default 500).
	Buffer int
}

// Reader reads the messages of some subjects of one stream in stream
// order, from an ephemeral ordered consumer: it creates no durable consumer
// and acks nothing, so the live consumers are not affected.
//
// A bounded reader ends (Next returns io.EOF) after the last message of its
// range: the first message stored after Range.Until, or past Range.ToSeq,
// or past the last message that matched its subjects when it opened, is not
// delivered; so it ends by itself while new messages keep arriving.
//
// Next and NextBatch must be called from one goroutine at a time; Close
// may be called from any goroutine, and more than once.
type Reader struct {
	js    jetstream.JetStream
	opts  ReadOptions
	end   uint64 // last sequence a bounded reader delivers
	total uint64

	cons   jetstream.Consumer
	it     jetstream.MessagesContext
	msgs   chan Message
	stop   context.CancelFunc
	done   chan struct{}
	err    error // why msgs was closed: io.EOF or a read error
	closed sync.Once
}

// idleCheck is how long a bounded reader waits for a message before it
// asks the server whether anything is left in its range.
const idleCheck = 2 * time.Second

// Open starts reading. For a bounded reader it first fixes the end of the
// range: the last message matching the subjects now, or Range.ToSeq if
// that is earlier; and it estimates how many messages the range holds (see
// Total). It fails when the stream does not exist.
func Open(ctx context.Context, js jetstream.JetStream, o ReadOptions) (*Reader, error) {
	if err := o.Range.Validate(); err != nil {
		return nil, err
	}
	if len(o.Subjects) == 0 {
		return nil, errors.New("read: no subjects")
	}
	if o.Follow && (!o.Range.Until.IsZero() || o.Range.ToSeq > 0) {
		return nil, errors.New("read: a followed range has no end")
	}
	if o.Buffer < 1 {
		o.Buffer = 500
	}
	r := &Reader{js: js, opts: o, msgs: make(chan Message, o.Buffer), done: make(chan struct{})}
	st, err := js.Stream(ctx, o.Stream)
	if err != nil {
		return nil, fmt.Errorf("read stream %s: %w", o.Stream, err)
	}
	if !o.Follow {
		if r.end, err = lastSeq(ctx, st, o.Subjects); err != nil {
			return nil, err
		}
		if o.Range.ToSeq > 0 {
			r.end = min(r.end, o.Range.ToSeq)
		}
		if r.end == 0 || o.Range.FromSeq > r.end {
			return r.finished(io.EOF), nil // nothing in range
		}
	}

	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: o.Subjects, DeliverPolicy: jetstream.DeliverAllPolicy}
	switch {
	case o.Range.FromSeq > 0:
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, o.Range.FromSeq
	case !o.Range.Since.IsZero():
		since := o.Range.Since
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &since
	case o.Follow:
		cfg.DeliverPolicy = jetstream.DeliverNewPolicy
	}
	if r.cons, err = js.OrderedConsumer(ctx, o.Stream, cfg); err != nil {
		return nil, fmt.Errorf("read stream %s: create ordered consumer on %v: %w", o.Stream, o.Subjects, err)
	}
	if r.it, err = r.cons.Messages(jetstream.PullMaxMessages(o.Buffer)); err != nil {
		return nil, fmt.Errorf("read stream %s: %w", o.Stream, err)
	}
	if !o.Follow {
		// The consumer exists now: what it has delivered plus what is
		// pending is every matching message from the start on.
		info, err := r.cons.Info(ctx)
		if err != nil {
			r.release()
			return nil, fmt.Errorf("read stream %s: consumer info: %w", o.Stream, err)
		}
		fromStart := info.NumPending + info.Delivered.Consumer
		if fromStart == 0 {
			r.release()
			return r.finished(io.EOF), nil
		}
		after, err := r.pendingAfterEnd(ctx, st)
		if err != nil {
			r.release()
			return nil, err
		}
		if fromStart > after {
			r.total = fromStart - after
		}
	}
	pctx, cancel := context.WithCancel(context.Background())
	r.stop = cancel
	go r.pump(pctx)
	return r, nil
}

// finished returns r as a reader that has nothing (more) to deliver.
func (r *Reader) finished(err error) *Reader {
	r.err = err
	close(r.msgs)
	close(r.done)
	r.stop = func() {}
	return r
}

// lastSeq returns the sequence of the last message matching any of the
// subjects, 0 if there is none.
func lastSeq(ctx context.Context, st jetstream.Stream, subjects []string) (uint64, error) {
	var last uint64
	for _, s := range subjects {
		m, err := st.GetLastMsgForSubject(ctx, s)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("read stream %s: last message on %s: %w", st.CachedInfo().Config.Name, s, err)
		}
		last = max(last, m.Sequence)
	}
	return last, nil
}

// pendingAfterEnd counts the matching messages after the end of the range
// (past r.end, or stored after Range.Until), with a short-lived ephemeral
// consumer that only reports its pending count.
func (r *Reader) pendingAfterEnd(ctx context.Context, st jetstream.Stream) (uint64, error) {
	count := func(cfg jetstream.ConsumerConfig) (uint64, error) {
		cfg.FilterSubjects, cfg.AckPolicy, cfg.InactiveThreshold = r.opts.Subjects, jetstream.AckNonePolicy, 10*time.Second
		c, err := st.CreateConsumer(ctx, cfg)
		if err != nil {
			return 0, fmt.Errorf("read stream %s: count the range: %w", r.opts.Stream, err)
		}
		n := c.CachedInfo().NumPending
		_ = st.DeleteConsumer(ctx, c.CachedInfo().Name) // else it expires by itself
		return n, nil
	}
	after, err := count(jetstream.ConsumerConfig{DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: r.end + 1})
	if err != nil || r.opts.Range.Until.IsZero() {
		return after, err
	}
	t := r.opts.Range.Until.Add(time.Nanosecond)
	afterUntil, err := count(jetstream.ConsumerConfig{DeliverPolicy: jetstream.DeliverByStartTimePolicy, OptStartTime: &t})
	return max(after, afterUntil), err
}

// pump moves messages from the consumer to r.msgs, ending a bounded read
// at the end of its range.
func (r *Reader) pump(ctx context.Context) {
	defer close(r.done)
	var last uint64
	end := func(err error) {
		r.err = err
		close(r.msgs)
	}
	for {
		wait := ctx
		cancel := context.CancelFunc(func() {})
		if !r.opts.Follow {
			wait, cancel = context.WithTimeout(ctx, idleCheck)
		}
		m, err := r.it.Next(jetstream.NextContext(wait))
		cancel()
		if err != nil {
			switch {
			case ctx.Err() != nil:
				end(ErrClosed)
				return
			case errors.Is(err, context.DeadlineExceeded):
				if r.drained(ctx, last) {
					end(io.EOF)
					return
				}
				continue
			}
			end(fmt.Errorf("read stream %s: %w", r.opts.Stream, err))
			return
		}
		md, err := m.Metadata()
		if err != nil {
			end(fmt.Errorf("read stream %s: message metadata: %w", r.opts.Stream, err))
			return
		}
		seq := md.Sequence.Stream
		if !r.opts.Follow && (seq > r.end || (!r.opts.Range.Until.IsZero() && md.Timestamp.After(r.opts.Range.Until))) {
			end(io.EOF)
			return
		}
		select {
		case r.msgs <- Message{Subject: m.Subject(), Data: m.Data(), Seq: seq, Time: md.Timestamp}:
		case <-ctx.Done():
			end(ErrClosed)
			return
		}
		last = seq
		// NumPending 0: nothing matching is stored after this message (the
		// end of the range was deleted by the stream's limits meanwhile).
		if !r.opts.Follow && (seq >= r.end || md.NumPending == 0) {
			end(io.EOF)
			return
		}
	}
}

// drained reports whether a bounded reader that got nothing for a while
// has nothing left to get: the server has no pending message for it and
// none delivered that has not arrived.
func (r *Reader) drained(ctx context.Context, last uint64) bool {
	ictx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	info, err := r.cons.Info(ictx)
	return err == nil && info.NumPending == 0 && info.Delivered.Stream <= last
}

// ErrClosed is returned by Next after Close.
var ErrClosed = errors.New("reader closed")

// Total is the number of messages in the range when the reader opened,
// counted by the server; messages the stream's limits delete during the
// read make it an overestimate. It is 0 for a following reader.
func (r *Reader) Total() uint64 { return r.total }

// End is the last stream sequence a bounded reader may deliver (0 when its
// range is empty or the reader follows).
func (r *Reader) End() uint64 { return r.end }

// Next returns the next message, waiting for it until ctx ends. It returns
// io.EOF after the last message of a bounded range, ErrClosed after Close,
// or the error that stopped the read.
func (r *Reader) Next(ctx context.Context) (Message, error) {
	select {
	case m, ok := <-r.msgs:
		if !ok {
			return Message{}, r.err
		}
		return m, nil
	case <-ctx.Done():
		return Message{}, ctx.Err()
	}
}

// NextBatch appends to dst the next message, waiting for it at most wait
// (0: until ctx ends), and then up to max-1 more that have already
// arrived. It returns dst unchanged and a nil error when wait passed with
// no message, and the error of Next once no message is left.
func (r *Reader) NextBatch(ctx context.Context, dst []Message, max int, wait time.Duration) ([]Message, error) {
	wctx := ctx
	if wait > 0 {
		var cancel context.CancelFunc
		wctx, cancel = context.WithTimeout(ctx, wait)
		defer cancel()
	}
	m, err := r.Next(wctx)
	if err != nil {
		if ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
			return dst, nil
		}
		return dst, err
	}
	dst = append(dst, m)
	for n := 1; n < max; n++ {
		select {
		case m, ok := <-r.msgs:
			if !ok {
				return dst, nil // the error comes with the next call
			}
			dst = append(dst, m)
		default:
			return dst, nil
		}
	}
	return dst, nil
}

// Close stops the read and deletes the ordered consumer. It is idempotent.
func (r *Reader) Close() {
	r.closed.Do(func() {
		r.stop()
		<-r.done
		r.release()
	})
}

// release stops the iterator and deletes the server's consumer at once,
// rather than leaving it to expire after its inactive threshold.
func (r *Reader) release() {
	if r.it == nil {
		return
	}
	r.it.Stop()
	r.it = nil
	if info := r.cons.CachedInfo(); info != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = r.js.DeleteConsumer(ctx, r.opts.Stream, info.Name) // best effort: it expires anyway
	}
}
