// Package delivery is mailtel's one retry policy for writing events to a
// destination: how a failed write is classified, how long it is retried
// and how long to wait between attempts. The live sink runtime, `sinks
// replay`, `router replay` and `sinks dlq redrive` (which hands letters
// back to the live sinks) all use it, so they cannot drift apart.
//
// # Classes of failure
//
// A write error marked with Permanent (an HTTP 400, an event that cannot be
// encoded) is final: its events are rejected at once. If the error names
// events (EventIDs, see FailedEventIDs), only those are rejected and the
// rest count as written. Every other error is transient (a network error,
// a timeout, a 5xx, 408, 425, 429, a full disk, NATS unavailable) and is
// retried by time, not by count: with capped exponential backoff and full
// jitter, never sooner than a RetryAfter error asks, until the events have
// been failing for longer than DiscardAfter. Then they are rejected with a
// reason that says for how long and after how many attempts.
//
// # Pausing
//
// After a failure, Do probes the destination with one event at a time: an
// outage of hours costs one small write per backoff, not a batch. The first
// probe that succeeds ends the outage, and the rest of the batch is written
// at full size.
package delivery

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/mailtel/mailtel/pipeline/sink"
	"github.com/mailtel/mailtel/schema"
)

// Defaults of the policy, used wherever a field is zero.
const (
	// DefaultBase is the first backoff.
	DefaultBase = 100 * time.Millisecond
	// DefaultMax caps the backoff. While a destination is down only one
	// probe is sent per backoff, so a short cap costs the destination
	// nothing and means a backlog starts draining within 30 s of its return.
	DefaultMax = 30 * time.Second
	// DefaultDiscardAfter is how long an event may keep failing at one sink
	// before it is dead-lettered. Stalwart's webhooks give up after 5
	// minutes because their queue is in memory; mailtel's backlog waits in
	// JetStream, so a receiver down for a night or a weekend's maintenance
	// needs no redrive. It should stay below [streams] max-age, or
	// retention may remove what waits.
	DefaultDiscardAfter = 24 * time.Hour
	// MaxRetryAfter caps what a destination's Retry-After can ask for, so
	// a wrong header cannot stall a sink for days.
	MaxRetryAfter = 15 * time.Minute
)

// Policy is how failing writes are retried. The zero value is the default
// policy.
type Policy struct {
	// Base and Max bound the backoff between attempts: attempt n waits a
	// random duration in [0, min(Max, Base*2^(n-1))].
	Base, Max time.Duration
	// DiscardAfter is how long a batch may keep failing with transient
	// errors, counted from its first failed attempt, before its events are
	// rejected. Counting from the first failure (not from the events' own
	// time) lets a replay of last week's history be retried like live
	// events.
	DiscardAfter time.Duration
}

// WithDefaults returns p with every zero field set to its default.
func (p Policy) WithDefaults() Policy {
	if p.Base <= 0 {
		p.Base = DefaultBase
	}
	if p.Max <= 0 {
		p.Max = DefaultMax
	}
	if p.DiscardAfter <= 0 {
		p.DiscardAfter = DefaultDiscardAfter
	}
	return p
}

// Backoff is exponential backoff with full jitter: attempt n (from 1) waits
// a random duration in [0, min(max, base*2^(n-1))].
func Backoff(attempt int, base, max time.Duration) time.Duration {
	d := base
	for i := 1; i < attempt && d < max; i++ {
		d *= 2
	}
	d = min(d, max)
	if d <= 0 {
		return 0
	}
	return rand.N(d + 1)
}

// Jitter returns a random duration in [d/2, d] so that retrying processes
// do not move in lockstep.
func Jitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d/2+1)
}

// Wait returns how long to wait after failed attempt n with err: the
// policy's backoff, or what a RetryAfter error asks if that is longer (at
// most MaxRetryAfter).
func (p Policy) Wait(attempt int, err error) time.Duration {
	p = p.WithDefaults()
	wait := Backoff(attempt, p.Base, p.Max)
	var ra sink.RetryAfter
	if errors.As(err, &ra) {
		wait = max(wait, min(ra.RetryAfter(), MaxRetryAfter))
	}
	return wait
}

// Failure describes one failed attempt of Do.
type Failure struct {
	Attempt int   // from 1
	Err     error // what the write returned
	// FailingFor is the time since the batch's first failed attempt.
	FailingFor time.Duration
	// Wait is how long Do waits before the next attempt (0 when it gives up).
	Wait time.Duration
}

// Hooks let the caller of Do act on its progress. Do never calls two hooks
// at once, so they need no locking of their own; they must not block long.
type Hooks struct {
	// Written receives the indexes, into the events given to Do, of events
	// that are written: those a write reported with Delivered while it ran,
	// and those of a write that returned nil or a permanent error naming
	// other events. Each index is passed once.
	Written func(idx []int)
	// Failed is told about every failed attempt that will be retried.
	Failed func(Failure)
	// Recovered is called when a write succeeds after failed attempts.
	Recovered func(attempts int, failingFor time.Duration)
	// Sleep waits d between attempts and returns false when the caller is
	// stopping (nil: a timer that ctx ends).
	Sleep func(ctx context.Context, d time.Duration) bool
}

// Outcome is what Do did with the events it was given.
type Outcome struct {
	// Attempts is how many writes were made.
	Attempts int
	// Rejected are the indexes of the events that failed for good, for
	// Reason: permanently, or for longer than DiscardAfter.
	Rejected []int
	Reason   error
	// Expired is set when the last events were rejected because they kept
	// failing for DiscardAfter: the destination is still down.
	Expired bool
	// Unwritten are the indexes of the events neither written nor rejected
	// because Sleep said to stop; Stopped is the last write error then.
	Unwritten []int
	Stopped   error
}

// WriteFunc writes a batch of events (a Sink's Write).
type WriteFunc func(ctx context.Context, batch []*schema.Event) error

// Do writes events with write until each one is written or rejected, or
// Sleep says to stop, retrying as the package documentation says. A retried
// write is given only the events not yet written: neither those a write
// reported with Delivered nor, after a permanent error naming some events,
// the others. write is given a context on which Delivered reports to Do.
func (p Policy) Do(ctx context.Context, events []*schema.Event, write WriteFunc, h Hooks) Outcome {
	p = p.WithDefaults()
	if h.Sleep == nil {
		h.Sleep = sleep
	}
	d := &doer{events: events, hooks: h}
	wctx := sink.WithDelivered(ctx, d.delivered)
	var out Outcome
	var firstFailure time.Time
	probe := false // after a failure, one event at a time until one is written
	for {
		pending := d.pending(probe)
		if len(pending) == 0 {
			return out
		}
		batch := make([]*schema.Event, len(pending))
		for i, j := range pending {
			batch[i] = events[j]
		}
		out.Attempts++
		err := write(wctx, batch)
		if err == nil {
			d.written(pending)
			if !firstFailure.IsZero() {
				if h.Recovered != nil {
					d.mu.Lock()
					h.Recovered(out.Attempts, time.Since(firstFailure))
					d.mu.Unlock()
				}
				firstFailure, probe = time.Time{}, false
			}
			continue
		}
		if sink.IsPermanent(err) {
			rejected := d.rejectNamed(pending, err)
			out.Rejected = append(out.Rejected, rejected...)
			out.Reason = err
			continue
		}
		now := time.Now()
		if firstFailure.IsZero() {
			firstFailure = now
		}
		failingFor := now.Sub(firstFailure)
		if failingFor >= p.DiscardAfter {
			out.Rejected = append(out.Rejected, d.pending(false)...)
			out.Reason = sink.Permanent(fmt.Errorf("gave up after failing for %s (%d attempts, discard-after %s): %w",
				failingFor.Round(time.Second), out.Attempts, p.DiscardAfter, err))
			out.Expired = true
			return out
		}
		wait := p.Wait(out.Attempts, err)
		if h.Failed != nil {
			d.mu.Lock()
			h.Failed(Failure{Attempt: out.Attempts, Err: err, FailingFor: failingFor, Wait: wait})
			d.mu.Unlock()
		}
		if !h.Sleep(ctx, wait) {
			out.Unwritten, out.Stopped = d.pending(false), err
			return out
		}
		probe = true
	}
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// doer tracks which events of one Do are finished.
type doer struct {
	events []*schema.Event
	hooks  Hooks
	mu     sync.Mutex
	done   []bool                // nil until the first partial result
	index  map[*schema.Event]int // built for the first Delivered report
}

// pending returns the indexes of the events not finished yet, only the
// first one when probe is set.
func (d *doer) pending(probe bool) []int {
	d.mu.Lock()
	defer d.mu.Unlock()
	var idx []int
	for i := range d.events {
		if d.done != nil && d.done[i] {
			continue
		}
		idx = append(idx, i)
		if probe {
			break
		}
	}
	return idx
}

// written marks the events at idx written and tells Hooks.Written about
// those not marked before.
func (d *doer) written(idx []int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.markLocked(idx, true)
}

func (d *doer) markLocked(idx []int, tell bool) {
	if d.done == nil {
		d.done = make([]bool, len(d.events))
	}
	fresh := idx[:0:0]
	for _, i := range idx {
		if !d.done[i] {
			d.done[i] = true
			fresh = append(fresh, i)
		}
	}
	if tell && len(fresh) > 0 && d.hooks.Written != nil {
		d.hooks.Written(fresh)
	}
}

// delivered is what Delivered calls: it marks events of the write in
// flight as written.
func (d *doer) delivered(evs []*schema.Event) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.index == nil {
		d.index = make(map[*schema.Event]int, len(d.events))
		for i, ev := range d.events {
			d.index[ev] = i
		}
	}
	idx := make([]int, 0, len(evs))
	for _, ev := range evs {
		if i, ok := d.index[ev]; ok {
			idx = append(idx, i)
		}
	}
	d.markLocked(idx, true)
}

// rejectNamed handles a permanent error of a write of the events at
// pending: the events it names are rejected (all of them when it names
// none) and the others are written. It returns the rejected indexes.
func (d *doer) rejectNamed(pending []int, err error) []int {
	named := map[string]bool{}
	for _, id := range sink.FailedEventIDs(err) {
		named[id] = true
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	var rejected, written []int
	for _, i := range pending {
		if d.done != nil && d.done[i] {
			continue
		}
		if len(named) == 0 || named[d.events[i].ID] {
			rejected = append(rejected, i)
		} else {
			written = append(written, i)
		}
	}
	d.markLocked(written, true)
	d.markLocked(rejected, false)
	return rejected
}
