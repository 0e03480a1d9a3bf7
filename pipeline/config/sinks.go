package config

import (
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/mailtel/mailtel/catalog"
	"github.com/mailtel/mailtel/pipeline/sink"
)

// A SinkSection is one sink's section of the file, decoded by its kind
// (package sink's registry): [tracer.<id>], [webhook.<id>], [metrics].
type SinkSection struct {
	// Section is the top-level table ("tracer"); ID the sink's key in it
	// ("file"), empty for a single section.
	Section, ID string
	// Factory is the section's kind; nil for a disabled tracer of a type
	// mailtel does not run (kept for Stalwart's sake, and ignored).
	Factory *sink.Factory
	// Config is the decoded section, defaults filled in; nil with Factory.
	Config sink.Config
	// ForeignType is the type of a tracer mailtel does not run.
	ForeignType string
}

// Name is the sink's name: its ID, or the section of a single section.
func (s *SinkSection) Name() string {
	if s.ID == "" {
		return s.Section
	}
	return s.ID
}

// Path is the section's key path: "tracer.file", "metrics".
func (s *SinkSection) Path() string {
	if s.ID == "" {
		return s.Section
	}
	return s.Section + "." + s.ID
}

// Enabled reports whether the sink runs.
func (s *SinkSection) Enabled() bool { return s.Config != nil && s.Config.Enabled() }

// Sink returns the section of the sink named name (enabled or not), or nil.
func (c *Config) Sink(name string) *SinkSection {
	for _, s := range c.SinkSections {
		if s.Name() == name {
			return s
		}
	}
	return nil
}

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

	// Factory builds the sink from Config.
	Factory *sink.Factory
	Config  sink.Config
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
	for _, sec := range c.SinkSections {
		if !sec.Enabled() {
			continue
		}
		r := sec.Config.Rule()
		s := SinkSpec{Name: sec.Name(), Kind: sec.Factory.Kind, LevelBased: r.LevelBased, Exclude: must(r.DisabledEvents),
			Factory: sec.Factory, Config: sec.Config, ServerFanOut: slices.Contains(c.Router.ServerFanOut, sec.Name())}
		if r.LevelBased {
			s.Level, _ = catalog.ParseLevel(r.Level)
		}
		if r.EventsPolicy == "exclude" {
			s.Exclude = append(s.Exclude, must(r.Events)...)
		} else {
			s.Include = must(r.Events)
		}
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// retryOf returns the section's own discard-after and max-backoff (zero
// where it sets none, or has no such keys).
func retryOf(cfg sink.Config) Retry {
	if r, ok := cfg.(interface{ RetryOverride() sink.Retry }); ok {
		o := r.RetryOverride()
		return Retry{o.DiscardAfter, o.MaxBackoff}
	}
	return Retry{}
}

// RetryOf returns the retry settings of one sink: its own where set, else
// those of [sinks].
func (c *Config) RetryOf(spec SinkSpec) Retry {
	r := c.Sinks.Retry
	if spec.Config == nil {
		return r
	}
	own := retryOf(spec.Config)
	if own.DiscardAfter > 0 {
		r.DiscardAfter = own.DiscardAfter
	}
	if own.MaxBackoff > 0 {
		r.MaxBackoff = own.MaxBackoff
	}
	return r
}

// isSinkSection reports whether the top-level table name holds sinks.
func isSinkSection(name string) (sink.Section, bool) {
	for _, s := range sink.Sections() {
		if s.Name == name {
			return s, true
		}
	}
	return sink.Section{}, false
}

// decodeSinks decodes the top-level table sec, which holds sinks, into
// c.SinkSections: each section into the config of its kind, key by key
// (see decodeValue).
func decodeSinks(md *toml.MetaData, prim toml.Primitive, sec sink.Section, c *Config, errs *[]error) {
	if got := md.Type(sec.Name); got != "" && got != "Hash" {
		*errs = append(*errs, fmt.Errorf("%s: want a table, not %s", sec.Name, tomlTypeName(got)))
		return
	}
	if sec.Single {
		f, _ := sink.Lookup(sec.Name, "")
		c.setSink(decodeSink(md, prim, f, toml.Key{sec.Name}, "", errs))
		return
	}
	var ids map[string]toml.Primitive
	if err := md.PrimitiveDecode(prim, &ids); err != nil {
		*errs = append(*errs, decodeError(toml.Key{sec.Name}, err))
		return
	}
	for _, id := range sortedKeys(ids) {
		path := toml.Key{sec.Name, id}
		if got := md.Type(path...); got != "" && got != "Hash" { // "" for a table made by dotted keys
			*errs = append(*errs, fmt.Errorf("%s: want a table, not %s", path, tomlTypeName(got)))
			continue
		}
		typ := ""
		if sec.Typed {
			var head struct {
				Type   any `toml:"type"`
				Enable any `toml:"enable"`
			}
			if err := md.PrimitiveDecode(ids[id], &head); err != nil {
				*errs = append(*errs, decodeError(path, err))
				continue
			}
			s, ok := head.Type.(string)
			switch {
			case head.Type == nil:
				*errs = append(*errs, fmt.Errorf("%s.type: required (%s)", path, strings.Join(sec.Types, ", ")))
				continue
			case !ok:
				*errs = append(*errs, fmt.Errorf("%s.type: want a string", path))
				continue
			}
			typ = s
			if _, known := sink.Lookup(sec.Name, typ); !known {
				if head.Enable == false {
					// A disabled tracer of a type mailtel does not run
					// (Stalwart's journal): its keys are Stalwart's, kept
					// so that a whole file pastes.
					c.setSink(&SinkSection{Section: sec.Name, ID: id, ForeignType: typ})
					continue
				}
				*errs = append(*errs, fmt.Errorf("%s.type: unsupported %s type %q (mailtel supports %s; set enable = false to keep it in the file)",
					path, sec.Name, typ, strings.Join(sec.Types, ", ")))
				continue
			}
		}
		f, _ := sink.Lookup(sec.Name, typ)
		c.setSink(decodeSink(md, ids[id], f, path, id, errs))
	}
}

// decodeSink decodes one section into a new config of kind f.
func decodeSink(md *toml.MetaData, prim toml.Primitive, f *sink.Factory, path toml.Key, id string, errs *[]error) *SinkSection {
	cfg := f.NewConfig()
	decodeValue(md, prim, reflect.ValueOf(cfg).Elem(), path, errs)
	if d, ok := cfg.(interface{ Defaults() }); ok {
		d.Defaults()
	}
	return &SinkSection{Section: f.Section, ID: id, Factory: f, Config: cfg}
}

// setSink adds or replaces the section of s's path.
func (c *Config) setSink(s *SinkSection) {
	for i, x := range c.SinkSections {
		if x.Path() == s.Path() {
			c.SinkSections[i] = s
			return
		}
	}
	c.SinkSections = append(c.SinkSections, s)
	sort.SliceStable(c.SinkSections, func(i, j int) bool {
		a, b := c.SinkSections[i], c.SinkSections[j]
		if a.Section != b.Section {
			return sectionRank(a.Section) < sectionRank(b.Section)
		}
		return a.ID < b.ID
	})
}

// sectionRank orders the sink sections as Stalwart's files have them:
// tracers, webhooks, metrics, then any other by name.
func sectionRank(name string) string {
	switch name {
	case "tracer":
		return "0"
	case "webhook":
		return "1"
	case "metrics":
		return "2"
	}
	return "3" + name
}

// addSingles gives every single sink section the file lacks its defaults
// (an absent [metrics] is a metrics sink that is off).
func (c *Config) addSingles() {
	for _, sec := range sink.Sections() {
		if sec.Single && c.Sink(sec.Name) == nil {
			f, _ := sink.Lookup(sec.Name, "")
			c.setSink(&SinkSection{Section: sec.Name, Factory: f, Config: f.NewConfig()})
		}
	}
}

// validateSinks checks every sink section: a disabled one only for its
// retry keys, an enabled one for its name, its kind's own keys, its
// routing keys and its retry keys.
func (c *Config) validateSinks(claim func(name, path string), add, warn func(string, string, ...any)) {
	for _, s := range c.SinkSections {
		if s.Config == nil {
			continue
		}
		p := s.Path()
		c.checkRetry(p, retryOf(s.Config), add)
		if !s.Config.Enabled() {
			continue
		}
		claim(s.Name(), p)
		if err := s.Config.Validate(); err != nil {
			for _, e := range unjoin(err) {
				key, msg, ok := strings.Cut(e.Error(), ": ")
				if !ok {
					key, msg = "", e.Error()
				}
				add(strings.TrimSuffix(p+"."+key, "."), "%s", msg)
			}
		}
		r := s.Config.Rule()
		if r.LevelBased {
			if _, err := catalog.ParseLevel(r.Level); err != nil {
				add(p+".level", "%v", err)
			}
		}
		checkPatterns(p+".disabled-events", r.DisabledEvents, add, warn)
		checkPatterns(p+".events", r.Events, add, warn)
		checkPolicy(p+".events-policy", r.EventsPolicy, add)
	}
}

// unjoin returns the errors errors.Join joined, or err alone.
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, unjoin(e)...)
		}
		return out
	}
	return []error{err}
}
