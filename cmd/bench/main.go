// Command bench measures mailtel end to end on one embedded NATS server
// with file storage, and compares it with raw JetStream on the same server:
//
//	baseline  raw JetStream: async publish (Nats-Msg-Id, duplicates window)
//	          of N 200-byte messages while a durable pull consumer acks them;
//	          also publish only and consume only
//	single    N synthetic events: Publisher -> router -> one log sink
//	          (level trace, json); events/s from the first publish to the
//	          last sink write
//	fanout    the same with three sinks: log, metrics, a local webhook
//	latency   paced events at half the single-sink rate: publish -> sink
//	          write latency percentiles
//	hop       N stored events copied by the router, and by a raw nats.go
//	          consume -> PublishMsgAsync (Nats-Msg-Id) -> ack loop: the
//	          router's rate against the plain hop's
//	sustained (with -soak) the single-sink pipeline closed-loop for its
//	          longest duplicate window plus a minute: the rate written in
//	          that minute, with every window full, is its sustained maximum
//	soak      (-soak D) the single-sink pipeline at half its sustained
//	          maximum for D, router and server fan-out, with every
//	          process's memory and GC sampled; per-minute rows,
//	          bench/soak.png
//
// The router runs as a separate process (the real cmd/router binary), so
// its CPU time, allocations and peak RSS per routed event are measured from
// outside; sinks and the publisher run in this process on their own
// connections. The table goes to stdout and, as JSON, to -out.
//
//	go run ./cmd/bench -short
//	go run ./cmd/bench -soak 5m
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"slices"
	"strings"
	"time"

	"github.com/mailtel/mailtel/pipeline/app"
)

func main() {
	if spec := os.Getenv(rawHopEnv); spec != "" { // this binary, started by the hop scenario
		app.Main("bench raw hop", func(ctx context.Context) error { return runRawHopChild(ctx, spec) })
		return
	}
	app.Main("bench", func(ctx context.Context) error { return run(ctx, os.Args[1:], os.Stdout, os.Stderr) })
}

// Scenario names, in the order they run.
const (
	scBaseline      = "baseline"
	scSingle        = "single"
	scSingleServer  = "single-server"
	scFanout        = "fanout"
	scFanoutServer  = "fanout-server"
	scLatency       = "latency"
	scLatencyServer = "latency-server"
	scHop           = "hop"
	scSoak          = "soak"
	scSoakServer    = "soak-server"
	scSummary       = "summary"
)

var allScenarios = []string{scBaseline, scSingle, scSingleServer, scHop, scFanout, scFanoutServer, scLatency, scLatencyServer}

// soakVariants maps the names -soak-variants takes to their scenarios.
var soakVariants = map[string]string{"router": scSoak, "server": scSoakServer}

// isSoak reports whether scenario sc is a soak.
func isSoak(sc string) bool { return sc == scSoak || sc == scSoakServer }

// serverScenario reports whether scenario sc runs with server fan-out
// ([router] server-fan-out names every sink): the NATS server copies the
// events into the sinks' streams and the router has nothing to do.
func serverScenario(sc string) bool { return strings.HasSuffix(sc, "-server") }

// singleOf returns the single-sink scenario whose rate a latency or soak
// scenario runs at half of.
func singleOf(latency string) string {
	if serverScenario(latency) {
		return scSingleServer
	}
	return scSingle
}

// options are the parsed flags.
type options struct {
	short      bool
	n          int
	rounds     int
	out        string
	only       []string
	latency    time.Duration
	rate       float64
	soak       time.Duration
	soaks      []string // soak scenarios, in order
	warmup     time.Duration
	interval   time.Duration
	sample     time.Duration
	router     string // "process" or "inproc"
	routerBin  string
	natsServer string   // serverEmbedded or serverProcess
	serverEnv  []string // KEY=VALUE added to the environment of a process server
	cpuprofile string
	memprofile string
	stall      time.Duration
	timeout    time.Duration
	seed       uint64
	keep       bool
}

func (o *options) runs(sc string) bool { return slices.Contains(o.only, sc) }

const synopsis = `usage: bench [-short] [-n N] [-out FILE] [-only LIST] [-soak D] [flags]

Measures mailtel end to end on one embedded NATS server with file storage
(random port, temporary store) and raw JetStream on the same server:
  baseline  async publish of N 200-byte messages with Nats-Msg-Id while a
            durable pull consumer acks them; publish only; consume only
  single    N synthetic events: publisher -> router -> log sink (trace, json)
  fanout    N events to three sinks: log, metrics, a webhook on 127.0.0.1
  latency   paced events at half the single-sink rate: publish -> write
            latency p50/p95/p99/max
  single-server, fanout-server, latency-server
            the same with server fan-out ([router] server-fan-out names
            every sink): the NATS server copies EVENTS into the sinks'
            streams, the sinks apply their rules, the router idles
  hop       N stored events copied by the router into ROUTED_log, and by a
            plain nats.go consume -> PublishMsgAsync (Nats-Msg-Id) -> ack
            loop into a stream configured alike: router/raw-hop
and the router's CPU time, allocations and peak RSS per routed event (the
router runs as its own process, built from ./cmd/router). Baseline and
the single-sink scenarios run -rounds times, alternating, since the machine
is noisy: the table shows the round with the median single/baseline ratio,
lists every round's rates and ratios, and gives each single-sink scenario's
median ratio as its summary ratio. Prints one table
and writes it as JSON to -out. With -soak D it measures the single-sink
rates (router and server fan-out) and the hop, then for each variant of
-soak-variants its sustained maximum (scenario sustained or
sustained-server: closed loop, at most 20,000 events between publish and
write, for the longest duplicate window plus a minute; the rate written in
that minute, when the server holds a full window of message ids, which the
short phases never do), and runs the variant at half that rate for D,
sampling every -sample the RSS, Go heap and GC CPU of the router process
and of this process (which holds the embedded NATS server, the publisher
and the sinks) and the server's duplicate-window memory (estimated). It
reports latency and memory per -interval, latency percentiles after
-warmup, RSS and heap slopes after -warmup plus the longest duplicate window
(while the windows fill, the server's memory grows by design) and over the
second half of that span, and each process's RSS verdict: flat (the slope
under 1 MiB/min by two standard errors, corrected for the samples'
correlation), grows (1 or more by two), or
cannot tell (in between: run longer); it draws soak.png beside -out. Beside it too go
two heap profiles of the NATS server, one when the memory warm-up has
passed and one at the end, for go tool pprof -base; the server process
also serves its monitoring (/jsz) and pprof on ports the run prints. With -rate the soak runs at that rate and skips the rest.`

const example = `  go run ./cmd/bench -short
  go run ./cmd/bench -n 300000 -out bench/results.json
  go run ./cmd/bench -short -only single -router inproc -cpuprofile cpu.out -memprofile mem.out
  go run ./cmd/bench -soak 5m
  go run ./cmd/bench -short -soak 2m -soak-variants router`

// defaultServerEnv is the environment a nats-server process starts with,
// before -nats-server-env: the garbage collector target deploy/ runs
// nats-server with (GOGC=200: deploy/k8s/nats-values.yaml says why), and
// the memory limit a node sized for a soak's rate on this 2-core machine
// would be given (about 20,000 events/s; the README's Sizing: 0.9 GB of
// message ids, a heap of up to three times that at GOGC=200, so a limit
// of 3 GiB that the collector keeps under, not a pod's 7 GiB that it would
// never reach here).
var defaultServerEnv = []string{"GOGC=200", "GOMEMLIMIT=3GiB"}

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := &options{}
	var only string
	fs.BoolVar(&o.short, "short", false, "N=50,000 and a 4 s latency phase (default N=300,000 and 10 s); under 2 minutes on 2 cores")
	fs.IntVar(&o.rounds, "rounds", 3, "`rounds` of baseline then single sink; the table shows the round with the median single/baseline ratio, and every round's ratio")
	fs.IntVar(&o.n, "n", 0, "`events` (and baseline messages) per throughput scenario; overrides -short's 50,000 and the default 300,000")
	fs.StringVar(&o.out, "out", "bench/results.json", "`file` the results are written to as JSON")
	fs.StringVar(&only, "only", strings.Join(allScenarios, ","), "comma-separated `scenarios` to run: "+strings.Join(allScenarios, ", "))
	fs.DurationVar(&o.latency, "latency", 0, "`duration` of the paced latency phase (default 10s, 4s with -short)")
	fs.Float64Var(&o.rate, "rate", 0, "`rate` of the latency phase and the soak, in events/s (default: half the measured single-sink rate for the latency phase, half the sustained maximum for the soak)")
	fs.DurationVar(&o.soak, "soak", 0, "soak mode: run the single-sink pipeline at half load for `duration` (each variant), sampling every process")
	variants := fs.String("soak-variants", "router,server", "comma-separated `variants` the soak runs: router (scenario soak), server (server fan-out, soak-server)")
	fs.DurationVar(&o.warmup, "warmup", time.Minute, "the first `duration` of a soak, left out of its latency percentiles (and, with the longest duplicate window, of its RSS slopes)")
	fs.DurationVar(&o.interval, "interval", time.Minute, "`width` of the soak's rows over time")
	fs.DurationVar(&o.sample, "sample", 10*time.Second, "`interval` between memory samples of the soak")
	fs.StringVar(&o.router, "router", "process", "where the router runs: `process` (the real binary, measured from /proc and its /metrics) or inproc (in this process, so -cpuprofile covers it; no router CPU, allocation or RSS figures)")
	fs.StringVar(&o.routerBin, "router-bin", "", "router `binary` to run instead of building ./cmd/router")
	fs.StringVar(&o.natsServer, "nats-server", "", "where the NATS server runs: `embedded` in this process (as router up runs it; the default) or process (nats-server built from the module mailtel requires, in a process of its own, as a deployment runs it; the default of -soak, so that its memory is measured apart from the publisher's and the sinks')")
	fs.Func("nats-server-env", "`KEY=VALUE` added to the environment of the nats-server process (-nats-server process) after its defaults "+strings.Join(defaultServerEnv, " ")+", such as GOGC=100 or GOMEMLIMIT=off to measure the server's garbage collector settings; repeat for more", func(v string) error {
		if k, _, ok := strings.Cut(v, "="); !ok || k == "" {
			return fmt.Errorf("%q: want KEY=VALUE", v)
		}
		o.serverEnv = append(o.serverEnv, v)
		return nil
	})
	fs.StringVar(&o.cpuprofile, "cpuprofile", "", "write a CPU profile of this process (NATS server, publisher, sinks; the router too with -router inproc) to `file`")
	fs.StringVar(&o.memprofile, "memprofile", "", "write an allocation profile of this process at the end of the run to `file` (with -router inproc it shows the router's allocations)")
	fs.DurationVar(&o.stall, "stall", 30*time.Second, "fail when the pipeline makes no progress for `duration`")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Minute, "fail when one phase takes longer than `duration`")
	fs.Uint64Var(&o.seed, "seed", 1, "`seed` of the synthetic events")
	fs.BoolVar(&o.keep, "keep", false, "keep the temporary directory (NATS store, configs, sink output, router log) and print its path")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "%s\n\nFlags:\n", synopsis)
		fs.PrintDefaults()
		fmt.Fprintf(fs.Output(), "\nExample:\n%s\n", example)
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q (see -help)", fs.Arg(0))
	}
	for _, s := range strings.Split(only, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if !slices.Contains(allScenarios, s) {
			return nil, fmt.Errorf("-only: unknown scenario %q (want some of %s)", s, strings.Join(allScenarios, ", "))
		}
		o.only = append(o.only, s)
	}
	if len(o.only) == 0 {
		return nil, fmt.Errorf("-only: no scenario named (want some of %s)", strings.Join(allScenarios, ", "))
	}
	switch {
	case o.n < 0:
		return nil, fmt.Errorf("-n %d: want a positive number of events", o.n)
	case o.n == 0 && o.short:
		o.n = 50_000
	case o.n == 0:
		o.n = 300_000
	}
	if o.rounds < 1 {
		return nil, fmt.Errorf("-rounds %d: want at least 1", o.rounds)
	}
	if o.latency < 0 {
		return nil, fmt.Errorf("-latency %s: want a positive duration", o.latency)
	} else if o.latency == 0 {
		o.latency = 10 * time.Second
		if o.short {
			o.latency = 4 * time.Second
		}
	}
	if o.rate < 0 {
		return nil, fmt.Errorf("-rate %g: want a positive rate, or 0 for half the single-sink rate", o.rate)
	}
	if o.soak < 0 {
		return nil, fmt.Errorf("-soak %s: want a positive duration", o.soak)
	}
	if o.sample <= 0 {
		return nil, fmt.Errorf("-sample %s: want a positive duration", o.sample)
	}
	if o.stall <= 0 || o.timeout <= 0 {
		return nil, fmt.Errorf("-stall and -timeout want positive durations")
	}
	switch o.natsServer {
	case "":
		o.natsServer = serverEmbedded
		if o.soak > 0 {
			o.natsServer = serverProcess
		}
	case serverEmbedded, serverProcess:
	default:
		return nil, fmt.Errorf("-nats-server %q: want embedded or process", o.natsServer)
	}
	if len(o.serverEnv) > 0 && o.natsServer != serverProcess {
		return nil, fmt.Errorf("-nats-server-env sets the environment of a nats-server process: it wants -nats-server process")
	}
	if o.natsServer == serverProcess { // a later value of a key wins
		o.serverEnv = append(slices.Clone(defaultServerEnv), o.serverEnv...)
	}
	if o.router != "process" && o.router != "inproc" {
		return nil, fmt.Errorf("-router %q: want process or inproc", o.router)
	}
	if o.soak > 0 {
		for _, v := range strings.Split(*variants, ",") {
			sc, ok := soakVariants[strings.TrimSpace(v)]
			if !ok {
				return nil, fmt.Errorf("-soak-variants: unknown variant %q (want router, server or both)", v)
			}
			if !slices.Contains(o.soaks, sc) {
				o.soaks = append(o.soaks, sc)
			}
		}
		if o.interval <= 0 {
			return nil, fmt.Errorf("-interval %s: want a positive duration", o.interval)
		}
		// The warm-up is left out in whole intervals (warmIndex).
		if whole := (o.warmup + o.interval - 1) / o.interval * o.interval; o.warmup < 0 || whole >= o.soak {
			return nil, fmt.Errorf("-warmup %s (%s in whole -interval %s): want at least 0 and less than -soak %s", o.warmup, whole, o.interval, o.soak)
		}
		// The soak needs the single-sink rates unless told the rate; the
		// hop runs before it, as in a full run.
		o.only = nil
		if o.rate == 0 {
			for _, sc := range o.soaks {
				o.only = append(o.only, singleOf(sc))
			}
			o.only = append(o.only, scHop)
		}
	} else if o.rate == 0 {
		for _, l := range []string{scLatency, scLatencyServer} {
			if o.runs(l) && !o.runs(singleOf(l)) {
				return nil, fmt.Errorf("-only %s: %s runs at half the rate of %s: add it, or give -rate", only, l, singleOf(l))
			}
		}
	}
	return o, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	if o.cpuprofile != "" {
		f, err := os.Create(o.cpuprofile)
		if err != nil {
			return fmt.Errorf("create cpu profile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("start cpu profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	if o.memprofile != "" {
		defer func() {
			if err := writeAllocProfile(o.memprofile); err != nil {
				fmt.Fprintln(stderr, "bench:", err)
			}
		}()
	}
	b, err := newBench(ctx, o, stderr)
	if err != nil {
		return err
	}
	defer b.close()
	runErr := b.runAll(ctx)
	b.finish()
	if err := b.rep.Print(stdout); err != nil {
		return fmt.Errorf("print results: %w", err)
	}
	if runErr != nil {
		return fmt.Errorf("%w (the table above has what was measured before; no results file written)", runErr)
	}
	b.printSoaks(stdout)
	if err := b.rep.WriteJSON(o.out); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "results written to %s\n", o.out)
	if len(b.soaks) > 0 {
		path, err := b.plotSoaks()
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "latency and memory over time drawn in %s\n", path)
		for _, r := range b.soaks {
			if len(r.profiles) == 2 {
				fmt.Fprintf(stdout, "%s: what grew in the NATS server's heap after the memory warm-up: go tool pprof -top -base %s %s\n", r.sc, r.profiles[0], r.profiles[1])
			}
		}
	}
	return nil
}

// writeAllocProfile writes the allocations sampled since the start.
func writeAllocProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("create allocation profile: %w", err)
	}
	defer f.Close()
	if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
		return fmt.Errorf("write allocation profile: %w", err)
	}
	return nil
}
