package pipeline_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	dto "github.com/prometheus/client_model/go"
	"github.com/rs/zerolog"

	"github.com/mailtel/mailtel/pipeline"
	"github.com/mailtel/mailtel/pipeline/config"
	"github.com/mailtel/mailtel/pipeline/obs"
	"github.com/mailtel/mailtel/pipeline/pipelinetest"
	"github.com/mailtel/mailtel/schema"
)

// scaleConfig has one sink taking every event, and short ack waits so that
// messages a stopped instance fetched but never saw are redelivered within
// the test.
const scaleConfig = `
[tracer.out]
type = "stdout"
level = "trace"
[router]
ack-wait = "2s"
[sinks]
ack-wait = "2s"
`

// scaleTypes are routed to sink "out" (none is disabled).
var scaleTypes = []string{"auth.success", "auth.failed", "smtp.connection-start", "acme.error", "delivery.delivered"}

// countingSink records every event each Write gives it, duplicates included,
// and adds them to a shared total.
type countingSink struct {
	mu    sync.Mutex
	ids   []string
	total *atomic.Int64
}

func (s *countingSink) Write(_ context.Context, batch []*schema.Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ev := range batch {
		s.ids = append(s.ids, ev.ID)
	}
	s.total.Add(int64(len(batch)))
	time.Sleep(time.Millisecond) // a write takes some time, as a real one does
	return nil
}

func (s *countingSink) Close(context.Context) error { return nil }

func (s *countingSink) written() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.ids...)
}

// process is one pipeline process (a router or a sink instance) on its own
// NATS connection; stop ends it as a process ends on SIGTERM.
type process struct {
	name    string
	nc      *nats.Conn
	metrics *obs.Metrics
	cancel  context.CancelFunc
	done    chan error
}

func startProcess(t *testing.T, env *pipelinetest.Env, name string, run func(ctx context.Context, js jetstream.JetStream, m *obs.Metrics) error) *process {
	t.Helper()
	cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer ccancel()
	nc, js, err := pipeline.Connect(cctx, env.NATS, "mailtel-"+name, 0)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &process{name: name, nc: nc, metrics: obs.NewMetrics(), cancel: cancel, done: make(chan error, 1)}
	go func() { p.done <- run(ctx, js, p.metrics) }()
	t.Cleanup(func() { p.stop(t) })
	return p
}

// stop cancels the process, waits for it, and drains its connection, so
// that its last acks reach the server, as app.Process.Close does.
func (p *process) stop(t *testing.T) {
	if p.cancel == nil {
		return
	}
	p.cancel()
	p.cancel = nil
	select {
	case err := <-p.done:
		if err != nil {
			t.Errorf("%s: %v", p.name, err)
		}
	case <-time.After(15 * time.Second):
		t.Errorf("%s did not stop within 15s", p.name)
	}
	p.nc.Drain()
	for i := 0; i < 100 && !p.nc.IsClosed(); i++ {
		time.Sleep(20 * time.Millisecond)
	}
	p.nc.Close()
}

func (p *process) received(stage string) float64 {
	var m dto.Metric
	p.metrics.Received.WithLabelValues(stage).Write(&m)
	return m.GetCounter().GetValue()
}

// publishConcurrently publishes n events from 4 publishers at once, paced
// (about 10,000 a second in all) so that the flow lasts while instances
// come and go. It returns when every event is stored; it may run in a
// goroutine of its own (it reports with t.Errorf).
func publishConcurrently(t *testing.T, js jetstream.JetStream, cfg *config.Config, n int) {
	const publishers, chunk = 4, 50
	var wg sync.WaitGroup
	errs := make(chan error, publishers)
	for p := range publishers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pub := pipeline.NewPublisher(js, cfg.Levels, 256, nil)
			defer pub.Close(context.Background())
			for from := p * n / publishers; from < (p+1)*n/publishers; from += chunk {
				to := min(from+chunk, (p+1)*n/publishers)
				evs := make([]schema.Event, 0, chunk)
				for i := from; i < to; i++ {
					evs = append(evs, event(i, scaleTypes[i%len(scaleTypes)]))
				}
				acks, err := pub.PublishAll(context.Background(), evs)
				if err != nil {
					errs <- err
					return
				}
				for _, a := range acks {
					if a.Err != nil {
						errs <- a.Err
						return
					}
				}
				time.Sleep(20 * time.Millisecond)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("publish: %v", err)
	}
}

// checkExactlyOnce checks that the sinks wrote every one of the n events
// exactly once between them.
func checkExactlyOnce(t *testing.T, n int, sinks map[string]*countingSink) {
	t.Helper()
	seen := make(map[string]string, n)
	for name, s := range sinks {
		for _, id := range s.written() {
			if prev, dup := seen[id]; dup {
				t.Errorf("event %s written twice: by %s and by %s", id, prev, name)
			}
			seen[id] = name
		}
	}
	for i := range n {
		if id := fmt.Sprintf("ev-%06d", i); seen[id] == "" {
			t.Errorf("event %s was never written", id)
		}
	}
	if len(seen) != n {
		t.Errorf("%d distinct events written, want %d", len(seen), n)
	}
}

// TestScaleSinkInstances runs 3 routers and 3 instances of one sink, each
// on its own connection, while 20,000 events are published; mid-flow one
// sink instance stops and a fourth starts. Every event is written exactly
// once across the instances, and each instance does a share.
func TestScaleSinkInstances(t *testing.T) {
	const n = 20000
	env := pipelinetest.Start(t)
	cfg, err := config.Parse([]byte(scaleConfig))
	if err != nil {
		t.Fatal(err)
	}
	env.EnsureStreams(t, cfg)
	table := pipeline.NewTable(cfg.SinkSpecs(), cfg.Levels)
	for i := range 3 {
		startProcess(t, env, fmt.Sprintf("router-%d", i), func(ctx context.Context, js jetstream.JetStream, m *obs.Metrics) error {
			return pipeline.NewRouter(js, table, pipeline.RouterOptionsFrom(cfg), zerolog.Nop(), m, obs.NewHealth()).Run(ctx)
		})
	}
	var total atomic.Int64
	sinks := map[string]*countingSink{}
	procs := map[string]*process{}
	startSink := func(name string) {
		s := &countingSink{total: &total}
		sinks[name] = s
		procs[name] = startProcess(t, env, "sink-"+name, func(ctx context.Context, js jetstream.JetStream, m *obs.Metrics) error {
			return pipeline.NewSinkRunner(js, "out", s, pipeline.SinkOptionsFrom(cfg), zerolog.Nop(), m, obs.NewHealth()).Run(ctx)
		})
	}
	for _, name := range []string{"a", "b", "c"} {
		startSink(name)
	}

	published := make(chan struct{})
	go func() { defer close(published); publishConcurrently(t, env.JS, cfg, n) }()
	waitFor(t, 15*time.Second, func() bool { return total.Load() >= n/4 })
	procs["a"].stop(t) // mid-flow
	stoppedAt := total.Load()
	startSink("d")
	<-published
	waitFor(t, 15*time.Second, func() bool { return total.Load() >= n })
	time.Sleep(500 * time.Millisecond) // a duplicate would show up now

	checkExactlyOnce(t, n, sinks)
	t.Logf("split of %d events: a %d (stopped after %d written in all), b %d, c %d, d %d (started then)",
		n, len(sinks["a"].written()), stoppedAt, len(sinks["b"].written()), len(sinks["c"].written()), len(sinks["d"].written()))
	for _, name := range []string{"a", "b", "c", "d"} {
		if len(sinks[name].written()) == 0 {
			t.Errorf("sink instance %s wrote nothing", name)
		}
	}
	if stoppedAt >= n {
		t.Errorf("instance a stopped after the flow ended (%d written), not mid-flow", stoppedAt)
	}
}

// TestScaleRouters adds a router and removes another while 20,000 events
// are published: the sink gets every event exactly once, and each router
// routed a share.
func TestScaleRouters(t *testing.T) {
	const n = 20000
	env := pipelinetest.Start(t)
	cfg, err := config.Parse([]byte(scaleConfig))
	if err != nil {
		t.Fatal(err)
	}
	env.EnsureStreams(t, cfg)
	table := pipeline.NewTable(cfg.SinkSpecs(), cfg.Levels)
	var total atomic.Int64
	out := &countingSink{total: &total}
	startProcess(t, env, "sink", func(ctx context.Context, js jetstream.JetStream, m *obs.Metrics) error {
		return pipeline.NewSinkRunner(js, "out", out, pipeline.SinkOptionsFrom(cfg), zerolog.Nop(), m, obs.NewHealth()).Run(ctx)
	})
	routers := map[string]*process{}
	startRouter := func(name string) {
		routers[name] = startProcess(t, env, name, func(ctx context.Context, js jetstream.JetStream, m *obs.Metrics) error {
			return pipeline.NewRouter(js, table, pipeline.RouterOptionsFrom(cfg), zerolog.Nop(), m, obs.NewHealth()).Run(ctx)
		})
	}
	startRouter("r1")
	startRouter("r2")

	published := make(chan struct{})
	go func() { defer close(published); publishConcurrently(t, env.JS, cfg, n) }()
	waitFor(t, 15*time.Second, func() bool { return total.Load() >= n/4 })
	startRouter("r3")
	addedAt := total.Load()
	waitFor(t, 15*time.Second, func() bool { return total.Load() >= n/2 })
	routers["r1"].stop(t)
	removedAt := total.Load()
	<-published
	waitFor(t, 15*time.Second, func() bool { return total.Load() >= n })
	time.Sleep(500 * time.Millisecond)

	checkExactlyOnce(t, n, map[string]*countingSink{"out": out})
	t.Logf("routers received: r1 %.0f (removed after %d written), r2 %.0f, r3 %.0f (added after %d written)",
		routers["r1"].received("router"), removedAt, routers["r2"].received("router"), routers["r3"].received("router"), addedAt)
	for _, name := range []string{"r1", "r2", "r3"} {
		if routers[name].received("router") == 0 {
			t.Errorf("router %s routed nothing", name)
		}
	}
	if removedAt >= n {
		t.Errorf("r1 was removed after the flow ended (%d written), not mid-flow", removedAt)
	}
}
