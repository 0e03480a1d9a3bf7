package otel

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/mailtel/mailtel/pipeline/config/value"
	"github.com/mailtel/mailtel/pipeline/sink"
)

// Type is the tracer type of this sink in `[tracer.<id>] type`, and Alias
// the other name Stalwart accepts for it.
const (
	Type  = "open-telemetry"
	Alias = "otel"
)

// Transports.
const (
	TransportHTTP = "http"
	TransportGRPC = "grpc"
)

// Defaults of DefaultConfig.
const (
	// DefaultTimeout is Stalwart's (OTEL_EXPORTER_OTLP_TIMEOUT's default).
	DefaultTimeout = 10 * time.Second
	// DefaultThrottle is Stalwart's: one request per second per slot.
	DefaultThrottle = time.Second
	// DefaultBatchSize is the number of events of one export request.
	DefaultBatchSize = 500
	// DefaultConcurrency is the number of requests in flight at once.
	DefaultConcurrency = 4
	// DefaultGRPCEndpoint is OTLP/gRPC's default endpoint, used when
	// transport is grpc and endpoint is empty (as Stalwart does).
	DefaultGRPCEndpoint = "http://localhost:4317"
)

// Config is the `[tracer.<id>]` section of an OpenTelemetry tracer: the
// keys of Stalwart's open-telemetry tracer, plus mailtel's batch-size,
// concurrency, discard-after and max-backoff. A pasted Stalwart section
// decodes into it unchanged.
//
//	[tracer.otel]
//	type = "open-telemetry"              # or "otel"
//	transport = "http"                   # or "grpc"
//	endpoint = "https://collector:4318/v1/logs"
//	headers = ["Authorization: Bearer %{env:OTEL_TOKEN}%"]
//	level = "info"
//
// The routing keys (level, disabled-events, events, events-policy) are
// validated here and applied by the router, as for every tracer: the sink
// writes what it is given.
type Config struct {
	// Type is Type or Alias.
	Type string `toml:"type" doc:"open-telemetry or otel"`
	// Enable is `enable = false` (the tracer is off) or Stalwart's
	// `enable.log-exporter` / `enable.span-exporter`.
	Enable Enable `toml:"enable" doc:"false keeps the section without running it; enable.log-exporter and enable.span-exporter as Stalwart has them"`
	// Transport is "http" (OTLP/HTTP, protobuf) or "grpc" (OTLP/gRPC).
	Transport string `toml:"transport" doc:"http (OTLP/HTTP, protobuf) or grpc (OTLP/gRPC)"`
	// Endpoint is the collector's URL. For http it is used as is, as
	// Stalwart uses it (opentelemetry-otlp 0.25 appends no path to a
	// configured endpoint): write the whole URL, usually ending in
	// /v1/logs. For grpc only its scheme (http: plaintext, https: TLS),
	// host and port count; empty means DefaultGRPCEndpoint.
	Endpoint string `toml:"endpoint" doc:"the collector's URL; for http the whole URL, usually ending in /v1/logs"`
	// Headers are sent with every request (gRPC metadata for grpc).
	Headers Headers `toml:"headers" secret:"true" doc:"sent with every request (gRPC metadata for grpc): [\"Name: value\"] or a table"`
	// Timeout bounds one export request.
	Timeout value.Duration `toml:"timeout" doc:"bounds one export request"`
	// Throttle is the least time between two requests of one slot (see
	// Concurrency); 0 means none.
	Throttle value.Duration `toml:"throttle" doc:"the least time between two requests of one slot"`
	// LevelRule selects the events (the router applies it).
	sink.LevelRule
	Lossy bool `toml:"lossy" doc:"accepted for Stalwart compatibility; mailtel never drops"`
	// BatchSize is the most events in one export request.
	BatchSize int `toml:"batch-size" doc:"the most events in one export request"`
	// Concurrency is the most export requests in flight at once.
	Concurrency int `toml:"concurrency" doc:"the most export requests in flight at once"`
	// Retry overrides [sinks] for this sink (the runtime reads it).
	sink.Retry
}

// DefaultConfig returns the defaults a section is decoded over: Stalwart's
// (transport http, level info, timeout 10s, throttle 1s) and mailtel's
// batch-size and concurrency. Stalwart requires transport; mailtel takes
// http, OTLP's default protocol, when it is missing.
func DefaultConfig() *Config {
	return &Config{
		Type:        Type,
		Transport:   TransportHTTP,
		Timeout:     value.Duration(DefaultTimeout),
		Throttle:    value.Duration(DefaultThrottle),
		LevelRule:   sink.LevelRule{Level: "info"},
		BatchSize:   DefaultBatchSize,
		Concurrency: DefaultConcurrency,
	}
}

// Enabled reports whether the tracer is on (`enable` is not false).
func (c *Config) Enabled() bool { return c.Enable.Tracer == nil || *c.Enable.Tracer }

// Describe says where the events are exported (the endpoint redacted).
func (c *Config) Describe() string {
	ep := c.Endpoint
	if ep == "" {
		ep = DefaultGRPCEndpoint
	}
	return "exports OTLP logs over " + c.Transport + " to " + value.RedactURL(ep)
}

// Redirect returns a copy that exports to the endpoint to.
func (c *Config) Redirect(to string) (sink.Config, error) {
	cp := *c
	cp.Endpoint = to
	return &cp, nil
}

// Print is what `router config` shows for enable: whether the tracer runs.
func (e Enable) Print() any { return e.Tracer == nil || *e.Tracer }

// Validate checks an enabled section's own keys and returns every error,
// joined, each prefixed with its key path relative to the section
// ("endpoint: ..."); the routing keys (level, events, ...) and the retry
// keys are the host's to check (see sink.Config).
// Errors never quote the endpoint or a header value, which may hold
// secrets. A disabled section is not checked.
func (c *Config) Validate() error {
	if !c.Enabled() {
		return nil
	}
	var errs []error
	add := func(path, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", path, fmt.Sprintf(format, args...)))
	}
	if c.Type != Type && c.Type != Alias {
		add("type", "want %q or %q, not %q", Type, Alias, c.Type)
	}
	if c.Enable.LogExporter != nil && !*c.Enable.LogExporter {
		add("enable.log-exporter", "false leaves this sink nothing to do: mailtel exports logs, not spans (set enable = false to turn the tracer off)")
	}
	switch c.Transport {
	case TransportHTTP:
		if c.Endpoint == "" {
			add("endpoint", "required for transport http (the collector's URL, e.g. http://collector:4318/v1/logs)")
			break
		}
		checkEndpoint(c.Endpoint, true, add)
	case TransportGRPC:
		if c.Endpoint != "" {
			checkEndpoint(c.Endpoint, false, add)
		}
	case "":
		add("transport", "required: http or grpc")
	default:
		add("transport", "want http or grpc, not %q", c.Transport)
	}
	for _, k := range sortedKeys(c.Headers) {
		if !httpguts.ValidHeaderFieldName(k) {
			add("headers", "%q is not a valid header name", k)
		} else if !httpguts.ValidHeaderFieldValue(c.Headers[k]) {
			add("headers."+k, "the value has a character a header cannot carry (a line break or a control character)")
		}
	}
	if c.Timeout <= 0 {
		add("timeout", "must be positive")
	}
	if c.Throttle < 0 {
		add("throttle", "must not be negative")
	}
	if c.BatchSize < 1 {
		add("batch-size", "must be at least 1")
	}
	if c.Concurrency < 1 {
		add("concurrency", "must be at least 1")
	}
	return errors.Join(errs...)
}

// checkEndpoint checks an http(s) URL with a host. With userinfo false
// (gRPC), a user or password in it is an error: gRPC has no place for it.
func checkEndpoint(s string, userinfo bool, add func(string, string, ...any)) {
	u, err := value.ParseURL(s) // its error never quotes the URL
	switch {
	case err != nil:
		add("endpoint", "%v", err)
	case (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		add("endpoint", "want an http:// or https:// URL")
	case !userinfo && u.User != nil:
		add("endpoint", "user info is not supported with transport grpc; send credentials in headers")
	}
}

// Enable is Stalwart's `enable` key, which is either a boolean (`enable =
// false` turns the tracer off) or a table of its two exporters
// (`enable.log-exporter`, `enable.span-exporter`, both true by default).
// TOML cannot have both forms in one section, so each is a field.
type Enable struct {
	// Tracer is `enable = true|false`; nil when not set.
	Tracer *bool
	// LogExporter is `enable.log-exporter`; nil when not set (true).
	LogExporter *bool
	// SpanExporter is `enable.span-exporter`; accepted and ignored:
	// mailtel's events are not spans.
	SpanExporter *bool
}

// UnmarshalTOML implements toml.Unmarshaler.
func (e *Enable) UnmarshalTOML(v any) error {
	switch v := v.(type) {
	case bool:
		e.Tracer = &v
		return nil
	case map[string]any:
		for _, k := range sortedKeys(v) {
			b, ok := v[k].(bool)
			if !ok {
				return fmt.Errorf("enable.%s: want true or false", k)
			}
			switch k {
			case "log-exporter":
				e.LogExporter = &b
			case "span-exporter":
				e.SpanExporter = &b
			default:
				return fmt.Errorf("enable.%s: unknown key (want log-exporter or span-exporter)", k)
			}
		}
		return nil
	}
	return errors.New("enable: want true, false, or a table of log-exporter and span-exporter")
}

// Headers are extra request headers. They decode from Stalwart's form, a
// list of "Name: value" strings, or from a table of names to values. As
// Stalwart's exporter does (opentelemetry-otlp's with_headers), a value is
// percent-decoded when it holds a valid %-escape.
type Headers map[string]string

// UnmarshalTOML implements toml.Unmarshaler. Its errors never quote a
// value: header values are often credentials.
func (h *Headers) UnmarshalTOML(v any) error {
	out := Headers{}
	switch v := v.(type) {
	case []any:
		for i, x := range v {
			s, ok := x.(string)
			if !ok {
				return fmt.Errorf("headers[%d]: want a \"Name: value\" string", i)
			}
			name, value, ok := strings.Cut(s, ":")
			if !ok {
				return fmt.Errorf("headers[%d]: want \"Name: value\" (no ':' found)", i)
			}
			out[strings.TrimSpace(name)] = strings.TrimSpace(value)
		}
	case map[string]any:
		for k, x := range v {
			s, ok := x.(string)
			if !ok {
				return fmt.Errorf("headers.%s: want a string", k)
			}
			out[k] = s
		}
	default:
		return errors.New("headers: want a list of \"Name: value\" strings or a table")
	}
	*h = out
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func init() {
	sink.Register(sink.Factory{
		Kind: Type, Aliases: []string{Alias}, Section: "tracer", Typed: true,
		Doc:       "events as OpenTelemetry log records, exported over OTLP/HTTP or OTLP/gRPC",
		Stalwart:  "Stalwart's open-telemetry tracer (logs; spans are not exported); adds batch-size, concurrency and mailtel's retry keys",
		NewConfig: func() sink.Config { return DefaultConfig() },
		New: func(cfg sink.Config, set sink.Settings) (sink.Sink, error) {
			return New(set.Name, *cfg.(*Config), Options{Log: set.Log})
		},
	})
}
