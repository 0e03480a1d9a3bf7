package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strings"
	"time"

	"github.com/mailtel/mailtel/pipeline/benchkit"
	"github.com/mailtel/mailtel/pipeline/status"
)

// Process names of a soak's rows. With -nats-server embedded the server
// is in this process, which also runs the publisher and the sinks: its
// figures are this process's, named nats-server, and the settings say so.
// With -nats-server process this process is named bench.
const (
	nameRouter = "router"
	nameServer = "nats-server"
	nameBench  = "bench"
)

// soakSampler reads, at each sample, the RSS, Go heap and CPU and GC CPU
// time of the router process, of the NATS server and of this process, the
// machine's CPU and pressure counters, and the server's duplicate windows.
// Its methods are called by one goroutine at a time.
type soakSampler struct {
	b        *bench
	s        *stage
	sc       string
	start    time.Time
	memWarm  time.Duration // when it takes the server's first heap profile
	profiles []string      // the server's heap profiles it wrote
	procs    map[string][]benchkit.ProcSample
	host     []benchkit.HostSample
	dup      []benchkit.Sample // MiB
	dupIDs   []benchkit.Sample // message ids
	gatherer *status.Gatherer
}

func newSoakSampler(b *bench, s *stage, sc string, start time.Time, d time.Duration) *soakSampler {
	return &soakSampler{b: b, s: s, sc: sc, start: start, memWarm: b.memWarmup(s, d), procs: map[string][]benchkit.ProcSample{},
		gatherer: status.NewGatherer(b.js, status.Options{Streams: s.cfg.Streams, RouterConsumer: s.cfg.Router.Consumer})}
}

// sample takes one reading of every process, of the machine and of the
// duplicate windows.
func (ss *soakSampler) sample(ctx context.Context) error {
	at := time.Since(ss.start)
	self, err := benchkit.SelfSample(at)
	if err != nil {
		return err
	}
	host, err := benchkit.ReadHost(at)
	if err != nil {
		return err
	}
	ss.host = append(ss.host, host)
	if p := ss.b.natsProc; p != nil {
		srv, err := p.sample(at)
		if err != nil {
			return err
		}
		ss.procs[nameServer] = append(ss.procs[nameServer], srv)
		ss.procs[nameBench] = append(ss.procs[nameBench], self)
	} else {
		ss.procs[nameServer] = append(ss.procs[nameServer], self)
	}
	rs, err := ss.s.router.sample(ctx)
	if err != nil {
		return err
	}
	if rs.RSS >= 0 { // a router process
		ss.procs[nameRouter] = append(ss.procs[nameRouter],
			benchkit.ProcSample{At: at, RSS: rs.RSS, Heap: rs.Heap, CPU: rs.CPU, GCCPU: rs.GCCPU})
	}
	gctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	st, err := ss.gatherer.Gather(gctx)
	if err != nil {
		return fmt.Errorf("duplicate windows: %w", err)
	}
	var ids, bytes uint64
	for _, s := range st.Streams {
		ids += s.WindowIDs
		bytes += s.WindowBytes
	}
	ss.dup = append(ss.dup, benchkit.Sample{At: at, Value: mib(int64(bytes))})
	ss.dupIDs = append(ss.dupIDs, benchkit.Sample{At: at, Value: float64(ids)})
	if len(ss.profiles) == 0 && at >= ss.memWarm {
		ss.heapProfile(ctx, "warm")
	}
	return nil
}

// heapProfile writes the NATS server's heap profile beside -out, as
// heap-<scenario>-nats-server-<label>.pb.gz: the server process's from its
// pprof port, or this process's when the server is embedded in it. The
// sampler takes one when the memory warm-up has passed and one at the end,
// so that `go tool pprof -base <warm> <end>` shows what grew while the
// slopes were measured. A profile that cannot be had is reported and the
// soak goes on: its figures do not depend on it.
func (ss *soakSampler) heapProfile(ctx context.Context, label string) {
	path := filepath.Join(filepath.Dir(ss.b.o.out), fmt.Sprintf("heap-%s-%s-%s.pb.gz", ss.sc, nameServer, label))
	if err := ss.writeHeapProfile(ctx, path); err != nil {
		ss.b.progress("%s: no heap profile of %s (%s): %v", ss.sc, nameServer, label, err)
		return
	}
	ss.profiles = append(ss.profiles, path)
}

func (ss *soakSampler) writeHeapProfile(ctx context.Context, path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if p := ss.b.natsProc; p != nil {
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.profURL+"/debug/pprof/heap", nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: %s", req.URL, resp.Status)
		}
		if _, err := io.Copy(f, resp.Body); err != nil {
			return fmt.Errorf("read %s: %w", req.URL, err)
		}
	} else if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		return err
	}
	return f.Close()
}

// line describes the last reading, for a progress line.
func (ss *soakSampler) line() string {
	var parts []string
	for _, name := range []string{nameRouter, nameServer, nameBench} {
		ps := ss.procs[name]
		if len(ps) == 0 {
			continue
		}
		p := ps[len(ps)-1]
		parts = append(parts, fmt.Sprintf("%s rss %.1f MiB heap %.1f MiB", name, mib(p.RSS), mib(p.Heap)))
	}
	if len(ss.dup) > 0 {
		parts = append(parts, fmt.Sprintf("dup windows ~%.0f MiB", ss.dup[len(ss.dup)-1].Value))
	}
	return strings.Join(parts, ", ")
}

// soakResult is a finished soak, for the table per interval and the plot.
type soakResult struct {
	sc        string
	intervals []benchkit.Interval
	procs     map[string][]benchkit.ProcSample
	dup       []benchkit.Sample
	profiles  []string // the server's heap profiles: after the memory warm-up, at the end
	verdict   string   // the rss verdict of every process, for the output
}

// warmIndex returns the first interval that starts at or after the
// warm-up.
func (b *bench) warmIndex() int {
	return int((b.o.warmup + b.o.interval - 1) / b.o.interval)
}

// memWarmup returns how much of a soak of duration d on stage s its
// memory figures leave out. Memory has a longer warm-up than latency:
// until the longest duplicate window has passed, the server's message ids
// fill it, by design and up to a bound; growth after that is what a leak
// would be. A soak too short to leave the windows' filling out leaves out
// -warmup alone.
func (b *bench) memWarmup(s *stage, d time.Duration) time.Duration {
	warm := time.Duration(b.warmIndex()) * b.o.interval
	if mem := warm + s.longestWindow(); d >= mem+3*b.o.sample {
		return mem
	}
	return warm
}

// soakLatency merges the histograms of the intervals after the warm-up.
func (b *bench) soakLatency(sc string, hists []*benchkit.Histogram) benchkit.Latency {
	var h, warm benchkit.Histogram
	for i, x := range hists {
		if i >= b.warmIndex() {
			h.Merge(x)
		} else {
			warm.Merge(x)
		}
	}
	b.rep.Add(sc, "warm-up (left out)", (time.Duration(b.warmIndex()) * b.o.interval).Seconds(), "s")
	b.rep.Add(sc, "events written in warm-up", float64(warm.N()), "events")
	return h.Summary()
}

// soakRows adds a soak's rows: per process the RSS and heap slopes, the
// RSS verdict (benchkit.Judge) and the GC CPU share after the memory
// warm-up, peak RSS and heap, and CPU per event of the sent published; the
// duplicate windows; and the series per interval.
func (b *bench) soakRows(sc string, ss *soakSampler, hists []*benchkit.Histogram, pubDur time.Duration, sent int64) error {
	warm := time.Duration(b.warmIndex()) * b.o.interval
	b.setting("soak.interval", b.o.interval.String())
	b.setting("soak.sample", b.o.sample.String())
	b.setting("soak.latency", "publish->write percentiles after the warm-up from histograms with 1/64 wide bins (at most 1.6% high); max exact")
	if b.natsProc != nil {
		b.setting("soak.process."+nameServer, "nats-server in its own process: RSS and CPU from /proc, heap (live after the last GC cycle) and GC CPU from its GODEBUG=gctrace=1 lines")
		b.setting("soak.process."+nameBench, "this bench process: the publisher and the sinks; RSS from /proc, heap (objects + unused span space) and GC CPU from runtime/metrics")
	} else {
		b.setting("soak.process."+nameServer, "this bench process: the embedded NATS server with the publisher and the sinks; RSS from /proc, heap (objects + unused span space) and GC CPU from runtime/metrics")
	}
	b.setting("soak.process."+nameRouter, "the router process: RSS and CPU from /proc, heap go_memstats_heap_inuse_bytes from its /metrics, GC CPU from its GODEBUG=gctrace=1 lines")
	b.setting("soak.gc_cpu_share", "GC CPU (assists, dedicated and fractional mark workers, pauses; not idle mark workers) / process CPU (user+system)")
	memWarm := b.memWarmup(ss.s, pubDur)
	b.rep.Add(sc, "memory warm-up (left out of rss slopes and gc shares)", memWarm.Seconds(), "s")
	b.setting("soak.rss_slope", "least-squares slope of every RSS sample after the memory warm-up: -warmup plus the longest duplicate window, while the server's message ids fill the windows (-warmup alone when the soak is too short for that); (second half): over the second half of that span, where growth that settles has stopped and a leak has not")
	b.setting("soak.heap_slope", "the same of the heap readings: a leak shows in the live heap; RSS also follows the collector's heap goal, live x (1+GOGC/100) up to GOMEMLIMIT")
	b.setting("soak.dup_window", fmt.Sprintf("estimate: message ids stored within each stream's duplicate window x %d bytes (the server reports no dedupe map size)", status.BytesPerID))

	b.setting("soak.host", "the machine per interval: steal and iowait shares of all CPU time (/proc/stat), and the shares of wall time in which some task waited for a CPU, for I/O or for memory, and every non-idle task for I/O (/proc/pressure totals); a stall they do not show is a process's own")
	ivs := benchkit.Intervals(b.o.interval, pubDur, hists, ss.procs, ss.dup)
	benchkit.AddHost(ivs, ss.host)
	var after benchkit.Histogram
	for i, h := range hists {
		if i >= b.warmIndex() {
			after.Merge(h)
		}
	}
	if span := pubDur - warm; span > 0 {
		b.rep.Add(sc, "written rate after warm-up", float64(after.N())/span.Seconds(), "events/s")
	}
	b.setting("soak.rss_verdict", fmt.Sprintf("1 flat: the rss slope plus two errors is under %g MiB/min; -1 grows: the slope less two errors is %g or more; 0 cannot tell: in between, and a longer -soak narrows the error; the error is the least-squares one times sqrt((1+r)/(1-r)), r the residuals' lag-1 autocorrelation",
		benchkit.MaxSlope, benchkit.MaxSlope))
	var verdicts []string
	for _, name := range slices.Sorted(mapKeys(ss.procs)) {
		all := ss.procs[name]
		if len(all) < 3 {
			return fmt.Errorf("%d memory readings of %s; make -soak at least twice -sample", len(all), name)
		}
		tail := benchkit.After(all, memWarm)
		half := benchkit.After(tail, memWarm+(pubDur-memWarm)/2)
		for _, m := range []struct {
			what  string
			slope func([]benchkit.ProcSample) (float64, float64)
		}{{"rss", benchkit.RSSSlope}, {"heap", benchkit.HeapSlope}} {
			slope, slopeErr := m.slope(tail)
			if math.IsNaN(slope) {
				continue // no heap readings
			}
			b.rep.Add(sc, m.what+" slope "+name, slope, "MiB/min")
			b.rep.Add(sc, m.what+" slope error "+name, slopeErr, "MiB/min")
			if m.what == "rss" {
				v := benchkit.Judge(slope, slopeErr)
				b.rep.Add(sc, "rss verdict "+name, float64(v), "1=flat 0=cannot tell -1=grows")
				verdicts = append(verdicts, fmt.Sprintf("%s %s (%+.2f ± %.2f MiB/min)", name, v, slope, slopeErr))
			}
			slope, slopeErr = m.slope(half)
			b.rep.Add(sc, m.what+" slope "+name+" (second half)", slope, "MiB/min")
			b.rep.Add(sc, m.what+" slope error "+name+" (second half)", slopeErr, "MiB/min")
		}
		var rssMax, heapMax int64 = 0, -1
		for _, p := range all {
			rssMax, heapMax = max(rssMax, p.RSS), max(heapMax, p.Heap)
		}
		b.rep.Add(sc, "rss max "+name, mib(rssMax), "MiB")
		if heapMax >= 0 {
			b.rep.Add(sc, "heap max "+name, mib(heapMax), "MiB")
		}
		b.rep.Add(sc, "gc cpu share "+name, 100*benchkit.GCShare(tail), "%")
		if first, last := all[0], all[len(all)-1]; first.CPU >= 0 && last.CPU > first.CPU {
			// The whole soak, for the README's sizing: CPU per event published.
			b.rep.Add(sc, "cpu "+name, perEvent(last.CPU-first.CPU, sent), "µs/event")
		}
	}
	dupMax, idsMax := math.NaN(), math.NaN()
	for i := range ss.dup {
		dupMax, idsMax = fmax(dupMax, ss.dup[i].Value), fmax(idsMax, ss.dupIDs[i].Value)
	}
	b.rep.Add(sc, "dup window ids max (estimate)", idsMax, "ids")
	b.rep.Add(sc, "dup window memory max (estimate)", dupMax, "MiB")

	// Series: every reading, and the rows per interval (at their end).
	if b.rep.Series == nil {
		b.rep.Series = map[string][]benchkit.Sample{}
	}
	for name, ps := range ss.procs {
		for _, p := range ps {
			b.rep.Series[sc+" rss MiB "+name] = append(b.rep.Series[sc+" rss MiB "+name], benchkit.Sample{At: p.At, Value: mib(p.RSS)})
			if p.Heap >= 0 {
				b.rep.Series[sc+" heap MiB "+name] = append(b.rep.Series[sc+" heap MiB "+name], benchkit.Sample{At: p.At, Value: mib(p.Heap)})
			}
		}
	}
	b.rep.Series[sc+" dup window MiB (estimate)"] = ss.dup
	for _, iv := range ivs {
		add := func(name string, v float64) {
			if !math.IsNaN(v) {
				b.rep.Series[sc+" per interval: "+name] = append(b.rep.Series[sc+" per interval: "+name], benchkit.Sample{At: iv.End, Value: v})
			}
		}
		add("throughput events/s", iv.Throughput)
		add("publish->write p50 ms", ms(iv.Latency.P50))
		add("publish->write p99 ms", ms(iv.Latency.P99))
		add("publish->write max ms", ms(iv.Latency.Max))
		for name, p := range iv.Procs {
			add("gc cpu share % "+name, 100*p.GCShare)
			add("cpu cores "+name, p.CPU)
		}
		add("host cpu steal %", 100*iv.Host.Steal)
		add("host cpu iowait %", 100*iv.Host.IOWait)
		add("host cpu pressure %", 100*iv.Host.CPUPressure)
		add("host io pressure %", 100*iv.Host.IOPressure)
		add("host io pressure full %", 100*iv.Host.IOFull)
		add("host memory pressure %", 100*iv.Host.MemoryPressure)
	}
	if len(ss.profiles) > 0 {
		b.setting(sc+".heap_profiles", strings.Join(ss.profiles, " "))
	}
	verdict := fmt.Sprintf("RSS after the memory warm-up (%s of %s): %s", (pubDur - memWarm).Round(time.Second), pubDur.Round(time.Second), strings.Join(verdicts, ", "))
	if full := warm + ss.s.longestWindow(); memWarm < full {
		// memWarmup fell back to -warmup: a reader of "grows" must not take
		// the windows filling for a leak.
		verdict += fmt.Sprintf("; the soak ended before the duplicate windows were full (%s), so these slopes include the NATS server's message ids filling them by design: judge memory from a longer soak", full.Round(time.Second))
	}
	b.soaks = append(b.soaks, soakResult{sc: sc, intervals: ivs, procs: ss.procs, dup: ss.dup, profiles: ss.profiles, verdict: verdict})
	return nil
}

// printSoaks writes a table per soak, one line per interval, and the RSS
// verdict of every process under it.
func (b *bench) printSoaks(w io.Writer) {
	for _, r := range b.soaks {
		names := slices.Sorted(mapKeys(r.procs))
		fmt.Fprintf(w, "\n%s per %s (warm-up %s; latency of the events written in the interval; memory at its last sample; cpu in cores;"+
			" the machine: steal%% of its CPU time, %% of the time some task waited for a CPU (cpu wait%%) or for I/O (io wait%%)):\n",
			r.sc, b.o.interval, time.Duration(b.warmIndex())*b.o.interval)
		head := []string{"until", "events/s", "p50 ms", "p99 ms", "max ms"}
		for _, n := range names {
			head = append(head, n+" rss", n+" heap", n+" cpu", n+" gc%")
		}
		head = append(head, "dup MiB~", "steal%", "cpu wait%", "io wait%")
		rows := [][]string{head}
		for _, iv := range r.intervals {
			row := []string{iv.End.Round(b.o.interval / 10).String(), benchkit.FormatValue(iv.Throughput),
				benchkit.FormatValue(ms(iv.Latency.P50)), benchkit.FormatValue(ms(iv.Latency.P99)), benchkit.FormatValue(ms(iv.Latency.Max))}
			for _, n := range names {
				p := iv.Procs[n]
				row = append(row, benchkit.FormatValue(p.RSS), benchkit.FormatValue(p.Heap), benchkit.FormatValue(p.CPU), benchkit.FormatValue(100*p.GCShare))
			}
			rows = append(rows, append(row, benchkit.FormatValue(iv.DupWindow),
				benchkit.FormatValue(100*iv.Host.Steal), benchkit.FormatValue(100*iv.Host.CPUPressure), benchkit.FormatValue(100*iv.Host.IOPressure)))
		}
		widths := make([]int, len(head))
		for _, row := range rows {
			for i, c := range row {
				widths[i] = max(widths[i], len(c))
			}
		}
		for _, row := range rows {
			var line strings.Builder
			for i, c := range row {
				fmt.Fprintf(&line, "%*s  ", widths[i], c)
			}
			fmt.Fprintln(w, strings.TrimRight(line.String(), " "))
		}
		fmt.Fprintf(w, "%s: %s\n", r.sc, r.verdict)
	}
}

// plotSoaks draws soak.png beside the results file and returns its path.
func (b *bench) plotSoaks() (string, error) {
	path := filepath.Join(filepath.Dir(b.o.out), "soak.png")
	var ps []benchkit.SoakPlot
	for _, r := range b.soaks {
		procs := map[string][]benchkit.ProcSample{}
		for n, ss := range r.procs {
			label := n
			switch {
			case n == nameServer && b.natsProc == nil:
				label = "nats-server (bench process: server, publisher, sinks)"
			case n == nameBench:
				label = "bench process: publisher, sinks"
			}
			procs[label] = ss
		}
		ps = append(ps, benchkit.SoakPlot{Title: fmt.Sprintf("%s (%s)", r.sc, copier(r.sc)),
			Warmup: time.Duration(b.warmIndex()) * b.o.interval, Interval: b.o.interval, Intervals: r.intervals, Procs: procs,
			Dup: r.dup, DupLabel: fmt.Sprintf("duplicate windows (estimate, %d B/id)", status.BytesPerID)})
	}
	return path, benchkit.PlotSoak(path, ps)
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// fmax is max that ignores NaN in a.
func fmax(a, v float64) float64 {
	if math.IsNaN(a) {
		return v
	}
	return max(a, v)
}
