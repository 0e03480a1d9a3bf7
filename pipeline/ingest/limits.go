package ingest

import (
	"fmt"

	"github.com/mailtel/mailtel/pipeline/config"
	"github.com/mailtel/mailtel/schema"
)

// Limits bound what one event may hold. Events beyond them are rejected
// with the reason and dead-lettered, like any other bad input.
type Limits struct {
	MaxFields int // fields of the event and of each nested event
	MaxDepth  int // nesting of lists and nested events
	MaxString int // bytes of one string, key or byte value
}

// DefaultLimits are the limits of an empty [publisher] section.
var DefaultLimits = LimitsFrom(config.Default().Publisher)

// LimitsFrom reads the limits of a [publisher] section; a zero value takes
// the default (512 fields, depth 8, 64 KiB strings).
func LimitsFrom(p config.Publisher) Limits {
	l := Limits{MaxFields: p.MaxFields, MaxDepth: p.MaxDepth, MaxString: int(p.MaxString)}
	if l.MaxFields <= 0 {
		l.MaxFields = 512
	}
	if l.MaxDepth <= 0 {
		l.MaxDepth = 8
	}
	if l.MaxString <= 0 {
		l.MaxString = 64 << 10
	}
	return l
}

// Check returns an error naming the first limit ev exceeds.
// (The id and type are bounded by the JSON adapters themselves.)
func (l Limits) Check(ev *schema.Event) error {
	return l.fields(ev.Fields, 0)
}

func (l Limits) fields(fs []schema.Field, depth int) error {
	if len(fs) > l.MaxFields {
		return fmt.Errorf("%d fields, more than the limit of %d", len(fs), l.MaxFields)
	}
	for i := range fs {
		if len(fs[i].Key) > l.MaxString {
			return fmt.Errorf("field %d: key longer than %d bytes", i, l.MaxString)
		}
		if err := l.value(fs[i].Value, depth); err != nil {
			return fmt.Errorf("field %q: %w", fs[i].Key, err)
		}
	}
	return nil
}

func (l Limits) value(v schema.Value, depth int) error {
	switch v.Kind() {
	case schema.KindString, schema.KindBytes:
		if len(v.RawString()) > l.MaxString {
			return fmt.Errorf("value of %d bytes, more than the limit of %d", len(v.RawString()), l.MaxString)
		}
	case schema.KindList:
		if depth+1 > l.MaxDepth {
			return fmt.Errorf("nested deeper than the limit of %d", l.MaxDepth)
		}
		if len(v.List()) > l.MaxFields {
			return fmt.Errorf("list of %d values, more than the limit of %d", len(v.List()), l.MaxFields)
		}
		for _, e := range v.List() {
			if err := l.value(e, depth+1); err != nil {
				return err
			}
		}
	case schema.KindEvent:
		if depth+1 > l.MaxDepth {
			return fmt.Errorf("nested deeper than the limit of %d", l.MaxDepth)
		}
		if ev := v.Event(); ev != nil {
			return l.fields(ev.Fields, depth+1)
		}
	}
	return nil
}
