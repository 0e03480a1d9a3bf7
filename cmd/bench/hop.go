package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mailtel/mailtel/pipeline"
	"github.com/mailtel/mailtel/pipeline/app"
	"github.com/mailtel/mailtel/pipeline/config"
	"github.com/mailtel/mailtel/schema"
)

// The raw hop's stream and consumer.
const (
	hopStream   = "BENCH_HOP"
	hopPrefix   = "hop."
	hopConsumer = "bench-raw-hop"
)

// hop compares the router with the plainest copy loop nats.go allows, over
// the same stored events. Each round stores evs in a fresh EVENTS stream
// with nothing consuming it; then the router (log sink at level trace,
// so every event is copied once) drains it into ROUTED_log, and a raw hop
// drains it again on a durable consumer of its own into BENCH_HOP, a
// stream configured as ROUTED_log: consume (as many Consume calls and the
// same pull batch as the router's workers) -> PublishMsgAsync with
// Nats-Msg-Id -> ack the source when the copy is stored. Which goes
// first alternates by round. A rate is the copies over the time from the
// first to the last copy stored (the server's timestamps), so neither
// process's start counts. No sink runs.
func (b *bench) hop(ctx context.Context, evs []schema.Event) error {
	dir := filepath.Join(b.dir, scHop)
	logDir := filepath.Join(dir, "logs")
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", logDir, err)
	}
	defer func() {
		if !b.o.keep {
			os.RemoveAll(dir)
		}
	}()
	cfgPath := filepath.Join(dir, "mailtel.toml")
	if err := os.WriteFile(cfgPath, []byte(configTOML(logDir, false, false, "", "")), 0o644); err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return err
	}
	cfg.NATS.URL = b.url
	st := cfg.Streams
	streams := []string{st.Events, st.DLQ, st.RoutedStream(logSink), hopStream}
	defer b.deleteStreams(context.Background(), streams...)
	table := pipeline.NewTable(cfg.SinkSpecs(), cfg.Levels)
	var copies int64
	for i := range evs {
		ts, _ := table.Route(evs[i].Type)
		copies += int64(len(ts))
	}
	if copies != int64(len(evs)) {
		return fmt.Errorf("the log sink takes %d copies of %d events; the hop wants one copy each", copies, len(evs))
	}
	b.setting("hop", fmt.Sprintf("raw hop: %d Consume calls, PullMaxMessages %d, like the router's workers; copies into %s configured as %s",
		cfg.Router.Workers, cfg.Router.Batch, hopStream, st.RoutedStream(logSink)))

	var routerRates, rawRates, ratios []float64
	for i := 1; i <= b.o.rounds; i++ {
		if err := b.deleteStreams(ctx, streams...); err != nil {
			return err
		}
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := pipeline.EnsureStreams(cctx, b.js, cfg)
		cancel()
		if err != nil {
			return err
		}
		b.progress("hop: round %d of %d: storing %d events", i, b.o.rounds, len(evs))
		if err := b.store(ctx, cfg, evs); err != nil {
			return err
		}
		var rr, rh float64
		runRouter := func() error {
			var err error
			rr, err = b.drainRouter(ctx, cfg, cfgPath, dir, copies)
			return err
		}
		runRaw := func() error {
			var err error
			rh, err = b.drainRaw(ctx, cfg, copies)
			return err
		}
		order := []func() error{runRouter, runRaw}
		if i%2 == 0 {
			order = []func() error{runRaw, runRouter}
		}
		for _, f := range order {
			if err := f(); err != nil {
				return err
			}
		}
		b.progress("hop: round %d: router %.0f events/s, raw hop %.0f msg/s", i, rr, rh)
		routerRates, rawRates, ratios = append(routerRates, rr), append(rawRates, rh), append(ratios, rr/rh)
		if b.o.rounds > 1 {
			b.rep.Add(scSummary, fmt.Sprintf("round %d: router/raw-hop", i), rr/rh, "ratio")
		}
	}
	median := func(vs []float64) float64 {
		vs = slices.Sorted(slices.Values(vs))
		return vs[(len(vs)-1)/2]
	}
	b.rep.Add(scHop, "router", median(routerRates), "events/s")
	b.rep.Add(scHop, "raw-hop", median(rawRates), "msg/s")
	b.rep.Add(scSummary, "router/raw-hop", median(ratios), "ratio")
	return nil
}

// store publishes evs into EVENTS with the Publisher and waits for every
// ack.
func (b *bench) store(ctx context.Context, cfg *config.Config, evs []schema.Event) error {
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	nc, js, err := pipeline.Connect(cctx, cfg.NATS, "mailtel-publisher", cfg.Publisher.MaxInFlight*2)
	if err != nil {
		return err
	}
	defer nc.Close()
	pub := pipeline.NewPublisher(js, cfg.Levels, cfg.Publisher.MaxInFlight, nil)
	var acked, failed atomic.Int64
	for i := range evs {
		if err := pub.Publish(ctx, &evs[i], func(a pipeline.Ack) {
			if a.Err != nil || a.Duplicate {
				failed.Add(1)
			}
			acked.Add(1)
		}); err != nil {
			return fmt.Errorf("publish: %w", err)
		}
	}
	n := int64(len(evs))
	err = b.waitUntil(ctx, "hop: store", func() (bool, int64) { return acked.Load() == n, acked.Load() },
		func() string { return fmt.Sprintf("%d of %d acked", acked.Load(), n) })
	pctx, pcancel := context.WithTimeout(context.Background(), 10*time.Second)
	pub.Close(pctx)
	pcancel()
	if err != nil {
		return err
	}
	if f := failed.Load(); f > 0 {
		return fmt.Errorf("hop: %d events not stored (or duplicates)", f)
	}
	return nil
}

// copyRate waits until stream holds n messages and returns n over the
// time from its first message to its last.
func (b *bench) copyRate(ctx context.Context, stream string, n int64, diag func() string) (float64, error) {
	var info *jetstream.StreamInfo
	err := b.waitUntil(ctx, "hop: "+stream, func() (bool, int64) {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		s, err := b.js.Stream(cctx, stream)
		if err != nil {
			return false, 0
		}
		info = s.CachedInfo()
		return int64(info.State.Msgs) >= n, int64(info.State.Msgs)
	}, diag)
	if err != nil {
		return 0, err
	}
	d := info.State.LastTime.Sub(info.State.FirstTime)
	if d <= 0 {
		return 0, fmt.Errorf("hop: %s: %d messages stored within %s", stream, n, d)
	}
	return float64(n-1) / d.Seconds(), nil
}

// drainRouter starts the router on the stored events, waits for its n
// copies, stops it and returns its rate.
func (b *bench) drainRouter(ctx context.Context, cfg *config.Config, cfgPath, dir string, n int64) (float64, error) {
	r, err := b.startRouter(ctx, cfg, cfgPath, dir, false)
	if err != nil {
		return 0, err
	}
	defer r.stop()
	return b.copyRate(ctx, cfg.Streams.RoutedStream(logSink), n, r.describe)
}

// rawHopEnv, when set, makes this binary the raw hop's process (see
// rawHopSpec) instead of the bench: the router runs in a process of its
// own, so the raw hop does too, not beside the NATS server in the bench.
const rawHopEnv = "MAILTEL_BENCH_RAW_HOP"

// rawHopSpec says what the raw hop's process copies; rawHopEnv holds it as
// JSON.
type rawHopSpec struct {
	URL      string `json:"url"`
	Stream   string `json:"stream"`
	Consumer string `json:"consumer"`
	Workers  int    `json:"workers"`
	Batch    int    `json:"batch"`
}

// runRawHopChild is the main of the raw hop's process: it copies until
// SIGTERM, then fails if a copy failed.
func runRawHopChild(ctx context.Context, spec string) error {
	var s rawHopSpec
	if err := json.Unmarshal([]byte(spec), &s); err != nil {
		return fmt.Errorf("%s: %w", rawHopEnv, err)
	}
	app.TuneGC() // as cmd/router
	failed, err := rawHop(ctx, s)
	if err != nil {
		return err
	}
	if failed > 0 {
		return fmt.Errorf("%d copies failed", failed)
	}
	return nil
}

// rawHop binds to the durable consumer s.Consumer of s.Stream and, until
// ctx ends, copies each message to "hop." + its subject with
// PublishMsgAsync and Nats-Msg-Id "<stream sequence>.hop", acking the
// source once the copy is stored (as the router does, with none of its
// decoding, routing or counting). It returns how many copies failed.
func rawHop(ctx context.Context, s rawHopSpec) (int64, error) {
	nc, err := nats.Connect(s.URL, nats.Name("bench-raw-hop"))
	if err != nil {
		return 0, fmt.Errorf("connect raw hop: %w", err)
	}
	defer nc.Close()
	var mu sync.Mutex
	pending := map[*nats.Msg]jetstream.Msg{}
	var failed atomic.Int64
	settle := func(out *nats.Msg, err error) {
		mu.Lock()
		src, ok := pending[out]
		delete(pending, out)
		mu.Unlock()
		switch {
		case !ok:
		case err != nil:
			failed.Add(1)
			src.Nak()
		default:
			src.Ack()
		}
	}
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(max(s.Workers*s.Batch*4, 4096)),
		jetstream.WithPublishAsyncAckHandler(func(_ jetstream.JetStream, m *nats.Msg, _ *jetstream.PubAck) { settle(m, nil) }),
		jetstream.WithPublishAsyncErrHandler(func(_ jetstream.JetStream, m *nats.Msg, err error) { settle(m, err) }))
	if err != nil {
		return 0, fmt.Errorf("jetstream context: %w", err)
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	cons, err := js.Consumer(cctx, s.Stream, s.Consumer)
	cancel()
	if err != nil {
		return 0, fmt.Errorf("raw hop: consumer %s: %w", s.Consumer, err)
	}
	handle := func(m jetstream.Msg) {
		md, err := m.Metadata()
		if err != nil {
			failed.Add(1)
			m.Term()
			return
		}
		out := &nats.Msg{Subject: hopPrefix + m.Subject(), Data: m.Data(),
			Header: nats.Header{jetstream.MsgIDHeader: []string{strconv.FormatUint(md.Sequence.Stream, 10) + ".hop"}}}
		mu.Lock()
		pending[out] = m
		mu.Unlock()
		if _, err := js.PublishMsgAsync(out); err != nil {
			settle(out, err)
		}
	}
	var ccs []jetstream.ConsumeContext
	defer func() {
		for _, cc := range ccs {
			cc.Stop()
		}
	}()
	for range s.Workers {
		cc, err := cons.Consume(handle, jetstream.PullMaxMessages(s.Batch))
		if err != nil {
			return failed.Load(), fmt.Errorf("raw hop: consume: %w", err)
		}
		ccs = append(ccs, cc)
	}
	<-ctx.Done()
	return failed.Load(), nil
}

// drainRaw copies the stored events into BENCH_HOP with the raw hop, in a
// process of its own (in this one with -router inproc), and returns its
// rate.
func (b *bench) drainRaw(ctx context.Context, cfg *config.Config, n int64) (float64, error) {
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	routed, err := b.js.Stream(cctx, cfg.Streams.RoutedStream(logSink))
	if err != nil {
		return 0, fmt.Errorf("stream info: %w", err)
	}
	sc := routed.CachedInfo().Config
	sc.Name, sc.Subjects, sc.Sources, sc.Description = hopStream, []string{hopPrefix + ">"}, nil, "mailtel bench: raw hop copies"
	if err := b.deleteStreams(ctx, hopStream); err != nil {
		return 0, err
	}
	if _, err := pipeline.CreateOrUpdateStream(cctx, b.js, sc); err != nil {
		return 0, fmt.Errorf("create stream %s: %w", hopStream, err)
	}
	defer b.deleteStreams(context.Background(), hopStream)
	spec := rawHopSpec{URL: b.url, Stream: cfg.Streams.Events, Consumer: hopConsumer, Workers: cfg.Router.Workers, Batch: cfg.Router.Batch}
	if _, err := b.js.CreateOrUpdateConsumer(cctx, spec.Stream, jetstream.ConsumerConfig{
		Durable:       hopConsumer,
		FilterSubject: pipeline.EventsPrefix + ">",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       30 * time.Second,
		MaxAckPending: max(spec.Workers*spec.Batch*4, 20000), // as the router's
		MaxDeliver:    -1,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	}); err != nil {
		return 0, fmt.Errorf("create consumer %s: %w", hopConsumer, err)
	}
	defer func() {
		dctx, dcancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer dcancel()
		if err := b.js.DeleteConsumer(dctx, spec.Stream, hopConsumer); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			b.log.Warn().Err(err).Msg("delete the raw hop's consumer")
		}
	}()

	hctx, hcancel := context.WithCancel(ctx)
	defer hcancel()
	var stop func() error // stops the hop and says how it ended
	var out lockedBuffer  // the child's output
	if b.o.router == "inproc" {
		type result struct {
			failed int64
			err    error
		}
		done := make(chan result, 1)
		go func() { f, err := rawHop(hctx, spec); done <- result{f, err} }()
		stop = func() error {
			hcancel()
			r := <-done
			if r.err == nil && r.failed > 0 {
				r.err = fmt.Errorf("%d copies failed", r.failed)
			}
			return r.err
		}
	} else {
		self, err := os.Executable()
		if err != nil {
			return 0, fmt.Errorf("raw hop: find this binary: %w", err)
		}
		specJSON, _ := json.Marshal(spec)
		cmd := exec.Command(self)
		cmd.Env = append(os.Environ(), rawHopEnv+"="+string(specJSON))
		cmd.Stdout, cmd.Stderr = &out, &out
		setDeathSignal(cmd)
		if err := cmd.Start(); err != nil {
			return 0, fmt.Errorf("start the raw hop: %w", err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		stop = func() error {
			cmd.Process.Signal(syscall.SIGTERM)
			select {
			case err := <-exited:
				return err
			case <-time.After(10 * time.Second):
				cmd.Process.Kill()
				return fmt.Errorf("did not stop within 10s: %v", <-exited)
			}
		}
	}
	rate, err := b.copyRate(ctx, hopStream, n, func() string { return "raw hop: " + out.String() })
	if serr := stop(); err == nil && serr != nil {
		err = fmt.Errorf("raw hop: %w %s", serr, out.String())
	}
	if err != nil {
		return 0, err
	}
	return rate, nil
}

// lockedBuffer is a bytes.Buffer safe for concurrent use.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}
