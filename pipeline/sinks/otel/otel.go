// Package otel is the sink that exports events as OpenTelemetry logs, as
// Stalwart's `[tracer.<id>] type = "open-telemetry"` (alias "otel") does:
// one OTLP export request per chunk of events, over OTLP/HTTP (protobuf
// body, Content-Type application/x-protobuf) or OTLP/gRPC. It writes
// records the way Stalwart's exporter builds them, so dashboards and
// queries written for Stalwart's own export work on what mailtel sends.
//
// The package is self-contained: it owns its configuration (Config,
// DefaultConfig, Validate), is built by New, and imports neither the
// pipeline engine nor the NATS server. Sink has the method set of
// sink.Sink and follows its contract.
//
// # Mapping
//
// One event is one LogRecord:
//
//	LogRecord field        from the event
//	---------------------  ------------------------------------------------------------
//	Timestamp              Time (the server's time of the event; unset when zero)
//	ObservedTimestamp      the time the request was built
//	SeverityNumber         Level: trace 1, debug 5, info 9, warn 13, error 17 (TRACE..ERROR)
//	SeverityText           Level as Stalwart writes it: TRACE, DEBUG, INFO, WARN, ERROR
//	EventName              Type, the event id ("auth.success")
//	Body                   the catalog's description of Type ("Authentication successful"),
//	                       as Stalwart; Type itself for a type the catalog lacks
//	Attributes             Fields, typed (see below), plus event.id = ID
//	Resource attributes    service.name = "stalwart-mail" for Server "stalwart" (Stalwart's
//	                       own value), Server itself otherwise ("dovecot"),
//	                       "unknown_service" when empty; host.name = Host when set
//	Scope                  name "mailtel"
//
// Field values keep their type where OpenTelemetry has one: string ->
// string; int -> int; uint -> int (the same 64 bits, so a spanId above
// 2^63-1 reads negative and uint64 of it gives it back: Stalwart's cast, and
// one type per key); float ->
// double; bool -> bool; list -> array; nested event (causedBy) -> map with
// eventName (its type) and its fields; bytes -> bytes. Where OTLP has no
// type, as Stalwart sends them: time -> RFC 3339 string (UTC, nanoseconds),
// duration -> int milliseconds, IP -> string; a field without a value is an
// empty value (Stalwart sends false). A key that repeats in an event
// gathers its values in an array (attribute keys are unique in OTLP); a field
// named event.id is replaced by the event's id. Invalid UTF-8 becomes U+FFFD.
// Events of one Server and Host share a ResourceLogs in a request.
//
// # Endpoint
//
// With transport http the endpoint is used as is: it is the URL of the
// collector's logs receiver, usually ending in /v1/logs
// (OTEL_EXPORTER_OTLP_LOGS_ENDPOINT semantics). That is what Stalwart does:
// its exporter (opentelemetry-otlp 0.25) appends /v1/logs only to the
// generic OTEL_EXPORTER_OTLP_ENDPOINT variable, never to a configured
// endpoint. A collector answers 404 to a URL without the path, and the
// error says so. With transport grpc, the endpoint's scheme (http:
// plaintext, https: TLS), host and port are used; empty means
// http://localhost:4317.
//
// # Outcomes
//
// Each Write splits its batch into chunks of at most batch-size events and
// sends up to concurrency requests at once; consecutive requests of one
// slot start at least throttle apart. Each request accepted by the
// collector is reported with sink.Delivered as soon as the answer
// arrives, so the runtime acks its events at once and a crash re-sends at
// most the requests in flight. An event whose id appears earlier in the
// same batch is not sent twice.
//
// Retries follow the webhook's rule over HTTP (outbound.RetryableStatus):
// 408, 425, 429 and every 5xx are retryable (Retry-After, seconds or a
// date, is honoured), every other status is permanent. OTLP would have 500,
// 501 and 505 permanent ("All other 4xx or 5xx response status codes MUST
// NOT be retried"); mailtel retries them, because a collector answering 500
// while it restarts must not send a fleet's events to the DLQ, and a retry
// costs only a delay bounded by discard-after. Over gRPC, CANCELLED,
// DEADLINE_EXCEEDED, ABORTED, OUT_OF_RANGE, UNAVAILABLE and DATA_LOSS are
// retryable, RESOURCE_EXHAUSTED only with a RetryInfo (whose delay is
// honoured); every other code is permanent. Network errors and timeouts
// are retryable. A retryable failure makes Write return an error that is
// not permanent (an *outbound.RetryAfterError when the collector said when); a
// permanent one a sink.Permanent error holding *ExportError values
// that name the refused events (sink.EventIDs), so only they are
// dead-lettered.
//
// A partial success (rejected_log_records > 0 in a 2xx answer) cannot be
// retried (OTLP forbids it) and does not say which records were refused.
// When it refuses fewer records than the request had, the request counts
// as delivered: its events are acked, the count and the collector's message
// are logged as a warning and added to Rejected. Dead-lettering the whole
// request would make a redrive send the accepted records twice. When it
// refuses every record, the request fails permanently and its events are
// dead-lettered.
//
// Errors name the collector by its URL as value.RedactURL shows it
// (password and query values masked) and mask every configured secret
// (header values, the URL's password and query values) that the
// collector's answer repeats.
package otel

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/mailtel/mailtel/pipeline/config/value"
	"github.com/mailtel/mailtel/pipeline/sink"
	"github.com/mailtel/mailtel/pipeline/sinks/outbound"
	"github.com/mailtel/mailtel/schema"
)

// Options are the dependencies of a Sink.
type Options struct {
	// Client sends the OTLP/HTTP requests. When nil, New builds one: TLS
	// certificates verified, proxies from the environment, redirects not
	// followed. Unused with transport grpc.
	Client *http.Client
	// Now is the clock of Retry-After dates and observed timestamps; nil
	// means time.Now. Throttling uses the real clock.
	Now func() time.Time
	// Log receives the warnings of partial successes; the zero Logger
	// discards them.
	Log zerolog.Logger
}

// Sink exports events to one OpenTelemetry collector.
//
// Write follows the sink.Sink contract; calls are meant to come from one
// goroutine at a time, but concurrent calls are safe (they share the
// concurrency slots). Close is idempotent and safe without a Write.
type Sink struct {
	name     string
	cfg      Config
	exp      exporter
	target   string // the endpoint as value.RedactURL shows it
	now      func() time.Time
	log      zerolog.Logger
	sender   *outbound.Sender
	closed   atomic.Bool
	rejected atomic.Int64
	secrets  *outbound.Secrets
}

// Interface guards.
var (
	_ sink.Sink       = (*Sink)(nil)
	_ sink.Describer  = (*Config)(nil)
	_ sink.Redirecter = (*Config)(nil)
	_ sink.Printer    = Enable{}
)

// New returns the sink named name for cfg (DefaultConfig with the
// section decoded over it). It fails with cfg.Validate's errors, and
// names the sink in them.
func New(name string, cfg Config, opts Options) (*Sink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("otel %s: %w", name, err)
	}
	if !cfg.Enabled() {
		return nil, fmt.Errorf("otel %s: enable: the tracer is disabled", name)
	}
	s := &Sink{name: name, cfg: cfg, now: opts.Now, log: opts.Log}
	if s.now == nil {
		s.now = time.Now
	}
	endpoint := cfg.Endpoint
	if cfg.Transport == TransportGRPC && endpoint == "" {
		endpoint = DefaultGRPCEndpoint
	}
	u, err := value.ParseURL(endpoint) // Validate checked it
	if err != nil {
		return nil, fmt.Errorf("otel %s: endpoint: %w", name, err)
	}
	headers := make(map[string]string, len(cfg.Headers))
	for k, v := range cfg.Headers {
		// As Stalwart's exporter: a value that holds %-escapes is decoded.
		if strings.Contains(v, "%") {
			if d, err := url.PathUnescape(v); err == nil {
				v = d
			}
		}
		headers[k] = v
	}
	s.target = value.RedactURL(endpoint)
	s.secrets = secrets(endpoint, u, cfg.Headers, headers)
	switch cfg.Transport {
	case TransportGRPC:
		s.exp, err = newGRPC(u, headers, s.target, s.secrets)
		if err != nil {
			return nil, fmt.Errorf("otel %s: %w", name, err)
		}
	default:
		s.exp = newHTTP(endpoint, u, headers, opts.Client, cfg.Concurrency, s.now, s.target, s.secrets)
	}
	s.sender = outbound.NewSender("otel "+name, cfg.BatchSize, cfg.Concurrency, cfg.Throttle.D(), s.post, classify)
	return s, nil
}

// Rejected returns how many records collectors refused in partial
// successes that were counted as delivered (see the package
// documentation).
func (s *Sink) Rejected() int64 { return s.rejected.Load() }

// Close releases the connections. It is idempotent; Write fails after it.
func (s *Sink) Close(context.Context) error {
	if s.closed.Swap(true) {
		return nil
	}
	s.exp.close()
	return nil
}

// Write exports batch; see the package documentation for the outcomes.
// Nil events are ignored.
func (s *Sink) Write(ctx context.Context, batch []*schema.Event) error {
	if s.closed.Load() {
		return fmt.Errorf("otel %s: write after close", s.name)
	}
	return s.sender.Write(ctx, batch)
}

// classify sorts the errors of post for outbound.Sender.
func classify(err error) (permanent bool, retryAfter time.Duration) {
	var ee *ExportError
	if errors.As(err, &ee) {
		return !ee.Retryable, ee.After
	}
	return false, 0
}

// post exports one chunk and classifies the answer.
func (s *Sink) post(ctx context.Context, chunk []*schema.Event) error {
	req := Encode(chunk, s.now())
	var body []byte
	if s.cfg.Transport != TransportGRPC {
		body, _ = req.MarshalProto() // it sizes a buffer and fills it: it cannot fail
	}
	rctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout.D())
	defer cancel()
	resp, err := s.exp.export(rctx, body, req)
	if err != nil {
		var ee *ExportError
		if errors.As(err, &ee) && !ee.Retryable {
			ee.IDs = ids(chunk)
		}
		return fmt.Errorf("export %d events: %w", len(chunk), err)
	}
	ps := resp.PartialSuccess()
	n, msg := ps.RejectedLogRecords(), snippet(s.secrets, ps.ErrorMessage())
	switch {
	case n >= int64(len(chunk)):
		return fmt.Errorf("export %d events: %w", len(chunk), &ExportError{Endpoint: s.target,
			Message: fmt.Sprintf("partial success rejected %d of %d records: %s", n, len(chunk), msg), IDs: ids(chunk)})
	case n > 0:
		s.rejected.Add(n)
		s.log.Warn().Str("sink", s.name).Str("endpoint", s.target).Int64("rejected", n).Int("records", len(chunk)).
			Str("reason", msg).Msg("collector rejected part of an export request; OTLP does not say which records, so the request counts as delivered")
	case msg != "":
		s.log.Warn().Str("sink", s.name).Str("endpoint", s.target).Str("message", msg).Msg("collector accepted the export request with a warning")
	}
	return nil
}

func ids(chunk []*schema.Event) []string {
	out := make([]string, len(chunk))
	for i, ev := range chunk {
		out[i] = ev.ID
	}
	return out
}
