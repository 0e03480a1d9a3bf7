package replay

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mailtel/mailtel/catalog"
	"github.com/mailtel/mailtel/pipeline/config"
	"github.com/mailtel/mailtel/pipeline/sink"
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
	// only messages stored from now on (or, with Until, starts at the
	// first message of the stream).
	Since time.Time
	// Until, if set, ends the tail at the end of the range: the last
	// message stored at or before Until, or the last matching message
	// stored when Tail started if that is earlier; Tail then returns nil.
	// Zero follows new messages until ctx ends.
	Until time.Time
	// Where shows only events that match every condition (see ParseWhere).
	Where []Where
	// Counts, if set, is filled in as Tail goes (read it after Tail
	// returns).
	Counts *TailCounts
	// ByLevel shows only events whose envelope level MinLevel records (at
	// least MinLevel, and not disable).
	ByLevel  bool
	MinLevel catalog.Level
	// Out writes the events shown, in stream order (a tracer of type stdout
	// renders them as Stalwart's text lines or JSON lines).
	Out sink.Sink
	// Malformed, if set, is told about messages that are not events; they
	// are not shown.
	Malformed func(m Message, err error)
}

// TailCounts are what a Tail read and showed.
type TailCounts struct {
	// Read counts the messages on the subjects; Shown the events written
	// to Out; Filtered the events left out by ByLevel or Where; Malformed
	// the messages that were not events.
	Read, Shown, Filtered, Malformed uint64
}

// Tail shows the events of the subjects as they are stored, until ctx
// ends (or, with Until, the end of the range); it then returns nil. It reads from an ephemeral ordered consumer
// and acks nothing. Overlapping subjects (events.auth.> and
// events.*.error) are read as their whole stream and matched here, since
// the server refuses overlapping filters.
func Tail(ctx context.Context, js jetstream.JetStream, o TailOptions) error {
	stream, err := StreamOf(o.Subjects, o.Streams)
	if err != nil {
		return err
	}
	filters, matchHere := ServerFilters(o.Subjects)
	ro := ReadOptions{Stream: stream, Subjects: filters, Range: Range{Since: o.Since}, Follow: true, Buffer: 256}
	if !o.Until.IsZero() {
		ro.Range.Until, ro.Follow = o.Until, false
	}
	r, err := Open(ctx, js, ro)
	if err != nil {
		return err
	}
	counts := o.Counts
	if counts == nil {
		counts = new(TailCounts)
	}
	defer r.Close()
	msgs := make([]Message, 0, 256)
	evs := make([]*schema.Event, 0, 256)
	for {
		msgs, err = r.NextBatch(ctx, msgs[:0], cap(msgs), 0)
		if ctx.Err() != nil {
			return nil
		}
		end := errors.Is(err, io.EOF)
		if err != nil && !end {
			return err
		}
		evs = evs[:0]
		for _, m := range msgs {
			if matchHere && !matchAny(o.Subjects, m.Subject) {
				continue
			}
			counts.Read++
			ev := new(schema.Event)
			if err := schema.Unmarshal(m.Data, ev); err != nil {
				counts.Malformed++
				if o.Malformed != nil {
					o.Malformed(m, fmt.Errorf("decode event: %w", err))
				}
				continue
			}
			if (o.ByLevel && !o.MinLevel.Records(ev.Level)) || !matchWhere(o.Where, ev) {
				counts.Filtered++
				continue
			}
			evs = append(evs, ev)
		}
		if end && len(evs) == 0 {
			return nil
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
		counts.Shown += uint64(len(evs))
		if end {
			return nil
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

// Where is one condition on an event: its Key's value, in the text form
// the JSON output prints, equals Value, or matches it as a glob when Value
// holds '*' (any run of characters) or '?' (one character); Not negates
// it. The keys id, type, level, host, source (also server) and time are
// the envelope's; any other key is a field's (schema.Event.Get). A list
// matches when one of its elements does; a missing field never matches,
// so with Not it always does.
type Where struct {
	Key, Value string
	Not        bool
	glob       bool
}

// ParseWhere reads a condition as --where gives it: key=value or
// key!=value.
func ParseWhere(s string) (Where, error) {
	i := strings.IndexByte(s, '=')
	if i < 0 {
		return Where{}, fmt.Errorf("invalid condition %q: want key=value or key!=value (e.g. remoteIp=203.0.113.7, accountName=*@example.com)", s)
	}
	w := Where{Key: s[:i], Value: s[i+1:]}
	if strings.HasSuffix(w.Key, "!") {
		w.Key, w.Not = w.Key[:len(w.Key)-1], true
	}
	w.Key = strings.TrimSpace(w.Key)
	if w.Key == "" {
		return Where{}, fmt.Errorf("invalid condition %q: no key before the '='", s)
	}
	w.glob = strings.ContainsAny(w.Value, "*?")
	return w, nil
}

// String returns the condition as ParseWhere reads it.
func (w Where) String() string {
	if w.Not {
		return w.Key + "!=" + w.Value
	}
	return w.Key + "=" + w.Value
}

// Match reports whether ev meets the condition.
func (w Where) Match(ev *schema.Event) bool {
	var text string
	switch w.Key {
	case "id":
		text = ev.ID
	case "type":
		text = ev.Type
	case "level":
		text = ev.Level.String()
	case "host":
		text = ev.Host
	case "source", "server":
		text = ev.Server
	case "time":
		text = ev.Time.UTC().Format("2006-01-02T15:04:05.000000000Z07:00")
	default:
		v, ok := ev.Get(w.Key)
		if !ok {
			return w.Not
		}
		return w.matchValue(v, 0) != w.Not
	}
	return w.matchText(text) != w.Not
}

func (w Where) matchText(s string) bool {
	if w.glob {
		return globMatch(w.Value, s)
	}
	return s == w.Value
}

func (w Where) matchValue(v schema.Value, depth int) bool {
	if v.Kind() == schema.KindList {
		if depth > 8 {
			return false
		}
		for _, e := range v.List() {
			if w.matchValue(e, depth+1) {
				return true
			}
		}
		return false
	}
	s, ok := valueText(v)
	return ok && w.matchText(s)
}

// valueText is v as the JSON output prints it, without the quotes: times
// in RFC 3339, durations in milliseconds, bytes in base64. Nested events
// and missing values have no text form.
func valueText(v schema.Value) (string, bool) {
	switch v.Kind() {
	case schema.KindString:
		return v.Str(), true
	case schema.KindInt:
		return strconv.FormatInt(v.Int(), 10), true
	case schema.KindUint:
		return strconv.FormatUint(v.Uint(), 10), true
	case schema.KindFloat:
		x := v.Float()
		switch {
		case math.IsNaN(x):
			return "NaN", true
		case math.IsInf(x, 1):
			return "+Inf", true
		case math.IsInf(x, -1):
			return "-Inf", true
		}
		if a := math.Abs(x); a != 0 && (a < 1e-6 || a >= 1e21) {
			return strconv.FormatFloat(x, 'e', -1, 64), true
		}
		return strconv.FormatFloat(x, 'f', -1, 64), true
	case schema.KindBool:
		return strconv.FormatBool(v.Bool()), true
	case schema.KindTime:
		return v.Time().Format("2006-01-02T15:04:05.999999999Z07:00"), true
	case schema.KindDuration:
		return strconv.FormatInt(v.Duration().Milliseconds(), 10), true
	case schema.KindIP:
		if a := v.IP(); a.IsValid() {
			return a.String(), true
		}
	case schema.KindBytes:
		return base64.StdEncoding.EncodeToString(v.BytesValue()), true
	}
	return "", false
}

func matchWhere(where []Where, ev *schema.Event) bool {
	for i := range where {
		if !where[i].Match(ev) {
			return false
		}
	}
	return true
}

// globMatch reports whether s matches pattern, where '*' matches any run
// of characters ('/' and '.' included) and '?' any one character; every
// other character stands for itself.
func globMatch(pattern, s string) bool {
	p := []rune(pattern)
	r := []rune(s)
	pi, si := 0, 0
	star, mark := -1, 0
	for si < len(r) {
		switch {
		case pi < len(p) && (p[pi] == '?' || (p[pi] != '*' && p[pi] == r[si])):
			pi++
			si++
		case pi < len(p) && p[pi] == '*':
			star, mark = pi, si
			pi++
		case star >= 0:
			pi = star + 1
			mark++
			si = mark
		default:
			return false
		}
	}
	for pi < len(p) && p[pi] == '*' {
		pi++
	}
	return pi == len(p)
}
