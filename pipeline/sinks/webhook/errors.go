package webhook

import (
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/mailtel/mailtel/pipeline"
)

// StatusError is an answer of the receiver other than 2xx.
type StatusError struct {
	StatusCode int
	// Body is the start of the answer, at most MaxSnippet bytes.
	Body string
	// URL is the receiver, without credentials or query.
	URL string
	// RetryAfter is the receiver's Retry-After of a retryable answer
	// (capped by max-backoff), 0 when it sent none.
	RetryAfter time.Duration
	// IDs are the ids of the events of the rejected request, for an answer
	// that is not retryable.
	IDs []string
}

func (e *StatusError) Error() string {
	msg := fmt.Sprintf("%s answered %d %s", e.URL, e.StatusCode, http.StatusText(e.StatusCode))
	if b := strings.TrimSpace(e.Body); b != "" {
		msg += ": " + b
	}
	return msg
}

// Retryable reports whether a retry may succeed: 408, 429 and 5xx.
func (e *StatusError) Retryable() bool {
	return e.StatusCode == http.StatusRequestTimeout || e.StatusCode == http.StatusTooManyRequests || e.StatusCode >= 500
}

// EventIDs returns IDs (see FailedIDs).
func (e *StatusError) EventIDs() []string { return e.IDs }

// RetryAfterError is a retryable failure of Write for which the receiver
// said when to try again (Retry-After on a 408, 429 or 5xx answer; the
// longest one when several requests failed). It is never permanent.
//
// The runtime should not retry before After has passed: wait
// max(After, its own backoff) before the next attempt, keeping the
// messages in progress meanwhile. After is already capped by the webhook's
// max-backoff.
type RetryAfterError struct {
	After time.Duration
	Err   error
}

func (e *RetryAfterError) Error() string {
	return fmt.Sprintf("%v (retry after %s)", e.Err, e.After)
}

func (e *RetryAfterError) Unwrap() error { return e.Err }

// RetryAfter returns After (it implements pipeline.RetryAfter).
func (e *RetryAfterError) RetryAfter() time.Duration { return e.After }

// DiscardedError lists the events of a batch that Write did not send
// because they were older than discard-after. It comes wrapped in a
// pipeline.Permanent error; the other events of the batch were delivered.
type DiscardedError struct {
	IDs []string
	// Cutoff is the creation time before which events were discarded.
	Cutoff time.Time
}

func (e *DiscardedError) Error() string {
	return fmt.Sprintf("%d events created before %s are older than discard-after: not sent",
		len(e.IDs), e.Cutoff.UTC().Format(time.RFC3339))
}

// EventIDs returns IDs (see FailedIDs).
func (e *DiscardedError) EventIDs() []string { return e.IDs }

// FailedIDs returns the ids of the events a permanent error of Write is
// about; the other events of the batch were delivered, and only these must
// be dead-lettered. It returns nil when err names no events, in which case
// the whole batch failed. (The sink runtime does this for every sink with
// pipeline.FailedEventIDs.)
func FailedIDs(err error) []string { return pipeline.FailedEventIDs(err) }
