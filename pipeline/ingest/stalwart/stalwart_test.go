package stalwart_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/mailtel/mailtel/pipeline/ingest/format"
	"github.com/mailtel/mailtel/pipeline/ingest/stalwart"
	"github.com/mailtel/mailtel/schema"
)

// good returns a good Stalwart event with the id.
func good(id string) string {
	return `{"id":"` + id + `","createdAt":"2025-11-27T14:59:28Z","type":"auth.success","data":{"accountId":3}}`
}

func TestRegistered(t *testing.T) {
	f, ok := format.Lookup(stalwart.Name)
	if !ok || f.Name != "stalwart" || f.Split == nil || !f.Fallback || f.Doc == "" {
		t.Fatalf("registered as %+v, %v", f, ok)
	}
}

func TestDetect(t *testing.T) {
	for _, tc := range []struct {
		line string
		want bool
	}{
		{good("1"), true},
		{`{"id":"1","type":"auth.success","data":{"event":"x"}}`, true},
		{`{"event":"imap_command_finished","fields":{}}`, false},
		{`garbage`, false}, // decoded all the same: the fallback
	} {
		if got := stalwart.Detect([]byte(tc.line)); got != tc.want {
			t.Errorf("Detect(%s) = %v, want %v", tc.line, got, tc.want)
		}
	}
}

// TestSplitAndDecode: the events of a batch are walked in order, each
// decoded on its own, so that the good events of a batch are taken and
// the bad ones rejected one by one; a body that is not a batch is refused
// as a whole, before any event.
func TestSplitAndDecode(t *testing.T) {
	manyBad := make([]string, 12)
	for i := range manyBad {
		manyBad[i] = `{}`
	}
	tests := []struct {
		name string
		in   string
		// events lists the events walked: the id, or "!" and an error
		// substring.
		events []string
		// bodyErr is the substring of the error for a bad body ("" if none).
		bodyErr string
		// batchErr is the substring of DecodeBatch's error ("" if none).
		batchErr string
	}{
		{name: "empty", in: `{"events":[]}`},
		{name: "one", in: `{"events":[` + good("1") + `]}`, events: []string{"1"}},
		{name: "white space", in: " {\n \"events\" : [ " + good("1") + " ,\n" + good("2") + " ] }\n", events: []string{"1", "2"}},
		{name: "other members ignored", in: `{"version":2,"events":[` + good("1") + `],"extra":{"events":5}}`, events: []string{"1"}},
		{
			name:     "good and bad",
			in:       `{"events":[` + good("1") + `,{"id":"2"},5,` + good("4") + `,{"id":"5","createdAt":"x","type":"a.b"}]}`,
			events:   []string{"1", "!missing type", "!want a JSON object, got a number", "4", "!createdAt: parsing time"},
			batchErr: "stalwart event 1: decode stalwart event: missing type",
		},
		{
			name:     "many bad",
			in:       `{"events":[` + strings.Join(manyBad, ",") + `]}`,
			events:   []string{"!", "!", "!", "!", "!", "!", "!", "!", "!", "!", "!", "!missing type"},
			batchErr: "stalwart event 0: ",
		},
		{name: "not json", in: `{"events":[`, bodyErr: `body is not {"events":[...]}: unexpected end of JSON input`},
		{name: "bad json late", in: `{"events":[` + good("1") + `,}`, bodyErr: "invalid character '}'"},
		{name: "trailing data", in: `{"events":[]} {}`, bodyErr: "after top-level value"},
		{name: "array", in: `[` + good("1") + `]`, bodyErr: "want a JSON object, got an array"},
		{name: "no events", in: `{}`, bodyErr: `no "events" array`},
		{name: "events object", in: `{"events":{}}`, bodyErr: `"events" is an object, not an array`},
		{name: "events null", in: `{"events":null}`, bodyErr: `"events" is null, not an array`},
		{name: "events repeated", in: `{"events":[],"events":[` + good("1") + `]}`, bodyErr: `repeated member "events"`},
		{name: "events repeated after good", in: `{"events":[` + good("1") + `],"events":[]}`, bodyErr: `repeated member "events"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var events []string
			err := stalwart.Split([]byte(tt.in), func(raw, _ []byte) bool {
				var ev schema.Event
				if err := stalwart.Format.Decode(raw, &ev); err != nil {
					events = append(events, "!"+err.Error())
				} else {
					events = append(events, schema.StalwartNativeID(ev.ID))
				}
				return true
			})
			if tt.bodyErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.bodyErr) {
					t.Fatalf("error %v, want %q", err, tt.bodyErr)
				}
				if len(events) > 0 {
					t.Errorf("each called %d times for a bad body", len(events))
				}
			} else if err != nil {
				t.Fatal(err)
			}
			if len(events) != len(tt.events) {
				t.Fatalf("events %q, want %q", events, tt.events)
			}
			for i, want := range tt.events {
				if want, bad := strings.CutPrefix(want, "!"); bad {
					if !strings.HasPrefix(events[i], "!") || !strings.Contains(events[i], want) {
						t.Errorf("event %d: %q, want an error with %q", i, events[i], want)
					}
				} else if events[i] != want {
					t.Errorf("event %d: %q, want %q", i, events[i], want)
				}
			}

			evs, err := stalwart.DecodeBatch([]byte(tt.in))
			switch {
			case tt.bodyErr != "":
				if err == nil || !strings.Contains(err.Error(), tt.bodyErr) || evs != nil {
					t.Errorf("DecodeBatch = %d events, %v; want error %q", len(evs), err, tt.bodyErr)
				}
			case tt.batchErr != "":
				if err == nil || !strings.Contains(err.Error(), tt.batchErr) || evs != nil {
					t.Errorf("DecodeBatch = %d events, %v; want error %q", len(evs), err, tt.batchErr)
				}
			default:
				if err != nil || len(evs) != len(tt.events) {
					t.Fatalf("DecodeBatch = %d events, %v; want %d", len(evs), err, len(tt.events))
				}
				for i, ev := range evs {
					if schema.StalwartNativeID(ev.ID) != tt.events[i] || ev.Server != schema.ServerStalwart {
						t.Errorf("event %d: %+v", i, ev)
					}
				}
			}
		})
	}
}

// TestDecodeBatchEventsIndependent checks that the events of a batch do
// not share memory, with each other or with the body.
func TestDecodeBatchEventsIndependent(t *testing.T) {
	body := []byte(fmt.Sprintf(`{"events":[%s,%s]}`, good("1"), good("2")))
	evs, err := stalwart.DecodeBatch(body)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 2 || schema.StalwartNativeID(evs[0].ID) != "1" || schema.StalwartNativeID(evs[1].ID) != "2" {
		t.Fatalf("decoded %+v", evs)
	}
	evs[0].Fields[0].Key = "changed"
	for i := range body {
		body[i] = 'x'
	}
	if evs[1].Fields[0].Key != "accountId" || evs[1].Type != "auth.success" {
		t.Errorf("events share memory: %+v", evs[1])
	}
}

// FuzzSplit: no body makes the batch walk panic; it refuses exactly the
// bodies that are not a JSON object with one "events" array, and walks
// exactly the elements of that array, each valid JSON and in place; the
// decoder takes any element without panicking.
func FuzzSplit(f *testing.F) {
	for _, seed := range []string{
		`{"events":[` + good("1") + `,` + good("2") + `]}`,
		`{"events":[{"id":"1","createdAt":"2025-11-27T14:59:28Z","type":"a.b","data":{}},{"id":"2"},5]}`,
		` { "x" : {"events":[1]} , "events" : [ {"a":"]"} , 2,"s\"]" ,[[]] ] , "y":null } `,
		`{"\u0065vents":[true]}`, `{"events":[],"events":[]}`, `{"Events":[]}`, `{"events":null}`,
		`[]`, `{"events":[`, "\xff", ``,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var n int
		err := stalwart.Split(body, func(raw, rest []byte) bool {
			if !json.Valid(raw) {
				t.Fatalf("element %d is not JSON: %q", n, raw)
			}
			if len(rest) < len(raw) || &rest[0] != &raw[0] || &rest[len(rest)-1] != &body[len(body)-1] {
				t.Fatalf("element %d: %q is not in place", n, raw)
			}
			var ev schema.Event
			_ = stalwart.Format.Decode(raw, &ev)
			n++
			return true
		})
		// What encoding/json makes of it: a map keeps the last of
		// repeated keys, which the walk refuses.
		var m map[string]json.RawMessage
		var events []json.RawMessage
		isBatch := json.Unmarshal(body, &m) == nil && json.Unmarshal(m["events"], &events) == nil && m["events"] != nil && events != nil
		if err == nil && !isBatch {
			t.Fatalf("walked %d events of a body that is not a batch: %q", n, body)
		}
		if err != nil {
			if n > 0 {
				t.Fatalf("each called %d times for a bad body: %v", n, err)
			}
			if isBatch && !strings.Contains(err.Error(), `repeated member "events"`) {
				t.Fatalf("refused a batch: %v", err)
			}
			return
		}
		if n != len(events) {
			t.Fatalf("walked %d events of %d", n, len(events))
		}
	})
}

func ExampleSplit() {
	body := []byte(`{"events":[
		{"id":"1","createdAt":"2025-11-27T14:59:28Z","type":"auth.success","data":{}},
		{"id":"2","createdAt":"2025-11-27T14:59:28Z","type":"auth.*","data":{}},
		{"id":"3","createdAt":"2025-11-27T14:59:29Z","type":"auth.failed","data":{}}]}`)
	err := stalwart.Split(body, func(raw, _ []byte) bool {
		var ev schema.Event
		if err := stalwart.Format.Decode(raw, &ev); err != nil {
			fmt.Println("dead letter:", err)
			return true
		}
		fmt.Println("publish:", ev.Subject(), schema.StalwartNativeID(ev.ID))
		return true
	})
	fmt.Println("body error:", err)
	// Output:
	// publish: events.auth.success 1
	// dead letter: decode stalwart event: invalid type "auth.*": want two tokens of a-z, 0-9, '-' and '_' joined by one dot, like auth.success
	// publish: events.auth.failed 3
	// body error: <nil>
}

func ExampleDecodeBatch() {
	body := []byte(`{"events":[{"id":"1","createdAt":"2025-11-27T14:59:28Z","type":"auth.success","data":{}},{"id":"2"}]}`)
	_, err := stalwart.DecodeBatch(body)
	fmt.Println(err)
	_, err = stalwart.DecodeBatch([]byte(`{"event":[]}`))
	fmt.Println(err)
	// Output:
	// stalwart event 1: decode stalwart event: missing type
	// body is not {"events":[...]}: no "events" array
}
