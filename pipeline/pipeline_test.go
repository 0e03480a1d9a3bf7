package pipeline_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/mailtel/mailtel/catalog"
	"github.com/mailtel/mailtel/pipeline"
	"github.com/mailtel/mailtel/pipeline/benchkit"
	"github.com/mailtel/mailtel/pipeline/config"
	"github.com/mailtel/mailtel/pipeline/obs"
	"github.com/mailtel/mailtel/pipeline/pipelinetest"
	"github.com/mailtel/mailtel/pipeline/sink"
	"github.com/mailtel/mailtel/schema"
)

// recorder is a Sink that remembers what it was given and can be told to fail.
type recorder struct {
	mu     sync.Mutex
	ids    map[string]int
	types  map[string]int
	fail   func(attempt int) error
	writes int
}

func newRecorder() *recorder { return &recorder{ids: map[string]int{}, types: map[string]int{}} }

func (r *recorder) Write(ctx context.Context, batch []*schema.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.writes++
	if r.fail != nil {
		if err := r.fail(r.writes); err != nil {
			return err
		}
	}
	for _, ev := range batch {
		r.ids[ev.ID]++
		r.types[ev.Type]++
	}
	return nil
}

func (r *recorder) Close(context.Context) error { return nil }

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.ids)
}

func event(i int, typ string) schema.Event {
	return schema.Event{ID: fmt.Sprintf("ev-%06d", i), Type: typ, Time: time.Unix(1700000000, int64(i)).UTC(),
		Server: "stalwart", Host: "mx1", Fields: []schema.Field{{Key: "accountId", Value: schema.Uint(uint64(i))}}}
}

// TestPublishRouteSink checks the routing rules end to end for each way a
// sink's ROUTED stream can be filled: by the router, by the server (stream
// source, the sink applies its rules), and a mix of both.
func TestPublishRouteSink(t *testing.T) {
	for _, tc := range []struct {
		name   string
		server string // [router] server-fan-out
	}{
		{"router", `[]`},
		{"server", `["errors", "siem"]`},
		{"mixed", `["siem"]`},
	} {
		t.Run(tc.name, func(t *testing.T) { testPublishRouteSink(t, tc.server) })
	}
}

func testPublishRouteSink(t *testing.T, server string) {
	env := pipelinetest.Start(t)
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
[tracing.level]
"smtp.rcpt-to" = "warn"
[tracer.errors]
type = "stdout"
level = "warn"
[webhook.siem]
url = "http://127.0.0.1:1/"
events = ["auth.*"]
[router]
server-fan-out = %s
`, server)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	env.EnsureStreams(t, cfg)

	m, h := obs.NewMetrics(), obs.NewHealth()
	log := zerolog.Nop()
	table := pipeline.NewTable(cfg.SinkSpecs(), cfg.Levels)
	router := pipeline.NewRouter(env.JS, table, pipeline.RouterOptionsFrom(cfg), log, m, h)
	sinks := map[string]*recorder{"errors": newRecorder(), "siem": newRecorder()}
	var wg sync.WaitGroup
	run := func(f func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(ctx); err != nil {
				t.Errorf("run: %v", err)
			}
		}()
	}
	run(router.Run)
	for _, spec := range cfg.SinkSpecs() {
		run(pipeline.NewSinkRunner(env.JS, spec.Name, sinks[spec.Name], pipeline.SinkOptionsFor(cfg, spec), log, m, h).Run)
	}

	// auth.success (info), auth.failed (info), acme.error (error),
	// smtp.rcpt-to (info, overridden to warn), telemetry.update (disable).
	types := []string{"auth.success", "auth.failed", "acme.error", "smtp.rcpt-to", "telemetry.update", "future.event"}
	const n = 3000
	evs := make([]schema.Event, n)
	for i := range evs {
		evs[i] = event(i, types[i%len(types)])
	}
	pub := pipeline.NewPublisher(env.JS, cfg.Levels, 256, nil)
	acks, err := pub.PublishAll(ctx, evs)
	if err != nil {
		t.Fatal(err)
	}
	for i, a := range acks {
		if a.Err != nil || a.Duplicate {
			t.Fatalf("ack %d: %+v", i, a)
		}
	}
	// A sender's retry of the same events stores nothing new.
	acks, err = pub.PublishAll(ctx, evs[:10])
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range acks {
		if !a.Duplicate {
			t.Fatalf("retry was stored again: %+v", a)
		}
	}
	pub.Close(ctx)

	per := n / len(types)
	want := map[string]map[string]int{
		"errors": {"acme.error": per, "smtp.rcpt-to": per},
		"siem":   {"auth.success": per, "auth.failed": per},
	}
	waitFor(t, 20*time.Second, func() bool { return sinks["errors"].count() == 2*per && sinks["siem"].count() == 2*per })
	time.Sleep(300 * time.Millisecond) // anything extra would show up now
	for name, w := range want {
		s := sinks[name]
		s.mu.Lock()
		if fmt.Sprint(s.types) != fmt.Sprint(w) {
			t.Errorf("sink %s got types %v, want %v", name, s.types, w)
		}
		for id, c := range s.ids {
			if c != 1 {
				t.Errorf("sink %s got %s %d times", name, id, c)
			}
		}
		s.mu.Unlock()
	}
	// With every sink fed by the server, the router does not consume.
	_, err = env.JS.Consumer(ctx, cfg.Streams.Events, cfg.Router.Consumer)
	if allServer := server == `["errors", "siem"]`; allServer != errors.Is(err, jetstream.ErrConsumerNotFound) {
		t.Errorf("every sink fed by the server: %v; router consumer lookup: %v", allServer, err)
	}
	// A sink the server feeds holds every event in its stream and skips
	// what its rules reject; the router copies only what a sink wants.
	for _, spec := range cfg.SinkSpecs() {
		wantStored, wantFiltered := uint64(2*per), 0.0
		if spec.ServerFanOut {
			wantStored, wantFiltered = n, float64(n-2*per)
		}
		st, err := env.JS.Stream(ctx, cfg.Streams.RoutedStream(spec.Name))
		if err != nil {
			t.Fatal(err)
		}
		if got := st.CachedInfo().State.Msgs; got != wantStored {
			t.Errorf("stream of sink %s holds %d messages, want %d", spec.Name, got, wantStored)
		}
		if got := benchkit.CounterValue(m.Filtered.WithLabelValues(spec.Name)); got != wantFiltered {
			t.Errorf("sink %s filtered %v events, want %v", spec.Name, got, wantFiltered)
		}
	}
	cancel()
	wg.Wait()
}

func TestSinkRetriesThenDeadLetters(t *testing.T) {
	env := pipelinetest.Start(t)
	cfg, err := config.Parse([]byte("[tracer.flaky]\ntype = \"stdout\"\nlevel = \"trace\"\n[tracer.broken]\ntype = \"stdout\"\nlevel = \"trace\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	env.EnsureStreams(t, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m, h, log := obs.NewMetrics(), obs.NewHealth(), zerolog.Nop()
	router := pipeline.NewRouter(env.JS, pipeline.NewTable(cfg.SinkSpecs(), cfg.Levels), pipeline.RouterOptionsFrom(cfg), log, m, h)
	go router.Run(ctx)

	flaky := newRecorder()
	flaky.fail = func(attempt int) error {
		if attempt <= 2 {
			return errors.New("receiver unavailable")
		}
		return nil
	}
	broken := newRecorder()
	broken.fail = func(int) error { return sink.Permanent(errors.New("receiver said 400")) }
	opts := pipeline.SinkOptionsFrom(cfg)
	opts.Retry.Base, opts.Retry.Max = time.Millisecond, 10*time.Millisecond
	go pipeline.NewSinkRunner(env.JS, "flaky", flaky, opts, log, m, h).Run(ctx)
	go pipeline.NewSinkRunner(env.JS, "broken", broken, opts, log, m, h).Run(ctx)

	pub := pipeline.NewPublisher(env.JS, cfg.Levels, 64, nil)
	evs := []schema.Event{event(1, "auth.success"), event(2, "auth.failed")}
	if _, err := pub.PublishAll(ctx, evs); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, func() bool { return flaky.count() == 2 })

	// The broken sink's events are in the DLQ with the reason.
	dlq, err := env.JS.OrderedConsumer(ctx, cfg.Streams.DLQ, jetstream.OrderedConsumerConfig{FilterSubjects: []string{"dlq.sink.broken.>"}})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for len(got) < 2 {
		msg, err := dlq.Next(jetstream.FetchMaxWait(10 * time.Second))
		if err != nil {
			t.Fatalf("read DLQ (have %v): %v", got, err)
		}
		var ev schema.Event
		if err := schema.Unmarshal(msg.Data(), &ev); err != nil {
			t.Fatal(err)
		}
		got[ev.ID] = msg.Headers().Get(pipeline.HeaderReason)
	}
	for _, ev := range evs {
		if got[ev.ID] != "receiver said 400" {
			t.Errorf("DLQ reason of %s = %q", ev.ID, got[ev.ID])
		}
	}
	if broken.count() != 0 {
		t.Errorf("broken sink recorded %d events", broken.count())
	}
}

func TestRouterDeadLettersGarbage(t *testing.T) {
	env := pipelinetest.Start(t)
	cfg, err := config.Parse([]byte("[tracer.all]\ntype = \"stdout\"\nlevel = \"trace\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	env.EnsureStreams(t, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m, h := obs.NewMetrics(), obs.NewHealth()
	go pipeline.NewRouter(env.JS, pipeline.NewTable(cfg.SinkSpecs(), catalog.NewLevels(nil)), pipeline.RouterOptionsFrom(cfg), zerolog.Nop(), m, h).Run(ctx)
	all := newRecorder()
	go pipeline.NewSinkRunner(env.JS, "all", all, pipeline.SinkOptionsFrom(cfg), zerolog.Nop(), m, h).Run(ctx)

	good := event(7, "auth.success")
	valid, err := schema.Marshal(&good)
	if err != nil {
		t.Fatal(err)
	}
	bad := []struct {
		name, subject string
		data          []byte
		dlq           string // subject of the dead letter
	}{
		{"not msgpack", "events.auth.success", []byte("\xc1 not msgpack"), "dlq.router.auth.success"},
		{"truncated", "events.auth.failed", valid[:len(valid)/2], "dlq.router.auth.failed"},
		{"type differs from subject", "events.acme.error", valid, "dlq.router.acme.error"},
		{"subject without an event id", "events.bogus", valid, "dlq.router.unknown"},
		{"empty", "events.auth.banned", nil, "dlq.router.auth.banned"},
	}
	for _, b := range bad {
		if _, err := env.JS.Publish(ctx, b.subject, b.data); err != nil {
			t.Fatal(err)
		}
	}
	// Good events behind the garbage are not blocked, including a type the
	// catalog does not know (kept, routed at the default level info).
	pub := pipeline.NewPublisher(env.JS, cfg.Levels, 8, nil)
	if _, err := pub.PublishAll(ctx, []schema.Event{good, event(8, "newer.event-type")}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, func() bool { return all.count() == 2 })
	dlq, err := env.JS.Stream(ctx, cfg.Streams.DLQ)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range bad {
		t.Run(b.name, func(t *testing.T) {
			msg, err := dlq.GetLastMsgForSubject(ctx, b.dlq)
			if err != nil {
				t.Fatalf("dead letter on %s: %v", b.dlq, err)
			}
			if msg.Header.Get(pipeline.HeaderReason) == "" || string(msg.Data) != string(b.data) ||
				msg.Header.Get(pipeline.HeaderSourceSubject) != b.subject {
				t.Errorf("dead letter reason %q source %q data %q", msg.Header.Get(pipeline.HeaderReason), msg.Header.Get(pipeline.HeaderSourceSubject), msg.Data)
			}
		})
	}
	if got := testCounter(t, m, "mailtel_dead_lettered_total"); got != float64(len(bad)) {
		t.Errorf("dead_lettered_total = %v, want %d", got, len(bad))
	}
}

func testCounter(t *testing.T, m *obs.Metrics, name string) float64 {
	t.Helper()
	mfs, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, c := range mf.GetMetric() {
				sum += c.GetCounter().GetValue()
			}
		}
	}
	return sum
}

func waitFor(t *testing.T, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v", d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
