package schema

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/mailtel/mailtel/catalog"
)

// dovecotTimeLayout is the layout of Dovecot's time-rfc3339 timestamps:
// UTC, always six fraction digits.
const dovecotTimeLayout = "2006-01-02T15:04:05.000000Z07:00"

// DovecotIDPrefix starts every event id FromDovecot derives.
const DovecotIDPrefix = "dc-"

// FromDovecot decodes one event of Dovecot's event_exporter (format json):
//
//	{"event":"auth_request_finished","hostname":"vm",
//	 "start_time":"2026-11-21T12:19:56.588053Z","end_time":"2026-11-21T12:19:56.588270Z",
//	 "categories":["service:auth","auth"],
//	 "fields":{"duration":155,"success":"yes","remote_ip":"127.0.0.1","remote_port":40846}}
//
// into ev, which is reset first (the capacity of ev.Fields is reused). On an
// error ev holds a partial event that must not be used.
//
// Envelope: Type = catalog.DovecotID(event) ("auth.request-finished"; the
// rule applies to names the catalog does not know too), Server = "dovecot",
// Host = hostname, Time = end_time. Level is left at zero: the publisher
// sets the effective level from catalog.Levels.
//
// ID: Dovecot sends none, so the id is derived from the content: "dc-"
// followed by the hex of the first 128 bits of the SHA-256 of the event as
// AppendDovecot writes it. A retried POST of the same event therefore gets
// the same id (and is stored once), and so does the same event written with
// other white space, escapes or member order. Two distinct events get the
// same id only if they agree in every field, the host and both timestamps to
// the microsecond.
//
// Fields: first the envelope members that have no place in Event, under
// their own keys, then the members of fields in their order, typed like
// FromStalwart types data members except that durations are integer
// microseconds (Dovecot's unit: duration, running_usecs, lock_wait_usecs,
// policy_penalty), times are strings in Dovecot's layout
// ("2026-11-21T12:19:56.588053Z"), and objects are always untyped. The
// envelope fields are, each only when the input had it:
//
//	start_time   Time    when the event started
//	time_format  String  "unix" when the timestamps were numbers (time-unix
//	                     format, 1763726396.588053); absent for time-rfc3339
//	categories   any     the categories, as they came (a List of String)
//
// AppendDovecot takes these leading fields back to the envelope, so that
// decoding is lossless: writing the event back gives the same members with
// the same values, in Dovecot's order. Dovecot writes both timestamps or
// neither, in one format: an event with only one, or with the two in
// different formats, is rejected. Timestamps are kept to the microsecond in
// UTC. Not kept: formatting, the order of the top-level members (written as
// Dovecot orders them), an empty hostname (not written), a missing fields
// (written as {}).
//
// FromDovecot rejects, with an error saying why: input that is not one
// JSON object, a missing event, an event name that does not map to a valid
// type and back (lower-case words of a-z and 0-9 joined by '_'), invalid
// timestamps (RFC 3339 strings or non-negative seconds with at most nine
// fraction digits, within the years 1678 to 2262), top-level members other
// than event, hostname, start_time, end_time, categories and fields,
// repeated members, a fields member that would be read back as one of the
// envelope fields above (a leading "categories", say, when the input had
// none), and what FromStalwart rejects in data. Like FromStalwart it is safe
// for concurrent use with distinct events.
func FromDovecot(data []byte, ev *Event) error {
	if ev == nil {
		return errors.New("decode dovecot event: nil event")
	}
	if err := jsonCheckSyntax(data); err != nil {
		return fmt.Errorf("decode dovecot event: %w", err)
	}
	p := jsonParser{data: data, d: &dovecotDialect}
	if err := p.dovecotEvent(ev); err != nil {
		return fmt.Errorf("decode dovecot event: %w", err)
	}
	return nil
}

// AppendDovecot appends ev to b as one compact Dovecot event_exporter JSON
// object and returns the extended buffer. It writes back exactly what
// FromDovecot decoded (see there), in Dovecot's member order: event (the
// Dovecot name of Type, see catalog.DovecotName), hostname (when Host is not
// empty), start_time and end_time (when Time is not zero; start_time is the
// leading start_time field, or Time; in the format the time_format field
// says), categories (when there is such a leading field) and fields (the
// other fields). Values are written as AppendStalwart writes them, except
// that durations are microseconds and times use Dovecot's layout. ID, Level
// and Server are not written. It never fails; see ToDovecot for the checks.
func AppendDovecot(b []byte, ev *Event) []byte {
	if ev == nil {
		return append(b, "null"...)
	}
	d := &dovecotDialect
	env := dovecotSplit(ev.Fields)
	b = append(b, `{"event":`...)
	b = jsonAppendString(b, catalog.DovecotName(ev.Type))
	if ev.Host != "" {
		b = append(b, `,"hostname":`...)
		b = jsonAppendString(b, ev.Host)
	}
	if !ev.Time.IsZero() {
		start := ev.Time
		if env.start.Kind() == KindTime {
			start = env.start.Time()
		}
		b = append(b, `,"start_time":`...)
		b = dovecotAppendTime(b, start, env.unix)
		b = append(b, `,"end_time":`...)
		b = dovecotAppendTime(b, ev.Time, env.unix)
	}
	if env.categories >= 0 {
		b = append(b, `,"categories":`...)
		b = d.appendValue(b, ev.Fields[env.categories].Value, 0)
	}
	b = append(b, `,"fields":`...)
	b = d.appendObject(b, ev.Fields[env.n:], 0)
	return append(b, '}')
}

// ToDovecot returns ev as one Dovecot event_exporter JSON object (see
// AppendDovecot). It fails for an event that FromDovecot would not accept
// back: a Type that is not the image of a Dovecot name (it must not contain
// '_'), timestamps outside the years 1678 to 2262 (or before 1970 in unix
// format), or fields that JSON or Marshal cannot carry (non-finite floats,
// more than MsgpackMaxFields fields in an event, nesting deeper than
// MsgpackMaxDepth).
func ToDovecot(ev *Event) ([]byte, error) {
	if ev == nil {
		return nil, errors.New("encode dovecot event: nil event")
	}
	if typ, err := dovecotType(catalog.DovecotName(ev.Type)); err != nil || typ != ev.Type {
		return nil, fmt.Errorf("encode dovecot event: type %q has no Dovecot event name", jsonShort(ev.Type))
	}
	if !ev.Time.IsZero() {
		env := dovecotSplit(ev.Fields)
		times := []time.Time{ev.Time}
		if env.start.Kind() == KindTime {
			times = append(times, env.start.Time())
		}
		for _, t := range times {
			if err := jsonCheckTime(t); err != nil {
				return nil, fmt.Errorf("encode dovecot event: time: %w", err)
			}
			if env.unix && t.Before(time.Unix(0, 0)) {
				return nil, fmt.Errorf("encode dovecot event: time %s is before 1970 and cannot be written in unix format", t.UTC().Format(time.RFC3339Nano))
			}
		}
	}
	if err := jsonCheckFields(ev.Fields, 0); err != nil {
		return nil, fmt.Errorf("encode dovecot event: %w", err)
	}
	return AppendDovecot(nil, ev), nil
}

// dovecotEnvelope is what the leading fields of a Dovecot event say about
// the envelope.
type dovecotEnvelope struct {
	n          int   // number of leading envelope fields
	start      Value // start_time, KindNone when absent
	unix       bool  // timestamps in unix format
	categories int   // index of the categories field, -1 when absent
}

// dovecotSplit finds the envelope fields at the start of fields: a
// start_time Time, then (only after it) a time_format "unix", then a
// categories of any kind.
func dovecotSplit(fields []Field) dovecotEnvelope {
	env := dovecotEnvelope{categories: -1}
	if env.n < len(fields) && fields[env.n].Key == "start_time" && fields[env.n].Value.Kind() == KindTime {
		env.start = fields[env.n].Value
		env.n++
		if env.n < len(fields) && fields[env.n].Key == "time_format" &&
			fields[env.n].Value.Kind() == KindString && fields[env.n].Value.Str() == "unix" {
			env.unix = true
			env.n++
		}
	}
	if env.n < len(fields) && fields[env.n].Key == "categories" {
		env.categories = env.n
		env.n++
	}
	return env
}

// dovecotTime is a decoded timestamp.
type dovecotTime struct {
	t    time.Time
	unix bool
}

// dovecotEvent decodes the Dovecot event object at the parser's position
// into ev.
func (p *jsonParser) dovecotEvent(ev *Event) error {
	ev.Reset()
	ev.Server = ServerDovecot
	if c := p.peek(); c != '{' {
		return fmt.Errorf("want a JSON object, got %s", jsonWhat(c))
	}
	var (
		hasEvent, hasHost, hasStart, hasEnd, hasCategories, hasFields bool

		name       string
		start, end dovecotTime
		categories Value
	)
	err := p.object(func(key string) error {
		var seen *bool
		switch key {
		case "event":
			seen = &hasEvent
		case "hostname":
			seen = &hasHost
		case "start_time":
			seen = &hasStart
		case "end_time":
			seen = &hasEnd
		case "categories":
			seen = &hasCategories
		case "fields":
			seen = &hasFields
		default:
			return fmt.Errorf("unknown member %q (want event, hostname, start_time, end_time, categories and fields)", jsonShort(key))
		}
		if *seen {
			return fmt.Errorf("repeated member %q", key)
		}
		*seen = true
		var err error
		switch key {
		case "event":
			name, err = p.stringMember(key)
		case "hostname":
			ev.Host, err = p.stringMember(key)
		case "start_time":
			start, err = p.dovecotTime(key)
		case "end_time":
			end, err = p.dovecotTime(key)
		case "categories":
			if categories, err = p.value(KindNone, 0); err != nil {
				err = fmt.Errorf("categories: %w", err)
			}
		default: // fields
			if c := p.peek(); c != '{' {
				return fmt.Errorf("fields: want an object, got %s", jsonWhat(c))
			}
			err = p.fields(ev, 0)
		}
		return err
	})
	if err != nil {
		return err
	}
	if !hasEvent {
		return errors.New("missing event")
	}
	if ev.Type, err = dovecotType(name); err != nil {
		return err
	}

	// Put the envelope fields in front of the data fields.
	var env [3]Field
	n := 0
	switch {
	case hasStart && !hasEnd:
		return errors.New("start_time without end_time")
	case hasEnd && !hasStart:
		return errors.New("end_time without start_time")
	case hasStart:
		if start.unix != end.unix {
			return errors.New("start_time and end_time are in different formats")
		}
		ev.Time = end.t
		env[n] = Field{Key: "start_time", Value: Time(start.t)}
		n++
		if start.unix {
			env[n] = Field{Key: "time_format", Value: String("unix")}
			n++
		}
	}
	if hasCategories {
		env[n] = Field{Key: "categories", Value: categories}
		n++
	}
	if len(ev.Fields)+n > MsgpackMaxFields {
		return fmt.Errorf("more than %d fields", MsgpackMaxFields)
	}
	data := len(ev.Fields)
	ev.Fields = append(ev.Fields, env[:n]...)
	copy(ev.Fields[n:], ev.Fields[:data])
	copy(ev.Fields, env[:n])
	if got := dovecotSplit(ev.Fields); got.n != n {
		return fmt.Errorf("fields: member %q would be read back as the envelope field of that name", jsonShort(ev.Fields[n].Key))
	}

	ev.ID = dovecotEventID(ev)
	return nil
}

// dovecotEventID derives the id of a decoded Dovecot event from its
// canonical JSON (see FromDovecot).
func dovecotEventID(ev *Event) string {
	var buf [1024]byte
	sum := sha256.Sum256(AppendDovecot(buf[:0], ev))
	return DovecotIDPrefix + hex.EncodeToString(sum[:16])
}

// dovecotType maps a Dovecot event name to its type, checking that the
// type is valid and maps back to the name.
func dovecotType(name string) (string, error) {
	id := catalog.DovecotID(name)
	if !ValidType(id) || catalog.DovecotName(id) != name {
		return "", fmt.Errorf("invalid event name %q: want lower-case words of a-z and 0-9 joined by '_', like auth_request_finished", jsonShort(name))
	}
	return id, nil
}

// dovecotTime reads the timestamp member name: an RFC 3339 string or a
// number of seconds since 1970. It is truncated to the microsecond.
func (p *jsonParser) dovecotTime(name string) (dovecotTime, error) {
	var dt dovecotTime
	switch c := p.peek(); {
	case c == '"':
		s, err := p.str()
		if err != nil {
			return dt, err
		}
		if dt.t, err = time.Parse(time.RFC3339Nano, s); err != nil {
			return dt, fmt.Errorf("%s: %w", name, err)
		}
	case c == '-' || c >= '0' && c <= '9':
		t, err := dovecotParseUnix(p.number())
		if err != nil {
			return dt, fmt.Errorf("%s: %w", name, err)
		}
		dt.t, dt.unix = t, true
	default:
		return dt, fmt.Errorf("%s: want an RFC 3339 string or seconds since 1970, got %s", name, jsonWhat(c))
	}
	dt.t = dt.t.Truncate(time.Microsecond).UTC()
	if err := jsonCheckTime(dt.t); err != nil {
		return dt, fmt.Errorf("%s: %w", name, err)
	}
	return dt, nil
}

// dovecotParseUnix parses Dovecot's time-unix text: seconds since 1970
// with an optional fraction of up to nine digits.
func dovecotParseUnix(raw string) (time.Time, error) {
	bad := fmt.Errorf("invalid unix time %s: want seconds since 1970 like 1763726396.588053", jsonShort(raw))
	secs, frac, dot := strings.Cut(raw, ".")
	if !dovecotDigits(secs) || dot && !dovecotDigits(frac) || len(frac) > 9 {
		return time.Time{}, bad
	}
	sec, err := strconv.ParseInt(secs, 10, 64)
	if err != nil {
		return time.Time{}, bad
	}
	var ns int64
	for i := 0; i < 9; i++ {
		ns *= 10
		if i < len(frac) {
			ns += int64(frac[i] - '0')
		}
	}
	return time.Unix(sec, ns), nil
}

// dovecotDigits reports whether s is a non-empty string of ASCII digits.
func dovecotDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// dovecotAppendTime appends t in Dovecot's time-rfc3339 or time-unix
// format, to the microsecond.
func dovecotAppendTime(b []byte, t time.Time, unix bool) []byte {
	t = t.UTC()
	if !unix {
		b = append(b, '"')
		b = t.AppendFormat(b, dovecotTimeLayout)
		return append(b, '"')
	}
	b = strconv.AppendInt(b, t.Unix(), 10)
	us := t.Nanosecond() / 1000
	var frac [7]byte
	frac[0] = '.'
	for i := 6; i > 0; i-- {
		frac[i] = byte('0' + us%10)
		us /= 10
	}
	return append(b, frac[:]...)
}
