package benchkit

import (
	"math"
	"os"
	"testing"
	"time"
)

func TestParseProcStatCPU(t *testing.T) {
	// A 6.x kernel's first line: user nice system idle iowait irq softirq
	// steal guest guest_nice. Guest time is already in user and nice.
	stat := "cpu  981608 2566 375548 568525 44345 0 46987 1139 500 0\ncpu0 1 2 3 4 5 6 7 8 9 10\nintr 1 2\n"
	total, steal, iowait, err := ParseProcStatCPU(stat)
	if err != nil {
		t.Fatal(err)
	}
	if want := uint64(981608 + 2566 + 375548 + 568525 + 44345 + 0 + 46987 + 1139); total != want || steal != 1139 || iowait != 44345 {
		t.Errorf("total %d steal %d iowait %d, want %d 1139 44345", total, steal, iowait, want)
	}
	for _, bad := range []string{"", "intr 1 2 3\n", "cpu 1 2 3 4 5 6 7\n", "cpu 1 2 3 4 x 6 7 8\n"} {
		if _, _, _, err := ParseProcStatCPU(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestParsePressure(t *testing.T) {
	some, full, err := ParsePressure("some avg10=0.00 avg60=0.02 avg300=0.17 total=663886864\nfull avg10=0.00 avg60=0.01 avg300=0.04 total=271076865\n")
	if err != nil || some != 663886864 || full != 271076865 {
		t.Errorf("some %d full %d err %v, want 663886864 271076865", some, full, err)
	}
	// /proc/pressure/cpu before Linux 5.13 has no full line.
	if some, full, err = ParsePressure("some avg10=1.00 avg60=0.50 avg300=0.10 total=42\n"); err != nil || some != 42 || full != -1 {
		t.Errorf("without full: some %d full %d err %v, want 42 -1", some, full, err)
	}
	for _, bad := range []string{"", "some avg10=0.00\n", "some total=x\n", "full avg10=0.00 total=5\n"} {
		if _, _, err := ParsePressure(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

// TestHostOver: the machine's shares over an interval come from the
// counters' growth between the reading before it and the last one in it.
func TestHostOver(t *testing.T) {
	h := func(at time.Duration, ticks, steal, iowait uint64, cpuSome, ioSome, ioFull int64) HostSample {
		return HostSample{At: at, CPUTicks: ticks, StealTicks: steal, IOWaitTicks: iowait,
			CPUSome: cpuSome, IOSome: ioSome, IOFull: ioFull, MemorySome: -1}
	}
	hs := []HostSample{
		h(0, 0, 0, 0, 0, 0, 0),
		h(30*time.Second, 6000, 60, 120, 3_000_000, 1_500_000, 300_000),
		// The second minute is measured from 30s to 90s: 12,000 ticks, 1,200
		// stolen; 30 s of CPU waiting, 6 s of I/O waiting: half and a tenth
		// of the 60 s.
		h(90*time.Second, 18000, 1260, 240, 33_000_000, 7_500_000, 600_000),
	}
	ivs := []Interval{{Start: 0, End: time.Minute}, {Start: time.Minute, End: 2 * time.Minute}, {Start: 2 * time.Minute, End: 3 * time.Minute}}
	AddHost(ivs, hs)
	near := func(a, b float64) bool { return math.Abs(a-b) < 1e-9 }
	if g := ivs[0].Host; !near(g.Steal, 0.01) || !near(g.IOWait, 0.02) || !near(g.CPUPressure, 0.1) || !near(g.IOPressure, 0.05) || !near(g.IOFull, 0.01) || !math.IsNaN(g.MemoryPressure) {
		t.Errorf("first minute %+v, want steal 0.01 iowait 0.02 cpu 0.1 io 0.05 full 0.01, memory unknown", g)
	}
	if g := ivs[1].Host; !near(g.Steal, 0.1) || !near(g.IOWait, 0.01) || !near(g.CPUPressure, 0.5) || !near(g.IOPressure, 0.1) || !near(g.IOFull, 0.005) {
		t.Errorf("second minute %+v, want steal 0.1 iowait 0.01 cpu 0.5 io 0.1 full 0.005", g)
	}
	// The last interval: no reading in it, so nothing is known of it.
	if g := ivs[2].Host; !math.IsNaN(g.Steal) || !math.IsNaN(g.CPUPressure) {
		t.Errorf("a minute without readings %+v, want unknown", g)
	}
}

// TestReadHost reads this machine: its CPU counters always, and its
// pressure totals where the kernel has them.
func TestReadHost(t *testing.T) {
	if _, err := os.Stat("/proc/stat"); err != nil {
		t.Skip("no /proc/stat: not Linux")
	}
	a, err := ReadHost(0)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	b, err := ReadHost(time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if a.CPUTicks == 0 || b.CPUTicks < a.CPUTicks || b.StealTicks > b.CPUTicks {
		t.Errorf("cpu ticks %d then %d (steal %d): want a growing, non-zero count", a.CPUTicks, b.CPUTicks, b.StealTicks)
	}
	if _, err := os.Stat("/proc/pressure/io"); err == nil && (a.IOSome < 0 || b.IOSome < a.IOSome || a.CPUSome < 0) {
		t.Errorf("with /proc/pressure: io some %d then %d, cpu some %d: want totals", a.IOSome, b.IOSome, a.CPUSome)
	}
}
