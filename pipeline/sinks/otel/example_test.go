package otel_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"time"

	"go.opentelemetry.io/collector/pdata/plog/plogotlp"

	"github.com/mailtel/mailtel/catalog"
	"github.com/mailtel/mailtel/pipeline/sinks/otel"
	"github.com/mailtel/mailtel/schema"
)

func ExampleNew() {
	// A collector's OTLP/HTTP logs receiver.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		req := plogotlp.NewExportRequest()
		if err := req.UnmarshalProto(body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		rl := req.Logs().ResourceLogs().At(0)
		lr := rl.ScopeLogs().At(0).LogRecords().At(0)
		fmt.Println(r.URL.Path, r.Header.Get("Content-Type"))
		fmt.Println("resource:", rl.Resource().Attributes().AsRaw())
		fmt.Println(lr.EventName(), lr.SeverityNumber(), lr.SeverityText(), lr.Body().Str(), lr.Timestamp())
		fmt.Println("attributes:", lr.Attributes().AsRaw())
	}))
	defer srv.Close()

	// The section as an operator writes it, decoded over the defaults.
	cfg := *otel.DefaultConfig()
	cfg.Endpoint = srv.URL + "/v1/logs"
	s, err := otel.New("collector", cfg, otel.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer s.Close(context.Background())
	ev := &schema.Event{ID: "1", Type: "auth.failed", Level: catalog.LevelDebug, Time: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC),
		Server: "stalwart", Host: "mx1.example.com",
		Fields: []schema.Field{{Key: "accountName", Value: schema.String("john")}, {Key: "attempt", Value: schema.Uint(3)}}}
	fmt.Println("write:", s.Write(context.Background(), []*schema.Event{ev}))
	// Output:
	// /v1/logs application/x-protobuf
	// resource: map[host.name:mx1.example.com service.name:stalwart-mail]
	// auth.failed Debug DEBUG Authentication failed 2026-03-01 12:00:00 +0000 UTC
	// attributes: map[accountName:john attempt:3 event.id:1]
	// write: <nil>
}
