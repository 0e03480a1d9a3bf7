package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/mailtel/mailtel/pipeline"
	"github.com/mailtel/mailtel/pipeline/benchkit"
	"github.com/mailtel/mailtel/pipeline/config"
	"github.com/mailtel/mailtel/pipeline/obs"
	"github.com/mailtel/mailtel/pipeline/synth"
	"github.com/mailtel/mailtel/schema"
)

// bench is one run: the embedded server, an admin connection, the router
// binary, and the report being filled.
type bench struct {
	o        *options
	stderrMu sync.Mutex // progress lines come from more than one goroutine
	stderr   io.Writer
	log      zerolog.Logger
	rep      *benchkit.Report

	dir       string             // temporary; removed by close unless -keep
	srv       *pipeline.Embedded // -nats-server embedded
	natsProc  *natsProcess       // -nats-server process
	url       string
	nc        *nats.Conn // admin: streams
	js        jetstream.JetStream
	routerBin string
	streams   config.Streams // of the default configuration
	// medians holds, by single-sink scenario, the median of its rounds'
	// ratios to their baselines (set by rounds when both ran).
	medians map[string]float64
	// soaks are the soaks done, for the table per interval and the plot.
	soaks []soakResult
}

// newBench starts the server, connects, and builds the router binary.
func newBench(ctx context.Context, o *options, stderr io.Writer) (_ *bench, err error) {
	b := &bench{o: o, stderr: stderr, log: obs.NewLogger("warn", "console", "bench")}
	b.rep = &benchkit.Report{Meta: benchkit.Meta{
		Started: time.Now().UTC(), GoVersion: runtime.Version(), GOMAXPROCS: runtime.GOMAXPROCS(0),
		NumCPU: runtime.NumCPU(), N: o.n, Router: o.router, Mode: "full", Settings: map[string]string{}}}
	switch {
	case o.soak > 0:
		b.rep.Meta.Mode = "soak"
	case o.short:
		b.rep.Meta.Mode = "short"
	}
	b.rep.Meta.GitCommit, b.rep.Meta.GitDirty = gitCommit()
	defer func() {
		if err != nil {
			b.close()
		}
	}()
	if b.dir, err = os.MkdirTemp("", "mailtel-bench-"); err != nil {
		return nil, fmt.Errorf("create temporary directory: %w", err)
	}
	if o.keep {
		fmt.Fprintf(stderr, "bench: keeping %s\n", b.dir)
	}
	if o.router == "process" {
		if b.routerBin, err = b.buildRouter(ctx); err != nil {
			return nil, err
		}
	}
	natsCfg := config.NATS{Listen: "127.0.0.1:0", StoreDir: filepath.Join(b.dir, "nats"), Name: "mailtel-bench"}
	b.setting("nats_server", o.natsServer)
	if o.natsServer == serverProcess {
		if len(o.serverEnv) > 0 {
			b.setting("nats_server_env", strings.Join(o.serverEnv, " "))
		}
		if b.natsProc, err = b.startNATSProcess(ctx, o.serverEnv); err != nil {
			return nil, err
		}
		b.url = b.natsProc.url
	} else {
		if b.srv, err = pipeline.StartEmbedded(natsCfg); err != nil {
			return nil, err
		}
		b.url = b.srv.URL()
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	natsCfg.URL = b.url
	if b.nc, b.js, err = pipeline.Connect(cctx, natsCfg, "mailtel-bench-admin", 0); err != nil {
		return nil, err
	}
	b.streams = config.Default().Streams
	return b, nil
}

// buildRouter builds ./cmd/router of the module this runs in, unless
// -router-bin names a binary.
func (b *bench) buildRouter(ctx context.Context) (string, error) {
	if b.o.routerBin != "" {
		if _, err := os.Stat(b.o.routerBin); err != nil {
			return "", fmt.Errorf("-router-bin: %w", err)
		}
		return b.o.routerBin, nil
	}
	bin := filepath.Join(b.dir, "router")
	if err := b.goBuild(ctx, bin, "./cmd/router"); err != nil {
		return "", fmt.Errorf("%w (or give -router-bin)", err)
	}
	return bin, nil
}

// goBuild builds pkg, a package of the mailtel module this runs in or of a
// module it requires, into bin.
func (b *bench) goBuild(ctx context.Context, bin, pkg string) error {
	gomod, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	mod := strings.TrimSpace(string(gomod))
	if err != nil || mod == "" || mod == os.DevNull {
		return fmt.Errorf("find the mailtel module to build %s (run from the repository): %v", pkg, err)
	}
	b.progress("building: go build -o %s %s", bin, pkg)
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, pkg)
	cmd.Dir = filepath.Dir(mod)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build %s: %w\n%s", pkg, err, out)
	}
	return nil
}

// close stops the server and removes the temporary directory. It is
// idempotent.
func (b *bench) close() {
	if b.nc != nil {
		b.nc.Close()
		b.nc = nil
	}
	if b.srv != nil {
		b.srv.Close()
		b.srv = nil
	}
	if b.natsProc != nil {
		b.natsProc.stop()
		b.natsProc = nil
	}
	if b.dir != "" && !b.o.keep {
		os.RemoveAll(b.dir)
		b.dir = ""
	}
}

// runAll runs the selected scenarios in order.
func (b *bench) runAll(ctx context.Context) error {
	var evs []schema.Event
	if slices.ContainsFunc([]string{scSingle, scSingleServer, scHop, scFanout, scFanoutServer}, b.o.runs) {
		b.progress("generating %d synthetic events", b.o.n)
		evs = generate(b.o.seed, b.o.n)
		total := 0
		for i := range evs[:min(len(evs), 1000)] {
			data, err := schema.Marshal(&evs[i])
			if err != nil {
				return fmt.Errorf("encode a synthetic event: %w", err)
			}
			total += len(data)
		}
		b.setting("events.msgpack_bytes_avg", strconv.Itoa(total/min(len(evs), 1000)))
	}
	if err := b.rounds(ctx, evs); err != nil {
		return err
	}
	if b.o.runs(scHop) {
		if err := b.hop(ctx, evs); err != nil {
			return fmt.Errorf("%s: %w", scHop, err)
		}
	}
	// A latency phase runs at half its single-sink rate right after the
	// single-sink rounds, on the same warm server, and not in the wake of
	// a fan-out phase (whose three times as many copies the server is
	// still deleting when the next phase starts).
	halfRate := func(single string) float64 {
		if b.o.rate > 0 {
			return b.o.rate
		}
		v, _ := b.rep.Get(single, "throughput")
		return v / 2
	}
	for _, sc := range []string{scLatency, scLatencyServer} {
		if b.o.runs(sc) {
			if err := b.paced(ctx, sc, halfRate(singleOf(sc)), b.o.latency); err != nil {
				return fmt.Errorf("%s: %w", sc, err)
			}
		}
	}
	for _, sc := range []string{scFanout, scFanoutServer} {
		if b.o.runs(sc) {
			if err := b.throughput(ctx, sc, true, evs); err != nil {
				return fmt.Errorf("%s: three sinks: %w", sc, err)
			}
		}
	}
	evs = nil
	// A soak runs at half its variant's sustained maximum, measured right
	// before it, unless told the rate.
	for _, sc := range b.o.soaks {
		if b.o.rate == 0 {
			if err := b.sustained(ctx, sustainedOf(sc)); err != nil {
				return fmt.Errorf("%s: %w", sustainedOf(sc), err)
			}
		}
		if err := b.paced(ctx, sc, halfRate(sustainedOf(sc)), b.o.soak); err != nil {
			return fmt.Errorf("%s: %w", sc, err)
		}
	}
	return nil
}

// rounds runs the baseline and the single-sink scenarios (those of them
// selected) -rounds times, alternating, each round into a report of its
// own, and keeps the rows of the round whose single/baseline ratio is the
// median (without the baseline, the median of the first single-sink
// throughput). Every round's rates and ratios, and the median of each
// ratio, are added to the summary.
func (b *bench) rounds(ctx context.Context, evs []schema.Event) error {
	var scs []string
	for _, sc := range []string{scBaseline, scSingle, scSingleServer} {
		if b.o.runs(sc) {
			scs = append(scs, sc)
		}
	}
	if len(scs) == 0 {
		return nil
	}
	main := b.rep
	defer func() { b.rep = main }()
	type round struct {
		rows  []benchkit.Row
		rates map[string]float64 // scenario -> msg/s or events/s
		score float64            // the first ratio, or the first throughput
	}
	var done []round
	for i := 1; i <= b.o.rounds; i++ {
		b.rep = &benchkit.Report{Meta: main.Meta} // Settings shared with main
		if b.o.rounds > 1 {
			b.progress("round %d of %d", i, b.o.rounds)
		}
		r := round{rates: map[string]float64{}}
		for _, sc := range scs {
			var err error
			if sc == scBaseline {
				err = b.baseline(ctx)
			} else {
				err = b.throughput(ctx, sc, false, evs)
			}
			if err != nil {
				return fmt.Errorf("%s: %w", sc, err)
			}
			row := "throughput"
			if sc == scBaseline {
				row = "publish+consume"
			}
			r.rates[sc], _ = b.rep.Get(sc, row)
		}
		r.rows = b.rep.Rows
		if base := r.rates[scBaseline]; base > 0 && len(scs) > 1 {
			r.score = r.rates[scs[1]] / base
		} else {
			r.score = r.rates[scs[0]]
		}
		done = append(done, r)
	}
	byScore := slices.Clone(done)
	slices.SortStableFunc(byScore, func(a, c round) int { return cmp.Compare(a.score, c.score) })
	main.Rows = append(main.Rows, byScore[(len(byScore)-1)/2].rows...)
	if !b.o.runs(scBaseline) || len(scs) < 2 || len(done) < 2 {
		return nil
	}
	ratios := map[string][]float64{}
	for i, r := range done {
		for _, sc := range scs {
			unit := "events/s"
			if sc == scBaseline {
				unit = "msg/s"
			}
			main.Add(scSummary, fmt.Sprintf("round %d: %s", i+1, sc), r.rates[sc], unit)
			if sc != scBaseline {
				ratio := r.rates[sc] / r.rates[scBaseline]
				ratios[sc] = append(ratios[sc], ratio)
				main.Add(scSummary, fmt.Sprintf("round %d: %s/baseline", i+1, sc), ratio, "ratio")
			}
		}
	}
	b.medians = map[string]float64{}
	for _, sc := range scs[1:] {
		vs := slices.Sorted(slices.Values(ratios[sc]))
		b.medians[sc] = vs[(len(vs)-1)/2]
	}
	return nil
}

// finish adds the ratios and this process's peak memory, and closes the
// report's meta. The ratio of a single-sink scenario is the median of its
// rounds' ratios; the others are against the baseline of the median round.
func (b *bench) finish() {
	base, okBase := b.rep.Get(scBaseline, "publish+consume")
	for _, sc := range []string{scSingle, scSingleServer, scFanout, scFanoutServer} {
		if m, ok := b.medians[sc]; ok {
			b.rep.Add(scSummary, sc+"/baseline", m, "ratio")
		} else if v, ok := b.rep.Get(sc, "throughput"); ok && okBase && base > 0 {
			b.rep.Add(scSummary, sc+"/baseline", v/base, "ratio")
		}
	}
	if p, err := benchkit.ReadProc(os.Getpid()); err == nil {
		b.rep.Add(scSummary, "bench process peak rss", mib(p.HWM), "MiB")
	}
	b.rep.Add(scSummary, "bench process cpu", benchkit.SelfCPU().Seconds(), "s")
	m := &b.rep.Meta
	m.Finished = time.Now().UTC()
	m.WallSecs = m.Finished.Sub(m.Started).Seconds()
}

// generate returns n synthetic events.
func generate(seed uint64, n int) []schema.Event {
	g := synth.New(synth.Options{Seed: seed})
	evs := make([]schema.Event, n)
	for i := range evs {
		g.Next(&evs[i])
	}
	return evs
}

func (b *bench) progress(format string, args ...any) {
	b.stderrMu.Lock()
	defer b.stderrMu.Unlock()
	fmt.Fprintf(b.stderr, "bench: %s %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

func (b *bench) setting(k, v string) { b.rep.Meta.Settings[k] = v }

// deleteStreams deletes the named streams; a missing stream is fine.
func (b *bench) deleteStreams(ctx context.Context, names ...string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for _, n := range names {
		if err := b.js.DeleteStream(ctx, n); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			return fmt.Errorf("delete stream %s: %w", n, err)
		}
	}
	return nil
}

// waitUntil polls check every few milliseconds until it reports done. It
// fails when ctx ends, when the progress check reports has not changed for
// -stall, or after -timeout; the error ends with diag().
func (b *bench) waitUntil(ctx context.Context, what string, check func() (done bool, progress int64), diag func() string) error {
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	start := time.Now()
	last, changed := int64(math.MinInt64), start
	for {
		done, p := check()
		if done {
			return nil
		}
		now := time.Now()
		if p != last {
			last, changed = p, now
		}
		if now.Sub(changed) > b.o.stall {
			return fmt.Errorf("%s: no progress for %s: %s", what, b.o.stall, diag())
		}
		if now.Sub(start) > b.o.timeout {
			return fmt.Errorf("%s: not done after %s: %s", what, b.o.timeout, diag())
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w: %s", what, ctx.Err(), diag())
		case <-t.C:
		}
	}
}

// freeAddr returns a loopback address with a port that was free a moment
// ago.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr, nil
}

// gitCommit returns HEAD of the repository in the working directory and
// whether tracked files differ from it; "" when git cannot tell.
func gitCommit() (string, bool) {
	out, err := exec.Command("git", "rev-parse", "HEAD").Output()
	if err != nil {
		return "", false
	}
	st, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output()
	return strings.TrimSpace(string(out)), err == nil && len(strings.TrimSpace(string(st))) > 0
}

func mib(bytes int64) float64 { return float64(bytes) / (1 << 20) }

// perEvent returns d in microseconds per event.
func perEvent(d time.Duration, n int64) float64 {
	if n <= 0 {
		return math.NaN()
	}
	return float64(d) / float64(time.Microsecond) / float64(n)
}

func rate(n int64, d time.Duration) float64 {
	if d <= 0 {
		return math.NaN()
	}
	return float64(n) / d.Seconds()
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
