package catalog

import (
	"fmt"
	"strings"
)

// Level is the severity of an event. Levels are ordered
// trace < debug < info < warn < error; Disable sorts above every other level
// so that no threshold ever records an event whose level is Disable.
type Level uint8

// The levels, in increasing order of severity.
const (
	LevelTrace Level = iota
	LevelDebug
	LevelInfo
	LevelWarn
	LevelError
	LevelDisable
)

var levelNames = [...]string{"trace", "debug", "info", "warn", "error", "disable"}

// String returns the lower-case name of the level ("info").
func (l Level) String() string {
	if int(l) < len(levelNames) {
		return levelNames[l]
	}
	return fmt.Sprintf("level(%d)", uint8(l))
}

// Valid reports whether l is one of the defined levels.
func (l Level) Valid() bool { return l <= LevelDisable }

// ParseLevel parses a level name case-insensitively ("INFO", "info").
// "warning" is accepted for "warn" and "off" for "disable".
func ParseLevel(s string) (Level, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "trace":
		return LevelTrace, nil
	case "debug":
		return LevelDebug, nil
	case "info":
		return LevelInfo, nil
	case "warn", "warning":
		return LevelWarn, nil
	case "error":
		return LevelError, nil
	case "disable", "disabled", "off":
		return LevelDisable, nil
	}
	return 0, fmt.Errorf("unknown level %q (want trace, debug, info, warn, error or disable)", s)
}

// Records reports whether a level-based sink with threshold l records an
// event of level ev: ev >= l, and neither of them is Disable.
func (l Level) Records(ev Level) bool {
	return l != LevelDisable && ev != LevelDisable && ev >= l
}

// MarshalText implements encoding.TextMarshaler.
func (l Level) MarshalText() ([]byte, error) {
	if !l.Valid() {
		return nil, fmt.Errorf("invalid level %d", uint8(l))
	}
	return []byte(l.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler (case-insensitive).
func (l *Level) UnmarshalText(b []byte) error {
	v, err := ParseLevel(string(b))
	if err != nil {
		return err
	}
	*l = v
	return nil
}
