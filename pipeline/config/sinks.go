package config

import (
	"slices"
	"sort"

	"github.com/mailtel/mailtel/catalog"
)

// Sink kinds.
const (
	KindLog     = "log"
	KindConsole = "console"
	KindStdout  = "stdout"
	KindWebhook = "webhook"
	KindMetrics = "metrics"
)

// SinkSpec is one configured sink, in the form the router and the sink
// runtime use: a name (the tracer or webhook id, or "metrics"), a kind, and
// the rule that selects its events.
type SinkSpec struct {
	Name string
	Kind string
	// LevelBased sinks (tracers) record events whose effective level is at
	// least Level; others (webhooks, metrics) ignore levels, except that an
	// event whose effective level is disable is never recorded anywhere.
	LevelBased bool
	Level      catalog.Level
	// Include, when non-empty, is the allowlist: only matching events.
	Include Patterns
	// Exclude is the blocklist: matching events never reach the sink.
	Exclude Patterns
	// ServerFanOut is set for a sink named in [router] server-fan-out: the
	// NATS server copies every event of EVENTS into the sink's ROUTED
	// stream, and the sink itself skips the events the rules above reject.
	// No router copies events for it.
	ServerFanOut bool

	Tracer  *Tracer
	Webhook *Webhook
	Metrics *Metrics
}

// Wants reports whether the sink selects an event of type id with the
// effective level lv. It allocates nothing.
func (s *SinkSpec) Wants(id string, lv catalog.Level) bool {
	if lv == catalog.LevelDisable {
		return false
	}
	if s.LevelBased && !s.Level.Records(lv) {
		return false
	}
	if len(s.Include) > 0 && !s.Include.Match(id) {
		return false
	}
	return !s.Exclude.Match(id)
}

// SinkNames returns the names of the enabled sinks, in SinkSpecs order.
func (c *Config) SinkNames() []string {
	var names []string
	for _, s := range c.SinkSpecs() {
		names = append(names, s.Name)
	}
	return names
}

// SinkSpecs returns the enabled sinks of a validated configuration, sorted
// by name.
func (c *Config) SinkSpecs() []SinkSpec {
	var out []SinkSpec
	must := func(ss []string) Patterns {
		ps, _ := ParsePatterns(ss) // validated by Validate
		return ps
	}
	for id, t := range c.Tracers {
		if t == nil || (t.Enable != nil && !*t.Enable) {
			continue
		}
		lv, _ := catalog.ParseLevel(t.Level)
		s := SinkSpec{Name: id, Kind: t.Type, LevelBased: true, Level: lv, Exclude: must(t.DisabledEvents), Tracer: t}
		if t.EventsPolicy == "exclude" {
			s.Exclude = append(s.Exclude, must(t.Events)...)
		} else {
			s.Include = must(t.Events)
		}
		out = append(out, s)
	}
	for id, w := range c.Webhooks {
		if w == nil || (w.Enable != nil && !*w.Enable) {
			continue
		}
		s := SinkSpec{Name: id, Kind: KindWebhook, Webhook: w}
		if w.EventsPolicy == "exclude" {
			s.Exclude = must(w.Events)
		} else {
			s.Include = must(w.Events)
		}
		out = append(out, s)
	}
	if c.Metrics.Prometheus.Enable {
		out = append(out, SinkSpec{Name: "metrics", Kind: KindMetrics, Exclude: must(c.Metrics.DisabledEvents), Metrics: &c.Metrics})
	}
	for i := range out {
		out[i].ServerFanOut = slices.Contains(c.Router.ServerFanOut, out[i].Name)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
