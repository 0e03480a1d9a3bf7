package benchkit

import (
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"time"
)

// HostSample is one reading of the machine during a soak: what all its
// processes share, so that a minute whose latency jumps can be told apart
// as one the machine stalled in (the hypervisor took the CPU, every task
// waited for the disk) or one a process stalled in by itself. Counters are
// cumulative since boot; the pressure ones are -1 where the kernel has no
// pressure stall information (/proc/pressure, Linux 4.20+ with PSI on).
type HostSample struct {
	At time.Duration // since the soak began
	// CPU ticks of all CPUs (the first line of /proc/stat): all of them,
	// and those stolen by the hypervisor and spent idle waiting for I/O.
	CPUTicks, StealTicks, IOWaitTicks uint64
	// Microseconds in which some task waited for a CPU, for I/O, or for
	// memory, and in which every non-idle task waited for I/O
	// (/proc/pressure/{cpu,io,memory}: the "total" of "some" and "full").
	CPUSome, IOSome, IOFull, MemorySome int64
}

// HostInterval is the machine over one interval of a soak, each a share
// 0..1; NaN when unknown.
type HostInterval struct {
	// Steal and IOWait are shares of all CPU time: stolen by the
	// hypervisor, idle waiting for I/O.
	Steal, IOWait float64
	// CPUPressure, IOPressure and MemoryPressure are the shares of wall
	// time in which some task waited for a CPU, for I/O, for memory;
	// IOFull in which every non-idle task waited for I/O.
	CPUPressure, IOPressure, IOFull, MemoryPressure float64
}

// ReadHost reads the machine's CPU counters from /proc/stat and its
// pressure stall totals from /proc/pressure (Linux only). /proc/stat must
// be readable; missing pressure files leave their fields -1.
func ReadHost(at time.Duration) (HostSample, error) {
	stat, err := os.ReadFile("/proc/stat")
	if err != nil {
		return HostSample{}, fmt.Errorf("read the machine's cpu time: %w", err)
	}
	h := HostSample{At: at}
	if h.CPUTicks, h.StealTicks, h.IOWaitTicks, err = ParseProcStatCPU(string(stat)); err != nil {
		return HostSample{}, err
	}
	h.CPUSome, h.IOSome, h.IOFull, h.MemorySome = -1, -1, -1, -1
	for _, p := range []struct {
		file       string
		some, full *int64
	}{{"cpu", &h.CPUSome, nil}, {"io", &h.IOSome, &h.IOFull}, {"memory", &h.MemorySome, nil}} {
		doc, err := os.ReadFile("/proc/pressure/" + p.file)
		if err != nil {
			continue // no PSI: unknown
		}
		some, full, err := ParsePressure(string(doc))
		if err != nil {
			return HostSample{}, fmt.Errorf("/proc/pressure/%s: %w", p.file, err)
		}
		*p.some = some
		if p.full != nil {
			*p.full = full
		}
	}
	return h, nil
}

// ParseProcStatCPU returns, from a /proc/stat document, the ticks of all
// CPUs (its first line, "cpu user nice system idle iowait irq softirq
// steal ..."): their sum, the stolen ones and the iowait ones. Guest time
// is left out of the sum: the kernel counts it in user and nice already.
func ParseProcStatCPU(stat string) (total, steal, iowait uint64, err error) {
	line, _, _ := strings.Cut(stat, "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, 0, 0, fmt.Errorf("parse /proc/stat: first line %q: want cpu and 8 counters or more", truncate(line, 80))
	}
	var v [8]uint64
	for i := range v {
		if v[i], err = strconv.ParseUint(f[1+i], 10, 64); err != nil {
			return 0, 0, 0, fmt.Errorf("parse /proc/stat cpu counter %d: %w", i+1, err)
		}
		total += v[i]
	}
	return total, v[7], v[4], nil
}

// ParsePressure returns the "total" microseconds of the "some" and "full"
// lines of a /proc/pressure file; full is -1 when there is no full line
// (/proc/pressure/cpu before Linux 5.13).
func ParsePressure(doc string) (some, full int64, err error) {
	some, full = -1, -1
	for _, line := range strings.Split(strings.TrimSpace(doc), "\n") {
		kind, rest, _ := strings.Cut(line, " ")
		var total int64 = -1
		for _, kv := range strings.Fields(rest) {
			if v, ok := strings.CutPrefix(kv, "total="); ok {
				if total, err = strconv.ParseInt(v, 10, 64); err != nil {
					return -1, -1, fmt.Errorf("parse pressure total %q: %w", v, err)
				}
			}
		}
		switch {
		case total < 0:
			return -1, -1, fmt.Errorf("parse pressure: no total in %q", truncate(line, 80))
		case kind == "some":
			some = total
		case kind == "full":
			full = total
		}
	}
	if some < 0 {
		return -1, -1, fmt.Errorf("parse pressure: no some line in %q", truncate(doc, 80))
	}
	return some, full, nil
}

// HostOver summarises the readings of the machine over [start, end) (and
// after end when last), from the last reading before start, or the first
// one in the interval, to the last one in it.
func HostOver(hs []HostSample, start, end time.Duration, last bool) HostInterval {
	nan := math.NaN()
	hi := HostInterval{Steal: nan, IOWait: nan, CPUPressure: nan, IOPressure: nan, IOFull: nan, MemoryPressure: nan}
	from, to := span(hs, func(h HostSample) time.Duration { return h.At }, start, end, last)
	if to == nil || from == to {
		return hi
	}
	if ticks := float64(to.CPUTicks - from.CPUTicks); ticks > 0 {
		hi.Steal = float64(to.StealTicks-from.StealTicks) / ticks
		hi.IOWait = float64(to.IOWaitTicks-from.IOWaitTicks) / ticks
	}
	wall := float64((to.At - from.At).Microseconds())
	share := func(a, b int64) float64 {
		if a < 0 || b < 0 || wall <= 0 {
			return nan
		}
		return min(1, float64(b-a)/wall)
	}
	hi.CPUPressure = share(from.CPUSome, to.CPUSome)
	hi.IOPressure = share(from.IOSome, to.IOSome)
	hi.IOFull = share(from.IOFull, to.IOFull)
	hi.MemoryPressure = share(from.MemorySome, to.MemorySome)
	return hi
}

// AddHost sets the Host of each of ivs (see Intervals) from the machine's
// readings hs.
func AddHost(ivs []Interval, hs []HostSample) {
	for i := range ivs {
		ivs[i].Host = HostOver(hs, ivs[i].Start, ivs[i].End, i == len(ivs)-1)
	}
}
