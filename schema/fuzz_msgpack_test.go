package schema_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/mailtel/mailtel/schema"
)

// FuzzDecodeMsgpack checks that decoding any bytes never panics, that every
// error wraps ErrMalformed, and that a decoded event agrees with Peek and
// with the msgpack.Decoder path, re-encodes, and decodes again to an equal
// event whose encoding is stable.
func FuzzDecodeMsgpack(f *testing.F) {
	for _, tc := range msgpTestEvents() {
		f.Add(tc.ev.AppendMsgpack(nil))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var e schema.Event
		err := schema.Unmarshal(data, &e)
		id, typ, level, perr := schema.Peek(data)
		var viaLib schema.Event
		libErr := msgpack.Unmarshal(data, &viaLib)
		if err != nil {
			if !errors.Is(err, schema.ErrMalformed) {
				t.Fatalf("Unmarshal error does not wrap ErrMalformed: %v", err)
			}
			return
		}
		if perr != nil || id != e.ID || typ != e.Type || level != e.Level {
			t.Fatalf("Peek = %q %q %v %v, Unmarshal = %q %q %v", id, typ, level, perr, e.ID, e.Type, e.Level)
		}
		if libErr != nil || !viaLib.Equal(&e) {
			t.Fatalf("msgpack.Unmarshal = %+v, %v; Unmarshal = %+v", viaLib, libErr, e)
		}
		b, err := schema.Marshal(&e)
		if err != nil {
			t.Fatalf("re-encode %+v: %v", e, err)
		}
		var again schema.Event
		if err := schema.Unmarshal(b, &again); err != nil {
			t.Fatalf("decode re-encoding %x: %v", b, err)
		}
		if !again.Equal(&e) {
			t.Fatalf("re-decoded\n %+v\nwant\n %+v", again, e)
		}
		if b2 := again.AppendMsgpack(nil); !bytes.Equal(b2, b) {
			t.Fatalf("encoding not stable:\n%x\n%x", b2, b)
		}
	})
}

// msgpFuzzSeeds are the committed seeds of FuzzDecodeMsgpack: valid events
// and the shapes of malformed input the decoder must reject.
func msgpFuzzSeeds(t *testing.T) map[string][]byte {
	seeds := map[string][]byte{}
	for _, tc := range msgpTestEvents() {
		if tc.name == "lists-32-deep" || tc.name == "events-32-deep" || tc.name == "many-fields" {
			continue // covered by f.Add; keep the committed corpus small
		}
		seeds["valid-"+tc.name] = tc.ev.AppendMsgpack(nil)
	}
	auth := msgpAuthEvent().AppendMsgpack(nil)
	deep, err := schema.Marshal(msgpDeepEvents(schema.MsgpackMaxDepth))
	if err != nil {
		t.Fatal(err)
	}
	seeds["truncated-auth"] = auth[:len(auth)/2]
	seeds["trailing-byte"] = append(bytes.Clone(auth), 0)
	seeds["version-2"] = append([]byte{0x98, 0x02}, auth[2:]...)
	seeds["level-6"] = []byte{0x98, 0x01, 0xa0, 0xa0, 0xc0, 0x06, 0xa0, 0xa0, 0x80}
	seeds["huge-field-count"] = msgpEnv(0xdf, 0xff, 0xff, 0xff, 0xff)
	seeds["huge-list"] = msgpEnv(msgpField("l", 0xdd, 0xff, 0xff, 0xff, 0xff)...)
	seeds["map-value"] = msgpEnv(msgpField("m", 0x81, 0xa1, 'k', 0x01)...)
	seeds["unknown-ext"] = msgpEnv(msgpField("x", 0xd4, 9, 0)...)
	seeds["ip-5-bytes"] = msgpEnv(msgpField("remoteIp", 0xc7, 5, 2, 1, 2, 3, 4, 5)...)
	seeds["time-beyond-int64-ns"] = msgpEnv(msgpField("t", 0xc7, 12, 0xff, 0, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0, 0)...)
	seeds["lists-33-deep"] = msgpEnv(msgpField("l", append(bytes.Repeat([]byte{0x91}, 32), 0x90)...)...)
	seeds["events-33-deep"] = msgpEnv(msgpField("causedBy", msgpExt3(deep)...)...)
	seeds["nested-trailing-byte"] = msgpEnv(msgpField("causedBy", msgpExt3(append(msgpEnv(0x80), 0))...)...)
	seeds["float32-and-int-forms"] = msgpEnv(0x83, 0xa1, 'f', 0xca, 0x3f, 0xc0, 0, 0,
		0xa1, 'i', 0xd3, 0, 0, 0, 0, 0, 0, 0, 1,
		0xa1, 's', 0xdb, 0, 0, 0, 1, 'x')
	return seeds
}

// msgpCorpusFile renders data as a `go test fuzz v1` corpus file.
func msgpCorpusFile(data []byte) []byte {
	return fmt.Appendf(nil, "go test fuzz v1\n[]byte(%q)\n", data)
}

// TestMsgpackFuzzCorpus checks that the committed seed corpus matches
// msgpFuzzSeeds; -update-msgpack rewrites it.
func TestMsgpackFuzzCorpus(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzDecodeMsgpack")
	for name, data := range msgpFuzzSeeds(t) {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(dir, name)
			want := msgpCorpusFile(data)
			if *msgpUpdate {
				if err := os.MkdirAll(dir, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, want, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("read seed (run with -update-msgpack to create it): %v", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s is stale; run with -update-msgpack", path)
			}
		})
	}
}
