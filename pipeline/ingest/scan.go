package ingest

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/mailtel/mailtel/schema"
)

// The functions of this file walk JSON that json.Valid accepted, without
// decoding it: they find the elements of a Stalwart batch as slices of
// the body (so the body is the only copy of a request's bytes), and what
// of an event the limits refuse before the schema adapters decode it (a
// huge string, a list of millions of values). They never index outside
// their input, valid or not.

// scanner walks valid JSON.
type scanner struct {
	data []byte
	pos  int
}

func (s *scanner) ws() {
	for s.pos < len(s.data) {
		switch s.data[s.pos] {
		case ' ', '\t', '\r', '\n':
			s.pos++
		default:
			return
		}
	}
}

// peek returns the next byte after white space, 0 at the end.
func (s *scanner) peek() byte {
	s.ws()
	if s.pos < len(s.data) {
		return s.data[s.pos]
	}
	return 0
}

// str skips the string at pos (its opening quote) and returns its
// content as written, and whether it has escapes.
func (s *scanner) str() (raw []byte, escaped bool) {
	start := s.pos + 1
	for s.pos++; s.pos < len(s.data); s.pos++ {
		switch s.data[s.pos] {
		case '"':
			s.pos++
			return s.data[start : s.pos-1], escaped
		case '\\':
			escaped = true
			s.pos++
		}
	}
	s.pos = len(s.data)
	return s.data[min(start, len(s.data)):], escaped
}

// skip skips one value.
func (s *scanner) skip() {
	switch s.peek() {
	case '"':
		s.str()
	case '{', '[':
		depth := 0
		for s.pos < len(s.data) {
			switch s.data[s.pos] {
			case '"':
				s.str()
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					s.pos++
					return
				}
			}
			s.pos++
		}
	default: // number, true, false, null
		for s.pos < len(s.data) {
			switch s.data[s.pos] {
			case ',', '}', ']', ' ', '\t', '\r', '\n':
				return
			}
			s.pos++
		}
	}
}

// keyIs reports whether the raw key (as str returned it) decodes to name.
func keyIs(raw []byte, escaped bool, name string) bool {
	if !escaped {
		return string(raw) == name
	}
	if len(raw) > 6*len(name) { // an escape is at most 6 bytes
		return false
	}
	var k string
	return json.Unmarshal(append(append([]byte{'"'}, raw...), '"'), &k) == nil && k == name
}

// errNotBatch says what a Stalwart body that is not {"events":[...]} is.
type errNotBatch struct{ reason string }

func (e errNotBatch) Error() string { return `body is not {"events":[...]}: ` + e.reason }

// findEvents returns the position of the '[' of the "events" array of a
// Stalwart webhook body, valid JSON. Members other than "events" are
// ignored; a body that is not an object, without "events", with an
// "events" that is not an array, or with two of them is an errNotBatch.
func findEvents(body []byte) (int, error) {
	s := scanner{data: body}
	if c := s.peek(); c != '{' {
		return 0, errNotBatch{"want a JSON object, got " + jsonWhat(c)}
	}
	s.pos++
	events := -1
	for {
		switch s.peek() {
		case ',':
			s.pos++
			continue
		case '"':
		default: // '}' or the end
			if events < 0 {
				return 0, errNotBatch{`no "events" array`}
			}
			return events, nil
		}
		raw, escaped := s.str()
		if s.peek() == ':' {
			s.pos++
		}
		c := s.peek()
		if keyIs(raw, escaped, "events") {
			if events >= 0 {
				return 0, errNotBatch{`repeated member "events"`}
			}
			if c != '[' {
				return 0, errNotBatch{`"events" is ` + jsonWhat(c) + `, not an array`}
			}
			events = s.pos
		}
		s.skip()
	}
}

// eachElement calls fn with every element of the array whose '[' is at
// open, and where it starts in data, in order, until fn returns false.
func eachElement(data []byte, open int, fn func(start int, raw []byte) bool) {
	s := scanner{data: data, pos: open + 1}
	for {
		switch s.peek() {
		case ',':
			s.pos++
			continue
		case ']', 0:
			return
		}
		start := s.pos
		s.skip()
		if s.pos <= start || !fn(start, data[start:s.pos]) {
			return
		}
	}
}

// jsonWhat names the JSON value that starts with c.
func jsonWhat(c byte) string {
	switch c {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	case 0:
		return "nothing"
	}
	return "a number"
}

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
	s := scanner{data: raw}
	for s.pos < len(s.data) {
		switch c := s.data[s.pos]; c {
		case ' ', '\t', '\r', '\n', ':':
			s.pos++
			continue
		case ',':
			key = nil
			s.pos++
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
			s.pos++
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
			s.pos++
			continue
		case '"':
		default: // number or literal
			element()
			key = nil
			s.skip()
			continue
		}
		str, escaped := s.str()
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
		if s.peek() == ':' {
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

var errInvalidJSON = errors.New("invalid JSON")

// syntaxError returns why body, which json.Valid refused, is not JSON.
func syntaxError(body []byte) error {
	// Unmarshal checks the whole input before it decodes anything, so
	// this allocates nothing for the value.
	if err := json.Unmarshal(body, &struct{}{}); err != nil {
		return err
	}
	return errInvalidJSON
}
