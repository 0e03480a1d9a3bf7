package sink

import (
	"context"
	"errors"
	"time"

	"github.com/mailtel/mailtel/schema"
)

// PermanentError marks an error that retrying cannot fix: the events go to
// the dead-letter queue with the error as the reason.
type PermanentError struct{ Err error }

func (e *PermanentError) Error() string { return e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

// Permanent wraps err so that IsPermanent reports true. Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &PermanentError{Err: err}
}

// IsPermanent reports whether err, or an error it wraps, is permanent.
func IsPermanent(err error) bool {
	var p *PermanentError
	return errors.As(err, &p)
}

// EventIDs is implemented by errors that concern only some events of a
// batch (a rejected chunk).
type EventIDs interface{ EventIDs() []string }

// RetryAfter is implemented by retryable errors for which the destination
// said when to come back (HTTP Retry-After).
type RetryAfter interface{ RetryAfter() time.Duration }

// FailedEventIDs returns the ids of the events a Write error is about,
// collected from every error in its tree (wrapped with %w or joined) that
// implements EventIDs. It returns nil when the error names no events: then
// the whole batch failed.
func FailedEventIDs(err error) []string {
	var ids []string
	var walk func(error)
	walk = func(err error) {
		switch e := err.(type) {
		case nil:
			return
		case EventIDs:
			ids = append(ids, e.EventIDs()...)
		case interface{ Unwrap() []error }:
			for _, x := range e.Unwrap() {
				walk(x)
			}
		default:
			walk(errors.Unwrap(err))
		}
	}
	walk(err)
	return ids
}

type deliveredKey struct{}

// Delivered tells the caller of a Sink's Write, from inside Write, that
// events of its batch are written for good (a webhook request answered
// 2xx), before the whole batch is: the runtime acks them at once, so a
// crash re-sends at most what was in flight, and a retry of the batch does
// not include them. The events must be pointers taken from the batch.
// Outside a runtime's Write it does nothing. It is safe for concurrent use.
func Delivered(ctx context.Context, events []*schema.Event) {
	if f, ok := ctx.Value(deliveredKey{}).(func([]*schema.Event)); ok {
		f(events)
	}
}

// WithDelivered returns ctx for a Write whose Delivered calls go to f. It
// is for runtimes (package delivery), not sinks.
func WithDelivered(ctx context.Context, f func([]*schema.Event)) context.Context {
	return context.WithValue(ctx, deliveredKey{}, f)
}
