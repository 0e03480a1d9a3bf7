package sinks_test

import (
	"context"
	"sync"
	"testing"

	"github.com/mailtel/mailtel/pipeline"
	"github.com/mailtel/mailtel/pipeline/app"
	"github.com/mailtel/mailtel/pipeline/config"
	"github.com/mailtel/mailtel/pipeline/pipelinetest"
	"github.com/mailtel/mailtel/pipeline/sinks"
	"github.com/mailtel/mailtel/pipeline/synth"
	"github.com/mailtel/mailtel/schema"
)

// testPipeline is one process of a configuration on an embedded NATS
// server: a router from the start, the sinks once StartSinks is called.
// Everything stops when the test ends.
type testPipeline struct {
	t   *testing.T
	P   *app.Process
	Cfg *config.Config
	ctx context.Context
	wg  sync.WaitGroup
}

// startPipeline parses doc, points it at env and starts the process (with
// health and metrics on a free port) and its router.
func startPipeline(t *testing.T, env *pipelinetest.Env, doc string) *testPipeline {
	t.Helper()
	cfg, err := config.Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	cfg.NATS = env.NATS
	ctx, cancel := context.WithCancel(context.Background())
	p, err := app.Start(ctx, cfg, app.Options{Name: t.Name(), HTTP: "127.0.0.1:0"})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	tp := &testPipeline{t: t, P: p, Cfg: cfg, ctx: ctx}
	t.Cleanup(p.Close)
	t.Cleanup(tp.wg.Wait)
	t.Cleanup(cancel)
	tp.wg.Add(1)
	go func() {
		defer tp.wg.Done()
		pipeline.NewRouter(p.JS, pipeline.NewTable(cfg.SinkSpecs(), cfg.Levels), pipeline.RouterOptionsFrom(cfg), p.Log, p.Metrics, p.Health).Run(ctx)
	}()
	return tp
}

// StartSinks runs every configured sink until the test ends.
func (tp *testPipeline) StartSinks() {
	tp.wg.Add(1)
	go func() {
		defer tp.wg.Done()
		if err := sinks.Run(tp.ctx, tp.P, nil, sinks.Options{}); err != nil {
			tp.t.Errorf("sinks: %v", err)
		}
	}()
}

// Publish publishes the next n events of g and fails the test unless all
// are stored.
func (tp *testPipeline) Publish(g *synth.Generator, n int) {
	tp.t.Helper()
	evs := make([]schema.Event, n)
	for i := range evs {
		g.Next(&evs[i])
	}
	pub := pipeline.NewPublisher(tp.P.JS, tp.Cfg.Levels, 1024, nil)
	defer pub.Close(tp.ctx)
	acks, err := pub.PublishAll(tp.ctx, evs)
	if err != nil {
		tp.t.Fatal(err)
	}
	for _, a := range acks {
		if a.Err != nil {
			tp.t.Fatal(a.Err)
		}
	}
}

// Routed returns how many messages the ROUTED stream of sink holds (-1
// when it cannot be read).
func (tp *testPipeline) Routed(sink string) int {
	st, err := tp.P.JS.Stream(tp.ctx, tp.Cfg.Streams.RoutedStream(sink))
	if err != nil {
		return -1
	}
	info, err := st.Info(tp.ctx)
	if err != nil {
		return -1
	}
	return int(info.State.Msgs)
}

// Consumer returns the pending and ack-pending counts of a durable
// consumer (ackPending -1 when it cannot be read).
func (tp *testPipeline) Consumer(stream, name string) (pending uint64, ackPending int) {
	cons, err := tp.P.JS.Consumer(tp.ctx, stream, name)
	if err != nil {
		return 0, -1
	}
	info, err := cons.Info(tp.ctx)
	if err != nil {
		return 0, -1
	}
	return info.NumPending, info.NumAckPending
}

// SinkIdle reports whether the sink's consumer has been delivered and has
// acked everything its stream holds (pipelinetest.Settled).
func (tp *testPipeline) SinkIdle(sink string) bool {
	return pipelinetest.Settled(tp.ctx, tp.P.JS, tp.Cfg.Streams.RoutedStream(sink), pipeline.SinkConsumerName(sink)) == nil
}

// RouterIdle reports whether the router has copied everything published.
func (tp *testPipeline) RouterIdle() bool {
	return pipelinetest.Settled(tp.ctx, tp.P.JS, tp.Cfg.Streams.Events, tp.Cfg.Router.Consumer) == nil
}
