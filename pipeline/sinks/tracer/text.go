package tracer

import (
	"math"
	"strconv"

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
// mailtel keeps keys and types as senders gave them, so they are escaped
// like strings (without quotes): a key can never forge a log line.
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
	dst = appendEscaped(dst, description(e.Type))
	if f.ansi {
		dst = append(dst, ansiReset...)
	}
	dst = append(dst, " ("...)
	dst = appendEscaped(dst, e.Type)
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
		dst = appendEscaped(dst, key)
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
		dst = appendEscaped(dst, description(ev.Type))
		dst = append(dst, " ("...)
		dst = appendEscaped(dst, ev.Type)
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

// appendEscaped appends s with Stalwart's escapes: \r \n \t \\ \" and
// \xNN for the other bytes below 0x20 and 0x7f. Other bytes, including
// UTF-8 sequences, pass unchanged.
func appendEscaped(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c != 0x7f {
			continue
		}
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
		start = i + 1
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
