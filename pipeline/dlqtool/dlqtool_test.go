package dlqtool_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mailtel/mailtel/catalog"
	"github.com/mailtel/mailtel/pipeline"
	"github.com/mailtel/mailtel/pipeline/config"
	"github.com/mailtel/mailtel/pipeline/dlqtool"
	"github.com/mailtel/mailtel/pipeline/pipelinetest"
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

// TestTruncatedLetter stores a sink's dead letter of an event larger than
// the server's max payload: it is stored cut, List and Show say so (its
// payload is not an event), and Redrive skips it rather than send half an
// event to the sink.
func TestTruncatedLetter(t *testing.T) {
	env := pipelinetest.Start(t)
	cfg := config.Default()
	env.EnsureStreams(t, cfg, "siem")
	ctx := context.Background()
	ev := &schema.Event{ID: "big1", Type: "auth.failed", Level: catalog.LevelWarn, Time: time.Unix(1764255568, 0)}
	for i := 0; i < 20; i++ {
		ev.Fields = append(ev.Fields, schema.Field{Key: fmt.Sprintf("f%02d", i), Value: schema.String(strings.Repeat("x", 60_000))})
	}
	data, err := schema.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	err = pipeline.PublishLetter(ctx, env.JS, pipeline.Letter{Stage: "sink.siem", EventID: ev.Type, Data: data,
		Reason: errors.New("webhook answered 400"), SourceSubject: "routed.siem.auth.failed", SourceSeq: 9, Deliveries: 1})
	if err != nil {
		t.Fatal(err)
	}
	for _, small := range []string{"ok1", "ok2"} { // intact letters around it are still re-driven
		d, _ := schema.Marshal(&schema.Event{ID: small, Type: "auth.failed", Level: catalog.LevelWarn, Time: time.Unix(1764255568, 0)})
		if err := pipeline.PublishLetter(ctx, env.JS, pipeline.Letter{Stage: "sink.siem", EventID: "auth.failed", Data: d,
			Reason: errors.New("webhook answered 400"), SourceSubject: "routed.siem.auth.failed", SourceSeq: 10, MsgID: small}); err != nil {
			t.Fatal(err)
		}
	}

	letters, err := dlqtool.List(ctx, env.JS, cfg.Streams.DLQ, dlqtool.Filter{Sink: "siem"})
	if err != nil || len(letters) != 3 {
		t.Fatalf("List: %d letters, %v", len(letters), err)
	}
	l := letters[0]
	if !l.Truncated || l.OriginalSize != int64(len(data)) || !strings.Contains(l.DecodeError, "truncated") || l.Type != "auth.failed" {
		t.Errorf("truncated letter listed as %+v", l)
	}
	if letters[1].Truncated || letters[1].DecodeError != "" {
		t.Errorf("intact letter listed as %+v", letters[1])
	}
	d, err := dlqtool.Show(ctx, env.JS, cfg.Streams.DLQ, l.Seq)
	if err != nil {
		t.Fatal(err)
	}
	if d.Event != nil || len(d.Payload) == 0 || len(d.Payload) >= len(data) || !d.Truncated ||
		d.Header.Get(pipeline.HeaderOriginalSize) != strconv.Itoa(len(data)) {
		t.Errorf("Show: event %v, payload of %d bytes, truncated %v", d.Event != nil, len(d.Payload), d.Truncated)
	}
	if _, err := json.Marshal(d); err != nil {
		t.Errorf("Show's detail does not encode: %v", err)
	}
	out, err := dlqtool.Redrive(ctx, env.JS, cfg.Streams.DLQ, "siem", dlqtool.RedriveOptions{})
	if err != nil || len(out) != 3 {
		t.Fatalf("Redrive: %+v, %v", out, err)
	}
	if !strings.Contains(out[0].Skipped, "truncated") || out[1].Skipped != "" || out[2].Skipped != "" {
		t.Errorf("Redrive outcomes %+v, want the truncated letter skipped and the others re-driven", out)
	}
	if left, _ := dlqtool.List(ctx, env.JS, cfg.Streams.DLQ, dlqtool.Filter{}); len(left) != 1 || left[0].Seq != l.Seq {
		t.Errorf("after Redrive the DLQ holds %+v, want only the truncated letter", left)
	}
}
