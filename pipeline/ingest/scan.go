package ingest

import (
	"fmt"
	"strconv"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/mailtel/mailtel/pipeline/ingest/internal/jsonscan"
	"github.com/mailtel/mailtel/schema"
)

// checkRaw measures an event on its raw JSON, which json.Valid accepted,
// without decoding it: what of an event the limits refuse is refused
// before a format's decoder sees it (a huge string, a list of millions of
// values). It never indexes outside its input, valid or not.

// Sizes of what the schema adapters make of JSON (see checkRaw).
const (
	// decodedValue is the memory of one decoded value: a schema.Value and
	// the key of its field, with room for the slices they are appended to.
	decodedValue = 128
	// maxRawDepth bounds the nesting checkRaw follows: max-depth is at
	// most 32 (config validation), two JSON levels for each level of
	// nested events, two more for the envelope.
	maxRawDepth = 2 + 2*32
)

// checkRaw checks the event raw, valid JSON, against the limits l before
// the schema adapters decode it, allocating nothing:
//   - every string, key or value, must hold at most l.MaxString bytes once
//     decoded (as encoding/json decodes it: invalid UTF-8 and lone
//     surrogates take three bytes), but those of the envelope (the members
//     of the outer object: id, type, hostname, ...), which the adapters
//     check;
//   - every array, and every object but the outer one, at most l.MaxFields
//     elements or members;
//   - objects and arrays may nest at most 2 + 2 x l.MaxDepth levels (a
//     nested event is two levels of JSON, the envelope two more).
//
// An event beyond these is one that the adapters or Limits.Check would
// reject once decoded (FuzzCheckRaw checks it), with the same reasons.
//
// checkRaw also returns about how many bytes the decoding of the event
// takes in memory (decoded: 128 for each value, the bytes of each string,
// twice those of a string with escapes or invalid UTF-8), and by how many
// bytes its strings grow once decoded (grown: invalid UTF-8 takes three
// times its size), which its encoding holds on top of the request's body
// as long as it is being published.
func checkRaw(raw []byte, l Limits) (decoded, grown int64, err error) {
	var (
		count [maxRawDepth]int  // members or elements of each open object or array
		open  [maxRawDepth]byte // '{' or '['
		typed [maxRawDepth]bool // an array of values of a typed key (see typedKey)
		depth int
		key   []byte // the key of the member whose value comes next
	)
	limitDepth := min(2+2*l.MaxDepth, maxRawDepth)
	// element counts a value that is an element of the array it is in.
	element := func() {
		decoded += decodedValue
		if depth > 0 && open[depth-1] == '[' {
			count[depth-1]++
		}
	}
	s := jsonscan.Scanner{Data: raw}
	for s.Pos < len(s.Data) {
		switch c := s.Data[s.Pos]; c {
		case ' ', '\t', '\r', '\n', ':':
			s.Pos++
			continue
		case ',':
			key = nil
			s.Pos++
			continue
		case '{', '[':
			element()
			if depth >= limitDepth {
				return 0, 0, fmt.Errorf("nested deeper than the limit of %d", l.MaxDepth)
			}
			open[depth], count[depth] = c, 0
			typed[depth] = c == '[' && (typedKey(key) || depth > 0 && open[depth-1] == '[' && typed[depth-1])
			depth++
			key = nil
			s.Pos++
			continue
		case '}', ']':
			if depth > 0 {
				depth--
				// The members of the outer object are the envelope
				// (Stalwart's id, type, data), which the adapters
				// check themselves.
				if n := count[depth]; n > l.MaxFields && (depth > 0 || c == ']') {
					if c == '}' {
						return 0, 0, fmt.Errorf("%d fields, more than the limit of %d", n, l.MaxFields)
					}
					return 0, 0, fmt.Errorf("list of %d values, more than the limit of %d", n, l.MaxFields)
				}
			}
			key = nil
			s.Pos++
			continue
		case '"':
		default: // number or literal
			element()
			key = nil
			s.Skip()
			continue
		}
		str, escaped := s.Str()
		n := decodedLen(str)
		decoded += int64(n)
		if escaped || n != len(str) {
			decoded += int64(n) // decoded through a buffer of its own
		}
		if n > len(str) {
			grown += int64(n - len(str))
		}
		// The strings of the envelope (depth 1: id, type, hostname, ...)
		// are not fields; the adapters check them.
		limited := depth >= 2 && n > l.MaxString
		if s.Peek() == ':' {
			if limited {
				return 0, 0, fmt.Errorf("key of %d bytes, more than the limit of %d", n, l.MaxString)
			}
			if depth > 0 {
				count[depth-1]++
			}
			key = str
			continue
		}
		element()
		if limited && (typedKey(key) || open[depth-1] == '[' && typed[depth-1]) {
			limited = false // an IP or a time, if it parses as one
		}
		if limited {
			if key != nil {
				return 0, 0, fmt.Errorf("field %s: value of %d bytes, more than the limit of %d", quoteKey(key), n, l.MaxString)
			}
			return 0, 0, fmt.Errorf("value of %d bytes, more than the limit of %d", n, l.MaxString)
		}
		key = nil
	}
	return decoded, grown, nil
}

// typedKey reports whether the values of the member key (nil: none) are
// typed from strings by the adapters: a time or an IP, which Limits does
// not measure as strings.
func typedKey(key []byte) bool {
	return key != nil && typedKeys[string(key)] // no allocation
}

var typedKeys = func() map[string]bool {
	m := map[string]bool{}
	for _, k := range schema.Keys() {
		if k.Kind == schema.KindTime || k.Kind == schema.KindIP {
			m[k.Name] = true
		}
	}
	return m
}()

// decodedLen returns the length of the JSON string content raw once
// decoded by encoding/json, which turns invalid UTF-8 and lone surrogates
// into U+FFFD.
func decodedLen(raw []byte) int {
	n := 0
	for i := 0; i < len(raw); {
		c := raw[i]
		switch {
		case c == '\\':
			if i+1 < len(raw) && raw[i+1] == 'u' {
				r, ok := hex4(raw, i+2)
				i += 6
				if !ok {
					n++ // not valid JSON: never decoded
					continue
				}
				if utf16.IsSurrogate(r) {
					if i+1 < len(raw) && raw[i] == '\\' && raw[i+1] == 'u' {
						if r2, ok := hex4(raw, i+2); ok && utf16.DecodeRune(r, r2) != unicode.ReplacementChar {
							n += 4
							i += 6
							continue
						}
					}
					n += 3
					continue
				}
				n += utf8.RuneLen(r)
				continue
			}
			n++
			i += 2
		case c < utf8.RuneSelf:
			n++
			i++
		default:
			r, size := utf8.DecodeRune(raw[i:])
			if r == utf8.RuneError && size == 1 {
				n += 3
			} else {
				n += size
			}
			i += size
		}
	}
	return n
}

// hex4 reads the four hex digits at raw[i:].
func hex4(raw []byte, i int) (rune, bool) {
	if i+4 > len(raw) {
		return 0, false
	}
	var r rune
	for _, c := range raw[i : i+4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// quoteKey quotes a raw key for a message, cut to 64 bytes.
func quoteKey(raw []byte) string {
	if len(raw) > 64 {
		return strconv.Quote(string(raw[:64])) + "..."
	}
	return strconv.Quote(string(raw))
}
