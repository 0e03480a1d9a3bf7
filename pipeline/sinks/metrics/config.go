package metrics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"syscall"

	"github.com/mailtel/mailtel/pipeline/config/value"
	"github.com/mailtel/mailtel/pipeline/sink"
)

// Config is the `[metrics]` section: `[metrics.prometheus]` and the
// blocklist of events never counted.
type Config struct {
	Prometheus     Prometheus `toml:"prometheus"`
	DisabledEvents []string   `toml:"disabled-events" doc:"event id patterns never counted"`
	// OpenTelemetry is accepted (and ignored) so a pasted Stalwart section loads.
	OpenTelemetry any `toml:"open-telemetry" doc:"Stalwart's OTLP metrics exporter: accepted and ignored"`
}

// Prometheus is `[metrics.prometheus]`.
type Prometheus struct {
	Enable        bool            `toml:"enable" doc:"run the metrics sink"`
	Listen        string          `toml:"listen" doc:"where /metrics is served (host:port)"`
	Auth          value.BasicAuth `toml:"auth" doc:"basic auth (username, secret) or a bearer token (secret alone) for scrapes"`
	StalwartNames bool            `toml:"stalwart-names" doc:"also count under Stalwart's own metric names"`
}

// DefaultListen is where /metrics is served by default: loopback, the
// port Stalwart's examples use for its own metrics plus one.
const DefaultListen = "127.0.0.1:9100"

// NewConfig returns the defaults: off, listen on DefaultListen.
func NewConfig() *Config { return &Config{Prometheus: Prometheus{Listen: DefaultListen}} }

// Enabled reports whether [metrics.prometheus] enable is true.
func (c *Config) Enabled() bool { return c.Prometheus.Enable }

// Rule returns the blocklist; metrics ignore levels.
func (c *Config) Rule() sink.Rule { return sink.Rule{DisabledEvents: c.DisabledEvents} }

// Validate checks the listen address.
func (c *Config) Validate() error {
	_, port, err := net.SplitHostPort(c.Prometheus.Listen)
	if err != nil {
		return fmt.Errorf("prometheus.listen: want host:port, not %q", c.Prometheus.Listen)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		return fmt.Errorf("prometheus.listen: bad port in %q", c.Prometheus.Listen)
	}
	return nil
}

// Describe says where /metrics is served.
func (c *Config) Describe() string { return "serves http://" + c.Prometheus.Listen + "/metrics" }

// Start serves the sink's registry on [metrics.prometheus] listen until
// Close or ctx ends.
func (s *Sink) Start(ctx context.Context) error {
	addr, stop, err := Serve(ctx, &s.cfg.Prometheus, s.reg)
	if errors.Is(err, syscall.EADDRINUSE) {
		// Unlike a process's health port, this one does not move to a
		// free port: Prometheus scrapes one configured address, and a
		// second metrics sink would count its share of the events on an
		// endpoint nobody scrapes.
		err = fmt.Errorf("%w: is another process running the metrics sink %q? It runs in one process only: "+
			"Prometheus scrapes [metrics.prometheus] listen, and a second metrics sink would count its share of the events "+
			"where nothing scrapes them (run more instances of the other sinks with --sink NAME)", err, s.name)
	}
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.stop = stop
	s.mu.Unlock()
	s.log.Info().Str("listen", addr).Msg("serving event metrics on /metrics")
	return nil
}

func init() {
	sink.Register(sink.Factory{
		Kind: "metrics", Section: "metrics", Single: true,
		Doc:       "Prometheus counters and histograms of the events, by type, level and server kind",
		Stalwart:  "Stalwart's [metrics.prometheus] and [metrics] disabled-events; open-telemetry accepted and ignored",
		NoReplay:  "its counters live in the process that serves them, so there is nothing to replay into",
		NewConfig: func() sink.Config { return NewConfig() },
		New: func(cfg sink.Config, set sink.Settings) (sink.Sink, error) {
			s, err := New(set.Name, cfg.(*Config), set.Registry)
			if err != nil {
				return nil, err
			}
			s.log = set.Log
			return s, nil
		},
	})
}

// Interface guards.
var (
	_ sink.Sink      = (*Sink)(nil)
	_ sink.Starter   = (*Sink)(nil)
	_ sink.Describer = (*Config)(nil)
)
