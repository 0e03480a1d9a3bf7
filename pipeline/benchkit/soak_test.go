package benchkit

import (
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"gonum.org/v1/plot"

	"github.com/mailtel/mailtel/schema"
)

func TestSlope(t *testing.T) {
	line := func(n int, every time.Duration, f func(min float64) float64) []Sample {
		var out []Sample
		for i := 0; i < n; i++ {
			at := time.Duration(i) * every
			out = append(out, Sample{At: at, Value: f(at.Minutes())})
		}
		return out
	}
	for _, tc := range []struct {
		name string
		in   []Sample
		want float64 // NaN: none
	}{
		{"none", nil, math.NaN()},
		{"one", []Sample{{At: time.Minute, Value: 3}}, math.NaN()},
		{"same time", []Sample{{At: time.Minute, Value: 3}, {At: time.Minute, Value: 5}}, math.NaN()},
		{"flat", line(10, 10*time.Second, func(float64) float64 { return 40 }), 0},
		{"2 MiB a minute, sampled every 10s", line(31, 10*time.Second, func(m float64) float64 { return 30 + 2*m }), 2},
		{"per minute samples falling", line(5, time.Minute, func(m float64) float64 { return 100 - 0.5*m }), -0.5},
		{"noise around a rise", []Sample{{time.Minute, 10}, {2 * time.Minute, 14}, {3 * time.Minute, 12}, {4 * time.Minute, 16}}, 1.6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Slope(tc.in)
			if math.IsNaN(tc.want) != math.IsNaN(got) || (!math.IsNaN(got) && math.Abs(got-tc.want) > 1e-9) {
				t.Errorf("slope %v, want %v", got, tc.want)
			}
		})
	}
	rss := []ProcSample{{At: 0, RSS: 100 << 20}, {At: time.Minute, RSS: 103 << 20}, {At: 2 * time.Minute, RSS: 106 << 20}}
	if got, se := RSSSlope(After(rss, time.Minute)); math.Abs(got-3) > 1e-9 || !math.IsNaN(se) {
		t.Errorf("rss slope after the first minute %v MiB/min (error %v), want 3 (no error from two readings)", got, se)
	}
	// The heap slope skips readings without a heap (-1): here the RSS is
	// flat and the heap, read twice, grows 2 MiB a minute.
	mixed := []ProcSample{{At: 0, RSS: 50 << 20, Heap: 10 << 20}, {At: time.Minute, RSS: 50 << 20, Heap: -1},
		{At: 2 * time.Minute, RSS: 50 << 20, Heap: 14 << 20}, {At: 3 * time.Minute, RSS: 50 << 20, Heap: -1}}
	if got, _ := HeapSlope(mixed); math.Abs(got-2) > 1e-9 {
		t.Errorf("heap slope %v MiB/min, want 2 from the two readings with a heap", got)
	}
	if got, _ := RSSSlope(mixed); got != 0 {
		t.Errorf("rss slope %v MiB/min, want 0", got)
	}
	if got, _ := HeapSlope(mixed[1:2]); !math.IsNaN(got) {
		t.Errorf("heap slope of no heap reading %v, want NaN", got)
	}
	// The standard error: 0 on a line; on a sawtooth of +-1 sampled at 0,
	// 1, 2 and 3 minutes (fitted slope -0.4, residuals 0.4, -1.2, 1.2,
	// -0.4, sxx 5), sqrt(sum r^2 / (n-2) / sxx).
	if se := SlopeError(line(31, 10*time.Second, func(m float64) float64 { return 30 + 2*m })); math.Abs(se) > 1e-9 {
		t.Errorf("error of a line's slope %v, want 0", se)
	}
	saw := []Sample{{0, 1}, {time.Minute, -1}, {2 * time.Minute, 1}, {3 * time.Minute, -1}}
	wantSE := math.Sqrt((0.4*0.4 + 1.2*1.2 + 1.2*1.2 + 0.4*0.4) / 2 / 5)
	if got, se := Slope(saw), SlopeError(saw); math.Abs(got+0.4) > 1e-9 || math.Abs(se-wantSE) > 1e-9 {
		t.Errorf("sawtooth: slope %v error %v, want -0.4 and %v", got, se, wantSE)
	}
	// A wave slower than the samples, as a heap's compaction cycle is:
	// no growth, but each residual is much like the one before. Its error
	// is the independent one times sqrt((1+r)/(1-r)), r the residuals'
	// lag-1 autocorrelation. Taken as independent, the error would call
	// the part of a cycle the run ends in (-4.7 MiB/min) "flat".
	wave := line(163, 10*time.Second, func(m float64) float64 { return 2600 + 300*math.Sin(2*math.Pi*m/7) })
	slope, se := Slope(wave), SlopeError(wave)
	var mx, my float64
	for _, s := range wave {
		mx += s.At.Minutes() / float64(len(wave))
		my += s.Value / float64(len(wave))
	}
	var sxx, ssr, lag, prev float64
	for i, s := range wave {
		dx := s.At.Minutes() - mx
		r := s.Value - my - slope*dx
		sxx += dx * dx
		ssr += r * r
		if i > 0 {
			lag += r * prev
		}
		prev = r
	}
	r := lag / ssr
	indep := math.Sqrt(ssr / float64(len(wave)-2) / sxx)
	if want := indep * math.Sqrt((1+r)/(1-r)); r < 0.9 || math.Abs(se-want) > 1e-6*want {
		t.Errorf("wave: error %v, want %v (independent %v, autocorrelation %v)", se, want, indep, r)
	}
	t.Logf("wave: slope %+.2f, error %.2f (independent %.2f, r %.3f)", slope, se, indep, r)
	if Judge(slope, indep) != Flat || Judge(slope, se) != CannotTell {
		t.Errorf("wave: slope %+.2f reads %v with the independent error %.2f and %v with %.2f; want flat, then cannot tell",
			slope, Judge(slope, indep), indep, Judge(slope, se), se)
	}
}

func TestHistogram(t *testing.T) {
	var h Histogram
	if l := h.Summary(); l != (Latency{}) {
		t.Errorf("empty: %+v", l)
	}
	var exact []time.Duration
	for i := 1; i <= 1000; i++ { // 1ms .. 1s
		d := time.Duration(i) * time.Millisecond
		h.Add(d)
		exact = append(exact, d)
	}
	h.Add(500 * time.Nanosecond) // below the first bound
	exact = append(exact, 500*time.Nanosecond)
	want := Summarize(exact)
	got := h.Summary()
	if got.N != want.N || got.Max != want.Max || got.Mean != want.Mean {
		t.Errorf("got %+v, want %+v", got, want)
	}
	for _, p := range []struct {
		name      string
		got, want time.Duration
	}{{"p50", got.P50, want.P50}, {"p95", got.P95, want.P95}, {"p99", got.P99, want.P99}} {
		if p.got < p.want || float64(p.got) > float64(p.want)*(1+1.0/64) {
			t.Errorf("%s %v, want %v to %v", p.name, p.got, p.want, time.Duration(float64(p.want)*(1+1.0/64)))
		}
	}
	var m Histogram
	m.Merge(&h)
	m.Merge(&Histogram{})
	if m.Summary() != got {
		t.Errorf("merged %+v, want %+v", m.Summary(), got)
	}
}

// TestIntervals aggregates a soak of 2.5 minutes into minutes: the
// throughput and latency of the events written in each minute, the last
// reading of memory in it, and the CPU (cores) and the GC's share of it
// since the reading before it.
func TestIntervals(t *testing.T) {
	hist := func(n int, d time.Duration) *Histogram {
		h := &Histogram{}
		for range n {
			h.Add(d)
		}
		return h
	}
	hists := []*Histogram{hist(600, time.Millisecond), hist(1200, 2*time.Millisecond), hist(300, 3*time.Millisecond),
		hist(10, time.Second)} // written in the drain after the end: counts in the last interval
	s := func(at time.Duration, rssMiB int64, cpu, gc time.Duration) ProcSample {
		return ProcSample{At: at, RSS: rssMiB << 20, Heap: rssMiB << 19, CPU: cpu, GCCPU: gc}
	}
	procs := map[string][]ProcSample{
		"router": {s(0, 30, 0, 0), s(30*time.Second, 32, 10*time.Second, time.Second), s(time.Minute, 34, 20*time.Second, 2*time.Second),
			s(90*time.Second, 35, 30*time.Second, 6*time.Second), s(150*time.Second, 36, 40*time.Second, 11*time.Second)},
		"blind": {{At: 10 * time.Second, RSS: 1 << 20, Heap: -1, CPU: time.Second, GCCPU: -1}},
	}
	dup := []Sample{{At: 30 * time.Second, Value: 1}, {At: 90 * time.Second, Value: 2}, {At: 100 * time.Second, Value: 3}}
	ivs := Intervals(time.Minute, 150*time.Second, hists, procs, dup)
	if len(ivs) != 3 {
		t.Fatalf("%d intervals, want 3", len(ivs))
	}
	for i, want := range []struct {
		end        time.Duration
		throughput float64
		p50, max   time.Duration
		rss, heap  float64
		gcShare    float64
		cpu        float64
		dup        float64
	}{
		// No reading before it: from the first in it (0s) to the last (30s).
		{time.Minute, 10, time.Millisecond, time.Millisecond, 32, 16, 0.1, 10.0 / 30, 1},
		// The reading at exactly 1m opens the second minute; the GC share and
		// the CPU are since the last reading of the first (30s: 1s of 10s;
		// 20s of CPU in the 60s to 90s).
		{2 * time.Minute, 20, 2 * time.Millisecond, 2 * time.Millisecond, 35, 17.5, 0.25, 20.0 / 60, 3},
		// Half a minute: 310 events in 30s, the drain's slow ones included.
		{150 * time.Second, 310.0 / 30, 3 * time.Millisecond, time.Second, 36, 18, 0.5, 10.0 / 60, math.NaN()},
	} {
		iv := ivs[i]
		r := iv.Procs["router"]
		if iv.End != want.end || math.Abs(iv.Throughput-want.throughput) > 1e-9 || iv.Latency.Max != want.max ||
			iv.Latency.P50 < want.p50 || float64(iv.Latency.P50) > float64(want.p50)*1.02 {
			t.Errorf("interval %d: end %v, %v events/s, %+v; want end %v, %v events/s, p50 %v, max %v",
				i, iv.End, iv.Throughput, iv.Latency, want.end, want.throughput, want.p50, want.max)
		}
		if r.RSS != want.rss || r.Heap != want.heap || math.Abs(r.GCShare-want.gcShare) > 1e-9 || math.Abs(r.CPU-want.cpu) > 1e-9 {
			t.Errorf("interval %d: router %+v, want rss %v heap %v gc share %v cpu %v", i, r, want.rss, want.heap, want.gcShare, want.cpu)
		}
		if !math.IsNaN(iv.Host.Steal) || !math.IsNaN(iv.Host.IOPressure) {
			t.Errorf("interval %d: the machine %+v before AddHost, want unknown (NaN)", i, iv.Host)
		}
		if !(iv.DupWindow == want.dup || math.IsNaN(iv.DupWindow) && math.IsNaN(want.dup)) {
			t.Errorf("interval %d: dup window %v, want %v", i, iv.DupWindow, want.dup)
		}
	}
	if b := ivs[0].Procs["blind"]; b.RSS != 1 || !math.IsNaN(b.Heap) || !math.IsNaN(b.GCShare) || !math.IsNaN(b.CPU) {
		t.Errorf("a process without heap or GC figures: %+v", b)
	}
	if b := ivs[1].Procs["blind"]; !math.IsNaN(b.RSS) {
		t.Errorf("a process with no reading in the interval: %+v", b)
	}
	if ivs := Intervals(time.Minute, 2*time.Minute+10*time.Millisecond, hists, nil, nil); len(ivs) != 2 || ivs[1].End != 2*time.Minute+10*time.Millisecond {
		t.Errorf("10ms over two minutes: %d intervals, the last ending at %v; want 2, the last to the end", len(ivs), ivs[len(ivs)-1].End)
	}
	if ivs := Intervals(time.Minute, 30*time.Second, hists, nil, nil); len(ivs) != 1 || ivs[0].End != 30*time.Second {
		t.Errorf("half a minute: %d intervals", len(ivs))
	}
	if got := GCShare(After(procs["router"], time.Minute)); math.Abs(got-0.45) > 1e-9 { // 9s of 20s
		t.Errorf("gc share after the first minute %v, want 0.45", got)
	}
}

func TestBucketedRecorder(t *testing.T) {
	start := time.Now()
	r := NewBucketedRecorder(start.Add(-time.Hour), time.Second)
	r.SetStart(start)
	evs := []*schema.Event{{ID: "a"}, {ID: "b"}, {ID: "c"}}
	for _, ev := range evs {
		r.Published(ev.ID, start)
	}
	r.Written(evs[:1], start.Add(100*time.Millisecond))
	r.Written(evs[1:], start.Add(2500*time.Millisecond))
	lat, unmatched, pending := r.Result()
	if len(lat) != 0 || unmatched != 0 || pending != 0 || r.Measured() != 3 {
		t.Errorf("latencies %v unmatched %d pending %d measured %d", lat, unmatched, pending, r.Measured())
	}
	hs := r.Histograms()
	if len(hs) != 3 || hs[0].N() != 1 || hs[1].N() != 0 || hs[2].N() != 2 || hs[2].Summary().Max != 2500*time.Millisecond {
		t.Errorf("histograms %+v", hs)
	}
}

func TestParseGCTraceCPU(t *testing.T) {
	for _, tc := range []struct {
		line string
		want time.Duration
		ok   bool
	}{
		// sweep termination 0.04 + assist 0.3 + background 1.0 (+ idle 0.8 left out) + mark termination 0.08
		{"gc 7 @1.234s 2%: 0.011+1.2+0.020 ms clock, 0.04+0.3/1.0/0.8+0.08 ms cpu, 4->4->2 MB, 5 MB goal, 0 MB stacks, 0 MB globals, 4 P", 1420 * time.Microsecond, true},
		{"gc 1 @0.003s 3%: 0.010+0.5+0.002 ms clock, 0.040+0.1/0.4/0+0.010 ms cpu, 3->3->0 MB, 4 MB goal, 0 MB stacks, 0 MB globals, 2 P (forced)", 550 * time.Microsecond, true},
		{`{"level":"warn","msg":"router pull"}`, 0, false},
		{"gc 7 @1.2s 2%: 0.011+1.2+0.020 ms clock, garbage ms cpu", 0, false},
		{"scvg: 0 MB released", 0, false},
	} {
		got, ok := ParseGCTraceCPU(tc.line)
		if ok != tc.ok || (ok && (got-tc.want).Abs() > time.Microsecond) {
			t.Errorf("ParseGCTraceCPU(%q) = %v, %v; want %v, %v", tc.line, got, ok, tc.want, tc.ok)
		}
	}
	path := filepath.Join(t.TempDir(), "router.log")
	line := "gc 7 @1.234s 2%: 0.011+1.2+0.020 ms clock, 0.04+0.3/1.0/0.8+0.08 ms cpu, 4->4->2 MB, 5 MB goal, 0 MB stacks, 0 MB globals, 4 P\n"
	if err := os.WriteFile(path, []byte(line+`{"level":"warn"}`+"\n"+line+"gc 8 @2"), 0o644); err != nil {
		t.Fatal(err)
	}
	g := &GCTrace{Path: path}
	if g.Live() != -1 {
		t.Errorf("live heap before any cycle: %d", g.Live())
	}
	if total, n, err := g.Read(); err != nil || n != 2 || (total-2840*time.Microsecond).Abs() > time.Microsecond {
		t.Errorf("first read: %v over %d cycles, %v", total, n, err)
	}
	if g.Live() != 2<<20 {
		t.Errorf("live heap after the first read: %d, want 2 MiB", g.Live())
	}
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(".000s 1%: 0+0+0 ms clock, 0+1/0/0+0 ms cpu, 4->4->3 MB, 5 MB goal, 0 MB stacks, 0 MB globals, 4 P\n")
	f.Close()
	if total, n, err := g.Read(); err != nil || n != 3 || (total-3840*time.Microsecond).Abs() > time.Microsecond {
		t.Errorf("second read (the partial line completed): %v over %d cycles, %v", total, n, err)
	}
	if g.Live() != 3<<20 {
		t.Errorf("live heap of the completed line: %d, want 3 MiB", g.Live())
	}
}

func TestPlotSoak(t *testing.T) {
	path := filepath.Join(t.TempDir(), "soak.png")
	h := &Histogram{}
	h.Add(time.Millisecond)
	h.Add(time.Second)
	ivs := Intervals(time.Minute, 2*time.Minute, []*Histogram{h, h}, nil, nil)
	procs := map[string][]ProcSample{"router": {{At: 0, RSS: 30 << 20}, {At: 2 * time.Minute, RSS: 31 << 20}}}
	s := SoakPlot{Title: "soak", Warmup: time.Minute, Intervals: ivs, Procs: procs,
		Dup: []Sample{{At: time.Minute, Value: 5}}, DupLabel: "dup"}
	if err := PlotSoak(path, []SoakPlot{s, s}); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil || len(data) < 1000 || string(data[1:4]) != "PNG" {
		t.Errorf("%d bytes, %v", len(data), err)
	}
}

// TestPlainTicks: the memory panel's labels carry no trailing zeros, so
// two panels of one PNG read alike, and keep the digits that matter.
func TestPlainTicks(t *testing.T) {
	for _, c := range []struct {
		min, max float64
		want     []string
	}{
		{0, 5200, []string{"0", "2500", "5000"}},     // DefaultTicks: "5000.00"
		{0, 6500, []string{"0", "3000", "6000"}},     // and here "6000"
		{0, 1.3, []string{"0", "0.4", "0.8", "1.2"}}, // "0.0"
	} {
		var got []string
		for _, tk := range (plainTicks{}).Ticks(c.min, c.max) {
			if tk.Label != "" {
				got = append(got, tk.Label)
			}
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("ticks of [%g, %g]: %q, want %q (DefaultTicks: %v)", c.min, c.max, got, c.want, plot.DefaultTicks{}.Ticks(c.min, c.max))
		}
	}
}
