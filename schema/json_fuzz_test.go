package schema

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// FuzzStalwartJSON checks that no input makes the Stalwart adapter panic,
// and that an event it decodes is written back as JSON that decodes to an
// Equal event and is written again byte for byte; ToStalwart agrees with
// AppendStalwart. (Batches, {"events":[...]}, are walked by the ingest
// format: see FuzzSplit in pipeline/ingest/stalwart.)
func FuzzStalwartJSON(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		var ev Event
		if err := FromStalwart(data, &ev); err != nil {
			return
		}
		jsonFuzzRoundTrip(t, &ev, FromStalwart, AppendStalwart, ToStalwart)
	})
}

// FuzzDovecotJSON is FuzzStalwartJSON for the Dovecot adapter.
func FuzzDovecotJSON(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		var ev Event
		if err := FromDovecot(data, &ev); err != nil {
			return
		}
		jsonFuzzRoundTrip(t, &ev, FromDovecot, AppendDovecot, ToDovecot)
	})
}

func jsonFuzzRoundTrip(t *testing.T, ev *Event, decode func([]byte, *Event) error,
	appendTo func([]byte, *Event) []byte, encode func(*Event) ([]byte, error)) {
	t.Helper()
	out := appendTo(nil, ev)
	enc, err := encode(ev)
	if err != nil || !bytes.Equal(enc, out) {
		t.Fatalf("encode = %q, %v; append = %q", enc, err, out)
	}
	var back Event
	if err := decode(out, &back); err != nil {
		t.Fatalf("decode %q: %v", out, err)
	}
	if !back.Equal(ev) {
		t.Fatalf("round trip via %q:\n%s\nwant:\n%s", out, jsonDump(&back), jsonDump(ev))
	}
	if again := appendTo(nil, &back); !bytes.Equal(again, out) {
		t.Fatalf("written again as %q, want %q", again, out)
	}
	if _, err := Marshal(ev); err != nil {
		t.Fatalf("decoded event cannot be marshalled: %v", err)
	}
}

// jsonFuzzSeeds returns the seed corpus of a fuzz target: every good
// testdata input and a few bad ones.
func jsonFuzzSeeds(t *testing.T, format string) map[string][]byte {
	seeds := map[string][]byte{}
	for _, file := range jsonTestdata(t, format) {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		seeds[strings.TrimSuffix(filepath.Base(file), ".json")] = data
	}
	if format == "stalwart" {
		seeds["bad-batch"] = []byte(`{"events":[{"id":"1","createdAt":"2025-11-27T14:59:28Z","type":"a.b","data":{}},{"id":"2"},5]}`)
		seeds["bad-type"] = []byte(`{"id":"1","createdAt":"2025-11-27T14:59:28Z","type":"auth.>","data":{}}`)
		seeds["bad-trailing"] = []byte(`{"id":"1","createdAt":"2025-11-27T14:59:28Z","type":"a.b"} {}`)
	} else {
		seeds["bad-mixed-times"] = []byte(`{"event":"a_b","start_time":1763726396.588053,"end_time":"2026-11-21T12:19:56.588053Z"}`)
		seeds["ambiguous-categories"] = []byte(`{"event":"a_b","fields":{"categories":["x"]}}`)
		seeds["minimal"] = []byte(`{"event":"a_b"}`)
	}
	return seeds
}

// TestJSONFuzzCorpus checks that the committed seed corpus of the fuzz
// targets is the current one (rewrite it with -update).
func TestJSONFuzzCorpus(t *testing.T) {
	targets := map[string]string{"FuzzStalwartJSON": "stalwart", "FuzzDovecotJSON": "dovecot"}
	for target, format := range targets {
		for name, data := range jsonFuzzSeeds(t, format) {
			t.Run(target+"/"+name, func(t *testing.T) {
				file := filepath.Join("testdata", "fuzz", target, name)
				want := []byte("go test fuzz v1\n[]byte(" + strconv.Quote(string(data)) + ")\n")
				if *jsonUpdate {
					if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
						t.Fatal(err)
					}
					if err := os.WriteFile(file, want, 0o644); err != nil {
						t.Fatal(err)
					}
				}
				got, err := os.ReadFile(file)
				if err != nil {
					t.Fatalf("%v (run go test ./schema -run TestJSONFuzzCorpus -update)", err)
				}
				if !bytes.Equal(got, want) {
					t.Errorf("%s is stale (run go test ./schema -run TestJSONFuzzCorpus -update)", file)
				}
			})
		}
	}
}
