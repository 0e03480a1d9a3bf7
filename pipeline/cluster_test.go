package pipeline_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/mailtel/mailtel/pipeline"
	"github.com/mailtel/mailtel/pipeline/config"
	"github.com/mailtel/mailtel/pipeline/obs"
	"github.com/mailtel/mailtel/pipeline/pipelinetest"
	"github.com/mailtel/mailtel/pipeline/sinks"
	"github.com/mailtel/mailtel/pipeline/synth"
	"github.com/mailtel/mailtel/schema"
)

// TestClusterLeaderFailover runs a publisher, a router and two sinks (a
// counting sink and a real JSON log tracer), each on its own connection, on
// a 3-node JetStream cluster with replicas 3, and shuts the EVENTS stream
// leader down while events flow. Every publish must be acknowledged without
// error, EVENTS must hold each event once and ROUTED each copy once, both
// sinks must get every event, and the log file must hold each event
// exactly once. The stopped node is then restarted and must rejoin EVENTS
// as a current replica.
//
// The router and sinks run with a 5s ack wait (the defaults are 30s and
// 60s): messages a dead consumer leader had delivered but whose delivery
// never reached the client are redelivered only after the ack wait, and the
// test should not take a minute for that.
//
// It runs twice: with the router copying to both sinks, and with the file
// sink fed by the server (server fan-out), whose source must survive the
// failover of the stream it reads as well.
func TestClusterLeaderFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("3-node cluster failover test: skipped with -short")
	}
	for _, tc := range []struct{ name, serverFanOut string }{
		{"router", `[]`},
		{"server-fan-out", `["file"]`},
	} {
		t.Run(tc.name, func(t *testing.T) { testClusterLeaderFailover(t, tc.serverFanOut) })
	}
}

func testClusterLeaderFailover(t *testing.T, serverFanOut string) {
	const (
		total  = 20_000
		killAt = total / 3 // events offered before the leader is shut down
	)
	c := pipelinetest.StartCluster(t, 3)
	logDir := t.TempDir()
	cfg, err := config.Parse(fmt.Appendf(nil, `
[tracer.count]
type = "stdout"
level = "trace"

[tracer.file]
type = "log"
level = "trace"
path = %q
prefix = "cluster"
rotate = "never"
format = "json"

[nats]
url = %q

[streams]
replicas = 3
duplicates = "2m"

[router]
ack-wait = "5s"
server-fan-out = %s

[sinks]
ack-wait = "5s"
`, logDir, c.URLs, serverFanOut))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()

	// Each stage has its own connection, as separate processes would.
	_, adminJS := c.Connect(t, "mailtel-admin")
	sctx, scancel := context.WithTimeout(ctx, 20*time.Second)
	if err := pipeline.EnsureStreams(sctx, adminJS, cfg); err != nil {
		t.Fatal(err)
	}
	scancel()
	rnc, routerJS := c.Connect(t, "mailtel-router")
	snc, sinksJS := c.Connect(t, "mailtel-sinks")
	pnc, pubJS := c.Connect(t, "mailtel-publisher")
	// The connections' handlers run on their own goroutines, possibly as
	// the connections close: they stop logging once the test is cleaning up
	// (this cleanup runs before the connections are closed).
	var ending atomic.Bool
	t.Cleanup(func() { ending.Store(true) })
	logf := func(format string, args ...any) {
		if !ending.Load() {
			t.Logf(format, args...)
		}
	}
	for _, nc := range []*nats.Conn{rnc, snc, pnc} {
		nc.SetDisconnectErrHandler(func(nc *nats.Conn, err error) { logf("%s disconnected: %v", nc.Opts.Name, err) })
		nc.SetReconnectHandler(func(nc *nats.Conn) { logf("%s reconnected to %s", nc.Opts.Name, nc.ConnectedUrl()) })
		// Slow-consumer drops come in bursts: log the first of each
		// connection and count the rest.
		var asyncErrs atomic.Int64
		nc.SetErrorHandler(func(nc *nats.Conn, sub *nats.Subscription, err error) {
			if asyncErrs.Add(1) == 1 {
				on := "the connection" // sub is nil for connection errors
				if sub != nil {
					on = sub.Subject
				}
				logf("%s: async error on %s: %v (further ones counted)", nc.Opts.Name, on, err)
			}
		})
		t.Cleanup(func() {
			if n := asyncErrs.Load(); n > 1 {
				t.Logf("%s: %d async errors in all", nc.Opts.Name, n)
			}
		})
	}
	// state describes where the consumers are, for failure messages.
	state := func() string {
		ictx, icancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer icancel()
		var b strings.Builder
		for _, sc := range [][2]string{{cfg.Streams.Events, cfg.Router.Consumer}, {cfg.Streams.RoutedStream("count"), pipeline.SinkConsumerName("count")}, {cfg.Streams.RoutedStream("file"), pipeline.SinkConsumerName("file")}} {
			info, err := consumerInfo(ictx, adminJS, sc[0], sc[1])
			if err != nil {
				fmt.Fprintf(&b, "\n  %s: %v", sc[1], err)
				continue
			}
			fmt.Fprintf(&b, "\n  %s: delivered %d, ack floor %d, pending %d, ack pending %d, redelivered %d, waiting pulls %d",
				sc[1], info.Delivered.Stream, info.AckFloor.Stream, info.NumPending, info.NumAckPending, info.NumRedelivered, info.NumWaiting)
		}
		return b.String()
	}

	// The stages' warnings and errors, shown when the test fails.
	logs := &pipelinetest.SyncBuffer{}
	log := zerolog.New(logs).Level(zerolog.WarnLevel).With().Timestamp().Logger()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("pipeline warnings and errors:\n%s", logs.String())
		}
	})
	m, h := obs.NewMetrics(), obs.NewHealth()
	table := pipeline.NewTable(cfg.SinkSpecs(), cfg.Levels)
	runCtx, stopRun := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	run := func(name string, f func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(runCtx); err != nil {
				t.Errorf("%s: %v", name, err)
			}
		}()
	}
	defer func() {
		// A stage stuck on a lost acknowledgement would keep Run from
		// returning: fail with where it is stuck instead of hanging.
		stopRun()
		stopped := make(chan struct{})
		go func() { wg.Wait(); close(stopped) }()
		select {
		case <-stopped:
		case <-time.After(15 * time.Second):
			t.Errorf("router and sinks did not stop within 15s of their context ending; pipeline goroutines:\n%s", pipelineStacks())
		}
	}()
	run("router", pipeline.NewRouter(routerJS, table, pipeline.RouterOptionsFrom(cfg), log, m, h).Run)
	counter := newRecorder() // counts how often each event id reached the sink
	var countSpec, fileSpec config.SinkSpec
	for _, s := range cfg.SinkSpecs() {
		switch s.Name {
		case "count":
			countSpec = s
		case "file":
			fileSpec = s
		}
	}
	run("sink count", pipeline.NewSinkRunner(sinksJS, "count", counter, pipeline.SinkOptionsFor(cfg, countSpec), log, m, h).Run)
	fileSink, err := sinks.Build(fileSpec, sinks.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer fileSink.Close(context.Background())
	run("sink file", pipeline.NewSinkRunner(sinksJS, "file", fileSink, pipeline.SinkOptionsFor(cfg, fileSpec), log, m, h).Run)

	// Publish; the events the sinks should get are those the table routes.
	pub := pipeline.NewPublisher(pubJS, cfg.Levels, 512, nil)
	gen := synth.New(synth.Options{Seed: 11, Start: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)})
	want := map[string]bool{}
	var acked, failed atomic.Int64
	var firstErr atomic.Value
	var ev schema.Event
	killed := -1
	began := time.Now()
	for i := range total {
		if i == killAt {
			// Mid-flow: wait until the sinks are writing, then stop the
			// EVENTS leader.
			waitUntil(t, 20*time.Second, "sinks to start writing", func() bool { return counter.count() > 500 })
			leader := c.WaitLeaderOf(t, cfg.Streams.Events, 5*time.Second)
			t.Logf("after %d events offered (%d acked, %d at the count sink): shutting down n%d, leader of EVENTS (ROUTED_file leader: n%d)",
				i, acked.Load(), counter.count(), leader+1, c.LeaderOf(cfg.Streams.RoutedStream("file"))+1)
			c.Stop(leader)
			killed = leader
		}
		gen.Next(&ev)
		if targets, _ := table.Route(ev.Type); len(targets) > 0 {
			want[ev.ID] = true
		}
		err := pub.Publish(ctx, &ev, func(a pipeline.Ack) {
			if a.Err != nil {
				failed.Add(1)
				firstErr.CompareAndSwap(nil, a.Err)
				return
			}
			acked.Add(1)
		})
		if err != nil {
			t.Fatalf("publish event %d of %d blocked (%d acked, %d failed): %v\nconsumers:%s\npipeline goroutines:\n%s",
				i, total, acked.Load(), failed.Load(), err, state(), pipelineStacks())
		}
	}
	if err := pub.Close(ctx); err != nil {
		t.Fatalf("publisher did not get every acknowledgement (%d acked, %d failed of %d): %v\npipeline goroutines:\n%s",
			acked.Load(), failed.Load(), total, err, pipelineStacks())
	}
	t.Logf("published %d events in %v (%d acked, %d failed); EVENTS leader now n%d",
		total, time.Since(began).Round(time.Millisecond), acked.Load(), failed.Load(), c.LeaderOf(cfg.Streams.Events)+1)
	if failed.Load() > 0 {
		t.Fatalf("%d publishes failed after retries; first: %v", failed.Load(), firstErr.Load())
	}
	if now := c.WaitLeaderOf(t, cfg.Streams.Events, 5*time.Second); now == killed || c.Servers()[killed] != nil {
		t.Fatalf("EVENTS leader n%d after stopping n%d: want another, running node", now+1, killed+1)
	}

	// Every routed event reaches both sinks.
	readLog := func() map[string]int { return countLogIDs(t, filepath.Join(logDir, "cluster")) }
	var logged map[string]int
	if !pollUntil(ctx, func() bool {
		logged = readLog()
		return counter.count() >= len(want) && len(logged) >= len(want)
	}) {
		t.Fatalf("after %v: count sink has %d, log file %d of %d events\nconsumers:%s\npipeline goroutines:\n%s",
			time.Since(began).Round(time.Millisecond), counter.count(), len(logged), len(want), state(), pipelineStacks())
	}
	t.Logf("all %d routed events at both sinks %v after the start", len(want), time.Since(began).Round(time.Millisecond))

	// Streams: each event stored once in EVENTS, each copy once in its
	// sink's ROUTED stream, despite retried publishes and redelivered
	// routing (or a source that had to find its place again). A stream
	// the server fills holds every event.
	sctx, scancel = context.WithTimeout(ctx, 10*time.Second)
	defer scancel()
	stored := map[string]uint64{cfg.Streams.Events: total}
	for _, spec := range []config.SinkSpec{countSpec, fileSpec} {
		stored[cfg.Streams.RoutedStream(spec.Name)] = uint64(len(want))
		if spec.ServerFanOut {
			stored[cfg.Streams.RoutedStream(spec.Name)] = total
		}
	}
	for name, n := range stored {
		s, err := adminJS.Stream(sctx, name)
		if err != nil {
			t.Fatalf("stream %s: %v", name, err)
		}
		info, err := s.Info(sctx)
		if err != nil {
			t.Fatalf("stream %s info: %v", name, err)
		}
		if info.State.Msgs != n {
			t.Errorf("stream %s holds %d messages, want %d", name, info.State.Msgs, n)
		}
		if info.Cluster == nil || len(info.Cluster.Replicas) != 2 {
			t.Errorf("stream %s cluster info %+v: want a leader and 2 replicas", name, info.Cluster)
		}
	}

	// The stopped node comes back on its store and catches up: EVENTS has
	// a leader and two current replicas again, the node among them.
	c.Restart(t, killed)
	killedName := fmt.Sprintf("n%d", killed+1)
	rctx, rcancel := context.WithTimeout(ctx, 20*time.Second)
	defer rcancel()
	cluster := "no stream info"
	if !pollUntil(rctx, func() bool {
		s, err := adminJS.Stream(rctx, cfg.Streams.Events)
		if err != nil {
			return false // an election, or the deadline: keep the last state
		}
		info, err := s.Info(rctx)
		if err != nil || info.Cluster == nil {
			return false
		}
		cluster = "leader " + info.Cluster.Leader + ", replicas"
		seen, current := info.Cluster.Leader == killedName, true
		for _, r := range info.Cluster.Replicas {
			cluster += fmt.Sprintf(" %s (current %v, offline %v)", r.Name, r.Current, r.Offline)
			current = current && r.Current && !r.Offline
			seen = seen || r.Name == killedName
		}
		return info.Cluster.Leader != "" && len(info.Cluster.Replicas) == 2 && current && seen
	}) {
		t.Errorf("%s restarted, but EVENTS does not have it as a current member: %s", killedName, cluster)
	}

	// Let stray redeliveries show up, then compare.
	time.Sleep(500 * time.Millisecond)
	logged = readLog()
	counter.mu.Lock()
	defer counter.mu.Unlock()
	redelivered := 0
	for id, n := range counter.ids {
		if !want[id] {
			t.Errorf("count sink got %s, which was not routed to it", id)
		}
		redelivered += n - 1
	}
	for id := range want {
		if counter.ids[id] == 0 {
			t.Errorf("count sink never got %s", id)
		}
		if logged[id] != 1 {
			t.Errorf("log file has %s %d times, want once", id, logged[id])
		}
	}
	for id := range logged {
		if !want[id] {
			t.Errorf("log file has %s, which was not routed to it", id)
		}
	}
	// At-least-once delivery lets a batch whose ack was lost in the
	// failover reach a sink again; sinks are idempotent by event id (the
	// log file above). Report how many, so a change is visible.
	t.Logf("count sink: %d distinct events, %d redelivered copies; consumers:%s", len(counter.ids), redelivered, state())
}

func consumerInfo(ctx context.Context, js jetstream.JetStream, stream, name string) (*jetstream.ConsumerInfo, error) {
	cons, err := js.Consumer(ctx, stream, name)
	if err != nil {
		return nil, err
	}
	return cons.Info(ctx)
}

// countLogIDs reads a JSON-lines log file and counts each event id.
func countLogIDs(t *testing.T, path string) map[string]int {
	t.Helper()
	ids := map[string]int{}
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return ids
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		var line struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			continue // a line being written; read again on the next poll
		}
		ids[line.ID]++
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return ids
}

// waitUntil polls cond every 20ms and fails the test after d.
func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	if !pollUntil(ctx, cond) {
		t.Fatalf("waited %v for %s", d, what)
	}
}

// pollUntil polls cond every 20ms until it holds (true) or ctx ends (false).
func pollUntil(ctx context.Context, cond func() bool) bool {
	for !cond() {
		select {
		case <-ctx.Done():
			return cond()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return true
}

// pipelineStacks returns the stacks of the goroutines running mailtel's
// pipeline code (not tests), to show where a stage is stuck.
func pipelineStacks() string {
	buf := make([]byte, 4<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "mailtel/mailtel/pipeline.") && !strings.Contains(g, "pipelineStacks") {
			out = append(out, g)
		}
	}
	return strings.Join(out, "\n\n")
}

// TestClusterConcurrentEnsureStreams starts like a deployment does: every
// process (router, sinks, publishers) runs EnsureStreams at the same time
// against a new 3-node cluster, then every router binds the shared durable
// consumer at the same time. Each must succeed, promptly.
func TestClusterConcurrentEnsureStreams(t *testing.T) {
	if testing.Short() {
		t.Skip("3-node cluster test: skipped with -short")
	}
	c := pipelinetest.StartCluster(t, 3)
	cfg := config.Default()
	cfg.Streams.Replicas = 3
	const procs = 3
	jss := make([]jetstream.JetStream, procs)
	for i := range jss {
		_, jss[i] = c.Connect(t, fmt.Sprintf("mailtel-proc-%d", i))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	errs := make([]error, procs)
	took := make([]time.Duration, procs)
	var wg sync.WaitGroup
	for i := range jss {
		wg.Add(1)
		go func() {
			defer wg.Done()
			began := time.Now()
			errs[i] = pipeline.EnsureStreams(ctx, jss[i], cfg, "log", "siem")
			took[i] = time.Since(began)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		t.Logf("process %d: EnsureStreams took %v, err %v", i, took[i].Round(time.Millisecond), err)
		if err != nil {
			t.Errorf("process %d: %v", i, err)
		}
	}
	if t.Failed() {
		return
	}

	// Then every router process binds the shared durable consumer at once.
	table := pipeline.NewTable(cfg.SinkSpecs(), cfg.Levels)
	for i := range jss {
		wg.Add(1)
		go func() {
			defer wg.Done()
			began := time.Now()
			r := pipeline.NewRouter(jss[i], table, pipeline.RouterOptionsFrom(cfg), zerolog.Nop(), obs.NewMetrics(), obs.NewHealth())
			_, errs[i] = r.Consumer(ctx)
			took[i] = time.Since(began)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		t.Logf("process %d: router consumer took %v, err %v", i, took[i].Round(time.Millisecond), err)
		if err != nil {
			t.Errorf("process %d: %v", i, err)
		}
	}
}
