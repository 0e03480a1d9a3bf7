package schema

// This file holds the Stalwart telemetry webhook adapter and the JSON
// machinery it shares with the Dovecot adapter (dovecot.go): a scanner over
// pre-validated JSON that keeps member order and the text of numbers, the
// lossless typing of values by key, and the JSON writer.

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Server kinds the JSON adapters put in Event.Server.
const (
	ServerStalwart = "stalwart"
	ServerDovecot  = "dovecot"
)

// Limits of the identifiers the adapters accept.
const (
	// MaxIDLen is the longest event id FromStalwart accepts.
	MaxIDLen = 128
	// MaxTypeLen is the longest event type ValidType accepts.
	MaxTypeLen = 128
)

// ValidType reports whether typ is a valid event type: two non-empty tokens
// of lower-case ASCII letters, digits, '-' and '_', separated by one dot
// ("auth.success", "delivery.dsn-perm-fail"), at most MaxTypeLen bytes. Such
// a type is a valid tail of a NATS subject and contains no wildcard.
func ValidType(typ string) bool {
	if len(typ) == 0 || len(typ) > MaxTypeLen {
		return false
	}
	dots := 0
	for i := 0; i < len(typ); i++ {
		switch c := typ[i]; {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_':
		case c == '.':
			if i == 0 || i == len(typ)-1 || dots > 0 {
				return false
			}
			dots++
		default:
			return false
		}
	}
	return dots == 1
}

// --------------------------------------------------------------- Stalwart

// FromStalwart decodes one event of Stalwart's telemetry webhook:
//
//	{"id":"17647154680","createdAt":"2025-11-27T14:59:28Z","type":"auth.success",
//	 "data":{"accountName":"postmaster@example.com","accountId":3,"remoteIp":"2a12:bec4:1be0:a8f1::1"}}
//
// into ev, which is reset first (the capacity of ev.Fields is reused). On an
// error ev holds a partial event that must not be used.
//
// Envelope: ID = id + "~" + a hash of the event (see stalwartEventID; the
// suffix is dropped when the event is written back), Type = type, Time = createdAt (in UTC), Server =
// "stalwart", Host = the first "hostname" string of data (the field stays in
// Fields; Host is not written back separately). Level is left at zero: the
// publisher sets the effective level from catalog.Levels.
//
// Fields are the members of data in their order (repeated keys are kept).
// A member of a known key (see LookupKey) is typed by the key's Kind when,
// and only when, writing it back yields the same JSON token: durations are
// integer milliseconds, times RFC 3339 strings in UTC ("2025-11-27T14:59:28Z"),
// IPs strings in their canonical form. Other members are typed by their JSON
// token: string -> String, integer -> Uint (Int when negative), other number
// -> Float, bool -> Bool, null -> KindNone, array -> List, object -> Nested
// event with an empty Type whose Fields are the members. causedBy is either
// a String ("crates/imap/src/core/session.rs:73") or, for an object of
// exactly the members "type" (a non-empty string) and "data" (an object), in
// this order, a Nested event with that Type whose Fields are typed like the
// top-level data, recursively.
//
// The decoding is lossless: AppendStalwart writes back JSON with the same
// members in the same order with the same values, and decoding that again
// gives an Equal event. What is not kept is formatting: whitespace, string
// escapes, the spelling of floats ("1.50" is written 1.5), the envelope
// member order (written as id, createdAt, type, data), a createdAt that is
// not in UTC or has trailing zeros (the instant is kept), and a missing data
// (written as {}). Invalid UTF-8 and lone surrogates in strings become
// U+FFFD. A number that neither 64-bit integer nor float64 holds exactly (an
// integer beyond 64 bits, a decimal of more than 17 significant digits) is
// kept as the nearest float64.
//
// FromStalwart rejects, with an error saying why: input that is not one
// JSON object (including trailing data), a missing or invalid id (it is the
// dedupe key and goes into the Nats-Msg-Id header: 1 to MaxIDLen bytes
// without control characters; it is never derived, so that an event is
// never stored under an id its sender did not give), a missing or invalid
// type (see ValidType), a missing or invalid createdAt (RFC 3339 within the
// years 1678 to 2262), members other than id, createdAt, type and data (they
// could not be written back), a repeated envelope member, numbers beyond the
// range of float64, more than MsgpackMaxFields fields in an event, and
// arrays and objects nested deeper than MsgpackMaxDepth, so that every
// decoded event can be encoded with Marshal.
//
// FromStalwart keeps no state: it is safe for concurrent use with distinct
// events, and the decoded event does not alias data.
func FromStalwart(data []byte, ev *Event) error {
	if ev == nil {
		return errors.New("decode stalwart event: nil event")
	}
	if err := jsonCheckSyntax(data); err != nil {
		return fmt.Errorf("decode stalwart event: %w", err)
	}
	p := jsonParser{data: data, d: &stalwartDialect}
	if err := p.stalwartEvent(ev); err != nil {
		return fmt.Errorf("decode stalwart event: %w", err)
	}
	return nil
}

// AppendStalwart appends ev to b as one compact Stalwart webhook event,
// {"id":...,"createdAt":...,"type":...,"data":{...}}, and returns the
// extended buffer. It writes back exactly what FromStalwart decoded (see
// there). It never fails: it writes what it is given without checking it
// (see ToStalwart for that).
//
// Values are written as Stalwart writes them: Duration as milliseconds
// (with a decimal fraction when not a whole number), Time as an RFC 3339
// string in UTC, IP as a string (null when invalid), Bytes as a base64
// string, Float always with a '.' or an exponent (NaN and infinities as
// null), KindNone as null, a Nested event with a Type as
// {"type":...,"data":{...}} and one without as a plain object of its
// fields (null when nil). Host, Level and Server are not written; neither
// are the envelopes of nested events. Lists and nested events deeper than
// MsgpackMaxDepth are written as null.
func AppendStalwart(b []byte, ev *Event) []byte {
	if ev == nil {
		return append(b, "null"...)
	}
	d := &stalwartDialect
	b = append(b, `{"id":`...)
	b = jsonAppendString(b, StalwartNativeID(ev.ID))
	b = append(b, `,"createdAt":`...)
	b = append(b, '"')
	b = ev.Time.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","type":`...)
	b = jsonAppendString(b, ev.Type)
	b = append(b, `,"data":`...)
	b = d.appendObject(b, ev.Fields, 0)
	return append(b, '}')
}

// ToStalwart returns ev as one Stalwart webhook event (see AppendStalwart).
// It fails for an event that FromStalwart would not accept back: an invalid
// ID or Type, a Time outside the years 1678 to 2262, or fields that JSON or
// Marshal cannot carry (non-finite floats, more than MsgpackMaxFields fields
// in an event, nesting deeper than MsgpackMaxDepth).
func ToStalwart(ev *Event) ([]byte, error) {
	if ev == nil {
		return nil, errors.New("encode stalwart event: nil event")
	}
	if err := jsonCheckID(ev.ID); err != nil {
		return nil, fmt.Errorf("encode stalwart event: %w", err)
	}
	if !ValidType(ev.Type) {
		return nil, fmt.Errorf("encode stalwart event: %w", jsonTypeError(ev.Type))
	}
	if err := jsonCheckTime(ev.Time); err != nil {
		return nil, fmt.Errorf("encode stalwart event: time: %w", err)
	}
	if err := jsonCheckFields(ev.Fields, 0); err != nil {
		return nil, fmt.Errorf("encode stalwart event: %w", err)
	}
	return AppendStalwart(nil, ev), nil
}

// stalwartEvent decodes the Stalwart event object at the parser's position
// into ev.
func (p *jsonParser) stalwartEvent(ev *Event) error {
	ev.Reset()
	ev.Server = ServerStalwart
	if c := p.peek(); c != '{' {
		return fmt.Errorf("want a JSON object, got %s", jsonWhat(c))
	}
	var hasID, hasTime, hasType, hasData bool
	err := p.object(func(key string) error {
		var seen *bool
		switch key {
		case "id":
			seen = &hasID
		case "createdAt":
			seen = &hasTime
		case "type":
			seen = &hasType
		case "data":
			seen = &hasData
		default:
			return fmt.Errorf("unknown member %q (want id, createdAt, type and data)", jsonShort(key))
		}
		if *seen {
			return fmt.Errorf("repeated member %q", key)
		}
		*seen = true
		switch key {
		case "id":
			s, err := p.stringMember(key)
			if err != nil {
				return err
			}
			ev.ID = s
			return jsonCheckID(s)
		case "createdAt":
			s, err := p.stringMember(key)
			if err != nil {
				return err
			}
			t, err := time.Parse(time.RFC3339Nano, s)
			if err != nil {
				return fmt.Errorf("createdAt: %w", err)
			}
			if err := jsonCheckTime(t); err != nil {
				return fmt.Errorf("createdAt: %w", err)
			}
			ev.Time = t.UTC()
			return nil
		case "type":
			s, err := p.stringMember(key)
			if err != nil {
				return err
			}
			if s == "" {
				return errors.New("empty type")
			}
			if !ValidType(s) {
				return jsonTypeError(s)
			}
			ev.Type = s
			return nil
		default: // data
			if c := p.peek(); c != '{' {
				return fmt.Errorf("data: want an object, got %s", jsonWhat(c))
			}
			return p.fields(ev, 0)
		}
	})
	if err != nil {
		return err
	}
	switch {
	case !hasType:
		return errors.New("missing type")
	case !hasID:
		return errors.New("missing id")
	case !hasTime:
		return errors.New("missing createdAt")
	}
	for i := range ev.Fields {
		if f := &ev.Fields[i]; f.Key == "hostname" && f.Value.Kind() == KindString {
			ev.Host = f.Value.Str()
			break
		}
	}
	ev.ID = stalwartEventID(ev)
	return nil
}

// StalwartIDSeparator joins Stalwart's id and the content hash in the ids
// FromStalwart gives events.
const StalwartIDSeparator = "~"

// stalwartEventID returns the id mailtel gives a Stalwart event: Stalwart's
// own id, "~", and 16 hex digits of a SHA-256 of the event as written back.
// Stalwart's ids are not unique (they are built from the time and a small
// counter, so two events of one second can share one), and the id is the
// dedupe key at every hop: with the hash, a retry of the same event still
// gets the same id while two different events never do.
func stalwartEventID(ev *Event) string {
	var buf [512]byte
	sum := sha256.Sum256(AppendStalwart(buf[:0], ev))
	return ev.ID + StalwartIDSeparator + hex.EncodeToString(sum[:8])
}

// StalwartNativeID returns the id Stalwart gave an event: id without the
// "~<hash>" suffix FromStalwart adds (id itself when there is none).
func StalwartNativeID(id string) string {
	i := strings.LastIndex(id, StalwartIDSeparator)
	if i < 0 || len(id)-i-1 != 16 {
		return id
	}
	for _, c := range id[i+1:] {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return id
		}
	}
	return id[:i]
}

// jsonCheckID checks an event id: 1 to MaxIDLen bytes, no ASCII control
// characters (it travels in the Nats-Msg-Id header).
func jsonCheckID(id string) error {
	if id == "" {
		return errors.New("empty id")
	}
	if len(id) > MaxIDLen {
		return fmt.Errorf("id of %d bytes is longer than %d", len(id), MaxIDLen)
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; c < 0x20 || c == 0x7f {
			return fmt.Errorf("id %q contains a control character", id)
		}
	}
	return nil
}

func jsonTypeError(typ string) error {
	return fmt.Errorf("invalid type %q: want two tokens of a-z, 0-9, '-' and '_' joined by one dot, like auth.success", jsonShort(typ))
}

// jsonCheckTime checks that t can be carried as int64 nanoseconds since
// 1970 (the years 1678 to 2262), as Value and the msgpack format need.
func jsonCheckTime(t time.Time) error {
	if !time.Unix(0, t.UnixNano()).Equal(t) {
		return fmt.Errorf("%s is outside the years 1678 to 2262", t.Format(time.RFC3339Nano))
	}
	return nil
}

// jsonCheckFields checks that fields at the given depth can be written as
// JSON and encoded with Marshal.
func jsonCheckFields(fields []Field, depth int) error {
	if len(fields) > MsgpackMaxFields {
		return fmt.Errorf("%d fields, more than %d", len(fields), MsgpackMaxFields)
	}
	for i := range fields {
		if err := jsonCheckValue(fields[i].Value, depth); err != nil {
			return fmt.Errorf("field %q: %w", jsonShort(fields[i].Key), err)
		}
	}
	return nil
}

func jsonCheckValue(v Value, depth int) error {
	switch v.Kind() {
	case KindFloat:
		if f := v.Float(); math.IsNaN(f) || math.IsInf(f, 0) {
			return fmt.Errorf("float %v cannot be written in JSON", f)
		}
	case KindList:
		if depth >= MsgpackMaxDepth {
			return errJSONTooDeep
		}
		for i, e := range v.List() {
			if err := jsonCheckValue(e, depth+1); err != nil {
				return fmt.Errorf("element %d: %w", i, err)
			}
		}
	case KindEvent:
		if v.Event() == nil {
			return nil
		}
		if depth >= MsgpackMaxDepth {
			return errJSONTooDeep
		}
		return jsonCheckFields(v.Event().Fields, depth+1)
	}
	return nil
}

// ------------------------------------------------------- JSON: dialects

// jsonDialect says how a wire format writes the kinds that JSON lacks.
type jsonDialect struct {
	// durUnit is the unit of a duration number.
	durUnit time.Duration
	// durDigits is the number of decimal digits of a fraction of durUnit
	// in nanoseconds (6 for milliseconds, 3 for microseconds).
	durDigits int
	// timeLayout is the layout of a time string (always in UTC).
	timeLayout string
	// typedNested makes a KindEvent key's {"type","data"} object a nested
	// event with a Type.
	typedNested bool
}

var (
	stalwartDialect = jsonDialect{
		durUnit:     time.Millisecond,
		durDigits:   6,
		timeLayout:  time.RFC3339Nano,
		typedNested: true,
	}
	dovecotDialect = jsonDialect{
		durUnit:    time.Microsecond,
		durDigits:  3,
		timeLayout: dovecotTimeLayout,
	}
)

// fromString types a JSON string of a key of the kind (KindNone: unknown).
func (d *jsonDialect) fromString(kind Kind, s string) Value {
	switch kind {
	case KindTime:
		if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
			if v := Time(t); v.Time().Format(d.timeLayout) == s {
				return v
			}
		}
	case KindIP:
		if a, err := netip.ParseAddr(s); err == nil {
			if v := IP(a); v.IP().String() == s {
				return v
			}
		}
	}
	return String(s)
}

// fromNumber types the JSON number text raw of a key of the kind.
func (d *jsonDialect) fromNumber(kind Kind, raw string) (Value, error) {
	switch kind {
	case KindDuration:
		// JSON integers have no sign or leading zeros: the text is canonical.
		if n, err := strconv.ParseUint(raw, 10, 64); err == nil && n <= uint64(math.MaxInt64/int64(d.durUnit)) {
			return Duration(time.Duration(n) * d.durUnit), nil
		}
	case KindInt:
		if n, err := strconv.ParseInt(raw, 10, 64); err == nil && strconv.FormatInt(n, 10) == raw {
			return Int(n), nil
		}
	}
	return jsonNumber(raw)
}

// jsonNumber types a JSON number by its text: Uint, Int when negative,
// Float otherwise ("-0" and numbers beyond 64 bits are floats).
func jsonNumber(raw string) (Value, error) {
	if n, err := strconv.ParseUint(raw, 10, 64); err == nil {
		return Uint(n), nil
	}
	if n, err := strconv.ParseInt(raw, 10, 64); err == nil && n < 0 {
		return Int(n), nil
	}
	f, err := strconv.ParseFloat(raw, 64)
	if err != nil {
		return Value{}, fmt.Errorf("number %s is out of range", jsonShort(raw))
	}
	return Float(f), nil
}

// ------------------------------------------------------- JSON: scanning

var (
	// errJSONStructure reports JSON that passed validation and yet does
	// not have the structure the scanner expects; it cannot happen.
	errJSONStructure = errors.New("malformed JSON")
	errJSONTooDeep   = fmt.Errorf("arrays and objects nested deeper than %d", MsgpackMaxDepth)
)

// jsonCheckSyntax checks that data is exactly one JSON value. The scanner
// relies on it: it walks only validated input.
func jsonCheckSyntax(data []byte) error {
	if json.Valid(data) {
		return nil
	}
	var raw json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return fmt.Errorf("invalid JSON: %w", err)
	}
	return errors.New("invalid JSON")
}

// jsonParser walks validated JSON. It keeps the order of object members and
// the text of numbers. It never indexes outside data.
type jsonParser struct {
	data []byte
	pos  int
	d    *jsonDialect
}

// ws skips white space.
func (p *jsonParser) ws() {
	for p.pos < len(p.data) {
		switch p.data[p.pos] {
		case ' ', '\t', '\n', '\r':
			p.pos++
		default:
			return
		}
	}
}

// peek returns the next byte after white space, or 0 at the end.
func (p *jsonParser) peek() byte {
	p.ws()
	if p.pos < len(p.data) {
		return p.data[p.pos]
	}
	return 0
}

// consume skips the next byte after white space if it is c.
func (p *jsonParser) consume(c byte) bool {
	if p.peek() == c {
		p.pos++
		return true
	}
	return false
}

// jsonWhat names the JSON type of a value that starts with c.
func jsonWhat(c byte) string {
	switch c {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 't', 'f':
		return "a bool"
	case 'n':
		return "null"
	case 0:
		return "nothing"
	}
	return "a number"
}

// object walks the object at the position and calls fn for each member
// with the parser at the member's value, which fn must consume.
func (p *jsonParser) object(fn func(key string) error) error {
	if !p.consume('{') {
		return errJSONStructure
	}
	if p.consume('}') {
		return nil
	}
	for {
		key, err := p.str()
		if err != nil {
			return err
		}
		if !p.consume(':') {
			return errJSONStructure
		}
		if err := fn(key); err != nil {
			return err
		}
		if p.consume(',') {
			continue
		}
		if p.consume('}') {
			return nil
		}
		return errJSONStructure
	}
}

// stringMember reads the value of the envelope member name, which must be
// a string.
func (p *jsonParser) stringMember(name string) (string, error) {
	if c := p.peek(); c != '"' {
		return "", fmt.Errorf("%s: want a string, got %s", name, jsonWhat(c))
	}
	return p.str()
}

// str reads a string.
func (p *jsonParser) str() (string, error) {
	if p.peek() != '"' {
		return "", errJSONStructure
	}
	start := p.pos
	plain := true
	for p.pos++; p.pos < len(p.data); p.pos++ {
		switch p.data[p.pos] {
		case '"':
			p.pos++
			raw := p.data[start+1 : p.pos-1]
			if plain && utf8.Valid(raw) {
				return string(raw), nil
			}
			// Escapes or invalid UTF-8 (replaced by U+FFFD): rare, let
			// encoding/json do it.
			var s string
			if err := json.Unmarshal(p.data[start:p.pos], &s); err != nil {
				return "", fmt.Errorf("decode string: %w", err)
			}
			return s, nil
		case '\\':
			plain = false
			p.pos++
		}
	}
	p.pos = len(p.data)
	return "", errJSONStructure
}

// number reads the text of a number.
func (p *jsonParser) number() string {
	p.ws()
	start := p.pos
	for p.pos < len(p.data) {
		c := p.data[p.pos]
		if (c < '0' || c > '9') && c != '-' && c != '+' && c != '.' && c != 'e' && c != 'E' {
			break
		}
		p.pos++
	}
	return string(p.data[start:p.pos])
}

// skip skips the next value.
func (p *jsonParser) skip() error {
	depth := 0
	for {
		switch c := p.peek(); c {
		case 0:
			return errJSONStructure
		case '{', '[':
			depth++
			p.pos++
			continue
		case '}', ']':
			depth--
			p.pos++
		case ',', ':':
			p.pos++
			continue
		case '"':
			for p.pos++; p.pos < len(p.data) && p.data[p.pos] != '"'; p.pos++ {
				if p.data[p.pos] == '\\' {
					p.pos++
				}
			}
			p.pos = min(p.pos+1, len(p.data))
		default: // number or literal: up to the next delimiter
			for p.pos < len(p.data) && !jsonDelimiter(p.data[p.pos]) {
				p.pos++
			}
		}
		if depth <= 0 {
			return nil
		}
	}
}

// jsonDelimiter reports whether c ends a number or a literal.
func jsonDelimiter(c byte) bool {
	switch c {
	case ' ', '\t', '\n', '\r', ',', ':', ']', '}':
		return true
	}
	return false
}

// literal skips the literal word if it comes next.
func (p *jsonParser) literal(word string) bool {
	p.ws()
	if len(p.data)-p.pos >= len(word) && string(p.data[p.pos:p.pos+len(word)]) == word {
		p.pos += len(word)
		return true
	}
	return false
}

// fields decodes the members of the object at the position as typed fields
// at the depth and appends them to ev.Fields.
func (p *jsonParser) fields(ev *Event, depth int) error {
	return p.object(func(key string) error {
		if len(ev.Fields) >= MsgpackMaxFields {
			return fmt.Errorf("more than %d fields", MsgpackMaxFields)
		}
		kind := KindNone // untyped
		if k, ok := LookupKey(key); ok {
			kind = k.Kind
		}
		v, err := p.value(kind, depth)
		if err != nil {
			return fmt.Errorf("field %q: %w", jsonShort(key), err)
		}
		ev.Fields = append(ev.Fields, Field{Key: key, Value: v})
		return nil
	})
}

// value decodes the value at the position. kind is the Kind of the key it
// belongs to, KindNone for an unknown key or an untyped context; depth is
// the depth of the field or element holding it (0: a top-level field).
func (p *jsonParser) value(kind Kind, depth int) (Value, error) {
	switch c := p.peek(); c {
	case '"':
		s, err := p.str()
		if err != nil {
			return Value{}, err
		}
		return p.d.fromString(kind, s), nil
	case '{':
		if depth >= MsgpackMaxDepth {
			return Value{}, errJSONTooDeep
		}
		ev := &Event{}
		if kind == KindEvent && p.d.typedNested && p.typedEventAhead() {
			err := p.object(func(key string) error {
				if key == "type" {
					var err error
					ev.Type, err = p.str()
					return err
				}
				return p.fields(ev, depth+1)
			})
			return Nested(ev), err
		}
		err := p.object(func(key string) error {
			if len(ev.Fields) >= MsgpackMaxFields {
				return fmt.Errorf("more than %d fields", MsgpackMaxFields)
			}
			v, err := p.value(KindNone, depth+1)
			if err != nil {
				return fmt.Errorf("field %q: %w", jsonShort(key), err)
			}
			ev.Fields = append(ev.Fields, Field{Key: key, Value: v})
			return nil
		})
		return Nested(ev), err
	case '[':
		if depth >= MsgpackMaxDepth {
			return Value{}, errJSONTooDeep
		}
		p.pos++
		list := []Value{}
		if p.consume(']') {
			return List(list...), nil
		}
		for {
			v, err := p.value(kind, depth+1)
			if err != nil {
				return Value{}, fmt.Errorf("element %d: %w", len(list), err)
			}
			list = append(list, v)
			if p.consume(',') {
				continue
			}
			if p.consume(']') {
				return List(list...), nil
			}
			return Value{}, errJSONStructure
		}
	case 't', 'f', 'n':
		switch {
		case p.literal("true"):
			return Bool(true), nil
		case p.literal("false"):
			return Bool(false), nil
		case p.literal("null"):
			return Value{}, nil
		}
		return Value{}, errJSONStructure
	case 0:
		return Value{}, errJSONStructure
	}
	return p.d.fromNumber(kind, p.number())
}

// typedEventAhead reports whether the object at the position has exactly
// the members "type", a non-empty string, and "data", an object, in this
// order. It does not move the parser.
func (p *jsonParser) typedEventAhead() bool {
	q := *p
	if !q.consume('{') {
		return false
	}
	if k, err := q.str(); err != nil || k != "type" || !q.consume(':') {
		return false
	}
	if t, err := q.str(); err != nil || t == "" || !q.consume(',') {
		return false
	}
	if k, err := q.str(); err != nil || k != "data" || !q.consume(':') || q.peek() != '{' {
		return false
	}
	return q.skip() == nil && q.consume('}')
}

// jsonShort shortens s for an error message.
func jsonShort(s string) string {
	const max = 64
	if len(s) <= max {
		return s
	}
	i := max
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + "..."
}

// ------------------------------------------------------- JSON: writing

// appendObject appends fields at the depth as a JSON object.
func (d *jsonDialect) appendObject(b []byte, fields []Field, depth int) []byte {
	b = append(b, '{')
	for i := range fields {
		if i > 0 {
			b = append(b, ',')
		}
		b = jsonAppendString(b, fields[i].Key)
		b = append(b, ':')
		b = d.appendValue(b, fields[i].Value, depth)
	}
	return append(b, '}')
}

// appendValue appends v, a value at the depth.
func (d *jsonDialect) appendValue(b []byte, v Value, depth int) []byte {
	switch v.Kind() {
	case KindString:
		return jsonAppendString(b, v.Str())
	case KindInt:
		return strconv.AppendInt(b, v.Int(), 10)
	case KindUint:
		return strconv.AppendUint(b, v.Uint(), 10)
	case KindFloat:
		return jsonAppendFloat(b, v.Float())
	case KindBool:
		return strconv.AppendBool(b, v.Bool())
	case KindTime:
		b = append(b, '"')
		b = v.Time().AppendFormat(b, d.timeLayout)
		return append(b, '"')
	case KindDuration:
		return jsonAppendDuration(b, v.Duration(), d.durUnit, d.durDigits)
	case KindIP:
		if a := v.IP(); a.IsValid() {
			return jsonAppendString(b, a.String())
		}
	case KindBytes:
		b = append(b, '"')
		b = base64.StdEncoding.AppendEncode(b, []byte(v.RawString()))
		return append(b, '"')
	case KindList:
		if depth >= MsgpackMaxDepth {
			break
		}
		b = append(b, '[')
		for i, e := range v.List() {
			if i > 0 {
				b = append(b, ',')
			}
			b = d.appendValue(b, e, depth+1)
		}
		return append(b, ']')
	case KindEvent:
		ev := v.Event()
		if ev == nil || depth >= MsgpackMaxDepth {
			break
		}
		if ev.Type == "" {
			return d.appendObject(b, ev.Fields, depth+1)
		}
		b = append(b, `{"type":`...)
		b = jsonAppendString(b, ev.Type)
		b = append(b, `,"data":`...)
		b = d.appendObject(b, ev.Fields, depth+1)
		return append(b, '}')
	}
	return append(b, "null"...)
}

// jsonAppendFloat appends f as a JSON number that always has a '.' or an
// exponent, so that it reads back as a float: the shortest text that reads
// back as f, in 'f' format between 1e-6 and 1e21 and 'e' format outside.
// NaN and infinities, which JSON cannot carry, are written as null.
func jsonAppendFloat(b []byte, f float64) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(b, "null"...)
	}
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	start := len(b)
	b = strconv.AppendFloat(b, f, format, -1, 64)
	for _, c := range b[start:] {
		if c == '.' || c == 'e' {
			return b
		}
	}
	return append(b, ".0"...)
}

// jsonAppendDuration appends dur as a number of units: an integer when dur
// is a whole number of units, else with the decimal fraction (digits is
// the number of decimal digits of the unit in nanoseconds).
// AppendMillis appends d in milliseconds, with the decimals a duration
// below a millisecond needs: "12", "0.155" (Dovecot's microseconds).
func AppendMillis(b []byte, d time.Duration) []byte {
	return jsonAppendDuration(b, d, time.Millisecond, 6)
}

func jsonAppendDuration(b []byte, dur, unit time.Duration, digits int) []byte {
	n := uint64(dur)
	if dur < 0 {
		b = append(b, '-')
		n = -n
	}
	q, r := n/uint64(unit), n%uint64(unit)
	b = strconv.AppendUint(b, q, 10)
	if r == 0 {
		return b
	}
	var frac [20]byte
	f := strconv.AppendUint(frac[:0], r, 10)
	b = append(b, '.')
	for i := len(f); i < digits; i++ {
		b = append(b, '0')
	}
	for len(f) > 0 && f[len(f)-1] == '0' {
		f = f[:len(f)-1]
	}
	return append(b, f...)
}

// AppendJSONString appends s as a JSON string. Invalid UTF-8 is written as
// U+FFFD, quotes, backslashes and control characters as escapes; nothing
// else is escaped. It allocates nothing beyond growing b.
func AppendJSONString(b []byte, s string) []byte { return jsonAppendString(b, s) }

func jsonAppendString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i++
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
