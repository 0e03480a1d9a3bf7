package schema

import (
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"time"
)

// Kind is the type of a Value.
type Kind uint8

// The kinds of values.
const (
	KindNone Kind = iota
	KindString
	KindInt
	KindUint
	KindFloat
	KindBool
	KindTime
	KindDuration
	KindIP
	KindBytes
	KindList
	KindEvent
)

var kindNames = [...]string{"none", "string", "int", "uint", "float", "bool", "time", "duration", "ip", "bytes", "list", "event"}

// String returns the lower-case name of the kind.
func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Value is a typed field value. The zero Value has KindNone. Values are
// immutable once built; constructors do not copy their arguments.
//
// A Value is 64 bytes: the string slot also carries bytes and the binary
// form of an IP address, so that a slice of fields stays compact.
type Value struct {
	kind Kind
	num  uint64  // int, uint, float bits, bool, time (unix ns), duration (ns)
	str  string  // string, bytes, IP (4 or 16 bytes, then the zone)
	list []Value // list
	ev   *Event  // nested event (causedBy)
}

// String returns a string value.
func String(s string) Value { return Value{kind: KindString, str: s} }

// Int returns a signed integer value.
func Int(n int64) Value { return Value{kind: KindInt, num: uint64(n)} }

// Uint returns an unsigned integer value.
func Uint(n uint64) Value { return Value{kind: KindUint, num: n} }

// Float returns a floating-point value.
func Float(f float64) Value { return Value{kind: KindFloat, num: math.Float64bits(f)} }

// Bool returns a boolean value.
func Bool(b bool) Value {
	v := Value{kind: KindBool}
	if b {
		v.num = 1
	}
	return v
}

// Time returns a time value (kept with nanosecond precision, in UTC).
func Time(t time.Time) Value { return Value{kind: KindTime, num: uint64(t.UnixNano())} }

// Duration returns a duration value.
func Duration(d time.Duration) Value { return Value{kind: KindDuration, num: uint64(d)} }

// IP returns an IP address value.
func IP(a netip.Addr) Value {
	if !a.IsValid() {
		return Value{kind: KindIP}
	}
	return Value{kind: KindIP, str: string(a.AsSlice()) + a.Zone()}
}

// Bytes returns a byte-string value (a copy of b).
func Bytes(b []byte) Value { return Value{kind: KindBytes, str: string(b)} }

// List returns a list value.
func List(vs ...Value) Value { return Value{kind: KindList, list: vs} }

// Nested returns a nested event value (used for causedBy).
func Nested(e *Event) Value { return Value{kind: KindEvent, ev: e} }

// Kind returns the kind of the value.
func (v Value) Kind() Kind { return v.kind }

// Str returns the string of a KindString value, and "" otherwise.
func (v Value) Str() string { return v.str }

// Int returns the value of a KindInt, or a KindUint that fits, as int64.
func (v Value) Int() int64 { return int64(v.num) }

// Uint returns the value of a KindUint value.
func (v Value) Uint() uint64 { return v.num }

// Float returns the value of a KindFloat value.
func (v Value) Float() float64 { return math.Float64frombits(v.num) }

// Bool returns the value of a KindBool value.
func (v Value) Bool() bool { return v.num != 0 }

// Time returns the value of a KindTime value, in UTC.
func (v Value) Time() time.Time { return time.Unix(0, int64(v.num)).UTC() }

// Duration returns the value of a KindDuration value.
func (v Value) Duration() time.Duration { return time.Duration(v.num) }

// IP returns the value of a KindIP value.
func (v Value) IP() netip.Addr {
	var a netip.Addr
	switch {
	case len(v.str) == 4:
		a = netip.AddrFrom4([4]byte([]byte(v.str)))
	case len(v.str) >= 16:
		a = netip.AddrFrom16([16]byte([]byte(v.str[:16]))).WithZone(v.str[16:])
	}
	return a
}

// BytesValue returns a copy of the value of a KindBytes value.
func (v Value) BytesValue() []byte { return []byte(v.str) }

// RawString returns the content of the string slot without a copy: the
// string of KindString, the bytes of KindBytes, the binary address of KindIP.
// Codecs use it; others want Str, BytesValue or IP.
func (v Value) RawString() string { return v.str }

// List returns the elements of a KindList value.
func (v Value) List() []Value { return v.list }

// Event returns the nested event of a KindEvent value.
func (v Value) Event() *Event { return v.ev }

// Number returns the value as a float64 for the numeric kinds (int, uint,
// float, duration in seconds) and false for the others.
func (v Value) Number() (float64, bool) {
	switch v.kind {
	case KindInt:
		return float64(int64(v.num)), true
	case KindUint:
		return float64(v.num), true
	case KindFloat:
		return v.Float(), true
	case KindDuration:
		return v.Duration().Seconds(), true
	}
	return 0, false
}

// Equal reports whether two values have the same kind and content.
func (v Value) Equal(o Value) bool {
	if v.kind != o.kind {
		return false
	}
	switch v.kind {
	case KindString, KindIP, KindBytes:
		return v.str == o.str
	case KindList:
		if len(v.list) != len(o.list) {
			return false
		}
		for i := range v.list {
			if !v.list[i].Equal(o.list[i]) {
				return false
			}
		}
		return true
	case KindEvent:
		if v.ev == nil || o.ev == nil {
			return v.ev == o.ev
		}
		return v.ev.Equal(o.ev)
	}
	return v.num == o.num
}

// GoString renders the value for test failure messages.
func (v Value) GoString() string {
	switch v.kind {
	case KindString:
		return "String(" + strconv.Quote(v.str) + ")"
	case KindIP:
		return "IP(" + v.IP().String() + ")"
	case KindList:
		return fmt.Sprintf("List(%#v)", v.list)
	case KindEvent:
		return fmt.Sprintf("Nested(%+v)", v.ev)
	case KindBytes:
		return fmt.Sprintf("Bytes(%q)", v.str)
	case KindNone:
		return "None"
	}
	return fmt.Sprintf("%s(%d)", v.kind, v.num)
}

// Equal reports whether two events have the same envelope and fields, in
// the same order.
func (e *Event) Equal(o *Event) bool {
	if e.ID != o.ID || e.Type != o.Type || !e.Time.Equal(o.Time) || e.Level != o.Level ||
		e.Host != o.Host || e.Server != o.Server || len(e.Fields) != len(o.Fields) {
		return false
	}
	for i := range e.Fields {
		if e.Fields[i].Key != o.Fields[i].Key || !e.Fields[i].Value.Equal(o.Fields[i].Value) {
			return false
		}
	}
	return true
}
