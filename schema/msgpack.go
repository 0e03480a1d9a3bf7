package schema

import (
	"errors"
	"fmt"
	"io"
	"math"
	"time"
	"unsafe"

	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"

	"github.com/mailtel/mailtel/catalog"
)

// Version and limits of the msgpack wire format (version 1).
//
// # Wire format
//
// An Event is one msgpack array of exactly 8 elements:
//
//	[version, id, type, time, level, host, server, fields]
//
//	version  integer, always 1 (MsgpackVersion)
//	id       str
//	type     str, the canonical event id ("auth.success")
//	time     nil for the zero time, else a msgpack timestamp (ext type -1,
//	         in any of its 32, 64 or 96-bit forms)
//	level    non-negative integer: 0 trace, 1 debug, 2 info, 3 warn, 4 error,
//	         5 disable (catalog.Level); other numbers are rejected
//	host     str
//	server   str
//	fields   map of str keys to values, written in the order of
//	         Event.Fields; a reader keeps the order in which the pairs came
//	         and keeps repeated keys
//
// A field value is written in the msgpack type that matches its Kind:
//
//	none      nil
//	string    str (the bytes are not checked to be UTF-8)
//	int       positive or negative fixint, or int 8/16/32/64 (0x00-0x7f,
//	          0xe0-0xff, 0xd0-0xd3); the writer uses the shortest form
//	uint      uint 8/16/32/64 (0xcc-0xcf), never a fixint, so that int and
//	          uint stay apart; the writer uses the shortest form
//	float     float 64 (a reader also accepts float 32)
//	bool      true / false
//	time      timestamp, ext type -1, within the range of int64 nanoseconds
//	          since 1970 (years 1677 to 2262)
//	duration  ext type 1 with an 8-byte payload: int64 nanoseconds, big-endian
//	IP        ext type 2: no bytes (the invalid address), 4 bytes (IPv4), or
//	          16 bytes (IPv6) followed by the zone name, if any
//	bytes     bin
//	list      array of values
//	event     ext type 3 whose payload is a whole encoded Event in this same
//	          format (recursively); an empty payload is a nil event
//
// A msgpack reader in another language sees plain msgpack: both integer
// families read as integers, and ext types 1, 2 and 3 read as raw
// extensions when no handler is registered for them. A writer that wants a
// value to decode as uint must use the 0xcc-0xcf codes. Map values are not
// a field value type and are rejected.
//
// Every ext and fix-sized form of the msgpack specification is accepted on
// input; the writer picks the shortest form of each (fixext where the
// payload size allows it).
//
// # Limits
//
// A decoder rejects input that nests lists and events more than
// MsgpackMaxDepth levels deep, an event with more than MsgpackMaxFields
// fields, any declared length larger than the bytes that are left, an
// unknown ext type, a wrong version, and trailing bytes after the array.
// Every such error wraps ErrMalformed.
const (
	// MsgpackVersion is the first element of every encoded event.
	MsgpackVersion = 1
	// MsgpackMaxDepth is how deeply lists and nested events may nest: the
	// fields of the top-level event are at depth 0, the elements of a list
	// value or the fields of a nested event are one level deeper.
	MsgpackMaxDepth = 32
	// MsgpackMaxFields is the largest number of fields an event may have.
	MsgpackMaxFields = 4096
)

// Ext types of the wire format.
const (
	mpExtTime     int8 = -1
	mpExtDuration int8 = 1
	mpExtIP       int8 = 2
	mpExtEvent    int8 = 3
)

// mpNanos is the number of nanoseconds in a second.
const mpNanos = 1_000_000_000

// mpEnvelopeLen is the number of elements of the envelope array.
const mpEnvelopeLen = 8

// ErrMalformed is wrapped by every error that reports bytes which are not a
// valid msgpack event.
var ErrMalformed = errors.New("malformed msgpack event")

var mpErrTruncated = fmt.Errorf("%w: unexpected end of data", ErrMalformed)

var (
	_ msgpack.CustomEncoder = (*Event)(nil)
	_ msgpack.CustomDecoder = (*Event)(nil)
)

// ---------------------------------------------------------------- encoding

// Marshal returns the msgpack encoding of e. It fails for a nil event and
// for an event the decoder would reject: an invalid level, more than
// MsgpackMaxFields fields in an event, or lists and nested events deeper
// than MsgpackMaxDepth (which includes an event that contains itself).
func Marshal(e *Event) ([]byte, error) {
	if e == nil {
		return nil, errors.New("encode event: nil event")
	}
	b, err := mpAppendEvent(make([]byte, 0, mpSizeHint(e)), e, 0)
	if err != nil {
		return nil, fmt.Errorf("encode event %q: %w", e.ID, err)
	}
	return b, nil
}

// AppendMsgpack appends the msgpack encoding of e to b and returns the
// extended buffer. It uses no reflection and allocates only to grow b.
//
// AppendMsgpack never fails. An event Marshal would refuse is still
// written: values nested deeper than MsgpackMaxDepth are written as nil
// and more than MsgpackMaxFields fields are written as they are, so the
// result may not decode. A nil e appends a msgpack nil.
func (e *Event) AppendMsgpack(b []byte) []byte {
	if e == nil {
		return append(b, msgpcode.Nil)
	}
	b, _ = mpAppendEvent(b, e, 0)
	return b
}

// EncodeMsgpack implements msgpack.CustomEncoder, so msgpack.Marshal of an
// *Event (or of a struct holding an Event) writes the wire format, the
// same bytes as Marshal. It fails where Marshal fails; a nil e writes nil.
func (e *Event) EncodeMsgpack(enc *msgpack.Encoder) error {
	if e == nil {
		return enc.EncodeNil()
	}
	b, err := mpAppendEvent(make([]byte, 0, mpSizeHint(e)), e, 0)
	if err != nil {
		return fmt.Errorf("encode event %q: %w", e.ID, err)
	}
	w := enc.Writer()
	if w == nil {
		return fmt.Errorf("encode event %q: encoder has no writer", e.ID)
	}
	if _, err := w.Write(b); err != nil {
		return fmt.Errorf("encode event %q: write: %w", e.ID, err)
	}
	return nil
}

// mpSizeHint estimates the encoded size of e (exact for most flat events,
// an underestimate for lists and nested events).
func mpSizeHint(e *Event) int {
	n := 32 + len(e.ID) + len(e.Type) + len(e.Host) + len(e.Server)
	for i := range e.Fields {
		n += 12 + len(e.Fields[i].Key) + len(e.Fields[i].Value.str)
	}
	return n
}

// mpAppendEvent appends e, whose fields are at the given depth. On an error
// it still appends a complete (possibly undecodable) encoding.
func mpAppendEvent(b []byte, e *Event, depth int) ([]byte, error) {
	var err error
	b = append(b, msgpcode.FixedArrayLow|mpEnvelopeLen, MsgpackVersion)
	b = mpAppendStr(b, e.ID)
	b = mpAppendStr(b, e.Type)
	if e.Time.IsZero() {
		b = append(b, msgpcode.Nil)
	} else {
		b = mpAppendTimestamp(b, e.Time.Unix(), uint32(e.Time.Nanosecond()))
	}
	b = mpAppendUint(b, uint64(e.Level), true)
	b = mpAppendStr(b, e.Host)
	b = mpAppendStr(b, e.Server)
	b = mpAppendLen(b, len(e.Fields), msgpcode.FixedMapLow, 15, 0, msgpcode.Map16, msgpcode.Map32)
	switch {
	case !e.Level.Valid():
		err = fmt.Errorf("level %d out of range", uint8(e.Level))
	case len(e.Fields) > MsgpackMaxFields:
		err = fmt.Errorf("%d fields, more than %d", len(e.Fields), MsgpackMaxFields)
	}
	for i := range e.Fields {
		f := &e.Fields[i]
		b = mpAppendStr(b, f.Key)
		var ferr error
		b, ferr = mpAppendValue(b, &f.Value, depth)
		if ferr != nil && err == nil {
			err = fmt.Errorf("encode event field %d (%q): %w", i, f.Key, ferr)
		}
	}
	return b, err
}

// mpAppendValue appends v, a value at the given depth.
func mpAppendValue(b []byte, v *Value, depth int) ([]byte, error) {
	switch v.kind {
	case KindString:
		return mpAppendStr(b, v.str), nil
	case KindInt:
		return mpAppendInt(b, int64(v.num)), nil
	case KindUint:
		return mpAppendUint(b, v.num, false), nil
	case KindFloat:
		return mpAppendBE(append(b, msgpcode.Double), v.num, 8), nil
	case KindBool:
		if v.num != 0 {
			return append(b, msgpcode.True), nil
		}
		return append(b, msgpcode.False), nil
	case KindTime:
		ns := int64(v.num)
		sec, nsec := ns/mpNanos, ns%mpNanos
		if nsec < 0 {
			sec, nsec = sec-1, nsec+mpNanos
		}
		return mpAppendTimestamp(b, sec, uint32(nsec)), nil
	case KindDuration:
		return mpAppendBE(mpAppendExtHeader(b, 8, mpExtDuration), v.num, 8), nil
	case KindIP:
		return append(mpAppendExtHeader(b, len(v.str), mpExtIP), v.str...), nil
	case KindBytes:
		b = mpAppendLen(b, len(v.str), 0, -1, msgpcode.Bin8, msgpcode.Bin16, msgpcode.Bin32)
		return append(b, v.str...), nil
	case KindList:
		if depth >= MsgpackMaxDepth {
			return append(b, msgpcode.Nil), mpErrTooDeep
		}
		b = mpAppendLen(b, len(v.list), msgpcode.FixedArrayLow, 15, 0, msgpcode.Array16, msgpcode.Array32)
		var err error
		for i := range v.list {
			var lerr error
			b, lerr = mpAppendValue(b, &v.list[i], depth+1)
			if lerr != nil && err == nil {
				err = fmt.Errorf("list element %d: %w", i, lerr)
			}
		}
		return b, err
	case KindEvent:
		if v.ev == nil {
			return mpAppendExtHeader(b, 0, mpExtEvent), nil
		}
		if depth >= MsgpackMaxDepth {
			return append(b, msgpcode.Nil), mpErrTooDeep
		}
		// Reserve room for the longest ext header, encode the event after
		// it, then write the real header and close the gap.
		const reserve = 6
		start := len(b)
		b = append(b, make([]byte, reserve)...)
		var err error
		b, err = mpAppendEvent(b, v.ev, depth+1)
		n := len(b) - start - reserve
		var hdr [reserve]byte
		h := mpAppendExtHeader(hdr[:0], n, mpExtEvent)
		copy(b[start:], h)
		copy(b[start+len(h):], b[start+reserve:])
		b = b[:start+len(h)+n]
		if err != nil {
			err = fmt.Errorf("nested event: %w", err)
		}
		return b, err
	}
	return append(b, msgpcode.Nil), nil
}

var mpErrTooDeep = fmt.Errorf("lists and nested events deeper than %d", MsgpackMaxDepth)

// mpAppendStr appends s as a msgpack str.
func mpAppendStr(b []byte, s string) []byte {
	b = mpAppendLen(b, len(s), msgpcode.FixedStrLow, 31, msgpcode.Str8, msgpcode.Str16, msgpcode.Str32)
	return append(b, s...)
}

// mpAppendLen appends the header of a str, bin, array or map of n elements:
// the fix form (base code fix) up to fixMax elements (-1: none), then the
// 8-bit form c8 (0: none), the 16-bit form c16 and the 32-bit form c32.
func mpAppendLen(b []byte, n int, fix byte, fixMax int, c8, c16, c32 byte) []byte {
	switch {
	case n <= fixMax:
		return append(b, fix|byte(n))
	case c8 != 0 && n <= math.MaxUint8:
		return append(b, c8, byte(n))
	case n <= math.MaxUint16:
		return mpAppendBE(append(b, c16), uint64(n), 2)
	}
	return mpAppendBE(append(b, c32), uint64(n), 4)
}

// mpAppendInt appends n in the int family: a fixint or int 8/16/32/64.
func mpAppendInt(b []byte, n int64) []byte {
	switch {
	case n >= -32 && n <= math.MaxInt8:
		return append(b, byte(n))
	case n >= math.MinInt8 && n <= math.MaxInt8:
		return append(b, msgpcode.Int8, byte(n))
	case n >= math.MinInt16 && n <= math.MaxInt16:
		return mpAppendBE(append(b, msgpcode.Int16), uint64(n), 2)
	case n >= math.MinInt32 && n <= math.MaxInt32:
		return mpAppendBE(append(b, msgpcode.Int32), uint64(n), 4)
	}
	return mpAppendBE(append(b, msgpcode.Int64), uint64(n), 8)
}

// mpAppendUint appends n in the uint family (uint 8/16/32/64); with fix, a
// value below 128 is written as a positive fixint instead.
func mpAppendUint(b []byte, n uint64, fix bool) []byte {
	switch {
	case fix && n <= math.MaxInt8:
		return append(b, byte(n))
	case n <= math.MaxUint8:
		return append(b, msgpcode.Uint8, byte(n))
	case n <= math.MaxUint16:
		return mpAppendBE(append(b, msgpcode.Uint16), n, 2)
	case n <= math.MaxUint32:
		return mpAppendBE(append(b, msgpcode.Uint32), n, 4)
	}
	return mpAppendBE(append(b, msgpcode.Uint64), n, 8)
}

// mpAppendBE appends the low size bytes of n, big-endian.
func mpAppendBE(b []byte, n uint64, size int) []byte {
	switch size {
	case 2:
		return append(b, byte(n>>8), byte(n))
	case 4:
		return append(b, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	return append(b, byte(n>>56), byte(n>>48), byte(n>>40), byte(n>>32),
		byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
}

// mpAppendExtHeader appends the header of an ext of type typ with an n-byte
// payload, in its shortest form.
func mpAppendExtHeader(b []byte, n int, typ int8) []byte {
	switch n {
	case 1:
		return append(b, msgpcode.FixExt1, byte(typ))
	case 2:
		return append(b, msgpcode.FixExt2, byte(typ))
	case 4:
		return append(b, msgpcode.FixExt4, byte(typ))
	case 8:
		return append(b, msgpcode.FixExt8, byte(typ))
	case 16:
		return append(b, msgpcode.FixExt16, byte(typ))
	}
	switch {
	case n <= math.MaxUint8:
		b = append(b, msgpcode.Ext8, byte(n))
	case n <= math.MaxUint16:
		b = mpAppendBE(append(b, msgpcode.Ext16), uint64(n), 2)
	default:
		b = mpAppendBE(append(b, msgpcode.Ext32), uint64(n), 4)
	}
	return append(b, byte(typ))
}

// mpAppendTimestamp appends a msgpack timestamp (ext -1) in its shortest
// form; nsec is below 1e9.
func mpAppendTimestamp(b []byte, sec int64, nsec uint32) []byte {
	if uint64(sec)>>34 == 0 {
		data := uint64(nsec)<<34 | uint64(sec)
		if data>>32 == 0 {
			return mpAppendBE(mpAppendExtHeader(b, 4, mpExtTime), data, 4)
		}
		return mpAppendBE(mpAppendExtHeader(b, 8, mpExtTime), data, 8)
	}
	b = mpAppendExtHeader(b, 12, mpExtTime)
	b = mpAppendBE(b, uint64(nsec), 4)
	return mpAppendBE(b, uint64(sec), 8)
}

// ---------------------------------------------------------------- decoding

// Unmarshal decodes the msgpack encoding of one event from data into e,
// replacing its contents. Any byte string yields either an event or an
// error wrapping ErrMalformed; trailing bytes after the event are an error.
//
// Unmarshal copies data once: every string of the event (ids, keys, string,
// bytes and IP values, nested events) is a substring of that one copy, so
// data may be reused at once, and keeping any one string keeps the whole
// copy alive.
//
// e is meant to be reused: the backing array of e.Fields is overwritten and
// kept when it is large enough, so decoding a flat event into a reused e
// allocates once (the copy); lists and nested events allocate more. On an
// error, e is reset (Fields empty, capacity kept).
func Unmarshal(data []byte, e *Event) error {
	if e == nil {
		return errors.New("decode event: nil *Event")
	}
	return mpUnmarshal(string(data), e)
}

// DecodeMsgpack implements msgpack.CustomDecoder, so msgpack.Unmarshal into
// an *Event reads the wire format. It reads exactly one msgpack value from
// dec without recursion into a new buffer, which the event's strings then
// share, and decodes it as Unmarshal does. A stream that ends before the first byte returns an error
// wrapping io.EOF; one that ends within the value returns an error
// wrapping both ErrMalformed and io.ErrUnexpectedEOF.
//
// The msgpack library handles a msgpack nil itself, without calling
// DecodeMsgpack: it sets the target to its zero value (a nil *Event, an
// empty Event), where Unmarshal reports an error.
func (e *Event) DecodeMsgpack(dec *msgpack.Decoder) error {
	raw, err := mpReadRaw(dec)
	if err != nil {
		if e != nil {
			e.Reset()
		}
		return fmt.Errorf("decode event: %w", err)
	}
	if e == nil {
		return errors.New("decode event: nil *Event")
	}
	// raw is owned by this call and never written again: strings may alias it.
	return mpUnmarshal(unsafe.String(unsafe.SliceData(raw), len(raw)), e)
}

// Peek reads only the head of an encoded event (id, type and level) for
// routing, without decoding the fields and without allocating. It checks
// the envelope up to the level, not the rest. The strings alias data: they
// are valid only while data is unchanged; copy them (strings.Clone) to keep
// them longer.
func Peek(data []byte) (id, typ string, level catalog.Level, err error) {
	d := mpDecoder{s: unsafe.String(unsafe.SliceData(data), len(data))}
	if err := d.envelopeHead(); err != nil {
		return "", "", 0, err
	}
	if id, err = d.str(); err != nil {
		return "", "", 0, fmt.Errorf("decode event id: %w", err)
	}
	if typ, err = d.str(); err != nil {
		return "", "", 0, fmt.Errorf("decode event type: %w", err)
	}
	if _, err = d.envelopeTime(); err != nil {
		return "", "", 0, fmt.Errorf("decode event time: %w", err)
	}
	if level, err = d.level(); err != nil {
		return "", "", 0, fmt.Errorf("decode event level: %w", err)
	}
	return id, typ, level, nil
}

// mpUnmarshal decodes s, which the event may alias, into e.
func mpUnmarshal(s string, e *Event) error {
	d := mpDecoder{s: s}
	err := d.event(e, 0)
	if err == nil && d.i != len(s) {
		err = fmt.Errorf("decode event: %w: %d trailing bytes", ErrMalformed, len(s)-d.i)
	}
	if err != nil {
		f := e.Fields[:cap(e.Fields)]
		clear(f)
		e.Fields = f[:0]
		e.Reset()
	}
	return err
}

// mpDecoder reads msgpack from s, at offset i. Every read is bounds-checked.
type mpDecoder struct {
	s string
	i int
}

// malformed returns an error wrapping ErrMalformed.
func mpMalformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

// event decodes a whole event whose fields are at the given depth into e.
func (d *mpDecoder) event(e *Event, depth int) error {
	if err := d.envelopeHead(); err != nil {
		return err
	}
	var err error
	if e.ID, err = d.str(); err != nil {
		return fmt.Errorf("decode event id: %w", err)
	}
	if e.Type, err = d.str(); err != nil {
		return fmt.Errorf("decode event type: %w", err)
	}
	if e.Time, err = d.envelopeTime(); err != nil {
		return fmt.Errorf("decode event time: %w", err)
	}
	if e.Level, err = d.level(); err != nil {
		return fmt.Errorf("decode event level: %w", err)
	}
	if e.Host, err = d.str(); err != nil {
		return fmt.Errorf("decode event host: %w", err)
	}
	if e.Server, err = d.str(); err != nil {
		return fmt.Errorf("decode event server: %w", err)
	}
	n, err := d.mapLen()
	if err != nil {
		return fmt.Errorf("decode event fields: %w", err)
	}
	if n > MsgpackMaxFields {
		return fmt.Errorf("decode event fields: %w: %d fields, more than %d", ErrMalformed, n, MsgpackMaxFields)
	}
	if n > uint64(len(d.s)-d.i)/2 { // every pair takes at least 2 bytes
		return fmt.Errorf("decode event fields: %w", mpErrTruncated)
	}
	nf, old := int(n), len(e.Fields)
	if cap(e.Fields) < nf {
		e.Fields = make([]Field, nf)
	} else {
		e.Fields = e.Fields[:nf]
	}
	for i := range e.Fields {
		f := &e.Fields[i]
		if f.Key, err = d.str(); err != nil {
			e.Fields = e.Fields[:i]
			return fmt.Errorf("decode event field %d key: %w", i, err)
		}
		if f.Value, err = d.value(depth); err != nil {
			e.Fields = e.Fields[:i]
			return fmt.Errorf("decode event field %d (%q): %w", i, mpShort(f.Key), err)
		}
	}
	if nf < old {
		clear(e.Fields[nf:old]) // drop references into the previous message
	}
	return nil
}

// mpShort cuts a key from the input to a length fit for an error message.
func mpShort(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

// envelopeHead reads the array header and the version.
func (d *mpDecoder) envelopeHead() error {
	n, err := d.arrayLen()
	if err != nil {
		return fmt.Errorf("decode event: %w", err)
	}
	if n != mpEnvelopeLen {
		return fmt.Errorf("decode event: %w: array of %d elements, want %d", ErrMalformed, n, mpEnvelopeLen)
	}
	v, err := d.unsigned()
	if err != nil {
		return fmt.Errorf("decode event version: %w", err)
	}
	if v != MsgpackVersion {
		return fmt.Errorf("decode event version: %w: version %d, want %d", ErrMalformed, v, MsgpackVersion)
	}
	return nil
}

// level reads a catalog.Level.
func (d *mpDecoder) level() (catalog.Level, error) {
	v, err := d.unsigned()
	if err != nil {
		return 0, err
	}
	if v > uint64(catalog.LevelDisable) {
		return 0, mpMalformed("level %d out of range", v)
	}
	return catalog.Level(v), nil
}

// envelopeTime reads nil (the zero time) or a timestamp.
func (d *mpDecoder) envelopeTime() (time.Time, error) {
	c, err := d.code()
	if err != nil {
		return time.Time{}, err
	}
	if c == msgpcode.Nil {
		return time.Time{}, nil
	}
	typ, payload, err := d.ext(c)
	if err != nil {
		return time.Time{}, err
	}
	if typ != mpExtTime {
		return time.Time{}, mpMalformed("ext type %d, want a timestamp (-1)", typ)
	}
	sec, nsec, err := mpTimestamp(payload)
	if err != nil {
		return time.Time{}, err
	}
	return time.Unix(sec, int64(nsec)).UTC(), nil
}

// value decodes a field value or list element at the given depth.
func (d *mpDecoder) value(depth int) (Value, error) {
	c, err := d.code()
	if err != nil {
		return Value{}, err
	}
	switch {
	case c <= msgpcode.PosFixedNumHigh:
		return Value{kind: KindInt, num: uint64(c)}, nil
	case c >= msgpcode.NegFixedNumLow:
		return Value{kind: KindInt, num: uint64(int64(int8(c)))}, nil
	case msgpcode.IsFixedString(c):
		s, err := d.bytes(uint64(c & msgpcode.FixedStrMask))
		return Value{kind: KindString, str: s}, err
	case msgpcode.IsFixedArray(c):
		return d.list(uint64(c&msgpcode.FixedArrayMask), depth)
	case msgpcode.IsFixedMap(c):
		return Value{}, mpMalformed("got a map, which is not a field value type")
	}
	switch c {
	case msgpcode.Nil:
		return Value{}, nil
	case msgpcode.False:
		return Value{kind: KindBool}, nil
	case msgpcode.True:
		return Value{kind: KindBool, num: 1}, nil
	case msgpcode.Float:
		n, err := d.be(4)
		return Float(float64(math.Float32frombits(uint32(n)))), err
	case msgpcode.Double:
		n, err := d.be(8)
		return Value{kind: KindFloat, num: n}, err
	case msgpcode.Uint8, msgpcode.Uint16, msgpcode.Uint32, msgpcode.Uint64:
		n, err := d.be(1 << (c - msgpcode.Uint8))
		return Value{kind: KindUint, num: n}, err
	case msgpcode.Int8:
		n, err := d.be(1)
		return Int(int64(int8(n))), err
	case msgpcode.Int16:
		n, err := d.be(2)
		return Int(int64(int16(n))), err
	case msgpcode.Int32:
		n, err := d.be(4)
		return Int(int64(int32(n))), err
	case msgpcode.Int64:
		n, err := d.be(8)
		return Value{kind: KindInt, num: n}, err
	case msgpcode.Str8, msgpcode.Str16, msgpcode.Str32:
		n, err := d.be(1 << (c - msgpcode.Str8))
		if err != nil {
			return Value{}, err
		}
		s, err := d.bytes(n)
		return Value{kind: KindString, str: s}, err
	case msgpcode.Bin8, msgpcode.Bin16, msgpcode.Bin32:
		n, err := d.be(1 << (c - msgpcode.Bin8))
		if err != nil {
			return Value{}, err
		}
		s, err := d.bytes(n)
		return Value{kind: KindBytes, str: s}, err
	case msgpcode.Array16, msgpcode.Array32:
		n, err := d.be(2 << (c - msgpcode.Array16))
		if err != nil {
			return Value{}, err
		}
		return d.list(n, depth)
	case msgpcode.Map16, msgpcode.Map32:
		return Value{}, mpMalformed("got a map, which is not a field value type")
	}
	typ, payload, err := d.ext(c)
	if err != nil {
		return Value{}, err
	}
	return d.extValue(typ, payload, depth)
}

// extValue decodes the value of an ext of type typ.
func (d *mpDecoder) extValue(typ int8, payload string, depth int) (Value, error) {
	switch typ {
	case mpExtTime:
		sec, nsec, err := mpTimestamp(payload)
		if err != nil {
			return Value{}, err
		}
		// sec*1e9+nsec must fit an int64.
		const minSec, maxSec = math.MinInt64/mpNanos - 1, math.MaxInt64 / mpNanos
		if sec < minSec || sec > maxSec ||
			sec == minSec && nsec < math.MinInt64-minSec*mpNanos ||
			sec == maxSec && nsec > math.MaxInt64-maxSec*mpNanos {
			return Value{}, mpMalformed("time %d s out of the range of int64 nanoseconds", sec)
		}
		// At minSec the product wraps, the sum does not: int64 arithmetic
		// is modular and the result is in range.
		return Value{kind: KindTime, num: uint64(sec*mpNanos + int64(nsec))}, nil
	case mpExtDuration:
		if len(payload) != 8 {
			return Value{}, mpMalformed("duration of %d bytes, want 8", len(payload))
		}
		return Value{kind: KindDuration, num: (&mpDecoder{s: payload}).mustBE8()}, nil
	case mpExtIP:
		if n := len(payload); n != 0 && n != 4 && n < 16 {
			return Value{}, mpMalformed("IP address of %d bytes, want 0, 4 or at least 16", n)
		}
		return Value{kind: KindIP, str: payload}, nil
	case mpExtEvent:
		if depth >= MsgpackMaxDepth {
			return Value{}, mpMalformed("lists and nested events deeper than %d", MsgpackMaxDepth)
		}
		if len(payload) == 0 {
			return Value{kind: KindEvent}, nil
		}
		ev := new(Event)
		sub := mpDecoder{s: payload}
		if err := sub.event(ev, depth+1); err != nil {
			return Value{}, fmt.Errorf("nested event: %w", err)
		}
		if sub.i != len(payload) {
			return Value{}, fmt.Errorf("nested event: %w: %d trailing bytes", ErrMalformed, len(payload)-sub.i)
		}
		return Value{kind: KindEvent, ev: ev}, nil
	}
	return Value{}, mpMalformed("unknown ext type %d", typ)
}

// list decodes the n elements of an array value at the given depth.
func (d *mpDecoder) list(n uint64, depth int) (Value, error) {
	if depth >= MsgpackMaxDepth {
		return Value{}, mpMalformed("lists and nested events deeper than %d", MsgpackMaxDepth)
	}
	if n > uint64(len(d.s)-d.i) { // every element takes at least a byte
		return Value{}, mpErrTruncated
	}
	if n == 0 {
		return Value{kind: KindList}, nil
	}
	vs := make([]Value, n)
	for i := range vs {
		var err error
		if vs[i], err = d.value(depth + 1); err != nil {
			return Value{}, fmt.Errorf("list element %d: %w", i, err)
		}
	}
	return Value{kind: KindList, list: vs}, nil
}

// mpTimestamp decodes the payload of a msgpack timestamp.
func mpTimestamp(p string) (sec int64, nsec uint32, err error) {
	d := mpDecoder{s: p}
	switch len(p) {
	case 4:
		n, _ := d.be(4)
		return int64(n), 0, nil
	case 8:
		n := d.mustBE8()
		sec, nsec = int64(n&(1<<34-1)), uint32(n>>34)
	case 12:
		n, _ := d.be(4)
		sec, nsec = int64(d.mustBE8()), uint32(n)
	default:
		return 0, 0, mpMalformed("timestamp of %d bytes, want 4, 8 or 12", len(p))
	}
	if nsec >= mpNanos {
		return 0, 0, mpMalformed("timestamp with %d nanoseconds", nsec)
	}
	return sec, nsec, nil
}

// code reads one byte.
func (d *mpDecoder) code() (byte, error) {
	if d.i >= len(d.s) {
		return 0, mpErrTruncated
	}
	c := d.s[d.i]
	d.i++
	return c, nil
}

// be reads a big-endian unsigned integer of size 1, 2, 4 or 8 bytes.
func (d *mpDecoder) be(size int) (uint64, error) {
	if len(d.s)-d.i < size {
		return 0, mpErrTruncated
	}
	s := d.s[d.i : d.i+size]
	d.i += size
	var n uint64
	for k := 0; k < len(s); k++ {
		n = n<<8 | uint64(s[k])
	}
	return n, nil
}

// mustBE8 reads 8 bytes the caller knows are there.
func (d *mpDecoder) mustBE8() uint64 {
	n, _ := d.be(8)
	return n
}

// bytes reads n raw bytes as a substring of the input.
func (d *mpDecoder) bytes(n uint64) (string, error) {
	if n > uint64(len(d.s)-d.i) {
		return "", mpErrTruncated
	}
	s := d.s[d.i : d.i+int(n)]
	d.i += int(n)
	return s, nil
}

// str reads a msgpack str.
func (d *mpDecoder) str() (string, error) {
	c, err := d.code()
	if err != nil {
		return "", err
	}
	var n uint64
	switch {
	case msgpcode.IsFixedString(c):
		n = uint64(c & msgpcode.FixedStrMask)
	case c == msgpcode.Str8, c == msgpcode.Str16, c == msgpcode.Str32:
		if n, err = d.be(1 << (c - msgpcode.Str8)); err != nil {
			return "", err
		}
	default:
		return "", mpMalformed("got %s, want a string", mpDescribe(c))
	}
	return d.bytes(n)
}

// arrayLen reads an array header.
func (d *mpDecoder) arrayLen() (uint64, error) {
	c, err := d.code()
	if err != nil {
		return 0, err
	}
	switch {
	case msgpcode.IsFixedArray(c):
		return uint64(c & msgpcode.FixedArrayMask), nil
	case c == msgpcode.Array16, c == msgpcode.Array32:
		return d.be(2 << (c - msgpcode.Array16))
	}
	return 0, mpMalformed("got %s, want an array", mpDescribe(c))
}

// mapLen reads a map header.
func (d *mpDecoder) mapLen() (uint64, error) {
	c, err := d.code()
	if err != nil {
		return 0, err
	}
	switch {
	case msgpcode.IsFixedMap(c):
		return uint64(c & msgpcode.FixedMapMask), nil
	case c == msgpcode.Map16, c == msgpcode.Map32:
		return d.be(2 << (c - msgpcode.Map16))
	}
	return 0, mpMalformed("got %s, want a map", mpDescribe(c))
}

// unsigned reads a non-negative integer of either family.
func (d *mpDecoder) unsigned() (uint64, error) {
	c, err := d.code()
	if err != nil {
		return 0, err
	}
	switch {
	case c <= msgpcode.PosFixedNumHigh:
		return uint64(c), nil
	case c >= msgpcode.Uint8 && c <= msgpcode.Uint64:
		return d.be(1 << (c - msgpcode.Uint8))
	case c >= msgpcode.Int8 && c <= msgpcode.Int64:
		size := 1 << (c - msgpcode.Int8)
		n, err := d.be(size)
		if err == nil && n>>(size*8-1) != 0 {
			return 0, mpMalformed("negative integer, want a non-negative one")
		}
		return n, err
	}
	return 0, mpMalformed("got %s, want a non-negative integer", mpDescribe(c))
}

// ext reads the rest of an ext whose first byte is c: its type and payload.
func (d *mpDecoder) ext(c byte) (int8, string, error) {
	var n uint64
	switch c {
	case msgpcode.FixExt1, msgpcode.FixExt2, msgpcode.FixExt4, msgpcode.FixExt8, msgpcode.FixExt16:
		n = 1 << (c - msgpcode.FixExt1)
	case msgpcode.Ext8, msgpcode.Ext16, msgpcode.Ext32:
		var err error
		if n, err = d.be(1 << (c - msgpcode.Ext8)); err != nil {
			return 0, "", err
		}
	default:
		return 0, "", mpMalformed("got %s, want an ext", mpDescribe(c))
	}
	typ, err := d.code()
	if err != nil {
		return 0, "", err
	}
	payload, err := d.bytes(n)
	return int8(typ), payload, err
}

// mpDescribe names the msgpack type of which c is the first byte.
func mpDescribe(c byte) string {
	switch {
	case c <= msgpcode.PosFixedNumHigh, c >= msgpcode.NegFixedNumLow,
		c >= msgpcode.Uint8 && c <= msgpcode.Int64:
		return "an integer"
	case msgpcode.IsFixedMap(c), c == msgpcode.Map16, c == msgpcode.Map32:
		return "a map"
	case msgpcode.IsFixedArray(c), c == msgpcode.Array16, c == msgpcode.Array32:
		return "an array"
	case msgpcode.IsString(c):
		return "a string"
	case msgpcode.IsBin(c):
		return "binary"
	case c == msgpcode.Nil:
		return "nil"
	case c == msgpcode.False, c == msgpcode.True:
		return "a bool"
	case c == msgpcode.Float, c == msgpcode.Double:
		return "a float"
	case c >= msgpcode.FixExt1 && c <= msgpcode.FixExt16, c >= msgpcode.Ext8 && c <= msgpcode.Ext32:
		return "an ext"
	}
	return fmt.Sprintf("invalid code 0x%02x", c)
}

// mpReadRaw reads the bytes of exactly one msgpack value from dec. It walks
// the value with a counter of pending elements rather than recursion, and
// reads long payloads in chunks, so memory grows with the bytes actually
// read, not with declared lengths.
func mpReadRaw(dec *msgpack.Decoder) ([]byte, error) {
	const maxPending = 1 << 40 // far more elements than any message holds
	var raw []byte
	var err error
	for pending := uint64(1); pending > 0; pending-- {
		start := len(raw)
		if raw, err = mpRead(dec, raw, 1); err != nil {
			if start == 0 && errors.Is(err, io.EOF) {
				return nil, err
			}
			return nil, mpReadErr(err)
		}
		c := raw[start]
		var lenSize int  // bytes of a length that follows c
		var payload int  // fixed payload size after c (and the length)
		var elems uint64 // elements per declared length unit: 1 array, 2 map
		switch {
		case c <= msgpcode.PosFixedNumHigh, c >= msgpcode.NegFixedNumLow,
			c == msgpcode.Nil, c == msgpcode.False, c == msgpcode.True:
		case msgpcode.IsFixedString(c):
			payload = int(c & msgpcode.FixedStrMask)
		case msgpcode.IsFixedArray(c):
			pending += uint64(c & msgpcode.FixedArrayMask)
		case msgpcode.IsFixedMap(c):
			pending += 2 * uint64(c&msgpcode.FixedMapMask)
		case c >= msgpcode.Uint8 && c <= msgpcode.Uint64:
			payload = 1 << (c - msgpcode.Uint8)
		case c >= msgpcode.Int8 && c <= msgpcode.Int64:
			payload = 1 << (c - msgpcode.Int8)
		case c == msgpcode.Float:
			payload = 4
		case c == msgpcode.Double:
			payload = 8
		case c >= msgpcode.FixExt1 && c <= msgpcode.FixExt16:
			payload = 1 + 1<<(c-msgpcode.FixExt1)
		case c >= msgpcode.Str8 && c <= msgpcode.Str32:
			lenSize = 1 << (c - msgpcode.Str8)
		case c >= msgpcode.Bin8 && c <= msgpcode.Bin32:
			lenSize = 1 << (c - msgpcode.Bin8)
		case c >= msgpcode.Ext8 && c <= msgpcode.Ext32:
			lenSize, payload = 1<<(c-msgpcode.Ext8), 1 // the type byte
		case c == msgpcode.Array16, c == msgpcode.Array32:
			lenSize, elems = 2<<(c-msgpcode.Array16), 1
		case c == msgpcode.Map16, c == msgpcode.Map32:
			lenSize, elems = 2<<(c-msgpcode.Map16), 2
		default:
			return nil, mpMalformed("got %s", mpDescribe(c))
		}
		var n uint64
		if lenSize > 0 {
			at := len(raw)
			if raw, err = mpRead(dec, raw, uint64(lenSize)); err != nil {
				return nil, mpReadErr(err)
			}
			for _, b := range raw[at:] {
				n = n<<8 | uint64(b)
			}
		}
		if elems > 0 {
			pending += elems * n
			n = 0
		}
		if pending > maxPending {
			return nil, mpMalformed("declared lengths of more than %d elements", uint64(maxPending))
		}
		if raw, err = mpRead(dec, raw, n+uint64(payload)); err != nil {
			return nil, mpReadErr(err)
		}
	}
	return raw, nil
}

// mpRead appends n bytes read from dec to raw, in chunks of at most 64 KiB.
func mpRead(dec *msgpack.Decoder, raw []byte, n uint64) ([]byte, error) {
	const chunk = 64 << 10
	for n > 0 {
		k := int(min(n, chunk))
		at := len(raw)
		raw = append(raw, make([]byte, k)...)
		if err := dec.ReadFull(raw[at:]); err != nil {
			return raw, err
		}
		n -= uint64(k)
	}
	return raw, nil
}

// mpReadErr wraps an error met within a value.
func mpReadErr(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: %w", mpErrTruncated, io.ErrUnexpectedEOF)
	}
	return fmt.Errorf("read msgpack value: %w", err)
}
