package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"testing"

	"github.com/rs/zerolog"

	"github.com/mailtel/mailtel/pipeline"
	"github.com/mailtel/mailtel/pipeline/config"
	"github.com/mailtel/mailtel/pipeline/obs"
	"github.com/mailtel/mailtel/pipeline/pipelinetest"
	"github.com/mailtel/mailtel/schema"
)

// TestFailure: a process stopped while starting (its run returns the
// cancellation of its context, wrapped) exits 0; any other error, also a
// cancellation that does not come from its own context, is a failure.
func TestFailure(t *testing.T) {
	stopped, stop := context.WithCancel(context.Background())
	stop()
	running := context.Background()
	other := errors.New("disk full")
	for _, tc := range []struct {
		name string
		ctx  context.Context
		err  error
		want error
	}{
		{"no error", running, nil, nil},
		{"usage printed", running, fmt.Errorf("parse flags: %w", flag.ErrHelp), nil},
		{"stopped while creating the consumer", stopped, fmt.Errorf("create consumer sink-auth on ROUTED_auth: %w", context.Canceled), nil},
		{"failure while running", running, other, other},
		{"failure while stopping", stopped, other, other},
		{"cancellation from elsewhere", running, fmt.Errorf("fetch: %w", context.Canceled), context.Canceled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Failure(tc.ctx, tc.err)
			if (got == nil) != (tc.want == nil) || (tc.want != nil && !errors.Is(got, tc.want)) {
				t.Errorf("Failure(%v) = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
}

// TestStoppedWhileStarting: a router or sink runner stopped before it has
// created its consumer returns an error (the request was cancelled), and
// Failure takes it for none, so the process exits 0. A sinks process
// SIGTERMed just after its start exited 1 (crash test soak, seed 22:
// "create consumer sink-auth on ROUTED_auth: context canceled").
func TestStoppedWhileStarting(t *testing.T) {
	env := pipelinetest.Start(t)
	c := config.Default()
	c.NATS = env.NATS
	if err := pipeline.EnsureStreams(context.Background(), env.JS, c, "x"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	m, h := obs.NewMetrics(), obs.NewHealth()
	for name, run := range map[string]func(context.Context) error{
		"sink runner": pipeline.NewSinkRunner(env.JS, "x", nopSink{}, pipeline.SinkOptionsFrom(c), zerolog.Nop(), m, h).Run,
		"router": pipeline.NewRouter(env.JS, pipeline.NewTable([]config.SinkSpec{{Name: "x", Kind: "log"}}, c.Levels),
			pipeline.RouterOptionsFrom(c), zerolog.Nop(), m, h).Run,
	} {
		err := run(ctx)
		if err == nil {
			t.Errorf("%s: Run with its context cancelled before it started: nil, want the cancellation", name)
			continue
		}
		if got := Failure(ctx, err); got != nil {
			t.Errorf("%s stopped while starting: Failure(%v) = %v, want nil (exit 0)", name, err, got)
		}
	}
}

type nopSink struct{}

func (nopSink) Write(context.Context, []*schema.Event) error { return nil }
func (nopSink) Close(context.Context) error                  { return nil }
