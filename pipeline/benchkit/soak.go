package benchkit

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"math"
	"os"
	"runtime/metrics"
	"strconv"
	"strings"
	"time"
)

// ProcSample is one reading of a process during a soak.
type ProcSample struct {
	At   time.Duration // since the soak began
	RSS  int64         // resident set size (VmRSS), bytes
	Heap int64         // Go heap in use (spans holding objects), bytes; -1 when unknown
	// CPU is the user+system time of the process since it started.
	CPU time.Duration
	// GCCPU is the CPU time the garbage collector took since some fixed
	// moment (mark assists, dedicated and fractional mark workers,
	// stop-the-world pauses; not idle-priority mark workers, which run on
	// otherwise idle CPUs); -1 when unknown.
	GCCPU time.Duration
}

// ProcInterval is a process over one interval of a soak.
type ProcInterval struct {
	// RSS and Heap are the last reading of the interval, in MiB (Heap NaN
	// when unknown).
	RSS, Heap float64
	// GCShare is the garbage collector's share of the process's CPU time
	// over the interval, 0..1; NaN when unknown.
	GCShare float64
	// CPU is the CPU time the process used over the interval per second
	// of it: cores in use; NaN when unknown.
	CPU float64
}

// Interval is one interval (a minute) of a soak.
type Interval struct {
	Start, End time.Duration // since the soak began
	// Throughput is events written per second in the interval.
	Throughput float64
	// Latency is of the events whose write returned in the interval.
	Latency Latency
	Procs   map[string]ProcInterval
	// DupWindow is the last reading in the interval of the memory the
	// server holds for the duplicate windows, MiB; NaN without one.
	DupWindow float64
	// Host is the machine over the interval (see AddHost); its fields are
	// NaN without readings of it.
	Host HostInterval
}

// Intervals aggregates a soak of length total into intervals of width;
// the last one is shorter when total is not a multiple of width, or a
// little longer when what is left is under a tenth of width (a soak of
// 2m0.01s has two intervals). hists[i] holds the latencies of the
// events written in the i-th interval (see NewBucketedRecorder); those
// written after total (the drain at the end) count in the last. procs are
// each process's readings in time order, dup the duplicate-window memory
// in MiB.
func Intervals(width, total time.Duration, hists []*Histogram, procs map[string][]ProcSample, dup []Sample) []Interval {
	if width <= 0 || total <= 0 {
		return nil
	}
	n := int(total / width)
	if rem := total % width; n == 0 || rem >= width/10 {
		n++
	}
	out := make([]Interval, n)
	for i := range out {
		iv := &out[i]
		iv.Start, iv.End = time.Duration(i)*width, min(time.Duration(i+1)*width, total)
		if i == n-1 {
			iv.End = total
		}
		h := &Histogram{}
		if i < len(hists) {
			h.Merge(hists[i])
		}
		if i == n-1 {
			for _, late := range hists[min(n, len(hists)):] {
				h.Merge(late)
			}
		}
		iv.Latency = h.Summary()
		if span := iv.End - iv.Start; span > 0 {
			iv.Throughput = float64(h.N()) / span.Seconds()
		}
		iv.Procs = map[string]ProcInterval{}
		for name, ss := range procs {
			iv.Procs[name] = procInterval(ss, iv.Start, iv.End, i == n-1)
		}
		iv.DupWindow = math.NaN()
		iv.Host = HostOver(nil, iv.Start, iv.End, false) // unknown until AddHost
		for _, s := range dup {
			if s.At >= iv.Start && (s.At < iv.End || (i == n-1 && s.At >= iv.End)) {
				iv.DupWindow = s.Value
			}
		}
	}
	return out
}

// procInterval summarises the readings in [start, end) (and after end
// for the last interval). The GC share is over the CPU time since the last
// reading before start, or the first one in the interval.
func procInterval(ss []ProcSample, start, end time.Duration, last bool) ProcInterval {
	pi := ProcInterval{RSS: math.NaN(), Heap: math.NaN(), GCShare: math.NaN(), CPU: math.NaN()}
	from, to := span(ss, func(s ProcSample) time.Duration { return s.At }, start, end, last)
	if to == nil {
		return pi
	}
	pi.RSS = mib(to.RSS)
	if to.Heap >= 0 {
		pi.Heap = mib(to.Heap)
	}
	if from != to && from.GCCPU >= 0 && to.GCCPU >= 0 && to.CPU > from.CPU {
		pi.GCShare = float64(to.GCCPU-from.GCCPU) / float64(to.CPU-from.CPU)
	}
	if from != to && from.CPU >= 0 && to.CPU >= from.CPU && to.At > from.At {
		pi.CPU = float64(to.CPU-from.CPU) / float64(to.At-from.At)
	}
	return pi
}

// span returns the readings an interval [start, end) is measured between:
// the last one before start, or else the first one in the interval, and
// the last one in it (or after end, when last). to is nil when no reading
// falls in the interval. xs are in time order; at is a reading's time.
func span[T any](xs []T, at func(T) time.Duration, start, end time.Duration, last bool) (from, to *T) {
	for i := range xs {
		x := &xs[i]
		switch t := at(*x); {
		case t < start:
			from = x
		case t < end || last:
			if from == nil {
				from = x
			}
			to = x
		}
	}
	return from, to
}

// After returns the samples taken at or after from.
func After(ss []ProcSample, from time.Duration) []ProcSample {
	for i, s := range ss {
		if s.At >= from {
			return ss[i:]
		}
	}
	return nil
}

// RSSSlope returns the least-squares slope of the RSS of ss in MiB per
// minute (NaN for fewer than two readings) and its standard error (see
// SlopeError).
func RSSSlope(ss []ProcSample) (slope, stderr float64) {
	return memSlope(ss, func(s ProcSample) int64 { return s.RSS })
}

// HeapSlope is RSSSlope of the Go heap, over the readings that have one.
// The heap shows a leak without the collector's slack: RSS follows the
// heap goal, which is the live heap times 1+GOGC/100 up to GOMEMLIMIT, so
// it swings with every cycle and can climb towards the limit with no
// object more kept alive.
func HeapSlope(ss []ProcSample) (slope, stderr float64) {
	return memSlope(ss, func(s ProcSample) int64 { return s.Heap })
}

// memSlope fits a line to the readings of field that are known (>= 0).
func memSlope(ss []ProcSample, field func(ProcSample) int64) (slope, stderr float64) {
	xs := make([]Sample, 0, len(ss))
	for _, s := range ss {
		if v := field(s); v >= 0 {
			xs = append(xs, Sample{At: s.At, Value: mib(v)})
		}
	}
	return fitLine(xs)
}

// GCShare returns the garbage collector's share of the CPU time between
// the first and the last of ss, NaN when unknown.
func GCShare(ss []ProcSample) float64 {
	if len(ss) < 2 {
		return math.NaN()
	}
	a, b := ss[0], ss[len(ss)-1]
	if a.GCCPU < 0 || b.GCCPU < 0 || b.CPU <= a.CPU {
		return math.NaN()
	}
	return float64(b.GCCPU-a.GCCPU) / float64(b.CPU-a.CPU)
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// selfMetrics are the runtime/metrics SelfSample reads.
var selfMetrics = []string{
	"/memory/classes/heap/objects:bytes",
	"/memory/classes/heap/unused:bytes",
	"/cpu/classes/gc/total:cpu-seconds",
	"/cpu/classes/gc/mark/idle:cpu-seconds",
}

// SelfSample reads this process: RSS from /proc, the heap in use (objects
// plus the unused part of their spans, what MemStats.HeapInuse counts)
// and the GC's CPU time from runtime/metrics, the CPU time from getrusage.
func SelfSample(at time.Duration) (ProcSample, error) {
	p, err := ReadProc(os.Getpid())
	if err != nil {
		return ProcSample{}, err
	}
	ms := make([]metrics.Sample, len(selfMetrics))
	for i, name := range selfMetrics {
		ms[i].Name = name
	}
	metrics.Read(ms)
	val := func(i int) float64 {
		switch v := ms[i].Value; v.Kind() {
		case metrics.KindUint64:
			return float64(v.Uint64())
		case metrics.KindFloat64:
			return v.Float64()
		}
		return math.NaN()
	}
	s := ProcSample{At: at, RSS: p.RSS, Heap: int64(val(0) + val(1)), CPU: SelfCPU(), GCCPU: -1}
	if gc, idle := val(2), val(3); !math.IsNaN(gc) && !math.IsNaN(idle) {
		s.GCCPU = time.Duration((gc - idle) * float64(time.Second))
	}
	return s, nil
}

// GCTrace sums the GC CPU time of the GODEBUG=gctrace=1 lines a Go
// process writes to its stderr, read from a file as it grows. It is not
// safe for concurrent use.
type GCTrace struct {
	Path   string
	offset int64
	total  time.Duration
	cycles int
	live   int64 // bytes; -1 before the first cycle
	seen   bool
}

// Live returns the live heap the last cycle read left marked (the third
// of its "X->Y->Z MB"), in bytes, or -1 before any cycle.
func (g *GCTrace) Live() int64 {
	if !g.seen {
		return -1
	}
	return g.live
}

// Read reads the lines added since the last Read and returns the GC CPU
// time of every cycle so far and how many cycles.
func (g *GCTrace) Read() (time.Duration, int, error) {
	f, err := os.Open(g.Path)
	if err != nil {
		return g.total, g.cycles, fmt.Errorf("read gc trace: %w", err)
	}
	defer f.Close()
	if _, err := f.Seek(g.offset, io.SeekStart); err != nil {
		return g.total, g.cycles, fmt.Errorf("read gc trace: %w", err)
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return g.total, g.cycles, fmt.Errorf("read gc trace: %w", err)
	}
	// Only whole lines; a partial one is read again next time.
	end := bytes.LastIndexByte(data, '\n')
	if end < 0 {
		return g.total, g.cycles, nil
	}
	g.offset += int64(end + 1)
	sc := bufio.NewScanner(bytes.NewReader(data[:end+1]))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if d, ok := ParseGCTraceCPU(sc.Text()); ok {
			g.total += d
			g.cycles++
			if live, ok := parseGCTraceLive(sc.Text()); ok {
				g.live, g.seen = live, true
			}
		}
	}
	return g.total, g.cycles, nil
}

// ParseGCTraceCPU returns the GC CPU time of one gctrace line:
//
//	gc 7 @1.23s 2%: 0.01+1.2+0.02 ms clock, 0.04+0.3/1.0/0.8+0.08 ms cpu, 4->4->2 MB, ...
//
// The "ms cpu" part is stop-the-world sweep termination, then mark assist
// / background (dedicated and fractional) / idle mark workers, then
// stop-the-world mark termination; the sum without the idle workers is
// returned (as the runtime's own GC CPU fraction counts). ok is false for
// any other line.
func ParseGCTraceCPU(line string) (time.Duration, bool) {
	if !strings.HasPrefix(line, "gc ") {
		return 0, false
	}
	_, rest, ok := strings.Cut(line, " ms clock, ")
	if !ok {
		return 0, false
	}
	cpu, _, ok := strings.Cut(rest, " ms cpu")
	if !ok {
		return 0, false
	}
	parts := strings.Split(cpu, "+")
	if len(parts) != 3 {
		return 0, false
	}
	mark := strings.Split(parts[1], "/")
	if len(mark) != 3 {
		return 0, false
	}
	var ms float64
	for _, s := range []string{parts[0], mark[0], mark[1], parts[2]} {
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return 0, false
		}
		ms += v
	}
	return time.Duration(ms * float64(time.Millisecond)), true
}

// parseGCTraceLive returns the live heap of a gctrace line: Z of its
// "X->Y->Z MB", in bytes.
func parseGCTraceLive(line string) (int64, bool) {
	_, rest, ok := strings.Cut(line, " ms cpu, ")
	if !ok {
		return 0, false
	}
	sizes, _, ok := strings.Cut(rest, " MB")
	if !ok {
		return 0, false
	}
	parts := strings.Split(sizes, "->")
	if len(parts) != 3 {
		return 0, false
	}
	mb, err := strconv.ParseFloat(parts[2], 64)
	if err != nil {
		return 0, false
	}
	return int64(mb * (1 << 20)), true
}
