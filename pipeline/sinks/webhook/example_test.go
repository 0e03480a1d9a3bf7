package webhook_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/mailtel/mailtel/pipeline/sinks/webhook"
	"github.com/mailtel/mailtel/schema"
)

func ExampleNew() {
	// A receiver that checks the signature, as a Stalwart webhook receiver does.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		fmt.Println("signature ok:", r.Header.Get("X-Signature") == webhook.Sign([]byte("secret"), body))
		fmt.Println(string(body))
	}))
	defer srv.Close()

	s, err := webhook.New("siem", &webhook.Config{URL: srv.URL, SignatureKey: "secret"}, webhook.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer s.Close(context.Background())
	ev := &schema.Event{ID: "1", Type: "auth.failed", Time: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC),
		Fields: []schema.Field{{Key: "accountName", Value: schema.String("john")}}}
	fmt.Println("write:", s.Write(context.Background(), []*schema.Event{ev}))
	// Output:
	// signature ok: true
	// {"events":[{"id":"1","createdAt":"2025-03-01T12:00:00Z","type":"auth.failed","data":{"accountName":"john"}}]}
	// write: <nil>
}
