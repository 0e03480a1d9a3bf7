// Package pipelinetest starts real NATS servers for mailtel's tests.
package pipelinetest

import (
	"context"
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
