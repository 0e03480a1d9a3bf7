package config

import (
	"fmt"
	"strings"

	"github.com/mailtel/mailtel/schema"
)

// Pattern matches event ids the way Stalwart's event lists do: "*" matches
// every event, "auth.*" every id with the prefix "auth.", "*-error" every id
// with the suffix "-error", anything without '*' exactly one id. A single
// '*' in the middle ("smtp.*-fail") matches ids with both the prefix and
// the suffix. Matching allocates nothing.
type Pattern struct {
	prefix, suffix string
	wild           bool
}

// ParsePattern parses one event pattern.
func ParsePattern(s string) (Pattern, error) {
	switch n := strings.Count(s, "*"); {
	case s == "":
		return Pattern{}, fmt.Errorf("empty event pattern")
	case n > 1:
		return Pattern{}, fmt.Errorf("event pattern %q: at most one '*'", s)
	case n == 1:
		pre, suf, _ := strings.Cut(s, "*")
		if !validPatternText(pre) || !validPatternText(suf) {
			return Pattern{}, fmt.Errorf("event pattern %q: only lower-case letters, digits, '.', '-', '_' and one '*'", s)
		}
		return Pattern{prefix: pre, suffix: suf, wild: true}, nil
	case !schema.ValidType(s):
		return Pattern{}, fmt.Errorf("event pattern %q: not an event id (category.event), a prefix (auth.*) or a suffix (*-error)", s)
	}
	return Pattern{prefix: s}, nil
}

func validPatternText(s string) bool {
	return s == "" || validToken(strings.ReplaceAll(s, ".", "-"))
}

// Match reports whether id matches the pattern.
func (p Pattern) Match(id string) bool {
	if !p.wild {
		return id == p.prefix
	}
	return len(id) >= len(p.prefix)+len(p.suffix) && strings.HasPrefix(id, p.prefix) && strings.HasSuffix(id, p.suffix)
}

// String returns the pattern as written.
func (p Pattern) String() string {
	if !p.wild {
		return p.prefix
	}
	return p.prefix + "*" + p.suffix
}

// Patterns is a list of patterns that matches an id when any member does.
type Patterns []Pattern

// ParsePatterns parses a list of patterns; the first error is returned
// (Validate reports them all).
func ParsePatterns(ss []string) (Patterns, error) {
	ps := make(Patterns, 0, len(ss))
	for _, s := range ss {
		p, err := ParsePattern(s)
		if err != nil {
			return nil, err
		}
		ps = append(ps, p)
	}
	return ps, nil
}

// Match reports whether any pattern matches id.
func (ps Patterns) Match(id string) bool {
	for _, p := range ps {
		if p.Match(id) {
			return true
		}
	}
	return false
}
