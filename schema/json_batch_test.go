package schema

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// jsonBatchEvent returns a good Stalwart event with the id.
func jsonBatchEvent(id string) string {
	return `{"id":"` + id + `","createdAt":"2025-11-27T14:59:28Z","type":"auth.success","data":{"accountId":3}}`
}

func TestParseStalwartBatch(t *testing.T) {
	good := jsonBatchEvent
	manyBad := make([]string, 12)
	for i := range manyBad {
		manyBad[i] = `{}`
	}
	tests := []struct {
		name string
		in   string
		// calls lists what fn gets, one entry per call: the event id, or
		// "!" and an error substring.
		calls []string
		// bodyErr is the substring of the error for a bad body ("" if none).
		bodyErr string
		// batchErr is the substring of ParseStalwartBatch's error ("" if none).
		batchErr string
	}{
		{name: "empty", in: `{"events":[]}`},
		{name: "one", in: `{"events":[` + good("1") + `]}`, calls: []string{"1"}},
		{name: "white space", in: " {\n \"events\" : [ " + good("1") + " ,\n" + good("2") + " ] }\n", calls: []string{"1", "2"}},
		{name: "other members ignored", in: `{"version":2,"events":[` + good("1") + `],"extra":{"events":5}}`, calls: []string{"1"}},
		{
			name:     "good and bad",
			in:       `{"events":[` + good("1") + `,{"id":"2"},5,` + good("4") + `,{"id":"5","createdAt":"x","type":"a.b"}]}`,
			calls:    []string{"1", "!event 1: missing type", "!event 2: want a JSON object, got a number", "4", "!event 4: createdAt: parsing time"},
			batchErr: "decode stalwart batch: event 1: missing type\nevent 2: want a JSON object, got a number\nevent 4: createdAt",
		},
		{
			name:     "many bad",
			in:       `{"events":[` + strings.Join(manyBad, ",") + `]}`,
			calls:    []string{"!event 0:", "!event 1:", "!event 2:", "!event 3:", "!event 4:", "!event 5:", "!event 6:", "!event 7:", "!event 8:", "!event 9:", "!event 10:", "!event 11: missing type"},
			batchErr: "event 9: missing type\nand 2 more bad events",
		},
		{name: "not json", in: `{"events":[`, bodyErr: "decode stalwart batch: invalid JSON"},
		{name: "bad json late", in: `{"events":[` + good("1") + `,}`, bodyErr: "invalid JSON"},
		{name: "trailing data", in: `{"events":[]} {}`, bodyErr: "after top-level value"},
		{name: "array", in: `[` + good("1") + `]`, bodyErr: "want a JSON object, got an array"},
		{name: "no events", in: `{}`, bodyErr: `missing member "events"`},
		{name: "events object", in: `{"events":{}}`, bodyErr: "events: want an array, got an object"},
		{name: "events null", in: `{"events":null}`, bodyErr: "events: want an array, got null"},
		{name: "events repeated", in: `{"events":[],"events":[` + good("1") + `]}`, bodyErr: `repeated member "events"`},
		{name: "events repeated after good", in: `{"events":[` + good("1") + `],"events":[]}`, bodyErr: `repeated member "events"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var calls []string
			err := ParseStalwartBatchEach([]byte(tt.in), func(i int, ev *Event, err error) {
				if i != len(calls) {
					t.Errorf("call %d got index %d", len(calls), i)
				}
				switch {
				case err != nil && ev == nil:
					calls = append(calls, "!"+err.Error())
				case err == nil && ev != nil:
					calls = append(calls, StalwartNativeID(ev.ID))
				default:
					t.Errorf("call %d: ev %v and err %v", i, ev, err)
				}
			})
			if tt.bodyErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.bodyErr) {
					t.Fatalf("error %v, want %q", err, tt.bodyErr)
				}
				if len(calls) > 0 {
					t.Errorf("fn called %d times for a bad body", len(calls))
				}
			} else if err != nil {
				t.Fatal(err)
			}
			if len(calls) != len(tt.calls) {
				t.Fatalf("calls %q, want %q", calls, tt.calls)
			}
			for i, want := range tt.calls {
				if strings.HasPrefix(want, "!") {
					if !strings.HasPrefix(calls[i], want) {
						t.Errorf("call %d: %q, want prefix %q", i, calls[i], want)
					}
				} else if calls[i] != want {
					t.Errorf("call %d: %q, want %q", i, calls[i], want)
				}
			}

			evs, err := ParseStalwartBatch([]byte(tt.in))
			switch {
			case tt.bodyErr != "":
				if err == nil || !strings.Contains(err.Error(), tt.bodyErr) || evs != nil {
					t.Errorf("ParseStalwartBatch = %d events, %v; want error %q", len(evs), err, tt.bodyErr)
				}
			case tt.batchErr != "":
				if err == nil || !strings.Contains(err.Error(), tt.batchErr) || evs != nil {
					t.Errorf("ParseStalwartBatch = %d events, %v; want error %q", len(evs), err, tt.batchErr)
				}
			default:
				if err != nil || len(evs) != len(tt.calls) {
					t.Fatalf("ParseStalwartBatch = %d events, %v; want %d", len(evs), err, len(tt.calls))
				}
				for i, ev := range evs {
					if StalwartNativeID(ev.ID) != tt.calls[i] || ev.Server != ServerStalwart {
						t.Errorf("event %d: %+v", i, ev)
					}
				}
			}
		})
	}
}

func TestParseStalwartBatchNilCallback(t *testing.T) {
	if err := ParseStalwartBatchEach([]byte(`{"events":[]}`), nil); err == nil || !strings.Contains(err.Error(), "nil callback") {
		t.Errorf("error %v, want nil callback", err)
	}
}

// TestParseStalwartBatchEventsIndependent checks that the events of a batch
// do not share memory: fn may keep them.
func TestParseStalwartBatchEventsIndependent(t *testing.T) {
	in := fmt.Sprintf(`{"events":[%s,%s]}`, jsonBatchEvent("1"), jsonBatchEvent("2"))
	var kept []*Event
	if err := ParseStalwartBatchEach([]byte(in), func(_ int, ev *Event, err error) {
		if err != nil {
			t.Fatal(err)
		}
		kept = append(kept, ev)
	}); err != nil {
		t.Fatal(err)
	}
	if len(kept) != 2 || kept[0] == kept[1] || StalwartNativeID(kept[0].ID) != "1" || StalwartNativeID(kept[1].ID) != "2" {
		t.Fatalf("kept %+v", kept)
	}
	kept[0].Fields[0].Key = "changed"
	if kept[1].Fields[0].Key != "accountId" {
		t.Errorf("events share fields")
	}
}

func TestAppendMillis(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{{12 * time.Millisecond, "12"}, {155 * time.Microsecond, "0.155"}, {1500 * time.Microsecond, "1.5"}, {time.Nanosecond, "0.000001"}, {0, "0"}} {
		if got := string(AppendMillis(nil, tc.d)); got != tc.want {
			t.Errorf("AppendMillis(%s) = %q, want %q", tc.d, got, tc.want)
		}
	}
}
