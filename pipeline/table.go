package pipeline

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/mailtel/mailtel/catalog"
	"github.com/mailtel/mailtel/pipeline/config"
)

// Target is one sink copy of an event: the ROUTED subject it is published
// to and the sink's name.
type Target struct {
	Sink    string
	Subject string
}

// Table is the routing decision for every event type, compiled once from
// the sink specs and the effective levels. Looking up a catalog type
// allocates nothing. A Table is safe for concurrent use.
type Table struct {
	specs   []config.SinkSpec
	levels  *catalog.Levels
	byIndex [][]Target

	mu      sync.RWMutex
	unknown map[string][]Target // cache for types outside the catalog
}

// maxUnknownTypes bounds the cache of routes for types outside the catalog.
const maxUnknownTypes = 4096

// NewTable compiles the routes of every catalog type.
func NewTable(specs []config.SinkSpec, levels *catalog.Levels) *Table {
	t := &Table{specs: specs, levels: levels, unknown: map[string][]Target{}}
	all := catalog.All()
	t.byIndex = make([][]Target, len(all))
	for i := range all {
		t.byIndex[i] = t.compute(all[i].ID, levels.OfType(&all[i]))
	}
	return t
}

func (t *Table) compute(id string, lv catalog.Level) []Target {
	var out []Target
	for i := range t.specs {
		if t.specs[i].Wants(id, lv) {
			out = append(out, Target{Sink: t.specs[i].Name, Subject: RoutedPrefix + t.specs[i].Name + "." + id})
		}
	}
	return out
}

// Route returns the copies an event of type id must be sent to. The result
// must not be modified. Known is false for a type outside the catalog (it
// is routed by the level override for its id, or by the default level).
func (t *Table) Route(id string) (targets []Target, known bool) {
	if et, ok := catalog.Lookup(id); ok {
		return t.byIndex[et.Index], true
	}
	t.mu.RLock()
	r, ok := t.unknown[id]
	t.mu.RUnlock()
	if ok {
		return r, false
	}
	r = t.compute(id, t.levels.Of(id))
	t.mu.Lock()
	if len(t.unknown) < maxUnknownTypes {
		t.unknown[id] = r
	}
	t.mu.Unlock()
	return r, false
}

// Wants reports whether the sink named sink records events of type id. It
// allocates nothing for a catalog type.
func (t *Table) Wants(sink, id string) bool {
	targets, _ := t.Route(id)
	for i := range targets {
		if targets[i].Sink == sink {
			return true
		}
	}
	return false
}

// RouterTable returns the table the router copies events by: t without
// the sinks whose ROUTED stream the server fills
// (config.SinkSpec.ServerFanOut). It is t itself when there are none.
func (t *Table) RouterTable() *Table {
	var specs []config.SinkSpec
	for _, s := range t.specs {
		if !s.ServerFanOut {
			specs = append(specs, s)
		}
	}
	if len(specs) == len(t.specs) {
		return t
	}
	return NewTable(specs, t.levels)
}

// Specs returns the sink specs the table was compiled from.
func (t *Table) Specs() []config.SinkSpec { return t.specs }

// Diff says how next routes differently from t: the sinks added and
// removed, and how many catalog event types go to other sinks than before
// ("" when none).
func (t *Table) Diff(next *Table) string {
	had, has := map[string]bool{}, map[string]bool{}
	for _, s := range t.specs {
		had[s.Name] = true
	}
	for _, s := range next.specs {
		has[s.Name] = true
	}
	var parts []string
	if added := missingFrom(has, had); len(added) > 0 {
		parts = append(parts, "sinks added: "+strings.Join(added, ", "))
	}
	if removed := missingFrom(had, has); len(removed) > 0 {
		parts = append(parts, "sinks removed: "+strings.Join(removed, ", "))
	}
	types := 0
	for i := range t.byIndex {
		if !slices.Equal(t.byIndex[i], next.byIndex[i]) {
			types++
		}
	}
	if types > 0 {
		parts = append(parts, fmt.Sprintf("%d event types routed to other sinks", types))
	}
	return strings.Join(parts, "; ")
}

// missingFrom returns the keys of a that b lacks, sorted.
func missingFrom(a, b map[string]bool) []string {
	var out []string
	for k := range a {
		if !b[k] {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}
