package webhook

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/mailtel/mailtel/pipeline/config/value"
	"github.com/mailtel/mailtel/pipeline/sink"
)

// Config is a Stalwart `[webhook.<id>]` receiver. A pasted Stalwart
// section decodes into it unchanged.
type Config struct {
	Enable            *bool             `toml:"enable" doc:"false keeps the section in the file without running it"`
	URL               string            `toml:"url" doc:"the receiver's http:// or https:// URL (required)"`
	Events            []string          `toml:"events" doc:"event id patterns the webhook receives (required; [\"*\"] for all)"`
	EventsPolicy      string            `toml:"events-policy" doc:"include (events is an allowlist) or exclude (a blocklist)"`
	SignatureKey      string            `toml:"signature-key" secret:"true" doc:"signs each body: X-Signature is base64 HMAC-SHA256, as Stalwart signs"`
	Headers           map[string]string `toml:"headers" secret:"true" doc:"extra request headers (values are secrets)"`
	Auth              value.BasicAuth   `toml:"auth" doc:"basic auth (username, secret), or a bearer token (secret alone)"`
	Timeout           value.Duration    `toml:"timeout" doc:"bounds one request"`
	Throttle          value.Duration    `toml:"throttle" doc:"the least time between two requests of one slot"`
	BatchSize         int               `toml:"batch-size" doc:"the most events in one request"`
	Concurrency       int               `toml:"concurrency" doc:"the most requests in flight at once"`
	AllowInvalidCerts bool              `toml:"allow-invalid-certs" doc:"accept any TLS certificate (a test receiver only)"`
	Lossy             bool              `toml:"lossy" doc:"accepted for Stalwart compatibility; mailtel never drops, see discard-after"`
	// Retry overrides [sinks]. Stalwart's discard-after (5m there) drops
	// events; mailtel's retries them until they have failed this long,
	// then dead-letters them.
	sink.Retry
}

// NewConfig returns the defaults: timeout 30s, throttle 1s, batch-size
// 100, concurrency 4, events-policy include.
func NewConfig() *Config {
	return &Config{Timeout: value.Duration(DefaultTimeout), Throttle: value.Duration(time.Second),
		BatchSize: DefaultBatchSize, Concurrency: DefaultConcurrency, EventsPolicy: "include"}
}

// Enabled reports whether the webhook runs (enable is not false).
func (c *Config) Enabled() bool { return c.Enable == nil || *c.Enable }

// Rule returns the webhook's routing keys; a webhook ignores levels.
func (c *Config) Rule() sink.Rule {
	return sink.Rule{Events: c.Events, EventsPolicy: c.EventsPolicy}
}

// Validate checks the webhook's own keys. Errors never quote the URL.
func (c *Config) Validate() error {
	var errs []error
	add := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
	}
	if c.URL == "" {
		add("url", "required")
	} else if !strings.HasPrefix(c.URL, "http://") && !strings.HasPrefix(c.URL, "https://") {
		add("url", "want an http:// or https:// URL")
	} else if u, err := value.ParseURL(c.URL); err != nil {
		add("url", "%v", err) // never the URL: it may hold a password or a key
	} else if u.Host == "" {
		add("url", "want an http:// or https:// URL with a host")
	}
	if len(c.Events) == 0 {
		add("events", "required: the events this webhook receives (e.g. [\"auth.*\"] or [\"*\"])")
	}
	if c.BatchSize < 1 {
		add("batch-size", "must be at least 1")
	}
	if c.Concurrency < 1 {
		add("concurrency", "must be at least 1")
	}
	return errors.Join(errs...)
}

// Describe says where the webhook posts (the URL redacted).
func (c *Config) Describe() string { return "posts to " + value.RedactURL(c.URL) }

// Redirect returns a copy that posts to the URL to.
func (c *Config) Redirect(to string) (sink.Config, error) {
	cp := *c
	cp.URL = to
	return &cp, nil
}

func init() {
	sink.Register(sink.Factory{
		Kind: "webhook", Section: "webhook",
		Doc:       "batches of events POSTed as Stalwart's webhook JSON, signed as Stalwart signs",
		Stalwart:  "Stalwart's [webhook.<id>]; adds batch-size, concurrency and mailtel's retry keys",
		NewConfig: func() sink.Config { return NewConfig() },
		New: func(cfg sink.Config, set sink.Settings) (sink.Sink, error) {
			return New(set.Name, cfg.(*Config), Options{})
		},
	})
}

// Interface guards.
var (
	_ sink.Sink       = (*Sink)(nil)
	_ sink.Describer  = (*Config)(nil)
	_ sink.Redirecter = (*Config)(nil)
)
