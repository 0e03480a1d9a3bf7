// Package ingest turns what mail servers send into events on the EVENTS
// stream: lines from a file or stdin (File), and HTTP requests to
// POST /v1/ingest/<format> (Handler), in every format registered with
// package format: Stalwart's telemetry webhook and Dovecot's event
// exporter (packages stalwart and dovecot, linked in by this package
// through package formats), and any other format package a program
// imports. This package never names a format but for the names of the
// built-in ones: it iterates the registry.
//
// Events that cannot be parsed, are over the limits or encode larger than
// the NATS server takes are never silently dropped: they are reported to
// the caller (a line number, an entry of "rejected" or a 4xx answer) and
// stored in the DLQ stream on dlq.ingest.unknown with the reason (cut to
// fit the server's max payload, and saying so, when they are too large).
// A caller is told that its input is stored only once both its events and
// its dead letters are.
package ingest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mailtel/mailtel/pipeline"
	"github.com/mailtel/mailtel/pipeline/ingest/dovecot"
	"github.com/mailtel/mailtel/pipeline/ingest/format"
	_ "github.com/mailtel/mailtel/pipeline/ingest/formats" // the built-in formats
	"github.com/mailtel/mailtel/pipeline/ingest/stalwart"
	"github.com/mailtel/mailtel/schema"
)

// Format names a wire format of events: one registered with package
// format (see there, and package formats for the built-in ones, which
// this package links in).
type Format string

// The built-in formats.
const (
	Stalwart Format = stalwart.Name
	Dovecot  Format = dovecot.Name
)

// Detect returns the format of one line of JSON lines (see format.Detect:
// the first registered format, in the order of their names, that
// recognizes it, else the fallback format, Stalwart's), "" when no format
// is registered. It reads the line only as far as the formats' Detect do.
func Detect(data []byte) Format {
	f, _ := format.Detect(data)
	return Format(f.Name)
}

// Decode parses one event in any registered format into ev and checks it
// against DefaultLimits.
func Decode(data []byte, ev *schema.Event) (Format, error) {
	return DecodeLimits(data, ev, DefaultLimits)
}

// DecodeLimits parses one event in any registered format (see Detect)
// into ev and checks it against the limits.
func DecodeLimits(data []byte, ev *schema.Event, l Limits) (Format, error) {
	f, ok := format.Detect(data)
	if !ok {
		return "", fmt.Errorf("no ingest format recognizes the line (known: %s)", strings.Join(format.Names(), ", "))
	}
	if err := f.Decode(data, ev); err != nil {
		return Format(f.Name), fmt.Errorf("parse %s event: %w", f.Name, err)
	}
	if err := l.Check(ev); err != nil {
		return Format(f.Name), fmt.Errorf("%s event %s: %w", f.Name, ev.ID, err)
	}
	return Format(f.Name), nil
}

// Counts are the outcome of an ingest run.
type Counts struct {
	Published int64 // stored in EVENTS
	Duplicate int64 // already stored (a retry of an event seen before)
	Rejected  int64 // bad input: could not be parsed, over a limit or too large to publish
	Failed    int64 // could not be stored after retries
	// DeadLettered counts the rejected input stored in the DLQ; the other
	// Rejected - DeadLettered exist only in the rejection reports.
	DeadLettered int64
}

// Rejection is a line that could not be ingested.
type Rejection struct {
	Line int
	Err  error
}

// MaxLine is the longest line File accepts; longer lines are rejected.
const MaxLine = 4 << 20

// LetterTimeout bounds how long File waits for JetStream to store the dead
// letter of one rejected line.
const LetterTimeout = 10 * time.Second

// File publishes every line of r, one event per line in any registered
// format (detected per line, see Detect), and returns when JetStream acknowledged
// every event and every dead letter. Empty lines are skipped. Bad lines
// (that do not parse, are over the limits, or whose encoding is larger
// than the server takes) are passed to reject and dead-lettered, without
// stopping the rest; a dead letter that could not be stored is passed to
// reject too. The returned error is about the run itself (reading r, ctx
// ending); per-event outcomes are in Counts.
func File(ctx context.Context, r io.Reader, pub *pipeline.Publisher, js jetstream.JetStream, reject func(Rejection)) (Counts, error) {
	return FileLimits(ctx, r, pub, js, DefaultLimits, reject)
}

// FileLimits is File with the given limits on each event.
func FileLimits(ctx context.Context, r io.Reader, pub *pipeline.Publisher, js jetstream.JetStream, limits Limits, reject func(Rejection)) (Counts, error) {
	var c counters
	var wg sync.WaitGroup
	letters := newLetters(js, LetterTimeout)
	br := bufio.NewReaderSize(r, 64<<10)
	var readErr error
	var mu sync.Mutex // guards reject
	report := func(rj Rejection) {
		mu.Lock()
		defer mu.Unlock()
		if reject != nil {
			reject(rj)
		}
	}
	for n := 1; ; n++ {
		line, err := readLine(br)
		if len(bytes.TrimSpace(line)) > 0 || errors.Is(err, errLineTooLong) {
			var perr error
			ev := new(schema.Event)
			var f Format
			if errors.Is(err, errLineTooLong) {
				perr = fmt.Errorf("line longer than %d bytes", MaxLine)
			} else {
				f, perr = DecodeLimits(line, ev, limits)
			}
			if perr == nil {
				wg.Add(1)
				line := n
				if err := pub.Publish(ctx, ev, func(a pipeline.Ack) {
					defer wg.Done()
					c.add(a)
					if a.Err != nil {
						report(Rejection{Line: line, Err: a.Err})
					}
				}); err != nil {
					wg.Done()
					if tooLarge := (*pipeline.TooLargeError)(nil); errors.As(err, &tooLarge) {
						perr = fmt.Errorf("%s event %s: %w", f, ev.ID, tooLarge)
					} else {
						c.failed.Add(1)
						report(Rejection{Line: n, Err: err})
					}
				}
			}
			if perr != nil {
				c.rejected.Add(1)
				report(Rejection{Line: n, Err: perr})
				letters.send(ctx, line, perr, func(err error) {
					if err != nil {
						report(Rejection{Line: n, Err: err})
						return
					}
					c.deadLettered.Add(1)
				})
			}
		}
		if err != nil && !errors.Is(err, errLineTooLong) {
			if !errors.Is(err, io.EOF) {
				readErr = fmt.Errorf("read line %d: %w", n, err)
			}
			break
		}
		if ctx.Err() != nil {
			readErr = ctx.Err()
			break
		}
	}
	wg.Wait()
	letters.wait()
	return c.counts(), readErr
}

var errLineTooLong = errors.New("line too long")

// readLine returns the next line without its newline. A line longer than
// MaxLine is consumed and reported with errLineTooLong.
func readLine(br *bufio.Reader) ([]byte, error) {
	var buf []byte
	for {
		frag, err := br.ReadSlice('\n')
		if len(buf)+len(frag) > MaxLine {
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = br.ReadSlice('\n')
			}
			if err != nil && !errors.Is(err, io.EOF) {
				return nil, err
			}
			return nil, errLineTooLong
		}
		buf = append(buf, frag...)
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if n := len(buf); n > 0 && buf[n-1] == '\n' {
			buf = buf[:n-1]
		}
		return buf, err
	}
}

type counters struct{ published, duplicate, rejected, failed, deadLettered atomic.Int64 }

func (c *counters) add(a pipeline.Ack) {
	switch {
	case a.Err != nil:
		c.failed.Add(1)
	case a.Duplicate:
		c.duplicate.Add(1)
	default:
		c.published.Add(1)
	}
}

func (c *counters) counts() Counts {
	return Counts{Published: c.published.Load(), Duplicate: c.duplicate.Load(), Rejected: c.rejected.Load(), Failed: c.failed.Load(),
		DeadLettered: c.deadLettered.Load()}
}

// deadLetter stores input that could not be ingested in the DLQ on
// dlq.ingest.unknown, cut to fit the server's max payload if need be (see
// pipeline.LetterMsg). The message id is a hash of the whole input, so a
// sender retrying the same bad input stores it once.
func deadLetter(ctx context.Context, js jetstream.JetStream, data []byte, reason error) error {
	if js == nil {
		return errors.New("dead-letter rejected input: no JetStream context")
	}
	sum := sha256.Sum256(data)
	return pipeline.PublishLetter(ctx, js, pipeline.Letter{Stage: "ingest", Data: data, Reason: reason,
		MsgID: "dlq.ingest." + hex.EncodeToString(sum[:16])})
}

// maxLetters bounds the dead letters one request or one File run has in
// flight at once.
const maxLetters = 16

// letters dead-letters rejected input concurrently, at most maxLetters at
// a time, each within timeout (0: within its context only).
type letters struct {
	js      jetstream.JetStream
	timeout time.Duration
	sem     chan struct{}
	wg      sync.WaitGroup
}

func newLetters(js jetstream.JetStream, timeout time.Duration) *letters {
	return &letters{js: js, timeout: timeout, sem: make(chan struct{}, maxLetters)}
}

// send dead-letters data with the reason, and calls done with the outcome
// (nil once JetStream stored it) from another goroutine, or from send
// itself when ctx ends while it waits for a slot. data must not change
// until done is called.
func (ls *letters) send(ctx context.Context, data []byte, reason error, done func(error)) {
	select {
	case ls.sem <- struct{}{}:
	case <-ctx.Done():
		done(fmt.Errorf("dead-letter rejected input: %w", context.Cause(ctx)))
		return
	}
	ls.wg.Add(1)
	go func() {
		defer ls.wg.Done()
		defer func() { <-ls.sem }()
		lctx := ctx
		if ls.timeout > 0 {
			var cancel context.CancelFunc
			lctx, cancel = context.WithTimeout(ctx, ls.timeout)
			defer cancel()
		}
		err := deadLetter(lctx, ls.js, data, reason)
		if cause := context.Cause(ctx); err != nil && cause != nil && !errors.Is(err, cause) {
			// Say why the context ended (the connection was lost), not
			// only that it did.
			err = fmt.Errorf("%w (%w)", err, cause)
		}
		done(err)
	}()
}

// wait waits until every letter sent is settled.
func (ls *letters) wait() { ls.wg.Wait() }
