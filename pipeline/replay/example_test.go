package replay_test

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mailtel/mailtel/catalog"
	"github.com/mailtel/mailtel/pipeline"
	"github.com/mailtel/mailtel/pipeline/config"
	"github.com/mailtel/mailtel/schema"
)

// Another service subscribes to mailtel's events by wildcard with nats.go's
// jetstream package and decodes them with schema.Unmarshal. Here an
// embedded server stands in for the pipeline's NATS, and three events are
// published; the subscriber asks for events.auth.> only.
func Example_subscribe() {
	dir, _ := os.MkdirTemp("", "mailtel-example")
	defer os.RemoveAll(dir)
	srv, err := pipeline.StartEmbedded(config.NATS{Listen: "127.0.0.1:0", StoreDir: dir})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	publishExampleEvents(ctx, srv.URL())

	// The subscriber: any Go program with nats.go.
	nc, err := nats.Connect(srv.URL())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	// An ordered consumer: ephemeral, in stream order, nothing to ack.
	// DeliverNewPolicy would follow only events stored from now on.
	cons, err := js.OrderedConsumer(ctx, "EVENTS", jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{"events.auth.>"},
		DeliverPolicy:  jetstream.DeliverAllPolicy,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	for range 2 {
		msg, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			fmt.Println(err)
			return
		}
		var ev schema.Event
		if err := schema.Unmarshal(msg.Data(), &ev); err != nil {
			fmt.Println("not an event:", err)
			continue
		}
		user, _ := ev.Get("accountName")
		fmt.Println(msg.Subject(), ev.ID, ev.Level, user.Str())
	}
	// Output:
	// events.auth.success 1 info alice@example.com
	// events.auth.failed 3 debug mallory@example.com
}

// publishExampleEvents does what a mailtel publisher does: it stores three
// events in the EVENTS stream.
func publishExampleEvents(ctx context.Context, url string) {
	nc, js, err := pipeline.Connect(ctx, config.NATS{URL: url}, "example-publisher", 0)
	if err != nil {
		panic(err)
	}
	defer nc.Close()
	if err := pipeline.EnsureStreams(ctx, js, config.Default()); err != nil {
		panic(err)
	}
	pub := pipeline.NewPublisher(js, catalog.NewLevels(nil), 16, nil)
	defer pub.Close(ctx)
	at := time.Date(2026, 11, 21, 6, 0, 0, 0, time.UTC)
	evs := []schema.Event{
		{ID: "1", Type: "auth.success", Time: at, Fields: []schema.Field{{Key: "accountName", Value: schema.String("alice@example.com")}}},
		{ID: "2", Type: "smtp.connection-start", Time: at},
		{ID: "3", Type: "auth.failed", Time: at, Fields: []schema.Field{{Key: "accountName", Value: schema.String("mallory@example.com")}}},
	}
	if _, err := pub.PublishAll(ctx, evs); err != nil {
		panic(err)
	}
}
