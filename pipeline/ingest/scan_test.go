package ingest

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailtel/mailtel/pipeline/ingest/format"
	"github.com/mailtel/mailtel/pipeline/ingest/internal/jsonscan"
	"github.com/mailtel/mailtel/schema"
)

func TestCheckRaw(t *testing.T) {
	l := Limits{MaxFields: 4, MaxDepth: 2, MaxString: 10}
	for _, tc := range []struct{ raw, err string }{
		{`{"id":"1","data":{"a":"0123456789","b":[1,2,3,4],"c":{"d":{"e":1}}}}`, ""},
		{`{"data":{"a":"0123456789x"}}`, `field "a": value of 11 bytes, more than the limit of 10`},
		{`{"data":{"a":["0123456789x"]}}`, `value of 11 bytes, more than the limit of 10`},
		{`{"data":{"0123456789x":1}}`, `key of 11 bytes, more than the limit of 10`},
		{`{"data":{"a":"\u00e9\u00e9\u00e9\u00e9\u00e9x"}}`, `value of 11 bytes`},          // 2 bytes each
		{`{"data":{"a":"\ud83d\ude00\ud83d\ude00\ud83d"}}`, `value of 11 bytes`},           // 4 + 4 + 3 (lone surrogate)
		{"{\"data\":{\"a\":\"\xff\xff\xff\xff\"}}", `value of 12 bytes`},                   // invalid UTF-8: U+FFFD
		{`{"data":{"a":"\n\n\n\n\n\n\n\n\n\n"}}`, ``},                                      // 10 bytes
		{`{"data":{"a":1,"b":2,"c":3,"d":4,"e":5}}`, `5 fields, more than the limit of 4`}, // counted at the end
		{`{"data":{"a":[1,2,[],{},"5"]}}`, `list of 5 values, more than the limit of 4`},
		{`{"data":{"a":[[[[1]]]]}}`, ``},                                           // depth 6 = 2 + 2 x 2
		{`{"data":{"a":[[[[[1]]]]]}}`, `nested deeper`},                            // 7
		{`{"id":"1","type":"a.b","createdAt":"x","data":{},"more":1,"and":2}`, ``}, // the envelope is not counted
	} {
		_, _, err := checkRaw([]byte(tc.raw), l)
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%s: %v", tc.raw, err)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%s: err %v, want %q", tc.raw, err, tc.err)
		}
	}
	// 5 values (the object, the string, the list and its 2 numbers), the
	// keys, and the invalid UTF-8 string decoded to 6 bytes, through a
	// buffer of its own: 4 bytes more than it came.
	decoded, grown, err := checkRaw([]byte("{\"a\":\"\xff\xff\",\"b\":[1,2]}"), DefaultLimits)
	if err != nil || grown != 4 || decoded != 5*decodedValue+2+2*6 {
		t.Errorf("decoded %d, grown %d, err %v", decoded, grown, err)
	}
}

func TestCheckRawAllocatesNothing(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "..", "schema", "testdata", "stalwart", "arrays.json"))
	if err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() { checkRaw(raw, DefaultLimits) }); n != 0 {
		t.Errorf("checkRaw allocates %v times per event", n)
	}
}

// FuzzCheckRaw: checkRaw measures strings exactly as encoding/json decodes
// them, and refuses only events the decoder of every registered format or
// Limits.Check refuse too.
func FuzzCheckRaw(f *testing.F) {
	for _, dir := range []string{"stalwart", "dovecot"} {
		files, _ := filepath.Glob(filepath.Join("..", "..", "schema", "testdata", dir, "*.json"))
		for _, file := range files {
			data, err := os.ReadFile(file)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
		}
	}
	f.Add([]byte("{\"data\":{\"a\":\"\\ud800\\u0041\xff\xc3\",\"b\":[[1,2,3,4,5,6,7,8,9]]}}"))
	l := Limits{MaxFields: 8, MaxDepth: 2, MaxString: 16}
	f.Fuzz(func(t *testing.T, raw []byte) {
		if !json.Valid(raw) {
			checkRaw(raw, l) // must not panic
			return
		}
		s := jsonscan.Scanner{Data: raw}
		for s.Pos < len(raw) {
			if raw[s.Pos] != '"' {
				s.Pos++
				continue
			}
			start := s.Pos
			str, _ := s.Str()
			var want string
			if err := json.Unmarshal(raw[start:s.Pos], &want); err != nil {
				t.Fatalf("%q: %v", raw[start:s.Pos], err)
			}
			if got := decodedLen(str); got != len(want) {
				t.Fatalf("decodedLen(%q) = %d, want %d", str, got, len(want))
			}
		}
		if _, _, err := checkRaw(raw, l); err != nil {
			for _, f := range format.All() {
				var ev schema.Event
				if f.Decode(raw, &ev) == nil && l.Check(&ev) == nil {
					t.Fatalf("checkRaw refused a %s event the limits take: %v", f.Name, err)
				}
			}
		}
	})
}
