package replay

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mailtel/mailtel/catalog"
	"github.com/mailtel/mailtel/pipeline"
	"github.com/mailtel/mailtel/pipeline/config"
	"github.com/mailtel/mailtel/schema"
)

// TailOptions say what Tail shows and where.
type TailOptions struct {
	// Streams names the streams; the subjects pick one (see StreamOf).
	Streams config.Streams
	// Subjects are the filters, wildcards allowed (events.auth.>,
	// events.*.error, routed.siem.>).
	Subjects []string
	// Since starts at the first message stored at or after it; zero shows
	// only messages stored from now on.
	Since time.Time
	// ByLevel shows only events whose envelope level MinLevel records (at
	// least MinLevel, and not disable).
	ByLevel  bool
	MinLevel catalog.Level
	// Out writes the events shown, in stream order (a tracer of type stdout
	// renders them as Stalwart's text lines or JSON lines).
	Out pipeline.Sink
	// Malformed, if set, is told about messages that are not events; they
	// are not shown.
	Malformed func(m Message, err error)
}

// Tail shows the events of the subjects as they are stored, until ctx
// ends; it then returns nil. It reads from an ephemeral ordered consumer
// and acks nothing. Overlapping subjects (events.auth.> and
// events.*.error) are read as their whole stream and matched here, since
// the server refuses overlapping filters.
func Tail(ctx context.Context, js jetstream.JetStream, o TailOptions) error {
	stream, err := StreamOf(o.Subjects, o.Streams)
	if err != nil {
		return err
	}
	filters, matchHere := ServerFilters(o.Subjects)
	r, err := Open(ctx, js, ReadOptions{Stream: stream, Subjects: filters, Range: Range{Since: o.Since}, Follow: true, Buffer: 256})
	if err != nil {
		return err
	}
	defer r.Close()
	msgs := make([]Message, 0, 256)
	evs := make([]*schema.Event, 0, 256)
	for {
		msgs, err = r.NextBatch(ctx, msgs[:0], cap(msgs), 0)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return err
		}
		evs = evs[:0]
		for _, m := range msgs {
			if matchHere && !matchAny(o.Subjects, m.Subject) {
				continue
			}
			ev := new(schema.Event)
			if err := schema.Unmarshal(m.Data, ev); err != nil {
				if o.Malformed != nil {
					o.Malformed(m, fmt.Errorf("decode event: %w", err))
				}
				continue
			}
			if o.ByLevel && !o.MinLevel.Records(ev.Level) {
				continue
			}
			evs = append(evs, ev)
		}
		if len(evs) == 0 {
			continue
		}
		if err := o.Out.Write(ctx, evs); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("tail: %w", err)
		}
	}
}

func matchAny(filters []string, subject string) bool {
	for _, f := range filters {
		if Match(f, subject) {
			return true
		}
	}
	return false
}
