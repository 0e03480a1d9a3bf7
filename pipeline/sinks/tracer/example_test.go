package tracer_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"time"

	"github.com/mailtel/mailtel/catalog"
	"github.com/mailtel/mailtel/pipeline/sinks/tracer"
	"github.com/mailtel/mailtel/schema"
)

// A stdout tracer writes Stalwart's text lines.
func Example() {
	s, err := tracer.New("console", &tracer.Config{Type: "stdout"}, tracer.Options{Stdout: os.Stdout})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer s.Close(context.Background())

	e := &schema.Event{
		ID: "1", Type: "auth.success", Level: catalog.LevelInfo, Server: "stalwart",
		Time: time.Date(2025, 11, 27, 14, 59, 28, 0, time.UTC),
		Fields: []schema.Field{
			{Key: "accountName", Value: schema.String("postmaster@example.com")},
			{Key: "accountId", Value: schema.Uint(3)},
			{Key: "remoteIp", Value: schema.IP(netip.MustParseAddr("2a12:bec4:1be0:a8f1::1"))},
		},
	}
	if err := s.Write(context.Background(), []*schema.Event{e, e}); err != nil {
		fmt.Println(err)
	}
	fmt.Println("skipped:", s.Skipped())
	// Output:
	// 2025-11-27T14:59:28Z INFO Authentication successful (auth.success) accountName = "postmaster@example.com", accountId = 3, remoteIp = 2a12:bec4:1be0:a8f1::1
	// skipped: 1
}
