package schema_test

import (
	"bytes"
	"encoding/hex"
	"errors"
	"flag"
	"io"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/mailtel/mailtel/catalog"
	"github.com/mailtel/mailtel/schema"
)

// msgpUpdate rewrites the golden files and the fuzz seed corpus:
// go test ./schema -run 'TestMsgpackGolden|TestMsgpackFuzzCorpus' -update-msgpack
var msgpUpdate = flag.Bool("update-msgpack", false, "rewrite the msgpack golden files and fuzz seeds")

// msgpAuthEvent is a realistic 8-field Stalwart event.
func msgpAuthEvent() *schema.Event {
	return &schema.Event{
		ID:     "01JD3V6Q8W2N5X7R9T4K6M8P0A",
		Type:   "auth.success",
		Time:   time.Date(2025, 11, 21, 12, 52, 7, 123456789, time.UTC),
		Level:  catalog.LevelInfo,
		Host:   "mx1.example.org",
		Server: "stalwart",
		Fields: []schema.Field{
			{Key: "accountName", Value: schema.String("alice@example.org")},
			{Key: "accountId", Value: schema.Uint(42)},
			{Key: "spanId", Value: schema.Uint(12345678901234567)},
			{Key: "listenerId", Value: schema.String("smtp")},
			{Key: "localPort", Value: schema.Uint(25)},
			{Key: "remoteIp", Value: schema.IP(netip.MustParseAddr("192.0.2.17"))},
			{Key: "remotePort", Value: schema.Uint(54321)},
			{Key: "elapsed", Value: schema.Duration(3210 * time.Microsecond)},
		},
	}
}

// msgpKindsEvent has a field of every kind, with edge values.
func msgpKindsEvent() *schema.Event {
	nan := math.Float64frombits(0x7ff8_0000_0000_0001) // a NaN with a payload
	return &schema.Event{
		ID:     "kinds",
		Type:   "test.kinds",
		Time:   time.Date(2024, 2, 29, 23, 59, 59, 0, time.UTC),
		Level:  catalog.LevelDebug,
		Host:   "h",
		Server: "dovecot",
		Fields: []schema.Field{
			{Key: "none", Value: schema.Value{}},
			{Key: "str", Value: schema.String("héllo")},
			{Key: "strEmpty", Value: schema.String("")},
			{Key: "str300", Value: schema.String(strings.Repeat("x", 300))},
			{Key: "int0", Value: schema.Int(0)},
			{Key: "intNeg1", Value: schema.Int(-1)},
			{Key: "intNeg33", Value: schema.Int(-33)},
			{Key: "intNeg129", Value: schema.Int(-129)},
			{Key: "int200", Value: schema.Int(200)},
			{Key: "int70000", Value: schema.Int(70000)},
			{Key: "intMin", Value: schema.Int(math.MinInt64)},
			{Key: "intMax", Value: schema.Int(math.MaxInt64)},
			{Key: "uint0", Value: schema.Uint(0)},
			{Key: "uint255", Value: schema.Uint(255)},
			{Key: "uint65536", Value: schema.Uint(65536)},
			{Key: "uintMax", Value: schema.Uint(math.MaxUint64)},
			{Key: "float", Value: schema.Float(1.5)},
			{Key: "floatNaN", Value: schema.Float(nan)},
			{Key: "floatNegZero", Value: schema.Float(math.Copysign(0, -1))},
			{Key: "floatInf", Value: schema.Float(math.Inf(1))},
			{Key: "true", Value: schema.Bool(true)},
			{Key: "false", Value: schema.Bool(false)},
			{Key: "time", Value: schema.Time(time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC))},
			{Key: "timeBefore1970", Value: schema.Time(time.Date(1960, 6, 1, 0, 0, 0, 999, time.UTC))},
			{Key: "timeAfter2106", Value: schema.Time(time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC))},
			{Key: "timeZero", Value: schema.Time(time.Time{})},
			{Key: "timeEpoch", Value: schema.Time(time.Unix(0, 0))},
			{Key: "duration", Value: schema.Duration(1500 * time.Millisecond)},
			{Key: "durationNeg", Value: schema.Duration(-time.Nanosecond)},
			{Key: "ipv4", Value: schema.IP(netip.MustParseAddr("203.0.113.9"))},
			{Key: "ipv6", Value: schema.IP(netip.MustParseAddr("2001:db8::1"))},
			{Key: "ipv6Zone", Value: schema.IP(netip.MustParseAddr("fe80::1%eth0"))},
			{Key: "ipv4in6", Value: schema.IP(netip.MustParseAddr("::ffff:192.0.2.1"))},
			{Key: "ipInvalid", Value: schema.IP(netip.Addr{})},
			{Key: "bytes", Value: schema.Bytes([]byte{0, 1, 0xff})},
			{Key: "bytesEmpty", Value: schema.Bytes(nil)},
			{Key: "bytes300", Value: schema.Bytes(bytes.Repeat([]byte{7}, 300))},
			{Key: "listEmpty", Value: schema.List()},
			{Key: "list", Value: schema.List(schema.String("a"), schema.Uint(1), schema.Int(-2),
				schema.List(schema.Bool(true)), schema.Value{})},
			{Key: "nestedNil", Value: schema.Nested(nil)},
		},
	}
}

// msgpNestedEvent has a causedBy that has its own causedBy.
func msgpNestedEvent() *schema.Event {
	root := &schema.Event{ID: "c3", Type: "store.io-error", Level: catalog.LevelError,
		Fields: []schema.Field{{Key: "reason", Value: schema.String("disk full")}}}
	mid := &schema.Event{ID: "c2", Type: "queue.queue-message", Time: time.Unix(1700000000, 5).UTC(),
		Level: catalog.LevelWarn, Host: "mx2", Server: "stalwart",
		Fields: []schema.Field{
			{Key: "queueId", Value: schema.Uint(7)},
			{Key: "causedBy", Value: schema.Nested(root)},
		}}
	return &schema.Event{ID: "c1", Type: "delivery.dsn-temp-fail", Time: time.Unix(1700000001, 0).UTC(),
		Level: catalog.LevelWarn, Host: "mx1", Server: "stalwart",
		Fields: []schema.Field{
			{Key: "to", Value: schema.List(schema.String("bob@example.org"), schema.String("carol@example.org"))},
			{Key: "causedBy", Value: schema.Nested(mid)},
		}}
}

// msgpDeepLists returns an event whose one field is n lists nested in one
// another.
func msgpDeepLists(n int) *schema.Event {
	v := schema.List()
	for range n - 1 {
		v = schema.List(v)
	}
	return &schema.Event{ID: "deep", Type: "test.deep", Fields: []schema.Field{{Key: "l", Value: v}}}
}

// msgpDeepEvents returns an event with a chain of n nested causedBy events.
func msgpDeepEvents(n int) *schema.Event {
	e := &schema.Event{ID: "deep0", Type: "test.deep"}
	for range n {
		e = &schema.Event{ID: "deep", Type: "test.deep", Fields: []schema.Field{{Key: "causedBy", Value: schema.Nested(e)}}}
	}
	return e
}

// msgpTestEvents are the events of the round-trip, golden and fuzz tests.
func msgpTestEvents() []struct {
	name string
	ev   *schema.Event
} {
	many := &schema.Event{ID: "many", Type: "test.many"}
	for i := range 20 {
		many.Fields = append(many.Fields, schema.Field{Key: "k" + string(rune('a'+i)), Value: schema.Int(int64(i))})
	}
	return []struct {
		name string
		ev   *schema.Event
	}{
		{"empty", &schema.Event{}},
		{"auth-success", msgpAuthEvent()},
		{"kinds", msgpKindsEvent()},
		{"nested", msgpNestedEvent()},
		{"unknown-and-repeated-keys", &schema.Event{ID: "u", Type: "custom.thing", Level: catalog.LevelTrace,
			Server: "exim", Fields: []schema.Field{
				{Key: "x-custom", Value: schema.String("1")},
				{Key: "x-custom", Value: schema.String("2")},
				{Key: "", Value: schema.Int(3)},
			}}},
		{"many-fields", many},
		{"time-32bit", &schema.Event{ID: "t", Time: time.Unix(1, 0).UTC(), Level: catalog.LevelDisable}},
		{"time-96bit-before-1970", &schema.Event{ID: "t", Time: time.Date(1800, 1, 1, 0, 0, 0, 1, time.UTC)}},
		{"time-96bit-far-future", &schema.Event{ID: "t", Time: time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC)}},
		{"lists-32-deep", msgpDeepLists(schema.MsgpackMaxDepth)},
		{"events-32-deep", msgpDeepEvents(schema.MsgpackMaxDepth)},
	}
}

func TestMsgpackRoundTrip(t *testing.T) {
	for _, tc := range msgpTestEvents() {
		t.Run(tc.name, func(t *testing.T) {
			b, err := schema.Marshal(tc.ev)
			if err != nil {
				t.Fatalf("Marshal: %v", err)
			}
			if a := tc.ev.AppendMsgpack([]byte("prefix")); !bytes.Equal(a[6:], b) || string(a[:6]) != "prefix" {
				t.Errorf("AppendMsgpack differs from Marshal:\n%x\n%x", a, b)
			}
			lib, err := msgpack.Marshal(tc.ev)
			if err != nil {
				t.Fatalf("msgpack.Marshal: %v", err)
			}
			if !bytes.Equal(lib, b) {
				t.Errorf("msgpack.Marshal differs from Marshal:\n%x\n%x", lib, b)
			}

			var got schema.Event
			if err := schema.Unmarshal(b, &got); err != nil {
				t.Fatalf("Unmarshal: %v", err)
			}
			if !got.Equal(tc.ev) {
				t.Errorf("Unmarshal:\n got %+v\nwant %+v", got, *tc.ev)
			}
			again, err := schema.Marshal(&got)
			if err != nil || !bytes.Equal(again, b) {
				t.Errorf("re-encoding differs (err %v):\n%x\n%x", err, again, b)
			}

			var viaLib schema.Event
			if err := msgpack.Unmarshal(b, &viaLib); err != nil {
				t.Fatalf("msgpack.Unmarshal: %v", err)
			}
			if !viaLib.Equal(tc.ev) {
				t.Errorf("msgpack.Unmarshal:\n got %+v\nwant %+v", viaLib, *tc.ev)
			}
		})
	}
}

// TestMsgpackKinds checks that each kind survives with its kind and its
// exact content (Equal compares float bits, so a NaN must keep its payload).
func TestMsgpackKinds(t *testing.T) {
	want := msgpKindsEvent()
	b, err := schema.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	var got schema.Event
	if err := schema.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Fields) != len(want.Fields) {
		t.Fatalf("got %d fields, want %d", len(got.Fields), len(want.Fields))
	}
	for i, f := range want.Fields {
		t.Run(f.Key, func(t *testing.T) {
			g := got.Fields[i]
			if g.Key != f.Key || g.Value.Kind() != f.Value.Kind() || !g.Value.Equal(f.Value) {
				t.Errorf("got %s=%#v (%s), want %s=%#v (%s)", g.Key, g.Value, g.Value.Kind(), f.Key, f.Value, f.Value.Kind())
			}
		})
	}
	if v, _ := got.Get("ipv6Zone"); v.IP().Zone() != "eth0" {
		t.Errorf("zone = %q, want eth0", v.IP().Zone())
	}
	if v, _ := got.Get("floatNaN"); math.Float64bits(v.Float()) != 0x7ff8_0000_0000_0001 {
		t.Errorf("NaN bits = %x", math.Float64bits(v.Float()))
	}
}

// TestMsgpackIntegerFamilies pins the encoding of ints and uints, which must
// stay apart on the wire.
func TestMsgpackIntegerFamilies(t *testing.T) {
	tests := []struct {
		name string
		v    schema.Value
		want string // hex of the value's encoding
	}{
		{"int 0", schema.Int(0), "00"},
		{"int 127", schema.Int(127), "7f"},
		{"int -32", schema.Int(-32), "e0"},
		{"int -33", schema.Int(-33), "d0df"},
		{"int 128", schema.Int(128), "d10080"},
		{"int -32769", schema.Int(-32769), "d2ffff7fff"},
		{"int max", schema.Int(math.MaxInt64), "d37fffffffffffffff"},
		{"uint 0", schema.Uint(0), "cc00"},
		{"uint 256", schema.Uint(256), "cd0100"},
		{"uint 1<<32", schema.Uint(1 << 32), "cf0000000100000000"},
		{"float 1", schema.Float(1), "cb3ff0000000000000"},
		{"duration 1s", schema.Duration(time.Second), "d701000000003b9aca00"},
		{"ipv4", schema.IP(netip.MustParseAddr("1.2.3.4")), "d60201020304"},
		{"time epoch", schema.Time(time.Unix(0, 0)), "d6ff00000000"},
		{"none", schema.Value{}, "c0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := &schema.Event{Fields: []schema.Field{{Key: "k", Value: tc.v}}}
			b, err := schema.Marshal(e)
			if err != nil {
				t.Fatal(err)
			}
			// The envelope of e is 98 01 a0 a0 c0 00 a0 a0 81 a1 6b.
			if got := hex.EncodeToString(b[11:]); got != tc.want {
				t.Errorf("encoded as %s, want %s", got, tc.want)
			}
		})
	}
}

// Ext types of the compatibility test, decoded raw by the msgpack library.
type (
	msgpDurationExt []byte
	msgpIPExt       []byte
	msgpEventExt    []byte
)

func (x *msgpDurationExt) MarshalMsgpack() ([]byte, error) { return *x, nil }
func (x *msgpDurationExt) UnmarshalMsgpack(b []byte) error {
	*x = bytes.Clone(b)
	return nil
}
func (x *msgpIPExt) MarshalMsgpack() ([]byte, error) { return *x, nil }
func (x *msgpIPExt) UnmarshalMsgpack(b []byte) error {
	*x = bytes.Clone(b)
	return nil
}
func (x *msgpEventExt) MarshalMsgpack() ([]byte, error) { return *x, nil }
func (x *msgpEventExt) UnmarshalMsgpack(b []byte) error {
	*x = bytes.Clone(b)
	return nil
}

// TestMsgpackGenericCompat decodes the wire format with a generic msgpack
// reader (the library into interface{}), as another language would.
func TestMsgpackGenericCompat(t *testing.T) {
	msgpack.RegisterExt(1, (*msgpDurationExt)(nil))
	msgpack.RegisterExt(2, (*msgpIPExt)(nil))
	msgpack.RegisterExt(3, (*msgpEventExt)(nil))
	t.Cleanup(func() {
		msgpack.UnregisterExt(1)
		msgpack.UnregisterExt(2)
		msgpack.UnregisterExt(3)
	})

	ev := msgpAuthEvent()
	ev.Fields = append(ev.Fields,
		schema.Field{Key: "delta", Value: schema.Int(-5)},
		schema.Field{Key: "causedBy", Value: schema.Nested(msgpNestedEvent())},
	)
	var generic any
	if err := msgpack.Unmarshal(ev.AppendMsgpack(nil), &generic); err != nil {
		t.Fatalf("msgpack.Unmarshal into interface{}: %v", err)
	}
	arr, ok := generic.([]any)
	if !ok || len(arr) != 8 {
		t.Fatalf("got %T %v, want an array of 8", generic, generic)
	}
	asInt := func(v any) int64 {
		rv := reflect.ValueOf(v)
		switch rv.Kind() {
		case reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
			return rv.Int()
		case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
			return int64(rv.Uint())
		}
		t.Errorf("%T %v is not an integer", v, v)
		return -1
	}
	if v := asInt(arr[0]); v != 1 {
		t.Errorf("version = %d", v)
	}
	if arr[1] != ev.ID || arr[2] != ev.Type || arr[5] != ev.Host || arr[6] != ev.Server {
		t.Errorf("strings = %v %v %v %v", arr[1], arr[2], arr[5], arr[6])
	}
	if tm, ok := arr[3].(time.Time); !ok || !tm.Equal(ev.Time) {
		t.Errorf("time = %T %v, want %v", arr[3], arr[3], ev.Time)
	}
	if v := asInt(arr[4]); v != int64(catalog.LevelInfo) {
		t.Errorf("level = %d", v)
	}
	fields, ok := arr[7].(map[string]any)
	if !ok || len(fields) != len(ev.Fields) {
		t.Fatalf("fields = %T with %d entries, want a map of %d", arr[7], len(fields), len(ev.Fields))
	}
	if fields["accountName"] != "alice@example.org" || fields["listenerId"] != "smtp" {
		t.Errorf("strings: %v %v", fields["accountName"], fields["listenerId"])
	}
	if asInt(fields["accountId"]) != 42 || asInt(fields["remotePort"]) != 54321 || asInt(fields["delta"]) != -5 {
		t.Errorf("integers: %v %v %v", fields["accountId"], fields["remotePort"], fields["delta"])
	}
	if d, ok := fields["elapsed"].(*msgpDurationExt); !ok || len(*d) != 8 ||
		time.Duration(int64(uint64((*d)[0])<<56|uint64((*d)[1])<<48|uint64((*d)[2])<<40|uint64((*d)[3])<<32|
			uint64((*d)[4])<<24|uint64((*d)[5])<<16|uint64((*d)[6])<<8|uint64((*d)[7]))) != 3210*time.Microsecond {
		t.Errorf("elapsed = %T %v", fields["elapsed"], fields["elapsed"])
	}
	if ip, ok := fields["remoteIp"].(*msgpIPExt); !ok || !bytes.Equal(*ip, []byte{192, 0, 2, 17}) {
		t.Errorf("remoteIp = %T %v", fields["remoteIp"], fields["remoteIp"])
	}
	nested, ok := fields["causedBy"].(*msgpEventExt)
	if !ok {
		t.Fatalf("causedBy = %T", fields["causedBy"])
	}
	var inner schema.Event
	if err := schema.Unmarshal(*nested, &inner); err != nil || !inner.Equal(msgpNestedEvent()) {
		t.Errorf("causedBy payload decodes to %+v, %v", inner, err)
	}
}

// msgpGoldenHex renders b as lines of 32 hex-encoded bytes.
func msgpGoldenHex(b []byte) []byte {
	var out []byte
	for len(b) > 0 {
		n := min(32, len(b))
		out = hex.AppendEncode(out, b[:n])
		out = append(out, '\n')
		b = b[n:]
	}
	return out
}

func TestMsgpackGolden(t *testing.T) {
	for _, tc := range msgpTestEvents() {
		switch tc.name {
		case "auth-success", "kinds", "nested", "empty":
		default:
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join("testdata", "msgpack", tc.name+".golden")
			b, err := schema.Marshal(tc.ev)
			if err != nil {
				t.Fatal(err)
			}
			if *msgpUpdate {
				if err := os.WriteFile(path, msgpGoldenHex(b), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			text, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("read golden (run with -update-msgpack to create it): %v", err)
			}
			want, err := hex.DecodeString(strings.Join(strings.Fields(string(text)), ""))
			if err != nil {
				t.Fatalf("golden %s: %v", path, err)
			}
			if !bytes.Equal(b, want) {
				t.Errorf("encoding differs from %s:\n got %x\nwant %x", path, b, want)
			}
			var got schema.Event
			if err := schema.Unmarshal(want, &got); err != nil || !got.Equal(tc.ev) {
				t.Errorf("golden decodes to %+v, %v", got, err)
			}
		})
	}
}

func TestMsgpackTruncated(t *testing.T) {
	for _, tc := range msgpTestEvents() {
		t.Run(tc.name, func(t *testing.T) {
			b, err := schema.Marshal(tc.ev)
			if err != nil {
				t.Fatal(err)
			}
			for n := range len(b) {
				var e schema.Event
				err := schema.Unmarshal(b[:n], &e)
				if !errors.Is(err, schema.ErrMalformed) {
					t.Fatalf("Unmarshal of %d of %d bytes: err = %v, want ErrMalformed", n, len(b), err)
				}
				if err := msgpack.Unmarshal(b[:n], &e); err == nil {
					t.Fatalf("msgpack.Unmarshal of %d of %d bytes: no error", n, len(b))
				}
			}
		})
	}
}

// msgpEnv builds an envelope with id "i", type "t", zero time, level info,
// and the given encoded fields map.
func msgpEnv(fields ...byte) []byte {
	return append([]byte{0x98, 0x01, 0xa1, 'i', 0xa1, 't', 0xc0, 0x02, 0xa0, 0xa0}, fields...)
}

// msgpField builds a map of one field whose key is k and whose encoded
// value is v.
func msgpField(k string, v ...byte) []byte {
	return append(append([]byte{0x81, 0xa0 | byte(len(k))}, k...), v...)
}

// msgpExt3 wraps payload into an ext of type 3 (ext 32 form).
func msgpExt3(payload []byte) []byte {
	n := len(payload)
	return append([]byte{0xc9, byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n), 3}, payload...)
}

func TestMsgpackMalformed(t *testing.T) {
	valid := msgpAuthEvent().AppendMsgpack(nil)
	deepEvents, err := schema.Marshal(msgpDeepEvents(schema.MsgpackMaxDepth))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		in   []byte
		want string // in the error message
	}{
		{"empty", nil, "decode event: malformed msgpack event: unexpected end of data"},
		{"nil", []byte{0xc0}, "got nil, want an array"},
		{"array of 7", []byte{0x97, 0x01}, "array of 7 elements, want 8"},
		{"version 2", []byte{0x98, 0x02}, "version 2, want 1"},
		{"negative version", []byte{0x98, 0xd0, 0xff}, "decode event version"},
		{"id not a string", []byte{0x98, 0x01, 0x01}, "decode event id: malformed msgpack event: got an integer, want a string"},
		{"time of wrong ext", []byte{0x98, 0x01, 0xa0, 0xa0, 0xd6, 0x01, 0, 0, 0, 0}, "want a timestamp"},
		{"time nanoseconds too big", []byte{0x98, 0x01, 0xa0, 0xa0, 0xd7, 0xff, 0xee, 0x6b, 0x28, 0x00, 0, 0, 0, 0}, "timestamp with 1000000000 nanoseconds"},
		{"time of 5 bytes", []byte{0x98, 0x01, 0xa0, 0xa0, 0xc7, 5, 0xff, 0, 0, 0, 0, 0}, "timestamp of 5 bytes"},
		{"level 6", []byte{0x98, 0x01, 0xa0, 0xa0, 0xc0, 0x06}, "level 6 out of range"},
		{"level negative", []byte{0x98, 0x01, 0xa0, 0xa0, 0xc0, 0xff}, "decode event level"},
		{"fields not a map", msgpEnv(0x90), "decode event fields: malformed msgpack event: got an array, want a map"},
		{"too many fields", msgpEnv(0xde, 0x10, 0x01), "4097 fields, more than 4096"},
		{"huge field count", msgpEnv(0xdf, 0xff, 0xff, 0xff, 0xff), "4294967295 fields, more than 4096"},
		{"fields beyond data", msgpEnv(0x8f, 0xa0), "decode event fields: malformed msgpack event: unexpected end of data"},
		{"key not a string", msgpEnv(0x81, 0x01, 0x01), "decode event field 0 key"},
		{"map value", msgpEnv(msgpField("m", 0x80)...), `field 0 ("m"): malformed msgpack event: got a map`},
		{"invalid code", msgpEnv(msgpField("x", 0xc1)...), "invalid code 0xc1"},
		{"unknown ext", msgpEnv(msgpField("x", 0xd4, 9, 0)...), "unknown ext type 9"},
		{"IP of 5 bytes", msgpEnv(msgpField("remoteIp", 0xc7, 5, 2, 1, 2, 3, 4, 5)...), `decode event field 0 ("remoteIp"): malformed msgpack event: IP address of 5 bytes`},
		{"duration of 4 bytes", msgpEnv(msgpField("elapsed", 0xd6, 1, 0, 0, 0, 0)...), "duration of 4 bytes"},
		{"time beyond int64 ns", msgpEnv(msgpField("t", 0xc7, 12, 0xff, 0, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0, 0)...), "out of the range of int64 nanoseconds"},
		{"list beyond data", msgpEnv(msgpField("l", 0xdd, 0xff, 0xff, 0xff, 0xff)...), "unexpected end of data"},
		{"string beyond data", msgpEnv(msgpField("s", 0xdb, 0xff, 0xff, 0xff, 0xff, 'a')...), "unexpected end of data"},
		{"bin beyond data", msgpEnv(msgpField("s", 0xc6, 0x7f, 0xff, 0xff, 0xff)...), "unexpected end of data"},
		{"ext beyond data", msgpEnv(msgpField("s", 0xc9, 0x7f, 0xff, 0xff, 0xff, 3)...), "unexpected end of data"},
		{"list element", msgpEnv(msgpField("l", 0x92, 0x01, 0xc1)...), "list element 1: malformed msgpack event: got invalid code 0xc1"},
		{"lists 33 deep", msgpEnv(msgpField("l", append(bytes.Repeat([]byte{0x91}, 32), 0x90)...)...), "deeper than 32"},
		{"events 33 deep", msgpEnv(msgpField("causedBy", msgpExt3(deepEvents)...)...), "deeper than 32"},
		{"nested garbage", msgpEnv(msgpField("causedBy", msgpExt3([]byte{0xc0})...)...), `field 0 ("causedBy"): nested event: decode event`},
		{"nested trailing byte", msgpEnv(msgpField("causedBy", msgpExt3(append(msgpEnv(0x80), 0))...)...), "nested event: malformed msgpack event: 1 trailing bytes"},
		{"trailing byte", append(bytes.Clone(valid), 0), "1 trailing bytes"},
		{"two events", append(bytes.Clone(valid), valid...), "trailing bytes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := msgpAuthEvent() // decoding into a used event must reset it
			err := schema.Unmarshal(tc.in, e)
			if !errors.Is(err, schema.ErrMalformed) {
				t.Fatalf("err = %v, want ErrMalformed", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %q, want it to contain %q", err, tc.want)
			}
			if !e.Equal(&schema.Event{}) {
				t.Errorf("event after error = %+v, want it reset", *e)
			}
		})
	}
}

func TestMsgpackMarshalErrors(t *testing.T) {
	cyclic := &schema.Event{ID: "loop"}
	cyclic.Fields = []schema.Field{{Key: "causedBy", Value: schema.Nested(cyclic)}}
	many := &schema.Event{Fields: make([]schema.Field, schema.MsgpackMaxFields+1)}
	tests := []struct {
		name string
		ev   *schema.Event
		want string
	}{
		{"nil", nil, "nil event"},
		{"lists 33 deep", msgpDeepLists(schema.MsgpackMaxDepth + 1), "deeper than 32"},
		{"events 33 deep", msgpDeepEvents(schema.MsgpackMaxDepth + 1), "deeper than 32"},
		{"cycle", cyclic, "deeper than 32"},
		{"too many fields", many, "4097 fields, more than 4096"},
		{"invalid level", &schema.Event{Level: catalog.LevelDisable + 1}, "level 6 out of range"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := schema.Marshal(tc.ev); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Marshal: err = %v, want %q", err, tc.want)
			}
			if tc.ev == nil {
				return
			}
			if _, err := msgpack.Marshal(tc.ev); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("msgpack.Marshal: err = %v, want %q", err, tc.want)
			}
			// AppendMsgpack still terminates and writes something.
			if b := tc.ev.AppendMsgpack(nil); len(b) == 0 {
				t.Error("AppendMsgpack wrote nothing")
			}
		})
	}
}

func TestMsgpackPeek(t *testing.T) {
	for _, tc := range msgpTestEvents() {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.ev.AppendMsgpack(nil)
			id, typ, level, err := schema.Peek(b)
			if err != nil || id != tc.ev.ID || typ != tc.ev.Type || level != tc.ev.Level {
				t.Errorf("Peek = %q %q %v %v, want %q %q %v", id, typ, level, err, tc.ev.ID, tc.ev.Type, tc.ev.Level)
			}
		})
	}
	t.Run("fields not checked", func(t *testing.T) {
		id, typ, level, err := schema.Peek(msgpEnv(0xc1))
		if err != nil || id != "i" || typ != "t" || level != catalog.LevelInfo {
			t.Errorf("Peek = %q %q %v %v", id, typ, level, err)
		}
	})
	bad := []struct {
		name string
		in   []byte
	}{
		{"empty", nil},
		{"not an array", []byte{0x01}},
		{"version 9", []byte{0x98, 0x09}},
		{"truncated id", []byte{0x98, 0x01, 0xa5, 'a'}},
		{"bad time", []byte{0x98, 0x01, 0xa0, 0xa0, 0x01}},
		{"bad level", []byte{0x98, 0x01, 0xa0, 0xa0, 0xc0, 0x09}},
		{"no level", []byte{0x98, 0x01, 0xa0, 0xa0, 0xc0}},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, _, err := schema.Peek(tc.in); !errors.Is(err, schema.ErrMalformed) {
				t.Errorf("err = %v, want ErrMalformed", err)
			}
		})
	}
	t.Run("allocs", func(t *testing.T) {
		b := msgpAuthEvent().AppendMsgpack(nil)
		if n := testing.AllocsPerRun(100, func() { _, _, _, _ = schema.Peek(b) }); n != 0 {
			t.Errorf("Peek allocates %v times, want 0", n)
		}
	})
}

func TestMsgpackUnmarshalAllocs(t *testing.T) {
	b := msgpAuthEvent().AppendMsgpack(nil)
	var e schema.Event
	var err error
	n := testing.AllocsPerRun(100, func() { err = schema.Unmarshal(b, &e) })
	if err != nil {
		t.Fatal(err)
	}
	if n > 2 {
		t.Errorf("Unmarshal into a reused Event allocates %v times, want <= 2", n)
	}
	if !e.Equal(msgpAuthEvent()) {
		t.Errorf("decoded %+v", e)
	}
}

func TestMsgpackUnmarshalReuse(t *testing.T) {
	t.Run("shorter event clears the old tail", func(t *testing.T) {
		var e schema.Event
		if err := schema.Unmarshal(msgpKindsEvent().AppendMsgpack(nil), &e); err != nil {
			t.Fatal(err)
		}
		if err := schema.Unmarshal(msgpAuthEvent().AppendMsgpack(nil), &e); err != nil {
			t.Fatal(err)
		}
		if !e.Equal(msgpAuthEvent()) {
			t.Errorf("decoded %+v", e)
		}
		for i, f := range e.Fields[len(e.Fields):cap(e.Fields)] {
			if f.Key != "" || f.Value.Kind() != schema.KindNone {
				t.Fatalf("spare field %d = %s=%#v, want it cleared", i, f.Key, f.Value)
			}
		}
	})
	t.Run("input may change after the call", func(t *testing.T) {
		b := msgpAuthEvent().AppendMsgpack(nil)
		var e schema.Event
		if err := schema.Unmarshal(b, &e); err != nil {
			t.Fatal(err)
		}
		for i := range b {
			b[i] = 'X'
		}
		if !e.Equal(msgpAuthEvent()) {
			t.Errorf("event changed with its input: %+v", e)
		}
	})
	t.Run("nil event", func(t *testing.T) {
		if err := schema.Unmarshal(msgpAuthEvent().AppendMsgpack(nil), nil); err == nil {
			t.Error("no error")
		}
	})
}

// TestMsgpackNilPointer: through the msgpack library a nil *Event is a
// msgpack nil, and a msgpack nil decodes to a nil *Event.
func TestMsgpackNilPointer(t *testing.T) {
	var nilEvent *schema.Event
	b, err := msgpack.Marshal(nilEvent)
	if err != nil || !bytes.Equal(b, []byte{0xc0}) {
		t.Fatalf("msgpack.Marshal(nil *Event) = %x, %v; want c0", b, err)
	}
	if got := nilEvent.AppendMsgpack(nil); !bytes.Equal(got, []byte{0xc0}) {
		t.Errorf("AppendMsgpack on nil = %x, want c0", got)
	}
	p := msgpAuthEvent()
	if err := msgpack.Unmarshal(b, &p); err != nil || p != nil {
		t.Errorf("msgpack.Unmarshal(c0) = %+v, %v; want nil", p, err)
	}
	if err := schema.Unmarshal(b, &schema.Event{}); !errors.Is(err, schema.ErrMalformed) {
		t.Errorf("Unmarshal(c0): err = %v, want ErrMalformed", err)
	}
}

// TestMsgpackStream reads events one after another from a msgpack.Decoder:
// DecodeMsgpack must consume exactly one value.
func TestMsgpackStream(t *testing.T) {
	evs := msgpTestEvents()
	var buf bytes.Buffer
	for _, tc := range evs {
		buf.Write(tc.ev.AppendMsgpack(nil))
	}
	dec := msgpack.NewDecoder(&buf)
	for _, tc := range evs {
		var e schema.Event
		if err := dec.Decode(&e); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if !e.Equal(tc.ev) {
			t.Errorf("%s: got %+v", tc.name, e)
		}
	}
	var e schema.Event
	if err := dec.Decode(&e); !errors.Is(err, io.EOF) {
		t.Errorf("after the last event: err = %v, want io.EOF", err)
	}
}

// TestMsgpackDecoderHostile feeds the msgpack.Decoder path inputs that
// declare huge lengths or nest very deeply: they must fail fast.
func TestMsgpackDecoderHostile(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
	}{
		{"huge string", msgpEnv(msgpField("s", 0xdb, 0xff, 0xff, 0xff, 0xff, 'a')...)},
		{"huge array", msgpEnv(msgpField("l", 0xdd, 0xff, 0xff, 0xff, 0xff)...)},
		{"huge maps", bytes.Repeat([]byte{0xdf, 0xff, 0xff, 0xff, 0xff}, 1000)},
		{"deep arrays", append(bytes.Repeat([]byte{0x91}, 1_000_000), 0xc0)},
		{"deep lists", msgpEnv(msgpField("l", append(bytes.Repeat([]byte{0x91}, 1_000_000), 0xc0)...)...)},
		{"invalid code", msgpEnv(msgpField("x", 0xc1)...)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var e schema.Event
			err := msgpack.Unmarshal(tc.in, &e)
			if !errors.Is(err, schema.ErrMalformed) {
				t.Errorf("err = %v, want ErrMalformed", err)
			}
		})
	}
}
