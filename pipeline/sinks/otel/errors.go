package otel

import (
	"fmt"
	"net/http"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
)

// ExportError is a collector's refusal of one export request: an HTTP
// status other than 2xx, a gRPC status other than OK, or a partial success
// that rejected every record of the request (StatusCode 0, Code OK).
type ExportError struct {
	// Endpoint is the collector's URL as value.RedactURL shows it.
	Endpoint string
	// StatusCode is the HTTP status (transport http), else 0.
	StatusCode int
	// Code is the gRPC status code (transport grpc), else codes.OK.
	Code codes.Code
	// Message is what the collector said (the message of its
	// google.rpc.Status, or the start of its answer), at most MaxSnippet
	// bytes, with every configured secret replaced by value.Redacted.
	Message string
	// Retryable is set for the statuses OTLP says to retry.
	Retryable bool
	// After is when the collector asked to be retried (HTTP Retry-After,
	// gRPC RetryInfo), 0 when it did not say.
	After time.Duration
	// IDs are the ids of the events of the request, for an error that is
	// not retryable.
	IDs []string
}

func (e *ExportError) Error() string {
	var msg string
	switch {
	case e.StatusCode != 0:
		msg = fmt.Sprintf("%s answered %d %s", e.Endpoint, e.StatusCode, http.StatusText(e.StatusCode))
	case e.Code != codes.OK:
		msg = fmt.Sprintf("%s answered gRPC status %s", e.Endpoint, e.Code)
	default: // a partial success that refused every record
		msg = e.Endpoint
	}
	if m := strings.TrimSpace(e.Message); m != "" {
		msg += ": " + m
	}
	return msg
}

// EventIDs returns IDs (it implements sink.EventIDs).
func (e *ExportError) EventIDs() []string { return e.IDs }

// RetryAfter returns After (it implements sink.RetryAfter).
func (e *ExportError) RetryAfter() time.Duration { return e.After }
