package value

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Duration is a time.Duration read from TOML as a string in Go's syntax
// ("1m30s", "250ms") extended with Stalwart's day and week units ("7d",
// "2w"), or as an integer number of milliseconds.
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// UnmarshalTOML accepts integers (milliseconds) as well as strings.
func (d *Duration) UnmarshalTOML(v any) error {
	switch v := v.(type) {
	case int64:
		*d = Duration(time.Duration(v) * time.Millisecond)
		return nil
	case string:
		return d.UnmarshalText([]byte(v))
	}
	return fmt.Errorf("want a duration such as \"30s\" or \"7d\", not %v", v)
}

// ParseDuration parses Go durations plus the units d (24h) and w (7d).
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	for _, u := range []struct {
		suffix string
		unit   time.Duration
	}{{"d", 24 * time.Hour}, {"w", 7 * 24 * time.Hour}} {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			f, err := strconv.ParseFloat(n, 64)
			if err != nil || f < 0 {
				return 0, fmt.Errorf("invalid duration %q", s)
			}
			return time.Duration(f * float64(u.unit)), nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("invalid duration %q (want e.g. 500ms, 30s, 5m, 12h, 7d)", s)
	}
	return d, nil
}

// Size is a byte count read from TOML as an integer or a string with a unit
// ("512MB", "10GiB", "64k").
type Size int64

// UnmarshalTOML accepts integers and strings with units.
func (s *Size) UnmarshalTOML(v any) error {
	switch v := v.(type) {
	case int64:
		if v < 0 {
			return fmt.Errorf("size must not be negative")
		}
		*s = Size(v)
		return nil
	case string:
		n, err := ParseSize(v)
		if err != nil {
			return err
		}
		*s = Size(n)
		return nil
	}
	return fmt.Errorf("want a size such as 10485760 or \"10MB\", not %v", v)
}

// ParseSize parses a byte count with an optional unit: b, k/kb/kib,
// m/mb/mib, g/gb/gib, t/tb/tib (case-insensitive; all units are powers of
// 1024, as operators of mail servers usually mean).
func ParseSize(str string) (int64, error) {
	t := strings.ToLower(strings.TrimSpace(str))
	i := len(t)
	for i > 0 && (t[i-1] < '0' || t[i-1] > '9') {
		i--
	}
	num, unit := strings.TrimSpace(t[:i]), strings.TrimSpace(t[i:])
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("invalid size %q (want e.g. 1048576, 512MB, 10GiB)", str)
	}
	mult := map[string]int64{"": 1, "b": 1, "k": 1 << 10, "kb": 1 << 10, "kib": 1 << 10,
		"m": 1 << 20, "mb": 1 << 20, "mib": 1 << 20, "g": 1 << 30, "gb": 1 << 30, "gib": 1 << 30,
		"t": 1 << 40, "tb": 1 << 40, "tib": 1 << 40}[unit]
	if mult == 0 {
		return 0, fmt.Errorf("invalid size %q: unknown unit %q", str, unit)
	}
	return n * mult, nil
}

// String writes s as a configuration file does: "10GiB", "8MiB", or a
// number of bytes.
func (s Size) String() string { return fmt.Sprint(FormatSize(int64(s))) }

// FormatDuration writes d as a configuration file does, so that
// ParseDuration reads it back: "500ms", "30s", "1m30s", "2m", "24h",
// "36h", and whole days from two days up as "7d".
func FormatDuration(d time.Duration) string {
	const day = 24 * time.Hour
	if d >= 2*day && d%day == 0 {
		return strconv.FormatInt(int64(d/day), 10) + "d"
	}
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// formatSize writes n in the largest binary unit that divides it ("10GiB",
// "8MiB", "64KiB"), else as a number of bytes.
func FormatSize(n int64) any {
	for _, u := range []struct {
		name string
		size int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n >= u.size && n%u.size == 0 {
			return strconv.FormatInt(n/u.size, 10) + u.name
		}
	}
	return n
}

// BasicAuth is Stalwart's `auth.username` / `auth.secret` pair; a secret
// without a username is sent as a bearer token.
type BasicAuth struct {
	Username string `toml:"username" doc:"user name of HTTP basic authentication"`
	Secret   string `toml:"secret" secret:"true" doc:"its password; alone, a bearer token"`
}
