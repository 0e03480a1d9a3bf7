package sink

import (
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
)

// A Factory makes the sinks of one kind. Register it from the kind's
// package init.
type Factory struct {
	// Kind names the kind: "log", "webhook", "open-telemetry".
	Kind string
	// Aliases are other names the file may use for it ("otel").
	Aliases []string
	// Section is the top-level table of the file the kind is configured
	// in ("tracer", "webhook", "metrics").
	Section string
	// Single makes Section one sink named Section ([metrics]); otherwise
	// each [Section.<id>] is a sink named <id>.
	Single bool
	// Typed makes the section's `type` key name the kind ([tracer.<id>]
	// type = "log"); every kind of a typed section must be Typed, and its
	// Config must have the `type` key. An untyped section has one kind.
	Typed bool
	// Doc is one line on what the kind does, for the reference.
	Doc string
	// Stalwart says how the kind relates to Stalwart's configuration, for
	// the reference ("same keys as Stalwart's log tracer").
	Stalwart string
	// NoReplay, when set, says why events cannot be replayed into this
	// kind (the metrics sink counts live only).
	NoReplay string
	// NewConfig returns a new Config with the kind's defaults: a pointer
	// to a struct, which the host decodes the section into.
	NewConfig func() Config
	// New builds a sink from a validated, enabled Config of this kind.
	New func(cfg Config, set Settings) (Sink, error)
}

var registry struct {
	sync.RWMutex
	byKey map[string]*Factory // section + "/" + kind or alias
	all   []*Factory
}

// Register adds a kind. It panics on a factory that lacks a field it
// needs, on a name already registered in the section, and on a typed
// kind whose Config has no `type` key: these are programming errors.
func Register(f Factory) {
	if f.Kind == "" || f.Section == "" || f.NewConfig == nil || f.New == nil {
		panic(fmt.Sprintf("sink: Register %q in %q: Kind, Section, NewConfig and New are required", f.Kind, f.Section))
	}
	cfg := f.NewConfig()
	if t := reflect.TypeOf(cfg); t == nil || t.Kind() != reflect.Pointer || t.Elem().Kind() != reflect.Struct {
		panic(fmt.Sprintf("sink: Register %s: NewConfig must return a pointer to a struct, not %T", f.Kind, cfg))
	}
	if f.Typed && !hasKey(reflect.TypeOf(cfg).Elem(), "type") {
		panic(fmt.Sprintf("sink: Register %s: a typed kind's Config needs a `type` key", f.Kind))
	}
	registry.Lock()
	defer registry.Unlock()
	if registry.byKey == nil {
		registry.byKey = map[string]*Factory{}
	}
	for _, other := range registry.all {
		if other.Section == f.Section && (other.Typed != f.Typed || other.Single != f.Single || !f.Typed) {
			panic(fmt.Sprintf("sink: Register %s: section %s already holds kind %s, and only a typed section holds several", f.Kind, f.Section, other.Kind))
		}
	}
	names := append([]string{f.Kind}, f.Aliases...)
	for _, name := range names {
		if _, dup := registry.byKey[f.Section+"/"+name]; dup {
			panic(fmt.Sprintf("sink: Register: %s %q registered twice", f.Section, name))
		}
	}
	for _, name := range names {
		registry.byKey[f.Section+"/"+name] = &f
	}
	registry.all = append(registry.all, &f)
	sort.Slice(registry.all, func(i, j int) bool {
		a, b := registry.all[i], registry.all[j]
		return a.Section < b.Section || a.Section == b.Section && a.Kind < b.Kind
	})
}

// Lookup returns the kind of a section: for a typed section the one named
// typ (a kind or an alias), for another its only kind (typ is ignored).
func Lookup(section, typ string) (*Factory, bool) {
	registry.RLock()
	defer registry.RUnlock()
	for _, f := range registry.all {
		if f.Section != section {
			continue
		}
		if !f.Typed {
			return f, true
		}
		if f.Kind == typ || slices.Contains(f.Aliases, typ) {
			return f, true
		}
	}
	return nil, false
}

// Factories returns every registered kind, sorted by section and kind.
func Factories() []*Factory {
	registry.RLock()
	defer registry.RUnlock()
	return slices.Clone(registry.all)
}

// Section describes a top-level table that holds sinks.
type Section struct {
	Name   string
	Single bool
	Typed  bool
	// Types are the names a typed section's `type` takes (kinds and
	// aliases), sorted.
	Types []string
}

// Sections returns the tables that hold sinks, sorted by name.
func Sections() []Section {
	byName := map[string]*Section{}
	var out []string
	for _, f := range Factories() {
		s, ok := byName[f.Section]
		if !ok {
			s = &Section{Name: f.Section, Single: f.Single, Typed: f.Typed}
			byName[f.Section] = s
			out = append(out, f.Section)
		}
		if f.Typed {
			s.Types = append(s.Types, f.Kind)
			s.Types = append(s.Types, f.Aliases...)
		}
	}
	sections := make([]Section, len(out))
	for i, n := range out {
		sort.Strings(byName[n].Types)
		sections[i] = *byName[n]
	}
	return sections
}

// hasKey reports whether struct type t has the toml key name, its
// embedded structs included.
func hasKey(t reflect.Type, name string) bool {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		if tag == name {
			return true
		}
		if tag == "" && f.Anonymous && f.Type.Kind() == reflect.Struct && hasKey(f.Type, name) {
			return true
		}
	}
	return false
}
