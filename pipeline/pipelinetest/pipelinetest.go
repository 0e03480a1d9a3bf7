// Package pipelinetest starts real NATS servers for mailtel's tests.
package pipelinetest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mailtel/mailtel/pipeline"
	"github.com/mailtel/mailtel/pipeline/config"
)

// Env is an embedded JetStream server on 127.0.0.1 with a client.
type Env struct {
	Server *pipeline.Embedded
	NATS   config.NATS // points at the server
	Conn   *nats.Conn
	JS     jetstream.JetStream
}

// Start starts an embedded JetStream server on a random loopback port,
// storing under t.TempDir(), connects to it, and stops both when the test
// ends.
func Start(t testing.TB) *Env {
	t.Helper()
	cfg := config.NATS{Listen: "127.0.0.1:0", StoreDir: t.TempDir(), Name: "mailtel-test"}
	srv, err := pipeline.StartEmbedded(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	cfg.URL = srv.URL()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	nc, js, err := pipeline.Connect(ctx, cfg, "mailtel-test", 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return &Env{Server: srv, NATS: cfg, Conn: nc, JS: js}
}

// EnsureStreams creates the configuration's streams, with the ROUTED
// streams of its sinks and of the sinks named in more (sinks a test builds
// itself), or fails the test.
func (e *Env) EnsureStreams(t testing.TB, c *config.Config, more ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := pipeline.EnsureStreams(ctx, e.JS, c, more...); err != nil {
		t.Fatal(err)
	}
}

// WaitFor polls cond every 20ms until it holds, and fails the test with
// what when it does not within d.
func WaitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Settled returns nil when the durable consumer named consumer on stream
// has been delivered, and has acked, every message the stream held when
// asked; otherwise an error saying what is outstanding. The consumer's
// filter must take every subject of the stream (the router's and the
// sinks' consumers do).
//
// NumPending and NumAckPending alone are not enough: the server counts a
// stored message as pending only once it has signalled the consumer, which
// it does after acking the publisher, so right after a publish both can
// read 0 with nothing delivered yet. The delivered sequence is compared
// with the stream's last one, read first.
func Settled(ctx context.Context, js jetstream.JetStream, stream, consumer string) error {
	st, err := js.Stream(ctx, stream)
	if err != nil {
		return fmt.Errorf("stream %s: %w", stream, err)
	}
	sinfo, err := st.Info(ctx)
	if err != nil {
		return fmt.Errorf("stream %s info: %w", stream, err)
	}
	cons, err := st.Consumer(ctx, consumer)
	if err != nil {
		return fmt.Errorf("consumer %s on %s: %w", consumer, stream, err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return fmt.Errorf("consumer %s on %s info: %w", consumer, stream, err)
	}
	if info.NumPending > 0 || info.NumAckPending > 0 || info.NumRedelivered > 0 || info.Delivered.Stream < sinfo.State.LastSeq {
		return fmt.Errorf("consumer %s on %s: delivered up to %d of %d, %d pending, %d awaiting ack, %d being redelivered",
			consumer, stream, info.Delivered.Stream, sinfo.State.LastSeq, info.NumPending, info.NumAckPending, info.NumRedelivered)
	}
	return nil
}
