package tracer

import (
	"math"
	"strconv"
	"unicode/utf8"

	"github.com/mailtel/mailtel/catalog"
	"github.com/mailtel/mailtel/schema"
)

// textFormatter renders events in the line format of Stalwart's log and
// console tracers (crates/trc/src/serializers/text.rs, FmtWriter), so that
// fail2ban and CrowdSec parsers written for Stalwart keep working:
//
//	2023-11-14T22:13:20Z INFO SMTP MAIL FROM command (smtp.mail-from) from = "a@b.c", size = 1024, elapsed = 15ms
//
// The time is the event's, in UTC with seconds precision; the level is
// upper-case and not padded; then the description, the event id in
// parentheses and a space, and the fields "key = value" separated by ", ".
// As in Stalwart, the spanId field is left out at every depth, strings are
// quoted with \r \n \t \\ \" and \xNN (other control bytes) escapes,
// durations are whole milliseconds with an "ms" suffix, times are RFC 3339
// in seconds, bytes are "base64:" and standard base64, IPs and numbers are
// bare, lists are "[a, b]", a nested event (causedBy) is
// `Description (type) { key = value }` and a missing value is "(null)".
// Floats print like Rust's Display: shortest round-trip decimal, no
// exponent, "NaN", "inf", "-inf".
//
// With multiline, the header ends the line and every field goes on its own
// line indented by one tab per depth. With ansi, the time is white, the
// level bold in its colour, the description bold white and the keys cyan.
//
// Unlike Stalwart, whose keys and type ids are compile-time constants,
// mailtel keeps keys and types as senders gave them. A key or an unknown
// type that is a plain identifier (ASCII letters, digits, '.', '-', '_';
// every Stalwart key and every catalog id is one) is written as it is;
// any other is written quoted and escaped like a string value, and so is
// the description of an unknown type, which is the type itself. Neither a
// key nor a type can therefore forge a field or a line: a reader that
// understands the quotes sees exactly the fields that were sent.
//
// Beyond Stalwart's escapes, the characters that some readers take for a
// line break although they are not control bytes, U+0085 (NEL), U+2028
// and U+2029, are escaped as Rust's escape_debug writes them (\u{85},
// \u{2028}, \u{2029}), and bytes that are not valid UTF-8 (which a Rust
// string never holds) as \xNN, so a line is valid UTF-8 and nothing in a
// value, key or type can end it.
//
// A textFormatter holds no state; it is safe for concurrent use.
type textFormatter struct {
	ansi, multiline bool
}

// The ANSI codes Stalwart uses.
const (
	ansiReset     = "\x1b[0m"
	ansiWhite     = "\x1b[37m"
	ansiWhiteBold = "\x1b[37;1m"
	ansiCyan      = "\x1b[36m"
)

// maxDepth bounds the nesting of events and lists that is rendered; deeper
// values render as a missing value. Decoded events are far shallower.
const maxDepth = 32

// spanIDKey is the key Stalwart's text format leaves out.
const spanIDKey = "spanId"

var levelCodes = [...]string{
	catalog.LevelTrace:   "\x1b[35;1m", // magenta
	catalog.LevelDebug:   "\x1b[34;1m", // blue
	catalog.LevelInfo:    "\x1b[32;1m", // green
	catalog.LevelWarn:    "\x1b[33;1m", // yellow
	catalog.LevelError:   "\x1b[31;1m", // red
	catalog.LevelDisable: ansiWhiteBold,
}

var levelUpper = [...]string{"TRACE", "DEBUG", "INFO", "WARN", "ERROR", "DISABLE"}

func (f textFormatter) appendEvent(dst []byte, e *schema.Event) ([]byte, error) {
	lv := e.Level
	if !lv.Valid() {
		lv = catalog.LevelDisable
	}
	if f.ansi {
		dst = append(dst, ansiWhite...)
	}
	dst = e.Time.UTC().AppendFormat(dst, "2006-01-02T15:04:05Z")
	if f.ansi {
		dst = append(dst, ansiReset...)
	}
	dst = append(dst, ' ')
	if f.ansi {
		dst = append(dst, levelCodes[lv]...)
	}
	dst = append(dst, levelUpper[lv]...)
	if f.ansi {
		dst = append(dst, ansiReset...)
	}
	dst = append(dst, ' ')
	if f.ansi {
		dst = append(dst, ansiWhiteBold...)
	}
	dst = appendDescription(dst, e.Type)
	if f.ansi {
		dst = append(dst, ansiReset...)
	}
	dst = append(dst, " ("...)
	dst = appendName(dst, e.Type)
	if f.multiline {
		dst = append(dst, ")\n"...)
	} else {
		dst = append(dst, ") "...)
	}
	dst = f.appendFields(dst, e.Fields, 1, 0)
	if !f.multiline {
		dst = append(dst, '\n')
	}
	return dst, nil
}

// appendFields appends fields; indent is the number of tabs before a key
// in multiline mode, depth the nesting of the fields.
func (f textFormatter) appendFields(dst []byte, fields []schema.Field, indent, depth int) []byte {
	first := true
	for i := range fields {
		key, v := fields[i].Key, &fields[i].Value
		if key == spanIDKey {
			continue
		}
		if first {
			first = false
		} else if !f.multiline {
			dst = append(dst, ", "...)
		}
		if f.multiline {
			for range indent {
				dst = append(dst, '\t')
			}
		}
		if f.ansi {
			dst = append(dst, ansiCyan...)
		}
		dst = appendName(dst, key)
		if f.ansi {
			dst = append(dst, ansiReset...)
		}
		dst = append(dst, " = "...)
		dst = f.appendValue(dst, v, indent, depth+1)
		if f.multiline && !isEvent(v, depth+1) {
			dst = append(dst, '\n')
		}
	}
	return dst
}

// isEvent reports whether appendValue renders v as a nested event, which
// in multiline mode ends its own line.
func isEvent(v *schema.Value, depth int) bool {
	return v.Kind() == schema.KindEvent && v.Event() != nil && depth <= maxDepth
}

func (f textFormatter) appendValue(dst []byte, v *schema.Value, indent, depth int) []byte {
	if depth > maxDepth {
		return append(dst, "(null)"...)
	}
	switch v.Kind() {
	case schema.KindString:
		dst = append(dst, '"')
		dst = appendEscaped(dst, v.Str())
		return append(dst, '"')
	case schema.KindInt:
		return strconv.AppendInt(dst, v.Int(), 10)
	case schema.KindUint:
		return strconv.AppendUint(dst, v.Uint(), 10)
	case schema.KindFloat:
		return appendRustFloat(dst, v.Float())
	case schema.KindBool:
		return strconv.AppendBool(dst, v.Bool())
	case schema.KindTime:
		return v.Time().AppendFormat(dst, "2006-01-02T15:04:05Z")
	case schema.KindDuration:
		dst = strconv.AppendInt(dst, v.Duration().Milliseconds(), 10)
		return append(dst, "ms"...)
	case schema.KindIP:
		if a := v.IP(); a.IsValid() {
			return a.AppendTo(dst)
		}
	case schema.KindBytes:
		dst = append(dst, "base64:"...)
		return appendBase64(dst, v.RawString())
	case schema.KindList:
		dst = append(dst, '[')
		l := v.List()
		for i := range l {
			if i > 0 {
				dst = append(dst, ", "...)
			}
			dst = f.appendValue(dst, &l[i], indent, depth+1)
		}
		return append(dst, ']')
	case schema.KindEvent:
		ev := v.Event()
		if ev == nil {
			break
		}
		dst = appendDescription(dst, ev.Type)
		dst = append(dst, " ("...)
		dst = appendName(dst, ev.Type)
		dst = append(dst, ')')
		switch {
		case len(ev.Fields) > 0:
			if f.multiline {
				dst = append(dst, '\n')
			} else {
				dst = append(dst, " { "...)
			}
			dst = f.appendFields(dst, ev.Fields, indent+1, depth)
			if !f.multiline {
				dst = append(dst, " }"...)
			}
		case f.multiline:
			dst = append(dst, '\n')
		}
		return dst
	}
	return append(dst, "(null)"...)
}

// plainByte[c] is true for the bytes of a plain identifier: ASCII
// letters, digits, '.', '-' and '_'.
var plainByte = func() (t [256]bool) {
	for c := range 256 {
		t[c] = 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			c == '.' || c == '-' || c == '_'
	}
	return t
}()

// isPlain reports whether s is a non-empty plain identifier, which the
// text format writes without quotes.
func isPlain(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !plainByte[s[i]] {
			return false
		}
	}
	return true
}

// appendName appends a key or an event type: as it is if it is a plain
// identifier, else quoted and escaped like a string value.
func appendName(dst []byte, s string) []byte {
	if isPlain(s) {
		return append(dst, s...)
	}
	dst = append(dst, '"')
	dst = appendEscaped(dst, s)
	return append(dst, '"')
}

// appendDescription appends the description of an event type: the
// catalog's, or for a type the catalog does not know the type itself,
// written as appendName writes it.
func appendDescription(dst []byte, typ string) []byte {
	if t, ok := catalog.Lookup(typ); ok && t.Description != "" {
		return appendEscaped(dst, t.Description)
	}
	return appendName(dst, typ)
}

// safeByte[c] is true for the bytes appendEscaped copies as they are
// without looking further: printable ASCII but '"' and '\\'.
var safeByte = func() (t [256]bool) {
	for c := 0x20; c < 0x7f; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// appendEscaped appends s with Stalwart's escapes: \r \n \t \\ \" and
// \xNN for the other bytes below 0x20 and 0x7f. Of the rest, U+0085,
// U+2028 and U+2029, which some readers take for line breaks, are written
// \u{85}, \u{2028} and \u{2029} as Rust's escape_debug does, and a byte
// that is not part of valid UTF-8 is written \xNN; other UTF-8 sequences
// pass unchanged. It is the one escaping of the text format, for string
// values, keys and types alike.
func appendEscaped(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if safeByte[c] {
			i++
			continue
		}
		size := 1
		if c >= utf8.RuneSelf {
			r, n := utf8.DecodeRuneInString(s[i:])
			if n > 1 && r != 0x85 && r != 0x2028 && r != 0x2029 {
				i += n // valid UTF-8, written as it is
				continue
			}
			dst = append(dst, s[start:i]...)
			if n == 1 { // not UTF-8
				dst = append(dst, '\\', 'x', hex[c>>4], hex[c&0xf])
			} else {
				dst = append(dst, '\\', 'u', '{')
				dst = strconv.AppendUint(dst, uint64(r), 16)
				dst = append(dst, '}')
			}
			size = n
		} else {
			dst = append(dst, s[start:i]...)
			switch c {
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\t':
				dst = append(dst, '\\', 't')
			case '\\', '"':
				dst = append(dst, '\\', c)
			default:
				dst = append(dst, '\\', 'x', hex[c>>4], hex[c&0xf])
			}
		}
		i += size
		start = i
	}
	return append(dst, s[start:]...)
}

// appendRustFloat appends x as Rust's Display for f64 does.
func appendRustFloat(dst []byte, x float64) []byte {
	switch {
	case math.IsNaN(x):
		return append(dst, "NaN"...)
	case math.IsInf(x, 1):
		return append(dst, "inf"...)
	case math.IsInf(x, -1):
		return append(dst, "-inf"...)
	}
	return strconv.AppendFloat(dst, x, 'f', -1, 64)
}

// appendBase64 appends the standard, padded base64 encoding of s.
func appendBase64(dst []byte, s string) []byte {
	const enc = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	i := 0
	for ; i+3 <= len(s); i += 3 {
		n := uint(s[i])<<16 | uint(s[i+1])<<8 | uint(s[i+2])
		dst = append(dst, enc[n>>18&63], enc[n>>12&63], enc[n>>6&63], enc[n&63])
	}
	switch len(s) - i {
	case 1:
		n := uint(s[i]) << 16
		dst = append(dst, enc[n>>18&63], enc[n>>12&63], '=', '=')
	case 2:
		n := uint(s[i])<<16 | uint(s[i+1])<<8
		dst = append(dst, enc[n>>18&63], enc[n>>12&63], enc[n>>6&63], '=')
	}
	return dst
}

// description returns the catalog description of an event type, or the
// type itself for a type the catalog does not know.
func description(typ string) string {
	if t, ok := catalog.Lookup(typ); ok && t.Description != "" {
		return t.Description
	}
	return typ
}
