package format

import (
	"encoding/json"

	"github.com/mailtel/mailtel/pipeline/ingest/internal/jsonscan"
)

// NotBatchError says why a body is not the batch SplitArray wants.
type NotBatchError struct {
	Member string // the member of the array of events, "events"
	Reason string
}

func (e *NotBatchError) Error() string {
	return `body is not {"` + e.Member + `":[...]}: ` + e.Reason
}

// SplitArray returns the Split of a format whose HTTP body is a JSON
// object with the events in its array member, {"<member>":[...]} (like
// Stalwart's {"events":[...]}). The split walks the body in place, without
// decoding it. Members other than
// member are ignored (they are not decoded). A body that is not JSON, not
// an object, has no member, or has it twice or not as an array is a
// *NotBatchError.
func SplitArray(member string) func(body []byte, each func(raw, rest []byte) bool) error {
	return func(body []byte, each func(raw, rest []byte) bool) error {
		if !json.Valid(body) {
			return &NotBatchError{member, jsonscan.SyntaxError(body).Error()}
		}
		open, err := findMember(body, member)
		if err != nil {
			return err
		}
		eachElement(body, open, each)
		return nil
	}
}

// findMember returns the position of the '[' of the array member of body,
// valid JSON.
func findMember(body []byte, member string) (int, error) {
	s := jsonscan.Scanner{Data: body}
	if c := s.Peek(); c != '{' {
		return 0, &NotBatchError{member, "want a JSON object, got " + jsonscan.What(c)}
	}
	s.Pos++
	found := -1
	for {
		switch s.Peek() {
		case ',':
			s.Pos++
			continue
		case '"':
		default: // '}' or the end
			if found < 0 {
				return 0, &NotBatchError{member, `no "` + member + `" array`}
			}
			return found, nil
		}
		raw, escaped := s.Str()
		if s.Peek() == ':' {
			s.Pos++
		}
		c := s.Peek()
		if jsonscan.KeyIs(raw, escaped, member) {
			if found >= 0 {
				return 0, &NotBatchError{member, `repeated member "` + member + `"`}
			}
			if c != '[' {
				return 0, &NotBatchError{member, `"` + member + `" is ` + jsonscan.What(c) + `, not an array`}
			}
			found = s.Pos
		}
		s.Skip()
	}
}

// eachElement calls each with every element of the array whose '[' is at
// open, and the rest of data from it, in order, until each returns false.
func eachElement(data []byte, open int, each func(raw, rest []byte) bool) {
	s := jsonscan.Scanner{Data: data, Pos: open + 1}
	for {
		switch s.Peek() {
		case ',':
			s.Pos++
			continue
		case ']', 0:
			return
		}
		start := s.Pos
		s.Skip()
		if s.Pos <= start || !each(data[start:s.Pos], data[start:]) {
			return
		}
	}
}
