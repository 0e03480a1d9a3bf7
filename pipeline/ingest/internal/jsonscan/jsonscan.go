// Package jsonscan walks JSON that json.Valid accepted, without decoding
// it: the ingest engine measures events against its limits with it before
// the schema adapters decode them, and batch formats find the events of a
// body with it as slices of the body (so the body is the only copy of a
// request's bytes). Nothing here indexes outside its input, valid or not.
package jsonscan

import (
	"encoding/json"
	"errors"
)

// Scanner walks Data from Pos. It allocates nothing.
type Scanner struct {
	Data []byte
	Pos  int
}

// WS skips white space.
func (s *Scanner) WS() {
	for s.Pos < len(s.Data) {
		switch s.Data[s.Pos] {
		case ' ', '\t', '\r', '\n':
			s.Pos++
		default:
			return
		}
	}
}

// Peek returns the next byte after white space, 0 at the end.
func (s *Scanner) Peek() byte {
	s.WS()
	if s.Pos < len(s.Data) {
		return s.Data[s.Pos]
	}
	return 0
}

// Str skips the string at Pos (its opening quote) and returns its content
// as written, and whether it has escapes.
func (s *Scanner) Str() (raw []byte, escaped bool) {
	start := s.Pos + 1
	for s.Pos++; s.Pos < len(s.Data); s.Pos++ {
		switch s.Data[s.Pos] {
		case '"':
			s.Pos++
			return s.Data[start : s.Pos-1], escaped
		case '\\':
			escaped = true
			s.Pos++
		}
	}
	s.Pos = len(s.Data)
	return s.Data[min(start, len(s.Data)):], escaped
}

// Skip skips one value.
func (s *Scanner) Skip() {
	switch s.Peek() {
	case '"':
		s.Str()
	case '{', '[':
		depth := 0
		for s.Pos < len(s.Data) {
			switch s.Data[s.Pos] {
			case '"':
				s.Str()
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					s.Pos++
					return
				}
			}
			s.Pos++
		}
	default: // number, true, false, null
		for s.Pos < len(s.Data) {
			switch s.Data[s.Pos] {
			case ',', '}', ']', ' ', '\t', '\r', '\n':
				return
			}
			s.Pos++
		}
	}
}

// KeyIs reports whether the raw key (as Str returned it) decodes to name.
func KeyIs(raw []byte, escaped bool, name string) bool {
	if !escaped {
		return string(raw) == name
	}
	if len(raw) > 6*len(name) { // an escape is at most 6 bytes
		return false
	}
	var k string
	return json.Unmarshal(append(append([]byte{'"'}, raw...), '"'), &k) == nil && k == name
}

// What names the JSON value that starts with c ("an object"; "nothing"
// for 0, the end).
func What(c byte) string {
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

var errInvalidJSON = errors.New("invalid JSON")

// SyntaxError returns why data, which json.Valid refused, is not JSON.
func SyntaxError(data []byte) error {
	// Unmarshal checks the whole input before it decodes anything, so
	// this allocates nothing for the value.
	if err := json.Unmarshal(data, &struct{}{}); err != nil {
		return err
	}
	return errInvalidJSON
}
