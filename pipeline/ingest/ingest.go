// Package ingest turns what mail servers send into events on the EVENTS
// stream: JSON lines from a file or stdin, Stalwart's telemetry webhook
// and Dovecot's event exporter over HTTP.
//
// Events that cannot be parsed are never silently dropped: they are
// reported to the caller (a line number, a 4xx answer) and stored in the
// DLQ stream on dlq.ingest.unknown with the reason.
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
	"sync"
	"sync/atomic"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mailtel/mailtel/pipeline"
	"github.com/mailtel/mailtel/schema"
)

// Format is the wire format of one JSON event.
type Format string

// The formats mailtel ingests.
const (
	Stalwart Format = "stalwart"
	Dovecot  Format = "dovecot"
)

// Detect tells a Stalwart webhook event ({"type":..,"data":..}) from a
// Dovecot exporter event ({"event":..,"fields":..}) by their top-level
// keys. It reads only the keys of the outer object.
func Detect(data []byte) Format {
	// Dovecot's envelope has "event" and no "type"; Stalwart's the reverse.
	if hasKey(data, `"event"`) && !hasKey(data, `"type"`) {
		return Dovecot
	}
	return Stalwart
}

// hasKey reports whether key (quoted) appears followed by a colon, a cheap
// test that never misreads a valid event of either format.
func hasKey(data []byte, key string) bool {
	for i := 0; ; {
		j := bytes.Index(data[i:], []byte(key))
		if j < 0 {
			return false
		}
		k := i + j + len(key)
		for k < len(data) && (data[k] == ' ' || data[k] == '\t' || data[k] == '\r' || data[k] == '\n') {
			k++
		}
		if k < len(data) && data[k] == ':' {
			return true
		}
		i = i + j + 1
	}
}

// Decode parses one JSON event in either format into ev and checks it
// against DefaultLimits.
func Decode(data []byte, ev *schema.Event) (Format, error) {
	return DecodeLimits(data, ev, DefaultLimits)
}

// DecodeLimits parses one JSON event in either format into ev and checks it
// against the limits.
func DecodeLimits(data []byte, ev *schema.Event, l Limits) (Format, error) {
	f := Detect(data)
	var err error
	if f == Dovecot {
		err = schema.FromDovecot(data, ev)
	} else {
		err = schema.FromStalwart(data, ev)
	}
	if err != nil {
		return f, fmt.Errorf("parse %s event: %w", f, err)
	}
	if err := l.Check(ev); err != nil {
		return f, fmt.Errorf("%s event %s: %w", f, ev.ID, err)
	}
	return f, nil
}

// Counts are the outcome of an ingest run.
type Counts struct {
	Published int64 // stored in EVENTS
	Duplicate int64 // already stored (a retry of an event seen before)
	Rejected  int64 // could not be parsed; dead-lettered
	Failed    int64 // could not be stored after retries
}

// Rejection is a line that could not be ingested.
type Rejection struct {
	Line int
	Err  error
}

// MaxLine is the longest line File accepts; longer lines are rejected.
const MaxLine = 4 << 20

// File publishes every JSON line of r, one event per line in either
// format (detected per line), and returns when JSON Stream acknowledged
// every event. Empty lines are skipped. Bad lines are passed to reject,
// dead-lettered, and do not stop the rest. The returned error is about the
// run itself (reading r, ctx ending); per-event failures are in Counts.
func File(ctx context.Context, r io.Reader, pub *pipeline.Publisher, js jetstream.JetStream, reject func(Rejection)) (Counts, error) {
	return FileLimits(ctx, r, pub, js, DefaultLimits, reject)
}

// FileLimits is File with the given limits on each event.
func FileLimits(ctx context.Context, r io.Reader, pub *pipeline.Publisher, js jetstream.JetStream, limits Limits, reject func(Rejection)) (Counts, error) {
	var c counters
	var wg sync.WaitGroup
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
			if errors.Is(err, errLineTooLong) {
				perr = fmt.Errorf("line longer than %d bytes", MaxLine)
			} else {
				_, perr = DecodeLimits(line, ev, limits)
			}
			if perr != nil {
				c.rejected.Add(1)
				report(Rejection{Line: n, Err: perr})
				if derr := deadLetter(ctx, js, line, perr); derr != nil {
					report(Rejection{Line: n, Err: derr})
				}
			} else {
				wg.Add(1)
				line := n
				if perr := pub.Publish(ctx, ev, func(a pipeline.Ack) {
					defer wg.Done()
					c.add(a)
					if a.Err != nil {
						report(Rejection{Line: line, Err: a.Err})
					}
				}); perr != nil {
					wg.Done()
					c.failed.Add(1)
					report(Rejection{Line: n, Err: perr})
				}
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

type counters struct{ published, duplicate, rejected, failed atomic.Int64 }

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
	return Counts{Published: c.published.Load(), Duplicate: c.duplicate.Load(), Rejected: c.rejected.Load(), Failed: c.failed.Load()}
}

// deadLetter stores input that could not be parsed in the DLQ on
// dlq.ingest.unknown. The message id is a hash of the input, so a sender
// retrying the same bad input stores it once.
func deadLetter(ctx context.Context, js jetstream.JetStream, data []byte, reason error) error {
	if js == nil {
		return nil
	}
	sum := sha256.Sum256(data)
	return pipeline.PublishLetter(ctx, js, pipeline.Letter{Stage: "ingest", Data: bytes.Clone(data), Reason: reason,
		MsgID: "dlq.ingest." + hex.EncodeToString(sum[:16])})
}
