package webhook

import (
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/mailtel/mailtel/pipeline/sink"
	"github.com/mailtel/mailtel/pipeline/sinks/outbound"
)

// StatusError is an answer of the receiver other than 2xx.
type StatusError struct {
	StatusCode int
	// Body is the start of the answer, at most MaxSnippet bytes, with
	// every configured secret (URL password and query values, header
	// values, auth secret, signature key) a receiver may repeat replaced
	// by value.Redacted.
	Body string
	// URL is the receiver's URL as value.RedactURL shows it: password
	// and query values replaced by value.Redacted.
	URL string
	// RetryAfter is the receiver's Retry-After of a retryable answer, 0
	// when it sent none.
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

// Retryable reports whether a retry may succeed: 408, 425, 429 and 5xx.
func (e *StatusError) Retryable() bool { return outbound.RetryableStatus(e.StatusCode) }

// EventIDs returns IDs (see FailedIDs).
func (e *StatusError) EventIDs() []string { return e.IDs }

// FailedIDs returns the ids of the events a permanent error of Write is
// about; the other events of the batch were delivered, and only these must
// be dead-lettered. It returns nil when err names no events, in which case
// the whole batch failed. (The sink runtime does this for every sink with
// sink.FailedEventIDs.)
func FailedIDs(err error) []string { return sink.FailedEventIDs(err) }
