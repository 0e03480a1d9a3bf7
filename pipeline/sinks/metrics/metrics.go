// Package metrics is the Prometheus sink: it turns the events routed to it
// into counters and histograms, and serves them on /metrics.
//
// Every event is counted once in mailtel_events_total{type,level,source}.
// Events that carry a duration (Stalwart's elapsed, Dovecot's duration) are
// observed in mailtel_event_duration_seconds{type}, and events that carry a
// size (size, message_size) in mailtel_event_size_bytes{type}. Label values
// are bounded: type is a catalog id or "unknown", level one of the level
// names or "unknown", source one of stalwart, dovecot or other.
//
// With stalwart-names set, Stalwart event types are also counted under the
// names Stalwart's own Prometheus exporter uses: the event id with every
// character that is not an ASCII letter or digit replaced by '_'
// ("auth.success" -> auth_success, "delivery.dsn-perm-fail" ->
// delivery_dsn_perm_fail), so dashboards built for Stalwart keep working.
// Like Stalwart's, these counters have no _total suffix, which the
// Prometheus naming lint reports; that is the price of compatibility.
package metrics

import (
	"context"
	"fmt"
	"hash/maphash"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/mailtel/mailtel/catalog"
	"github.com/mailtel/mailtel/schema"
)

// The metric names of the sink.
const (
	EventsTotal     = "mailtel_events_total"
	DurationSeconds = "mailtel_event_duration_seconds"
	SizeBytes       = "mailtel_event_size_bytes"
)

// Label values used when an event's own value is outside the bounded set.
const (
	UnknownType  = "unknown"
	UnknownLevel = "unknown"
	OtherSource  = "other"
)

var (
	// DurationBuckets are the upper bounds of mailtel_event_duration_seconds:
	// 100µs, 400µs, 1.6ms, ... (x4) up to about 105s.
	DurationBuckets = prometheus.ExponentialBuckets(0.0001, 4, 11)
	// SizeBuckets are the upper bounds of mailtel_event_size_bytes: 256 B,
	// 1 KiB, 4 KiB, ... (x4) up to 64 MiB.
	SizeBuckets = prometheus.ExponentialBuckets(256, 4, 10)
)

// dedupeWindow is the number of event ids one generation of the dedupe set
// holds; the sink remembers the last dedupeWindow to 2*dedupeWindow ids.
const dedupeWindow = 1 << 15

const (
	nLevels  = int(catalog.LevelDisable) + 2 // the levels, then "unknown"
	nSources = 3                             // stalwart, dovecot, other
)

var sourceLabels = [nSources]string{"stalwart", "dovecot", OtherSource}

// Sink counts events into a Prometheus registry.
//
// Write is safe for concurrent use (calls are serialised). After the first
// event of a given (type, level, source) the per-event path allocates
// nothing: the label children are cached in slices indexed by the catalog
// index of the type.
//
// Write skips an event whose id it has counted among the last 32768 to
// 65536 ids it saw, so a batch redelivered to this instance (an ack that
// got lost) is not counted twice. A redelivery to another instance or after
// a restart is counted again: Prometheus counters live in memory and are
// reset by a restart anyway. Events without an id are always counted.
type Sink struct {
	name string
	cfg  Config
	log  zerolog.Logger
	stop func() // stops what Start serves; nil before Start

	mu        sync.Mutex // serialises Write; guards the caches and seen sets
	events    *prometheus.CounterVec
	durations *prometheus.HistogramVec
	sizes     *prometheus.HistogramVec
	counters  []prometheus.Counter  // by cell(type, level, source)
	durObs    []prometheus.Observer // by type slot
	sizeObs   []prometheus.Observer // by type slot
	stalwart  *stalwartCounters     // nil unless stalwart-names
	seed      maphash.Seed
	seen      map[uint64]struct{} // current generation of counted ids
	prev      map[uint64]struct{} // previous generation

	reg        *prometheus.Registry
	registered []prometheus.Collector // what Close unregisters
}

// New registers the sink's metrics in reg and returns the sink. It fails
// when reg already holds metrics of the same names.
func New(name string, cfg *Config, reg *prometheus.Registry) (*Sink, error) {
	if reg == nil {
		return nil, fmt.Errorf("metrics sink %s: no registry", name)
	}
	nTypes := catalog.Len() + 1 // the catalog, then "unknown"
	s := &Sink{
		name: name,
		events: prometheus.NewCounterVec(prometheus.CounterOpts{Name: EventsTotal,
			Help: "Events received by the metrics sink, by event type, effective level and server kind."},
			[]string{"type", "level", "source"}),
		durations: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: DurationSeconds,
			Help:    "Durations carried by events (Stalwart elapsed, Dovecot duration), by event type.",
			Buckets: DurationBuckets}, []string{"type"}),
		sizes: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: SizeBytes,
			Help:    "Sizes carried by events (size, message_size), by event type.",
			Buckets: SizeBuckets}, []string{"type"}),
		counters: make([]prometheus.Counter, nTypes*nLevels*nSources),
		durObs:   make([]prometheus.Observer, nTypes),
		sizeObs:  make([]prometheus.Observer, nTypes),
		seed:     maphash.MakeSeed(),
		seen:     make(map[uint64]struct{}, dedupeWindow),
		prev:     make(map[uint64]struct{}, dedupeWindow),
	}
	cs := []prometheus.Collector{s.events, s.durations, s.sizes}
	if cfg != nil && cfg.Prometheus.StalwartNames {
		s.stalwart = newStalwartCounters()
		cs = append(cs, s.stalwart)
	}
	for i, c := range cs {
		if err := reg.Register(c); err != nil {
			for _, r := range cs[:i] {
				reg.Unregister(r)
			}
			return nil, fmt.Errorf("metrics sink %s: register metrics: %w", name, err)
		}
	}
	s.reg, s.registered = reg, cs
	if cfg != nil {
		s.cfg = *cfg
	}
	return s, nil
}

// Write counts the events of batch. It fails only when ctx has ended before
// it started, and then counts nothing.
func (s *Sink) Write(ctx context.Context, batch []*schema.Event) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("metrics sink %s: %w", s.name, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ev := range batch {
		if ev != nil && s.firstTime(ev.ID) {
			s.count(ev)
		}
	}
	return nil
}

// Close unregisters the sink's metrics, so that a sink built anew (a
// configuration reload) can register its own in the same registry: its
// counters start again from zero, which Prometheus's rate() and
// increase() take as a counter reset. It is idempotent.
func (s *Sink) Close(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.registered {
		s.reg.Unregister(c)
	}
	s.registered = nil
	if s.stop != nil {
		s.stop()
		s.stop = nil
	}
	return nil
}

// firstTime records id and reports whether it was not seen recently.
func (s *Sink) firstTime(id string) bool {
	if id == "" {
		return true
	}
	h := maphash.String(s.seed, id)
	if _, ok := s.seen[h]; ok {
		return false
	}
	if _, ok := s.prev[h]; ok {
		return false
	}
	if len(s.seen) >= dedupeWindow {
		clear(s.prev) // keeps its storage: no allocation
		s.prev, s.seen = s.seen, s.prev
	}
	s.seen[h] = struct{}{}
	return true
}

// count updates every metric the event concerns.
func (s *Sink) count(ev *schema.Event) {
	slot, typ := catalog.Len(), UnknownType
	t, known := catalog.Lookup(ev.Type)
	if known {
		slot, typ = t.Index, t.ID
	}
	lv := int(ev.Level)
	if !ev.Level.Valid() {
		lv = nLevels - 1
	}
	src := sourceOf(ev.Server)

	i := (slot*nLevels+lv)*nSources + src
	c := s.counters[i]
	if c == nil {
		level := UnknownLevel
		if ev.Level.Valid() {
			level = ev.Level.String()
		}
		c = s.events.WithLabelValues(typ, level, sourceLabels[src])
		s.counters[i] = c
	}
	c.Inc()

	if d, ok := duration(ev); ok {
		o := s.durObs[slot]
		if o == nil {
			o = s.durations.WithLabelValues(typ)
			s.durObs[slot] = o
		}
		o.Observe(d)
	}
	if n, ok := size(ev); ok {
		o := s.sizeObs[slot]
		if o == nil {
			o = s.sizes.WithLabelValues(typ)
			s.sizeObs[slot] = o
		}
		o.Observe(n)
	}
	if s.stalwart != nil && known && t.Source == catalog.SourceStalwart {
		s.stalwart.counts[t.Index].Add(1)
	}
}

// sourceOf normalises the envelope's server kind to an index of
// sourceLabels. It allocates nothing.
func sourceOf(server string) int {
	switch {
	case strings.EqualFold(server, "stalwart"):
		return 0
	case strings.EqualFold(server, "dovecot"):
		return 1
	}
	return 2
}

// duration returns the event's duration in seconds: the first field named
// elapsed (Stalwart) or duration (Dovecot) whose value is a Duration. Values
// of another kind are ignored, because a bare number has no unit.
func duration(ev *schema.Event) (float64, bool) {
	for i := range ev.Fields {
		f := &ev.Fields[i]
		if (f.Key == "elapsed" || f.Key == "duration") && f.Value.Kind() == schema.KindDuration {
			return f.Value.Duration().Seconds(), true
		}
	}
	return 0, false
}

// size returns the event's size in bytes: the first field named size or
// message_size whose value is an unsigned integer, or a signed one that is
// not negative.
func size(ev *schema.Event) (float64, bool) {
	for i := range ev.Fields {
		f := &ev.Fields[i]
		if f.Key != "size" && f.Key != "message_size" {
			continue
		}
		switch f.Value.Kind() {
		case schema.KindUint:
			return float64(f.Value.Uint()), true
		case schema.KindInt:
			if n := f.Value.Int(); n >= 0 {
				return float64(n), true
			}
		}
	}
	return 0, false
}

// stalwartCounters exposes one counter per Stalwart event type under
// Stalwart's own metric name. A counter appears once its type has been
// seen, like a label child of a vector.
type stalwartCounters struct {
	descs  []*prometheus.Desc // by catalog index; nil for non-Stalwart types
	counts []atomic.Uint64    // by catalog index
}

func newStalwartCounters() *stalwartCounters {
	all := catalog.All()
	c := &stalwartCounters{descs: make([]*prometheus.Desc, len(all)), counts: make([]atomic.Uint64, len(all))}
	for i := range all {
		if t := &all[i]; t.Source == catalog.SourceStalwart {
			c.descs[i] = prometheus.NewDesc(StalwartName(t.ID), t.Description, nil, nil)
		}
	}
	return c
}

// StalwartName returns the metric name Stalwart's exporter gives the event
// id: every character that is not an ASCII letter or digit becomes '_'.
func StalwartName(id string) string {
	b := []byte(id)
	for i, c := range b {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
			b[i] = '_'
		}
	}
	return string(b)
}

// Describe implements prometheus.Collector.
func (c *stalwartCounters) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		if d != nil {
			ch <- d
		}
	}
}

// Collect implements prometheus.Collector.
func (c *stalwartCounters) Collect(ch chan<- prometheus.Metric) {
	for i, d := range c.descs {
		if n := c.counts[i].Load(); d != nil && n > 0 {
			// NewConstMetric fails only on a label mismatch; these have no labels.
			if m, err := prometheus.NewConstMetric(d, prometheus.CounterValue, float64(n)); err == nil {
				ch <- m
			}
		}
	}
}
