package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mailtel/mailtel/pipeline"
	"github.com/mailtel/mailtel/pipeline/benchkit"
	"github.com/mailtel/mailtel/pipeline/config"
	"github.com/mailtel/mailtel/pipeline/obs"
	"github.com/mailtel/mailtel/pipeline/sinks"
)

// The sinks of the pipeline scenarios.
const (
	logSink  = "log"
	hookSink = "hook"
	// webhookThrottle replaces the default throttle of 1s between two POSTs
	// of one request slot, which would cap the webhook at
	// concurrency*batch-size = 400 events/s and measure nothing else.
	webhookThrottle = "1ms"
	logPrefix       = "bench"
)

// configTOML is the configuration of a pipeline scenario: a log tracer at
// level trace writing json, plus, for the fan-out, the metrics sink and a
// webhook receiving every event; with server, every sink is named in
// [router] server-fan-out. Everything else is the default.
func configTOML(logDir string, fanout, server bool, hookURL, maxBytes string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "[logging]\nlevel = \"warn\"\nformat = \"json\"\n\n")
	if server {
		sinks := `"` + logSink + `"`
		if fanout {
			sinks += `, "metrics", "` + hookSink + `"`
		}
		fmt.Fprintf(&b, "[router]\nserver-fan-out = [%s]\n\n", sinks)
	}
	if maxBytes != "" {
		fmt.Fprintf(&b, "[streams]\nmax-bytes = %q\n\n", maxBytes)
	}
	fmt.Fprintf(&b, "[tracer.%s]\ntype = \"log\"\nlevel = \"trace\"\nformat = \"json\"\npath = %q\nprefix = %q\n\n", logSink, logDir, logPrefix)
	if fanout {
		fmt.Fprintf(&b, "[metrics.prometheus]\nenable = true\nlisten = \"127.0.0.1:0\"\n\n")
		fmt.Fprintf(&b, "[webhook.%s]\nurl = %q\nevents = [\"*\"]\nthrottle = %q\n", hookSink, hookURL, webhookThrottle)
	}
	return b.String()
}

// routedStreams names the ROUTED streams of c's sinks.
func routedStreams(c *config.Config) []string {
	var names []string
	for _, sink := range c.SinkNames() {
		names = append(names, c.Streams.RoutedStream(sink))
	}
	return names
}

// waitSources waits until the server has set up the EVENTS source of
// every ROUTED stream of c. It takes the server about 200 ms after the
// stream is made; events published before then wait for it, which a
// phase of a few seconds would count in its latency.
func (b *bench) waitSources(ctx context.Context, c *config.Config) error {
	start := time.Now()
	for _, name := range routedStreams(c) {
		for {
			st, err := b.js.Stream(ctx, name)
			if err != nil {
				return fmt.Errorf("stream info %s: %w", name, err)
			}
			srcs := st.CachedInfo().Sources
			if len(srcs) > 0 && srcs[0].Active >= 0 {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("wait for the server to source %s into %s: %w", c.Streams.Events, name, ctx.Err())
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	b.setting("server_fan_out.source_setup", time.Since(start).Round(time.Millisecond).String())
	return nil
}

// stage is a running pipeline: fresh streams, the sinks (in this process,
// on one connection, as a `sinks` process runs them), the router and a
// publisher on its own connection.
type stage struct {
	b      *bench
	name   string
	dir    string
	logDir string
	cfg    *config.Config
	table  *pipeline.Table

	hook     *httptest.Server
	hookReqs atomic.Int64

	sinkNC      *nats.Conn
	sinkMetrics *obs.Metrics
	sinkNames   []string
	timed       map[string]*benchkit.TimedSink
	written     map[string]prometheus.Counter
	sinkCancel  context.CancelFunc
	sinkWG      sync.WaitGroup

	router router

	pubNC   *nats.Conn
	pub     *pipeline.Publisher
	pubDone bool
}

// startStage sets up a pipeline scenario. rec, when not nil, times the log
// sink's writes. maxBytes bounds the streams ("" for no bound).
func (b *bench) startStage(ctx context.Context, name string, fanout bool, rec *benchkit.LatencyRecorder, maxBytes string) (_ *stage, err error) {
	s := &stage{b: b, name: name, dir: filepath.Join(b.dir, name), timed: map[string]*benchkit.TimedSink{},
		written: map[string]prometheus.Counter{}}
	defer func() {
		if err != nil {
			s.close()
		}
	}()
	s.logDir = filepath.Join(s.dir, "logs")
	if err := os.MkdirAll(s.logDir, 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", s.logDir, err)
	}
	hookURL := ""
	if fanout {
		// A receiver that answers 200 at once, after reading the body.
		s.hook = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			s.hookReqs.Add(1)
			w.WriteHeader(http.StatusOK)
		}))
		hookURL = s.hook.URL + "/events"
	}
	cfgPath := filepath.Join(s.dir, "mailtel.toml")
	if err := os.WriteFile(cfgPath, []byte(configTOML(s.logDir, fanout, serverScenario(name), hookURL, maxBytes)), 0o644); err != nil {
		return nil, fmt.Errorf("write config: %w", err)
	}
	if s.cfg, err = config.Load(cfgPath); err != nil {
		return nil, err
	}
	s.cfg.NATS.URL = b.url
	s.table = pipeline.NewTable(s.cfg.SinkSpecs(), s.cfg.Levels)
	st := s.cfg.Streams
	if err := b.deleteStreams(ctx, append([]string{st.Events, st.DLQ}, routedStreams(s.cfg)...)...); err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := pipeline.EnsureStreams(cctx, b.js, s.cfg); err != nil {
		return nil, err
	}
	if serverScenario(name) {
		if err := b.waitSources(cctx, s.cfg); err != nil {
			return nil, err
		}
	}

	// Sinks.
	var sinkJS jetstream.JetStream
	if s.sinkNC, sinkJS, err = pipeline.Connect(cctx, s.cfg.NATS, "mailtel-sinks", 0); err != nil { // as `sinks` connects
		return nil, err
	}
	s.sinkMetrics = obs.NewMetrics()
	health := obs.NewHealth()
	sctx, scancel := context.WithCancel(context.Background())
	s.sinkCancel = scancel
	for _, spec := range s.cfg.SinkSpecs() {
		sk, err := sinks.Build(spec, sinks.Options{Registry: s.sinkMetrics.Registry})
		if err != nil {
			return nil, err
		}
		ts := &benchkit.TimedSink{Sink: sk}
		if spec.Name == logSink {
			ts.Recorder = rec
		}
		s.sinkNames = append(s.sinkNames, spec.Name)
		s.timed[spec.Name] = ts
		s.written[spec.Name] = s.sinkMetrics.Written.WithLabelValues(spec.Name)
		o := pipeline.SinkOptionsFor(s.cfg, spec) // as sinks.Run does
		health.Set("sink:"+spec.Name, fmt.Errorf("starting"))
		runner := pipeline.NewSinkRunner(sinkJS, spec.Name, ts, o, b.log, s.sinkMetrics, health)
		s.sinkWG.Add(1)
		go func() {
			defer s.sinkWG.Done()
			if err := runner.Run(sctx); err != nil {
				b.log.Error().Err(err).Str("sink", spec.Name).Msg("sink runner")
			}
		}()
	}
	deadline := time.Now().Add(30 * time.Second)
	for health.Ready() != nil {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return nil, fmt.Errorf("sinks not ready: %v", health.Ready())
		}
		time.Sleep(10 * time.Millisecond)
	}

	// Router.
	if s.router, err = b.startRouter(ctx, s.cfg, cfgPath, s.dir, isSoak(name)); err != nil {
		return nil, err
	}

	// Publisher, set up as `publisher` sets it up.
	pubNC, pubJS, err := pipeline.Connect(cctx, s.cfg.NATS, "mailtel-publisher", s.cfg.Publisher.MaxInFlight*2)
	if err != nil {
		return nil, err
	}
	s.pubNC = pubNC
	s.pub = pipeline.NewPublisher(pubJS, s.cfg.Levels, s.cfg.Publisher.MaxInFlight, nil)
	return s, nil
}

// close stops the publisher, the router and the sinks, and deletes the
// streams and the scenario's files. It is idempotent.
func (s *stage) close() {
	if s.pub != nil && !s.pubDone {
		s.pubDone = true
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		s.pub.Close(ctx)
		cancel()
	}
	if s.pubNC != nil {
		s.pubNC.Close()
		s.pubNC = nil
	}
	if s.router != nil {
		s.router.stop()
		s.router = nil
	}
	if s.sinkCancel != nil {
		s.sinkCancel()
		s.sinkCancel = nil
		done := make(chan struct{})
		go func() { s.sinkWG.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			s.b.log.Error().Msg("sink runners did not stop within 15s")
		}
	}
	for _, ts := range s.timed {
		ts.Close(context.Background())
	}
	s.timed = nil
	if s.sinkNC != nil {
		s.sinkNC.Close()
		s.sinkNC = nil
	}
	if s.hook != nil {
		s.hook.Close()
		s.hook = nil
	}
	if s.cfg != nil {
		st := s.cfg.Streams
		s.b.deleteStreams(context.Background(), append([]string{st.Events, st.DLQ}, routedStreams(s.cfg)...)...)
	}
	if !s.b.o.keep {
		os.RemoveAll(s.dir)
	}
}

// writtenBy returns the sink's mailtel_written_total.
func (s *stage) writtenBy(name string) int64 { return int64(benchkit.CounterValue(s.written[name])) }

// lastWrite returns when the last of the sinks' writes returned.
func (s *stage) lastWrite() time.Time {
	var last time.Time
	for _, ts := range s.timed {
		if t := ts.LastWrite(); t.After(last) {
			last = t
		}
	}
	return last
}

// progress sums what the sinks wrote.
func (s *stage) progress() int64 {
	var n int64
	for _, name := range s.sinkNames {
		n += s.writtenBy(name)
	}
	return n
}

// diag says where events are, for an error message.
func (s *stage) diag(ctx context.Context, published, acked int64, expected map[string]int64) string {
	var b strings.Builder
	fmt.Fprintf(&b, "published %d (acked by JetStream %d)", published, acked)
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if rs, err := s.router.sample(sctx); err == nil {
		fmt.Fprintf(&b, ", router received %.0f and stored %.0f copies", rs.Received, rs.Routed)
	} else {
		fmt.Fprintf(&b, ", router: %v", err)
	}
	for _, name := range s.sinkNames {
		fmt.Fprintf(&b, ", sink %s wrote %d of %d", name, s.writtenBy(name), expected[name])
	}
	if v := benchkit.CounterValue(s.sinkMetrics.Retried.WithLabelValues("sink:" + logSink)); v > 0 {
		fmt.Fprintf(&b, ", log sink retried %.0f", v)
	}
	fmt.Fprintf(&b, "; %s", s.router.describe())
	return b.String()
}

// drain waits until JetStream acked all sent events and every sink wrote
// what it should, and fails if one could not be published.
func (s *stage) drain(ctx context.Context, sc string, sent int64, acked, failed *atomic.Int64, expected map[string]int64) error {
	err := s.b.waitUntil(ctx, sc, func() (bool, int64) {
		return (s.done(expected) && acked.Load() == sent) || failed.Load() > 0, s.progress() + acked.Load()
	}, func() string { return s.diag(ctx, sent, acked.Load(), expected) })
	if err != nil {
		return err
	}
	if f := failed.Load(); f > 0 {
		return fmt.Errorf("%d events could not be published", f)
	}
	return nil
}

// done reports whether every sink wrote what it should.
func (s *stage) done(expected map[string]int64) bool {
	for _, name := range s.sinkNames {
		if s.writtenBy(name) < expected[name] {
			return false
		}
	}
	return true
}

// logLines counts the lines of the log sink's files.
func (s *stage) logLines() (int64, error) {
	files, err := filepath.Glob(filepath.Join(s.logDir, logPrefix+".*"))
	if err != nil {
		return 0, err
	}
	var n int64
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return 0, fmt.Errorf("read log sink output: %w", err)
		}
		n += int64(bytes.Count(data, []byte{'\n'}))
	}
	return n, nil
}

// dlq returns how many messages the DLQ stream holds.
func (s *stage) dlq(ctx context.Context) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	st, err := s.b.js.Stream(ctx, s.cfg.Streams.DLQ)
	if err != nil {
		return 0, fmt.Errorf("dlq stream info: %w", err)
	}
	return st.CachedInfo().State.Msgs, nil
}

// addRouterRows reports the router's cost between two samples, per source
// event and (for more than one sink) per stored copy.
func (b *bench) addRouterRows(sc string, r0, r1 routerSample, events int64) {
	if r0.CPU < 0 {
		return // in-process router: its cost is in this process's
	}
	b.rep.Add(sc, "router cpu", perEvent(r1.CPU-r0.CPU, events), "µs/event")
	copies := int64(r1.Routed - r0.Routed)
	if copies != events {
		b.rep.Add(sc, "router cpu per copy", perEvent(r1.CPU-r0.CPU, copies), "µs/copy")
	}
	b.rep.Add(sc, "router allocs", (r1.Mallocs-r0.Mallocs)/float64(events), "allocs/event")
	b.rep.Add(sc, "router alloc bytes", (r1.AllocBytes-r0.AllocBytes)/float64(events), "B/event")
	b.rep.Add(sc, "router peak rss", mib(r1.HWM), "MiB")
}
