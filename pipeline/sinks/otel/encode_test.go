package otel_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"math"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/mailtel/mailtel/catalog"
	"github.com/mailtel/mailtel/pipeline/sinks/otel"
	"github.com/mailtel/mailtel/schema"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// goldenEvents covers every kind of value, the resource grouping, a
// repeated key, a type the catalog lacks, a server kind that names no known
// server, and invalid UTF-8.
func goldenEvents() []*schema.Event {
	at := time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC)
	cause := &schema.Event{Type: "store.data-write", Fields: []schema.Field{{Key: "details", Value: schema.String("disk full")}}}
	return []*schema.Event{
		{ID: "e1", Type: "network.connection-start", Time: at, Level: catalog.LevelInfo, Server: "stalwart", Host: "mx1.example.com",
			Fields: []schema.Field{
				{Key: "listenerId", Value: schema.String("smtp")},
				{Key: "remoteIp", Value: schema.IP(netip.MustParseAddr("192.0.2.7"))},
				{Key: "remotePort", Value: schema.Uint(52144)},
				{Key: "spanId", Value: schema.Uint(math.MaxUint64 - 1)},
				{Key: "elapsed", Value: schema.Duration(1500 * time.Microsecond)},
				{Key: "code", Value: schema.Int(-3)},
				{Key: "score", Value: schema.Float(2.5)},
				{Key: "tls", Value: schema.Bool(true)},
				{Key: "date", Value: schema.Time(at)},
				{Key: "contents", Value: schema.Bytes([]byte("\x00\xffraw"))},
				{Key: "to", Value: schema.List(schema.String("a@example.org"), schema.Uint(2))},
				{Key: "causedBy", Value: schema.Nested(cause)},
				{Key: "none", Value: schema.Value{}},
				{Key: "to", Value: schema.String("b@example.org")},
				{Key: "to", Value: schema.String("c@example.org")},
			}},
		{ID: "e2", Type: "imap.command-finished", Time: at.Add(time.Second), Level: catalog.LevelDebug, Server: "dovecot", Host: "dovecot1.example.com",
			Fields: []schema.Field{{Key: "user", Value: schema.String("john")}, {Key: "cmd_name", Value: schema.String("SELECT")}}},
		{ID: "e3", Type: "auth.error", Time: at.Add(2 * time.Second), Level: catalog.LevelError, Server: "stalwart", Host: "mx1.example.com",
			Fields: []schema.Field{{Key: "details", Value: schema.String("bad \xff byte")}}},
		{ID: "e4", Type: "custom.thing", Time: at.Add(3 * time.Second), Level: catalog.LevelWarn, Server: "postfix"},
		{ID: "e5", Type: "auth.success", Level: catalog.LevelTrace},
		nil,
	}
}

// TestEncodeGolden checks the OTLP request of goldenEvents, in OTLP's
// JSON form, against testdata/encode.golden.json.
func TestEncodeGolden(t *testing.T) {
	req := otel.Encode(goldenEvents(), time.Date(2026, 3, 1, 12, 0, 5, 0, time.UTC))
	js, err := req.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	if err := json.Indent(&got, js, "", "  "); err != nil {
		t.Fatal(err)
	}
	got.WriteByte('\n')
	const golden = "testdata/encode.golden.json"
	if *update {
		if err := os.WriteFile(golden, got.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got.Bytes(), want) {
		t.Errorf("request differs from %s (run with -update after checking):\n%s", golden, got.Bytes())
	}
	// The protobuf form decodes back to the same request.
	pb, err := req.MarshalProto()
	if err != nil {
		t.Fatal(err)
	}
	if n := req.Logs().LogRecordCount(); n != 5 || len(pb) == 0 {
		t.Fatalf("%d records, %d bytes", n, len(pb))
	}
}
