// Package config loads the one TOML file every mailtel process reads.
//
// The file is a superset of Stalwart's telemetry settings, so an operator
// can paste theirs: `[tracing.level]` overrides, `[tracer.<id>]` loggers,
// `[webhook.<id>]` webhooks and `[metrics.prometheus]`; plus mailtel's own
// `[nats]`, `[streams]`, `[publisher]`, `[router]`, `[sinks]` and `[logging]`
// sections. Stalwart's other top-level sections (a pasted `[server]`, say)
// are ignored; any other top-level section, and unknown keys inside the
// sections mailtel knows, are errors that name the closest known name.
//
// Load parses and validates; Validate reports every error at once, each
// naming its key path ("webhook.siem.url: ..."), and Load puts first the
// line of the file that sets the key ("line 7: webhook.siem.url: ...").
// EffectiveTOML prints a loaded configuration back, defaults filled in and
// secrets redacted.
package config

import (
	"errors"
	"fmt"
	"net"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/mailtel/mailtel/catalog"
	"github.com/mailtel/mailtel/pipeline/config/value"
	"github.com/mailtel/mailtel/pipeline/delivery"
	"github.com/mailtel/mailtel/schema"
)

// Config is the whole configuration file.
type Config struct {
	Tracing   Tracing      `toml:"tracing" doc:"Stalwart's tracing settings: [tracing.level] overrides the catalog's default level of event types"`
	NATS      NATS         `toml:"nats" doc:"where the pipeline's NATS server is and how to authenticate to it; with url empty the router starts an embedded server"`
	Streams   Streams      `toml:"streams" doc:"names and limits of the streams: EVENTS, DLQ and one ROUTED_<sink> per sink"`
	Publisher Publisher    `toml:"publisher" doc:"publisher ingest's HTTP server, its authentication, and the limits on one event"`
	Router    Router       `toml:"router" doc:"the router workers, which share one durable consumer on EVENTS"`
	Sinks     SinksSection `toml:"sinks" doc:"settings shared by every sink consumer, and the retry policy every sink inherits"`
	Logging   Logging      `toml:"logging" doc:"the processes' own logs"`

	// SinkSections are the sinks' sections ([tracer.<id>], [webhook.<id>],
	// [metrics]), each decoded by its kind (package sink's registry),
	// sorted as the file orders sections: tracers, webhooks, metrics.
	SinkSections []*SinkSection `toml:"-"`

	// Levels is the compiled `[tracing.level]` table (set by Load/Default).
	Levels *catalog.Levels `toml:"-"`
	// Path is the file the configuration came from ("" for Default).
	Path string `toml:"-"`
	// Warnings are what Validate found suspicious but not wrong, each
	// prefixed with its key path: an exact event id the catalog does not
	// have (a typo, or an event of a newer Stalwart), with the nearest id
	// it has. A process logs them at start; `router validate` prints them.
	Warnings []string `toml:"-"`

	// refs are the %{env:...}% and %{file:...}% references the file gave
	// for secrets, by key path (set at load; EffectiveTOML prints them).
	refs map[string]string
}

// Tracing is Stalwart's `[tracing]` section. `[tracing.level]` maps event
// ids to levels; both `"auth.success" = "debug"` and the dotted form
// `auth.success = "debug"` are accepted.
type Tracing struct {
	Level map[string]any `toml:"level" doc:"event id = level (trace, debug, info, warn, error or disable), overriding the catalog's default: \"auth.success\" = \"debug\" or auth.success = \"debug\""`
	// Overrides is Level flattened and parsed.
	Overrides map[string]catalog.Level `toml:"-"`
}

// NATS is `[nats]`: where the pipeline's NATS server is, and how to
// authenticate to it.
//
// With URL empty the router starts an embedded server on Listen that takes
// the same settings: Token, or User and Password; TLS with Cert and Key as
// its certificate, and with TLS.Verify, client certificates signed by
// TLS.CA. Every process connects with them (a process connecting to the
// embedded server presents Cert and Key when the server asks for a client
// certificate, and verifies the server's certificate with CA). A Listen
// beyond loopback needs authentication. With URL set, they are the
// client's: Credentials (a .creds file for a server with JWT auth), User
// and Password, Token, TLS.CA to verify the servers, TLS.Cert and TLS.Key
// as the client certificate.
type NATS struct {
	// URL is a comma-separated server list; empty means the router starts an
	// embedded server on Listen and the other processes connect to it.
	URL         string `toml:"url" doc:"comma-separated NATS server URLs; empty: the router starts an embedded server on listen and the other processes connect to it"`
	Listen      string `toml:"listen" doc:"where the embedded server listens (host:port); beyond loopback it needs authentication"`
	StoreDir    string `toml:"store-dir" doc:"the embedded server's JetStream storage directory"`
	Credentials string `toml:"credentials" doc:"a .creds file for an external NATS server with JWT auth (url set)"`
	User        string `toml:"user" doc:"the NATS user, with password; the embedded server requires it of every client"`
	Password    string `toml:"password" secret:"true" doc:"the user's password (required with user)"`
	Token       string `toml:"token" secret:"true" doc:"a NATS token, instead of user and password"`
	TLS         TLS    `toml:"tls"`
	Name        string `toml:"name" doc:"the connection name the processes give NATS"`
}

// TLS is `[nats.tls]`: the embedded server's certificate or the client's
// (see NATS).
type TLS struct {
	CA   string `toml:"ca" doc:"the CA that verifies the servers' certificates, or (embedded, with verify) the clients'"`
	Cert string `toml:"cert" doc:"the embedded server's certificate, or the client's certificate (with key)"`
	Key  string `toml:"key" doc:"the private key of cert"`
	// Verify makes the embedded server require a client certificate signed
	// by CA.
	Verify bool `toml:"verify" doc:"the embedded server requires client certificates signed by ca"`
}

// Embedded reports whether the processes use the embedded server (no URL).
func (n NATS) Embedded() bool { return n.URL == "" }

// ValidateEmbedded checks what the embedded server needs of n: a
// host:port Listen, authentication when Listen is beyond loopback, one
// kind of authentication it can check, TLS settings that go together.
// Validate runs it when URL is empty; StartEmbedded runs it always.
func (n NATS) ValidateEmbedded() error {
	var errs []error
	n.checkEmbedded(func(path, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", path, fmt.Sprintf(format, args...)))
	})
	return errors.Join(errs...)
}

func (n NATS) checkEmbedded(add func(string, string, ...any)) {
	if n.Credentials != "" {
		add("nats.credentials", "a .creds file authenticates to an external NATS server with JWT auth (set nats.url); the embedded server takes nats.token or nats.user/password")
	}
	if n.Token != "" && n.User != "" {
		add("nats.token", "the embedded server takes a token or a user/password, not both")
	}
	if n.TLS.Cert == "" && (n.TLS.CA != "" || n.TLS.Verify) {
		add("nats.tls.cert", "required with nats.tls.ca or verify: the embedded server speaks TLS only with its certificate (cert and key)")
	}
	if n.TLS.Verify && n.TLS.CA == "" {
		add("nats.tls.verify", "needs nats.tls.ca, the CA that signs the client certificates")
	}
	host, port, err := net.SplitHostPort(n.Listen)
	if err != nil {
		add("nats.listen", "want host:port, not %q", n.Listen)
		return
	}
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		add("nats.listen", "bad port in %q", n.Listen)
		return
	}
	auth := n.Token != "" || (n.User != "" && n.Password != "") || (n.TLS.Verify && n.TLS.CA != "" && n.TLS.Cert != "")
	if !auth && !value.IsLoopbackHost(host) {
		add("nats.listen", "%s is reachable from other hosts, and the embedded server would let anyone read and delete every stream: set nats.token or nats.user/password (or nats.tls with verify), or listen on 127.0.0.1", n.Listen)
	}
}

// RoutedStream returns the name of the stream that holds the routed copies
// of one sink, routed.<sink>.>: "<routed>_<sink>" (ROUTED_siem), where
// routed is [streams] routed. Each sink has a stream of its own so that its
// consumer's filter is its stream's whole subject space, which the server
// reads by a plain scan; a filter narrower than its stream makes the server
// match every subject of a block against it for each delivered message.
func RoutedStream(routed, sink string) string { return routed + "_" + sink }

// RoutedStream returns the name of the stream that holds the routed copies
// of one sink (see the function RoutedStream).
func (s Streams) RoutedStream(sink string) string { return RoutedStream(s.Routed, sink) }

// Streams is `[streams]`: names and limits of the streams: EVENTS, DLQ,
// and one ROUTED stream per sink, named by RoutedStream.
type Streams struct {
	Events     string   `toml:"events" doc:"the stream of every event (events.<category>.<event>)"`
	Routed     string   `toml:"routed" doc:"the prefix of the sinks' streams: ROUTED_<sink> holds routed.<sink>.>"`
	DLQ        string   `toml:"dlq" doc:"the stream of dead letters (dlq.<stage>.<category>.<event>)"`
	Replicas   int      `toml:"replicas" doc:"the replicas of each stream: 1 on one machine, 3 on a cluster (1 to 5)"`
	MaxAge     Duration `toml:"max-age" doc:"how long a stream keeps an event; at least discard-after"`
	MaxBytes   Size     `toml:"max-bytes" doc:"the storage JetStream reserves for each stream, its oldest events dropped beyond; 0 is unlimited"`
	Duplicates Duration `toml:"duplicates" doc:"EVENTS' dedupe window: a sender's retry within it is stored once"`
	// RoutedDuplicates is the duplicate window of the ROUTED streams. It
	// only has to outlast a router's redelivery of an event whose copies
	// were stored but not acked (router.ack-wait), so it is shorter than
	// EVENTS' window, which covers senders' retries; the server keeps every
	// message id of a window in memory.
	RoutedDuplicates Duration `toml:"routed-duplicates" doc:"the ROUTED streams' dedupe window; at least twice [router] ack-wait, which is its default"`
}

// Publisher is `[publisher]`. Listen is where `publisher ingest` serves;
// beyond loopback it needs Token, User and Password, or SignatureKey.
type Publisher struct {
	Listen       string `toml:"listen" doc:"where publisher ingest serves (host:port); beyond loopback it needs token, user/password or signature-key"`
	MaxBody      Size   `toml:"max-body" doc:"the largest ingest request body"`
	MaxInFlight  int    `toml:"max-in-flight" doc:"the most events being stored at once"`
	Token        string `toml:"token" secret:"true" doc:"the bearer token every ingest request must send"`
	User         string `toml:"user" doc:"the basic auth user of ingest requests, with password"`
	Password     string `toml:"password" secret:"true" doc:"the basic auth password of ingest requests (required with user)"`
	SignatureKey string `toml:"signature-key" secret:"true" doc:"every ingest request must carry X-Signature, base64 HMAC-SHA256 of the body, as Stalwart signs"`
	// Limits on one event; events beyond them are rejected and dead-lettered.
	MaxFields int  `toml:"max-fields" doc:"the most fields of one event; a bigger event is rejected and dead-lettered"`
	MaxDepth  int  `toml:"max-depth" doc:"the deepest nesting of one event's fields"`
	MaxString Size `toml:"max-string" doc:"the longest string value of one event"`
	// ReadTimeout bounds the reading of one ingest request, headers and
	// body (30s); WriteTimeout the time from the end of its headers to the
	// end of its answer, the storing of its events included (2m); and
	// IdleTimeout the wait of a keep-alive connection for its next
	// request (60s).
	ReadTimeout  Duration `toml:"read-timeout" doc:"bounds the reading of one ingest request, headers and body"`
	WriteTimeout Duration `toml:"write-timeout" doc:"bounds the time from the end of a request's headers to the end of its answer, the storing of its events included"`
	IdleTimeout  Duration `toml:"idle-timeout" doc:"how long a keep-alive connection waits for its next request"`
	// MaxInFlightBytes caps the bytes of the ingest requests being read
	// and handled at once (64 MiB): a request that would go over it is
	// answered 503 without its body being read.
	MaxInFlightBytes Size `toml:"max-in-flight-bytes" doc:"caps the bytes of the ingest requests being read and handled at once: beyond it a request is answered 503 unread"`
}

// HasAuth reports whether ingest requests must authenticate: a token, a
// user and password, or a signature key is set.
func (p Publisher) HasAuth() bool {
	return p.Token != "" || (p.User != "" && p.Password != "") || p.SignatureKey != ""
}

// Router is `[router]`.
type Router struct {
	Workers  int      `toml:"workers" doc:"the router workers of one process"`
	Batch    int      `toml:"batch" doc:"the most events a worker fetches at once"`
	Consumer string   `toml:"consumer" doc:"the durable consumer on EVENTS every router shares"`
	AckWait  Duration `toml:"ack-wait" doc:"how long an event a router took may stay unacked before it is redelivered"`
	HTTP     string   `toml:"http" doc:"where the router serves /healthz, /readyz and /metrics"`
	// ServerFanOut names the sinks whose ROUTED stream the NATS server
	// fills itself, as a stream source of EVENTS, instead of the router
	// copying events into it (see SinkSpec.ServerFanOut).
	ServerFanOut []string `toml:"server-fan-out" doc:"sinks whose ROUTED stream the NATS server fills itself (a stream source of EVENTS) instead of the router"`
}

// SinksSection is `[sinks]`: settings shared by every sink consumer.
type SinksSection struct {
	Batch   int      `toml:"batch" doc:"the most events a sink fetches at once"`
	AckWait Duration `toml:"ack-wait" doc:"how long a fetched event may stay unacked before JetStream redelivers it"`
	HTTP    string   `toml:"http" doc:"where the sinks process serves /healthz, /readyz and /metrics"`
	Retry
	// MaxDeliver is no longer used (retries are bounded by time, see
	// Retry); set, it is an error that says so.
	MaxDeliver *int `toml:"max-deliver" doc:"removed: an error if set; discard-after replaced it"`
}

// Retry is how long a sink retries a failing write (see package
// pipeline/delivery, which gives the defaults): with backoff up to
// max-backoff between attempts, until the events have been failing for
// discard-after, when they are dead-lettered. [sinks] sets them for every
// sink; a [tracer.<id>] or [webhook.<id>] may set its own.
type Retry struct {
	DiscardAfter Duration `toml:"discard-after" doc:"how long a failing write is retried before its events are dead-lettered"`
	MaxBackoff   Duration `toml:"max-backoff" doc:"the longest wait between two attempts of a failing write"`
}

// Logging is `[logging]`: the processes' own logs.
type Logging struct {
	Level  string `toml:"level" doc:"the least level of the processes' own logs: trace, debug, info, warn or error"`
	Format string `toml:"format" doc:"console or json"` // console or json
}

// Default returns the configuration of an empty file.
func Default() *Config {
	c := &Config{}
	c.applyDefaults()
	c.Levels = catalog.NewLevels(nil)
	return c
}

// Load reads, parses and validates the file at path. An empty path returns
// Default(). The error lists every problem found.
func Load(path string) (*Config, error) { return LoadWith(path, nil) }

// LoadWith is Load with adjust (command-line overrides, say) applied after
// the defaults and before validation, so that the configuration a process
// runs with is the one validated. adjust may be nil.
func LoadWith(path string, adjust func(*Config)) (*Config, error) {
	if path == "" {
		c := Default()
		if adjust == nil {
			return c, nil
		}
		adjust(c)
		if err := c.Validate(); err != nil {
			return nil, err
		}
		return c, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	c, err := ParseWith(data, adjust)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	c.Path = path
	return c, nil
}

// Parse parses and validates a configuration document.
func Parse(data []byte) (*Config, error) { return ParseWith(data, nil) }

// ParseWith is Parse with adjust applied before validation (see LoadWith).
// The error of an invalid document lists every error, then the warnings,
// each prefixed "warning: "; a valid one has its warnings in Warnings.
func ParseWith(data []byte, adjust func(*Config)) (*Config, error) {
	c := &Config{}
	errs, err := decode(string(data), c)
	if err != nil {
		return nil, fmt.Errorf("parse: %w", err)
	}
	c.applyDefaults()
	errs = append(errs, c.expandSecrets()...)
	n := len(errs) // those of decoding and secrets: about what the file says
	var adjusted map[string]bool
	if adjust != nil {
		before := c.values()
		adjust(c)
		adjusted = changedKeys(before, c.values())
	}
	if err := c.Validate(); err != nil {
		errs = append(errs, err)
	}
	errs = c.addLines(data, errs, n, adjusted)
	if len(errs) > 0 {
		// The warnings too, so that one run shows everything to fix.
		for _, w := range c.Warnings {
			errs = append(errs, fmt.Errorf("warning: %s", w))
		}
		return nil, errors.Join(errs...)
	}
	return c, nil
}

// quoted matches what a TOML syntax error quotes from the file.
var quoted = regexp.MustCompile(`"[^"]*"`)

// redactParseError returns a TOML error that names the line and the key
// but not what the file holds there: an unquoted token = TokSecret... is a
// syntax error whose message would repeat the secret.
func redactParseError(err error) error {
	var pe toml.ParseError
	if !errors.As(err, &pe) {
		return err
	}
	where := fmt.Sprintf("line %d", pe.Position.Line)
	if pe.LastKey != "" {
		where += fmt.Sprintf(" (key %s)", pe.LastKey)
	}
	msg := pe.Message
	if !strings.HasPrefix(msg, "invalid duration ") && !strings.HasPrefix(msg, "invalid size ") {
		// Durations and sizes (units.go) are never secrets; their value
		// helps. Anything else may be.
		msg = quoted.ReplaceAllString(msg, `"..."`)
	}
	return fmt.Errorf("%s: %s", where, msg)
}

// sections are the top-level tables of mailtel's own settings; the sink
// sections come from package sink's registry.
var sections = map[string]bool{"tracing": true,
	"nats": true, "streams": true, "publisher": true, "router": true, "sinks": true, "logging": true}

func (c *Config) applyDefaults() {
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	defInt := func(n *int, v int) {
		if *n == 0 {
			*n = v
		}
	}
	def(&c.NATS.Listen, "127.0.0.1:4222")
	def(&c.NATS.StoreDir, "./data")
	def(&c.NATS.Name, "mailtel")
	def(&c.Streams.Events, "EVENTS")
	def(&c.Streams.Routed, "ROUTED")
	def(&c.Streams.DLQ, "DLQ")
	defInt(&c.Streams.Replicas, 1)
	if c.Streams.MaxAge == 0 {
		c.Streams.MaxAge = Duration(7 * 24 * time.Hour)
	}
	if c.Streams.Duplicates == 0 {
		// What EVENTS' window protects is a sender's retry of a request
		// whose answer it did not get: Stalwart times a webhook out after
		// 30s and retries within the minute, a publisher's retry is
		// seconds away. Ten minutes cost the server 5x the memory (about
		// 250 bytes an id: 2.9 GB at 20,000 events/s) and its GC, which a
		// 10-minute soak measured as p99 4.5 s publish->write; 2 minutes
		// gave p99 1.4 s and p50 3 ms at 17,500 events/s (bench -soak).
		c.Streams.Duplicates = Duration(2 * time.Minute)
	}
	def(&c.Publisher.Listen, "127.0.0.1:8025")
	if c.Publisher.MaxBody == 0 {
		c.Publisher.MaxBody = 8 << 20
	}
	defInt(&c.Publisher.MaxInFlight, 4096)
	defInt(&c.Publisher.MaxFields, 512)
	defInt(&c.Publisher.MaxDepth, 8)
	if c.Publisher.MaxString == 0 {
		c.Publisher.MaxString = 64 << 10
	}
	if c.Publisher.ReadTimeout == 0 {
		c.Publisher.ReadTimeout = Duration(30 * time.Second)
	}
	if c.Publisher.WriteTimeout == 0 {
		c.Publisher.WriteTimeout = Duration(2 * time.Minute)
	}
	if c.Publisher.IdleTimeout == 0 {
		c.Publisher.IdleTimeout = Duration(60 * time.Second)
	}
	if c.Publisher.MaxInFlightBytes == 0 {
		c.Publisher.MaxInFlightBytes = 64 << 20
	}
	defInt(&c.Router.Workers, 2)
	defInt(&c.Router.Batch, 500)
	def(&c.Router.Consumer, "router")
	if c.Router.AckWait == 0 {
		c.Router.AckWait = Duration(30 * time.Second)
	}
	if c.Streams.RoutedDuplicates == 0 {
		// What the ROUTED window protects is a router's redelivery: an
		// event whose copies were stored but not acked comes back after
		// ack-wait, so twice ack-wait covers it, and the server holds
		// every id of the window in memory. A soak at 17,500 events/s
		// measured the windows' ids as what drives the server's GC and its
		// publish->write p99 (bench -soak): 2 minutes cost a third more
		// ids than 1 for the same guarantee.
		c.Streams.RoutedDuplicates = 2 * c.Router.AckWait
	}
	def(&c.Router.HTTP, "127.0.0.1:9101")
	defInt(&c.Sinks.Batch, 500)
	if c.Sinks.DiscardAfter == 0 {
		c.Sinks.DiscardAfter = Duration(delivery.DefaultDiscardAfter)
	}
	if c.Sinks.MaxBackoff == 0 {
		c.Sinks.MaxBackoff = Duration(delivery.DefaultMax)
	}
	if c.Sinks.AckWait == 0 {
		c.Sinks.AckWait = Duration(60 * time.Second)
	}
	def(&c.Sinks.HTTP, "127.0.0.1:9102")
	def(&c.Logging.Level, "info")
	def(&c.Logging.Format, "console")
	c.addSingles()
}

// Validate checks the whole configuration and returns every error found,
// joined, each prefixed with its key path. On success it compiles the
// `[tracing.level]` overrides into c.Levels.
func (c *Config) Validate() error {
	var errs []error
	add := func(path string, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", path, fmt.Sprintf(format, args...)))
	}
	c.Warnings = nil
	warn := func(path string, format string, args ...any) {
		c.Warnings = append(c.Warnings, fmt.Sprintf("%s: %s", path, fmt.Sprintf(format, args...)))
	}

	raw := map[string]string{}
	flattenLevels("", c.Tracing.Level, raw, func(path string) { add("tracing.level."+path, "want a level name") })
	ov, lerrs := catalog.ParseOverrides(raw)
	errs = append(errs, lerrs...)
	for _, id := range sortedKeys(ov) {
		if !schema.ValidType(id) {
			add("tracing.level."+id, "not an event id (want category.event)")
		} else {
			checkKnownEvent("tracing.level."+id, id, warn)
		}
	}
	c.Tracing.Overrides = ov
	c.Levels = catalog.NewLevels(ov)

	names := map[string]string{}
	claim := func(name, path string) {
		if !validSinkName(name) {
			add(path, "sink name %q must be made of letters, digits, '-' and '_'", name)
		}
		if prev, ok := names[name]; ok {
			add(path, "sink name %q is already used by %s", name, prev)
			return
		}
		names[name] = path
	}
	c.validateSinks(claim, add, warn)

	if c.Streams.Replicas < 1 || c.Streams.Replicas > 5 {
		add("streams.replicas", "must be between 1 and 5")
	}
	for _, s := range []struct{ path, v string }{{"streams.events", c.Streams.Events}, {"streams.routed", c.Streams.Routed}, {"streams.dlq", c.Streams.DLQ}} {
		if !validSinkName(s.v) {
			add(s.path, "stream name %q must be made of letters, digits, '-' and '_'", s.v)
		}
	}
	if c.Streams.RoutedDuplicates < 2*c.Router.AckWait {
		add("streams.routed-duplicates", "%s is shorter than twice router.ack-wait (%s): a copy stored just before a router died would be stored again when its event is redelivered",
			c.Streams.RoutedDuplicates.D(), c.Router.AckWait.D())
	}
	for i, name := range c.Router.ServerFanOut {
		if c.Sink(name) == nil {
			add(fmt.Sprintf("router.server-fan-out[%d]", i), "%q is not a sink of this file ([tracer.*], [webhook.*] or metrics)", name)
		}
	}
	if c.Router.Workers < 1 {
		add("router.workers", "must be at least 1")
	}
	if c.Router.Batch < 1 {
		add("router.batch", "must be at least 1")
	}
	if c.Sinks.Batch < 1 {
		add("sinks.batch", "must be at least 1")
	}
	if c.Sinks.MaxDeliver != nil {
		add("sinks.max-deliver", "no longer used: a failing write is retried until it has failed for discard-after (%s), then dead-lettered; remove the key, and set [sinks] discard-after to change that", c.Sinks.DiscardAfter.D())
	}
	c.checkRetry("sinks", c.Sinks.Retry, add)
	if c.Publisher.MaxInFlight < 1 {
		add("publisher.max-in-flight", "must be at least 1")
	}
	if c.Publisher.MaxFields < 1 || c.Publisher.MaxFields > 4096 {
		add("publisher.max-fields", "must be between 1 and 4096")
	}
	if c.Publisher.MaxDepth < 1 || c.Publisher.MaxDepth > 32 {
		add("publisher.max-depth", "must be between 1 and 32")
	}
	if c.Publisher.MaxBody < 1024 {
		add("publisher.max-body", "must be at least 1KiB")
	}
	c.Publisher.check(add)
	if _, err := catalog.ParseLevel(c.Logging.Level); err != nil {
		add("logging.level", "%v", err)
	}
	if c.Logging.Format != "console" && c.Logging.Format != "json" {
		add("logging.format", "want console or json, not %q", c.Logging.Format)
	}
	if (c.NATS.TLS.Cert == "") != (c.NATS.TLS.Key == "") {
		add("nats.tls", "cert and key go together")
	}
	checkUserPassword("nats", c.NATS.User, c.NATS.Password, add)
	if c.NATS.Embedded() {
		c.NATS.checkEmbedded(add)
	}
	checkUserPassword("publisher", c.Publisher.User, c.Publisher.Password, add)
	return errors.Join(errs...)
}

// check validates the ingest server settings of [publisher]: where it
// listens (beyond loopback only with authentication), its timeouts and its
// in-flight byte cap.
func (p Publisher) check(add func(string, string, ...any)) {
	if host, port, err := net.SplitHostPort(p.Listen); err != nil {
		add("publisher.listen", "want host:port, not %q", p.Listen)
	} else if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		add("publisher.listen", "bad port in %q", p.Listen)
	} else if !p.HasAuth() && !value.IsLoopbackHost(host) {
		add("publisher.listen", "%s is reachable from other hosts, and ingest would store whatever anyone sends: set publisher.token, publisher.user/password or publisher.signature-key, or listen on 127.0.0.1", p.Listen)
	}
	if p.WriteTimeout <= p.ReadTimeout {
		add("publisher.write-timeout", "%s is not longer than publisher.read-timeout (%s): a request whose body took that long could not be answered",
			p.WriteTimeout.D(), p.ReadTimeout.D())
	}
	if p.MaxInFlightBytes < p.MaxBody {
		add("publisher.max-in-flight-bytes", "%d bytes is less than publisher.max-body (%d bytes): a request of max-body could never be taken",
			p.MaxInFlightBytes, p.MaxBody)
	}
}

// flattenLevels turns the dotted-key form ({auth: {success: "debug"}}) and
// the quoted form ({"auth.success": "debug"}) into one id -> level map.
func flattenLevels(prefix string, m map[string]any, out map[string]string, bad func(string)) {
	for k, v := range m {
		key := k
		if prefix != "" {
			key = prefix + "." + k
		}
		switch v := v.(type) {
		case string:
			out[key] = v
		case map[string]any:
			flattenLevels(key, v, out, bad)
		default:
			bad(key)
		}
	}
}

func checkPatterns(path string, pats []string, add, warn func(string, string, ...any)) {
	for i, p := range pats {
		if _, err := ParsePattern(p); err != nil {
			add(fmt.Sprintf("%s[%d]", path, i), "%v", err)
		} else if !strings.Contains(p, "*") {
			checkKnownEvent(fmt.Sprintf("%s[%d]", path, i), p, warn)
		}
	}
}

// checkKnownEvent warns about an exact event id the catalog does not have,
// naming the nearest one it has. A warning, not an error: Stalwart adds
// events between versions, and a newer server may send this one.
func checkKnownEvent(path, id string, warn func(string, string, ...any)) {
	if _, ok := catalog.Lookup(id); ok {
		return
	}
	warn(path, "%q is not in the event catalog%s; it matches only if a newer server sends it", id, suggest(id, catalogIDs()))
}

var catalogIDs = sync.OnceValue(func() []string {
	all := catalog.All()
	ids := make([]string, len(all))
	for i := range all {
		ids[i] = all[i].ID
	}
	return ids
})

func (c *Config) checkRetry(path string, r Retry, add func(string, string, ...any)) {
	if r.DiscardAfter > c.Streams.MaxAge {
		add(path+".discard-after", "%s is longer than streams.max-age (%s): events waiting for a failing sink would be removed by retention before they are dead-lettered",
			r.DiscardAfter.D(), c.Streams.MaxAge.D())
	}
}

// checkUserPassword refuses a user without a password (anyone who knows
// the name would get in) and a password without a user (ignored).
func checkUserPassword(section, user, password string, add func(string, string, ...any)) {
	if user != "" && password == "" {
		add(section+".password", "required with %s.user: a user without a password lets in anyone who knows the name", section)
	}
	if user == "" && password != "" {
		add(section+".user", "required with %s.password", section)
	}
}

func checkPolicy(path, v string, add func(string, string, ...any)) {
	if v != "" && v != "include" && v != "exclude" {
		add(path, "want include or exclude, not %q", v)
	}
}

func validSinkName(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		b := s[i]
		if !(b >= 'a' && b <= 'z' || b >= '0' && b <= '9' || b == '-' || b == '_') {
			return false
		}
	}
	return true
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
