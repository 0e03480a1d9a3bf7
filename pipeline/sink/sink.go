// Package sink is the contract between mailtel's sink runtime and the
// sinks: what a sink is (Sink and its optional interfaces), how its
// failures are classified (Permanent, RetryAfter, EventIDs, Delivered),
// what the host gives it (Settings), and the registry of sink kinds
// (Register, Lookup, Factories) from which the configuration is decoded,
// validated and documented and the sinks are built.
//
// A sink package imports this one and never the engine (package pipeline,
// the router, the NATS server): it writes batches of events and says what
// went wrong; batching, acks, retries, pausing and dead letters are the
// runtime's.
//
// # Adding a sink kind
//
// A new kind (Kafka, Loki, syslog) is one package and one line:
//
//  1. A Config struct: its keys as `toml` tags, a one-line `doc` tag on
//     each key, `secret:"true"` on each key (or map of values) that may
//     hold a credential, defaults set by the factory's NewConfig. It
//     implements Config: Enabled, Rule (the Stalwart routing keys level,
//     events, events-policy, disabled-events, which the host validates and
//     the router applies), and Validate for its own keys. Embedding Retry
//     gives it discard-after and max-backoff; a tracer type embeds
//     LevelRule for its routing keys and Rule method.
//  2. A constructor that builds the Sink from that Config and Settings.
//  3. func init() { sink.Register(sink.Factory{...}) } in the package.
//  4. One blank import of the package in pipeline/sinks/all.
//
// `router validate`, `router config`, `router up`, `sinks run`, both
// replays and docs/config-reference.md (go generate ./docs) then know the
// kind. The conformance suite (pipeline/sinktest) checks the behaviour
// every sink owes the runtime.
package sink

import (
	"context"
	"io"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/mailtel/mailtel/pipeline/config/value"
	"github.com/mailtel/mailtel/schema"
)

// Sink writes events to one destination (a log file, a webhook, metrics).
//
// Contract: Write is called by one goroutine at a time with a batch of
// events in stream order. It returns nil only when every event of the
// batch is written; the runtime then acks the batch. A sink that writes a
// batch in parts (a webhook's requests) reports each part with Delivered
// as soon as it is written, and the runtime acks those events at once.
// How errors are treated is the runtime's policy: an error marked with
// Permanent dead-letters the events it names (EventIDs) or else the whole
// batch; any other error is retried, first with one event as a probe,
// until the batch has failed for discard-after, never sooner than a
// RetryAfter error asks. A retried Write gets only the events not yet
// written, so a sink must not write an event twice within one Write.
// Write must honour ctx.
//
// Close flushes and releases resources; it is idempotent and safe to call
// without a Write.
type Sink interface {
	Write(ctx context.Context, batch []*schema.Event) error
	Close(ctx context.Context) error
}

// WrittenChecker is implemented by sinks that can tell whether events were
// already written, for instance before a crash that lost their acks. The
// runtime asks only about redelivered messages; since is the earliest time
// one of them was stored, so nothing older need be searched. Written must
// be safe to call between Writes.
type WrittenChecker interface {
	Written(ctx context.Context, events []*schema.Event, since time.Time) (map[string]bool, error)
}

// Skipper is implemented by sinks that accept events without writing them
// because they wrote them before (a log sink replayed over its own files):
// Skipped is how many so far. Replays report it.
type Skipper interface {
	Skipped() uint64
}

// Starter is implemented by sinks that serve something while they run
// (the metrics sink's /metrics endpoint). The live runtime calls Start
// once before the first Write and never in a replay; Close stops what
// Start started. Start fails when it cannot serve (the address is taken).
type Starter interface {
	Start(ctx context.Context) error
}

// Settings are what the host gives a sink beyond its configuration.
type Settings struct {
	// Name is the sink's name: the id of its section ([tracer.<id>],
	// [webhook.<id>]) or, for a single section, the section ("metrics").
	Name string
	// Instance names this process among the instances of the same sink;
	// a sink that owns files puts it in their names so that instances
	// never share one. Empty with AnySlot: take the first free slot.
	Instance string
	AnySlot  bool
	// Stdout is where a sink that prints writes (console tracers).
	Stdout io.Writer
	// Registry receives a sink's own metrics (the metrics sink's event
	// series); the host serves or discards it.
	Registry *prometheus.Registry
	// Log receives the sink's own messages.
	Log zerolog.Logger
}

// Config is one sink section, decoded from the file by the host into the
// value the kind's NewConfig returned (defaults filled in).
type Config interface {
	// Enabled reports whether the sink runs (enable is not false). A
	// disabled section is decoded but neither validated nor built.
	Enabled() bool
	// Rule returns the section's routing keys.
	Rule() Rule
	// Validate checks the kind's own keys and returns every error found,
	// joined, each prefixed with its key relative to the section
	// ("url: required"). It never quotes a secret or a URL. The routing
	// keys and discard-after/max-backoff are the host's to check.
	Validate() error
}

// Rule is a section's routing keys, in Stalwart's names: `level` (for a
// level-based kind, a tracer), `events` with `events-policy` (include, the
// default, or exclude), and `disabled-events`. The host validates them
// (reporting errors under those key names) and the router applies them;
// the sink writes what it is given.
type Rule struct {
	// LevelBased sinks take events whose effective level is at least
	// Level; others ignore levels (but never get a disabled event).
	LevelBased bool
	Level      string
	// Events is the allowlist (or, with EventsPolicy "exclude", a
	// blocklist) of event id patterns; DisabledEvents a blocklist.
	Events         []string
	EventsPolicy   string
	DisabledEvents []string
}

// RuleKeys are the keys Rule reads. A reload that changes only them
// leaves a sink the router feeds running: the router applies them.
var RuleKeys = []string{"level", "events", "events-policy", "disabled-events"}

// Retry is the two keys with which a section overrides [sinks]' retry
// policy; a kind's Config embeds it to have them. Zero means [sinks]'.
type Retry struct {
	DiscardAfter value.Duration `toml:"discard-after" doc:"how long a failing write is retried before its events are dead-lettered; overrides [sinks]"`
	MaxBackoff   value.Duration `toml:"max-backoff" doc:"the longest wait between two attempts of a failing write; overrides [sinks]"`
}

// RetryOverride returns r: the host reads it through this method.
func (r Retry) RetryOverride() Retry { return r }

// Printer is implemented by config field types that decode themselves
// (UnmarshalTOML) and are not a plain string, number, boolean, list of
// strings or table: `router config` prints the value Print returns, which
// must be one of those.
type Printer interface {
	Print() any
}

// Describer is implemented by configs that can say in one line what the
// sink does, for `router up` ("writes json lines to /var/log/mailtel.*").
type Describer interface {
	Describe() string
}

// Redirecter is implemented by configs whose destination a replay can
// point elsewhere (`--to`): Redirect returns a copy of the config writing
// to to (a URL, a directory), or an error saying what to must be.
type Redirecter interface {
	Redirect(to string) (Config, error)
}

// LevelRule is the routing keys of a level-based section, a tracer of any
// type: a kind's Config embeds it (with no toml name) to have them and its
// Rule method.
type LevelRule struct {
	Level          string   `toml:"level" doc:"the least level taken: trace, debug, info, warn or error"`
	DisabledEvents []string `toml:"disabled-events" doc:"event id patterns never taken (auth.*, *-fail)"`
	Events         []string `toml:"events" doc:"event id patterns: with events-policy include, only these are taken"`
	EventsPolicy   string   `toml:"events-policy" doc:"include (events is an allowlist) or exclude (a blocklist)"`
}

// Rule returns r as a level-based Rule.
func (r LevelRule) Rule() Rule {
	return Rule{LevelBased: true, Level: r.Level, Events: r.Events, EventsPolicy: r.EventsPolicy, DisabledEvents: r.DisabledEvents}
}
