// Package replay reads parts of mailtel's streams again: it re-delivers a
// sink's history through the sink's writer (`sinks replay`), runs history
// from EVENTS through the routing rules of another configuration
// (`router replay`), and follows subjects live, wildcards allowed
// (`sinks tail`).
//
// Every read goes through an ephemeral ordered consumer (see Reader): in
// stream order, acking nothing, never touching the durable consumers of the
// routers and sinks, so a replay or a tail cannot disturb the live
// pipeline.
package replay

import (
	"errors"
	"fmt"
	"time"

	"github.com/mailtel/mailtel/pipeline/config/value"
)

// Range is a part of a stream's history. A zero Range is the whole stream
// as it is when the read starts.
type Range struct {
	// Since starts the range at the first message stored at or after it.
	// At most one of Since and FromSeq is set; neither means the first
	// message of the stream.
	Since time.Time
	// FromSeq starts the range at this stream sequence.
	FromSeq uint64
	// Until ends the range before the first message stored after it (zero:
	// no time bound).
	Until time.Time
	// ToSeq ends the range after this stream sequence (0: no sequence
	// bound).
	ToSeq uint64
}

// Validate reports a Range that cannot be read.
func (r Range) Validate() error {
	var errs []error
	if !r.Since.IsZero() && r.FromSeq > 0 {
		errs = append(errs, errors.New("start the range at a time or at a sequence, not both"))
	}
	if !r.Since.IsZero() && !r.Until.IsZero() && r.Until.Before(r.Since) {
		errs = append(errs, fmt.Errorf("the range ends (%s) before it starts (%s)",
			r.Until.UTC().Format(time.RFC3339Nano), r.Since.UTC().Format(time.RFC3339Nano)))
	}
	if r.ToSeq > 0 && r.ToSeq < r.FromSeq {
		errs = append(errs, fmt.Errorf("the range ends at sequence %d, before its start %d", r.ToSeq, r.FromSeq))
	}
	return errors.Join(errs...)
}

// ParseTime reads a point in time as the command-line flags give it: a
// duration before now ("90s", "2h", "7d", see value.ParseDuration) or an
// RFC 3339 time ("2026-11-21T06:00:00Z", fractional seconds allowed).
func ParseTime(s string, now time.Time) (time.Time, error) {
	if d, err := value.ParseDuration(s); err == nil {
		return now.Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("invalid time %q: want a duration before now (30m, 2h, 7d) or an RFC 3339 time (2026-11-21T06:00:00Z)", s)
	}
	return t, nil
}

// ParseRange builds the Range of the replay commands' flags --since,
// --until (DURATION or RFC 3339, see ParseTime), --from-seq and --to-seq
// (0 for unset). Exactly one of --since and --from-seq is required; errors
// name the flags.
func ParseRange(since, until string, fromSeq, toSeq uint64, now time.Time) (Range, error) {
	var r Range
	switch {
	case since != "" && fromSeq > 0:
		return r, errors.New("give --since or --from-seq, not both")
	case since == "" && fromSeq == 0:
		return r, errors.New("say where the replay starts: --since DURATION|TIME or --from-seq N")
	case until != "" && toSeq > 0:
		return r, errors.New("give --until or --to-seq, not both")
	}
	var err error
	if since != "" {
		if r.Since, err = ParseTime(since, now); err != nil {
			return r, fmt.Errorf("--since: %w", err)
		}
	}
	if until != "" {
		if r.Until, err = ParseTime(until, now); err != nil {
			return r, fmt.Errorf("--until: %w", err)
		}
	}
	r.FromSeq, r.ToSeq = fromSeq, toSeq
	if !r.Since.IsZero() && !r.Until.IsZero() && r.Until.Before(r.Since) {
		return r, fmt.Errorf("--until %s is before --since %s", until, since)
	}
	if r.ToSeq > 0 && r.ToSeq < r.FromSeq {
		return r, fmt.Errorf("--to-seq %d is before --from-seq %d", r.ToSeq, r.FromSeq)
	}
	return r, nil
}
