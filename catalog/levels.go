package catalog

import (
	"fmt"
	"sort"
)

// Levels is the table of effective levels: the catalog default of every
// event type, replaced by the `[tracing.level]` overrides. It is built once
// at load and read without locks.
type Levels struct {
	byIndex []Level
	// unknown holds overrides for ids the catalog does not know (events of
	// newer server versions); they apply when such an event arrives.
	unknown map[string]Level
	// Default is the level of an event type neither the catalog nor an
	// override knows.
	Default Level
}

// NewLevels compiles overrides (event id -> level) into a Levels table. Ids
// the catalog does not know are kept: they take effect for events of that
// type when they arrive.
func NewLevels(overrides map[string]Level) *Levels {
	l := &Levels{byIndex: make([]Level, len(types)), Default: LevelInfo}
	for i := range types {
		l.byIndex[i] = types[i].Level
	}
	ids := make([]string, 0, len(overrides))
	for id := range overrides {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		if t, ok := byID[id]; ok {
			l.byIndex[t.Index] = overrides[id]
			continue
		}
		if l.unknown == nil {
			l.unknown = map[string]Level{}
		}
		l.unknown[id] = overrides[id]
	}
	return l
}

// Of returns the effective level of the event id.
func (l *Levels) Of(id string) Level {
	if t, ok := byID[id]; ok {
		return l.byIndex[t.Index]
	}
	if lv, ok := l.unknown[id]; ok {
		return lv
	}
	return l.Default
}

// OfType returns the effective level of a known event type.
func (l *Levels) OfType(t *EventType) Level { return l.byIndex[t.Index] }

// ParseOverrides parses `[tracing.level]` values (id -> level name). Every
// bad value is reported, with its key path.
func ParseOverrides(raw map[string]string) (map[string]Level, []error) {
	out := make(map[string]Level, len(raw))
	var errs []error
	ids := make([]string, 0, len(raw))
	for id := range raw {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		lv, err := ParseLevel(raw[id])
		if err != nil {
			errs = append(errs, fmt.Errorf("tracing.level.%s: %w", id, err))
			continue
		}
		out[id] = lv
	}
	return out, errs
}
