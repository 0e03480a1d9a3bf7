package dlqtool_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mailtel/mailtel/catalog"
	"github.com/mailtel/mailtel/pipeline/dlqtool"
	"github.com/mailtel/mailtel/schema"
)

func TestFilterSubject(t *testing.T) {
	for _, tc := range []struct {
		name    string
		f       dlqtool.Filter
		subject string
		err     string
	}{
		{"everything", dlqtool.Filter{}, "dlq.>", ""},
		{"one sink", dlqtool.Filter{Sink: "siem"}, "dlq.sink.siem.>", ""},
		{"every sink", dlqtool.Filter{Stage: "sink"}, "dlq.sink.>", ""},
		{"stage of one sink", dlqtool.Filter{Stage: "sink.siem"}, "dlq.sink.siem.>", ""},
		{"router", dlqtool.Filter{Stage: "router"}, "dlq.router.>", ""},
		{"ingest", dlqtool.Filter{Stage: "ingest", Max: 5}, "dlq.ingest.>", ""},
		{"both", dlqtool.Filter{Sink: "siem", Stage: "router"}, "", "not both"},
		{"sink with a dot", dlqtool.Filter{Sink: "si.em"}, "", "not a sink name"},
		{"sink wildcard", dlqtool.Filter{Sink: "*"}, "", "not a sink name"},
		{"stage wildcard", dlqtool.Filter{Stage: "sink.>"}, "", "want ingest, router"},
		{"stage empty token", dlqtool.Filter{Stage: "sink."}, "", "want ingest, router"},
		{"negative max", dlqtool.Filter{Max: -1}, "", "must not be negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.f.Subject()
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("Subject() = %q, %v; want an error containing %q", got, err, tc.err)
				}
				return
			}
			if err != nil || got != tc.subject {
				t.Fatalf("Subject() = %q, %v; want %q", got, err, tc.subject)
			}
		})
	}
}

func ExampleEventJSON() {
	ev := &schema.Event{ID: "17647154680~0123456789abcdef", Type: "auth.failed", Level: catalog.LevelWarn,
		Time: time.Date(2025, 11, 27, 14, 59, 28, 0, time.UTC), Host: "mx1", Server: "stalwart",
		Fields: []schema.Field{{Key: "accountName", Value: schema.String("john")}, {Key: "remotePort", Value: schema.Uint(42376)}}}
	fmt.Println(string(dlqtool.EventJSON(ev)))
	// Output:
	// {"id":"17647154680~0123456789abcdef","type":"auth.failed","level":"warn","time":"2025-11-27T14:59:28Z","host":"mx1","server":"stalwart","data":{"accountName":"john","remotePort":42376}}
}

func ExampleRedriveMsgID() {
	fmt.Println(dlqtool.RedriveMsgID("siem", 42, time.Unix(1764255568, 5)))
	// Output: redrive.siem.42.1764255568000000005
}
