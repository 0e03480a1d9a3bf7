package format_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/mailtel/mailtel/pipeline/ingest/format"
	"github.com/mailtel/mailtel/schema"
)

// The formats of this test binary, registered out of name order; "omega"
// is the fallback.
var testFormats = []format.Format{
	{Name: "omega", Doc: "the last", Fallback: true, Detect: keyDetect("omega"), Decode: decodeAs("omega")},
	{Name: "alpha", Doc: "the first", Detect: keyDetect("alpha"), Decode: decodeAs("alpha")},
	{Name: "mid-2", Doc: "in between", Detect: keyDetect("mid"), Decode: decodeAs("mid-2"), Split: format.SplitArray("items")},
}

func keyDetect(key string) func([]byte) bool {
	return func(line []byte) bool { return format.HasKey(line, key) }
}

func decodeAs(name string) func([]byte, *schema.Event) error {
	return func(_ []byte, ev *schema.Event) error {
		*ev = schema.Event{Server: name}
		return nil
	}
}

func init() {
	for _, f := range testFormats {
		format.Register(f)
	}
}

func TestRegistrySorted(t *testing.T) {
	if got := format.Names(); !slices.Equal(got, []string{"alpha", "mid-2", "omega"}) {
		t.Errorf("Names() = %q, want sorted", got)
	}
	all := format.All()
	if len(all) != 3 || all[0].Name != "alpha" || all[2].Name != "omega" || !all[2].Fallback || all[1].Split == nil {
		t.Fatalf("All() = %+v", all)
	}
	all[0].Name = "changed" // a copy
	if f, ok := format.Lookup("alpha"); !ok || f.Doc != "the first" {
		t.Errorf("Lookup(alpha) = %+v, %v", f, ok)
	}
	if _, ok := format.Lookup("nope"); ok {
		t.Error("Lookup(nope) found a format")
	}
}

func TestDetect(t *testing.T) {
	for _, tc := range []struct{ line, want string }{
		{`{"alpha":1}`, "alpha"},
		{`{"omega":1,"alpha":2}`, "alpha"}, // both say yes: the first by name
		{`{"mid":[]}`, "mid-2"},
		{`{"omega":1}`, "omega"},
		{`garbage`, "omega"},                 // the fallback
		{`{"xalpha":1,"alpha ":2}`, "omega"}, // not the key
		{`{ "alpha"  :1}`, "alpha"},
	} {
		f, ok := format.Detect([]byte(tc.line))
		if !ok || f.Name != tc.want {
			t.Errorf("Detect(%s) = %s, %v; want %s", tc.line, f.Name, ok, tc.want)
		}
	}
	line := []byte(`{"x":1,"y":{"alpha":2}}`)
	if n := testing.AllocsPerRun(100, func() { format.Detect(line) }); n != 0 {
		t.Errorf("Detect allocates %v times per line", n)
	}
}

func TestHasKey(t *testing.T) {
	for _, tc := range []struct {
		data, key string
		want      bool
	}{
		{`{"event":"x"}`, "event", true},
		{`{"event" :"x"}`, "event", true},
		{"{\"event\"\n\t:1}", "event", true},
		{`{"x":"event"}`, "event", false},
		{`{"events":1}`, "event", false},
		{`{"xevent":1}`, "event", false},
		{`{"a":{"event":1}}`, "event", true}, // anywhere
		{`{"event"`, "event", false},
		{`"event`, "event", false},
		{`{"event":1}`, "", false},
		{``, "event", false},
	} {
		if got := format.HasKey([]byte(tc.data), tc.key); got != tc.want {
			t.Errorf("HasKey(%s, %q) = %v, want %v", tc.data, tc.key, got, tc.want)
		}
	}
}

func TestRegisterRefuses(t *testing.T) {
	ok := format.Format{Name: "fine", Doc: "one line", Detect: keyDetect("x"), Decode: decodeAs("x")}
	for _, tc := range []struct {
		name   string
		change func(*format.Format)
		panic  string
	}{
		{"empty name", func(f *format.Format) { f.Name = "" }, "name must be"},
		{"upper case", func(f *format.Format) { f.Name = "Fine" }, "name must be"},
		{"slash", func(f *format.Format) { f.Name = "a/b" }, "name must be"},
		{"digit first", func(f *format.Format) { f.Name = "1a" }, "name must be"},
		{"too long", func(f *format.Format) { f.Name = strings.Repeat("a", format.MaxNameLen+1) }, "name must be"},
		{"no doc", func(f *format.Format) { f.Doc = "" }, "Doc must be one line"},
		{"two lines", func(f *format.Format) { f.Doc = "a\nb" }, "Doc must be one line"},
		{"no detect", func(f *format.Format) { f.Detect = nil }, "Detect and Decode are required"},
		{"no decode", func(f *format.Format) { f.Decode = nil }, "Detect and Decode are required"},
		{"twice", func(f *format.Format) { f.Name = "alpha" }, "registered twice"},
		{"second fallback", func(f *format.Format) { f.Fallback = true }, "omega is the fallback already"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := ok
			tc.change(&f)
			defer func() {
				r := recover()
				if r == nil || !strings.Contains(fmt.Sprint(r), tc.panic) {
					t.Errorf("Register panicked with %v, want %q", r, tc.panic)
				}
			}()
			format.Register(f)
		})
	}
	if len(format.Names()) != 3 {
		t.Errorf("a refused format was registered: %q", format.Names())
	}
}

// TestSplitArray: the events of a batch are found in place, as slices of
// the body, and a body that is not a batch is refused before any event.
func TestSplitArray(t *testing.T) {
	split := format.SplitArray("events")
	for _, tc := range []struct {
		body   string
		events []string // the elements found
		err    string
	}{
		{`{"events":[]}`, nil, ""},
		{` { "x" : {"events":[1]} , "events" : [ {"a":"]"} , 2,"s\"]" ,[[]] ] , "y":null } `, []string{`{"a":"]"}`, `2`, `"s\"]"`, `[[]]`}, ""},
		{`{"\u0065vents":[true]}`, []string{`true`}, ""},
		{`{"Events":[1]}`, nil, `body is not {"events":[...]}: no "events" array`},
		{`{"events":null}`, nil, `body is not {"events":[...]}: "events" is null, not an array`},
		{`{"events":{"a":1}}`, nil, `"events" is an object, not an array`},
		{`{"events":[1],"events":[2]}`, nil, `repeated member "events"`},
		{`{"events":[],"events":[2]}`, nil, `repeated member "events"`},
		{`[{"events":[]}]`, nil, "want a JSON object, got an array"},
		{`"events"`, nil, "want a JSON object, got a string"},
		{`{}`, nil, `no "events" array`},
		{`{"events":[`, nil, `body is not {"events":[...]}: unexpected end of JSON input`},
		{`{"events":[]} {}`, nil, `body is not {"events":[...]}: invalid character '{' after top-level value`},
		{"\xff", nil, `body is not {"events":[...]}: invalid character`},
		{``, nil, `body is not {"events":[...]}: unexpected end of JSON input`},
	} {
		body := []byte(tc.body)
		var got []string
		err := split(body, func(raw, rest []byte) bool {
			if len(rest) < len(raw) || &rest[0] != &raw[0] || &rest[len(rest)-1] != &body[len(body)-1] {
				t.Errorf("%s: element %s: rest %s is not the body from it", tc.body, raw, rest)
			}
			got = append(got, string(raw))
			return true
		})
		if tc.err != "" {
			var nb *format.NotBatchError
			if err == nil || !strings.Contains(err.Error(), tc.err) || !errors.As(err, &nb) || nb.Member != "events" {
				t.Errorf("%s: err %v, want %q", tc.body, err, tc.err)
			}
			if got != nil {
				t.Errorf("%s: each called for a bad body", tc.body)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.body, err)
			continue
		}
		if fmt.Sprint(got) != fmt.Sprint(tc.events) {
			t.Errorf("%s: elements %q, want %q", tc.body, got, tc.events)
		}
	}

	// each returning false stops the walk.
	var n int
	split([]byte(`{"events":[1,2,3]}`), func(raw, _ []byte) bool { n++; return string(raw) != "2" })
	if n != 2 {
		t.Errorf("walk went on after false: %d calls", n)
	}
	// Another member name.
	var got []string
	if err := format.SplitArray("items")([]byte(`{"events":[1],"items":[2,3]}`), func(raw, _ []byte) bool {
		got = append(got, string(raw))
		return true
	}); err != nil || fmt.Sprint(got) != "[2 3]" {
		t.Errorf("items: %q, %v", got, err)
	}
	if err := format.SplitArray("items")([]byte(`{}`), nil); err == nil || err.Error() != `body is not {"items":[...]}: no "items" array` {
		t.Errorf("items: %v", err)
	}
}
