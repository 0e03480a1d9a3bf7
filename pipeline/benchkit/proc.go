package benchkit

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ClockTicks is the kernel's USER_HZ, the unit of the CPU times in
// /proc/<pid>/stat. It is 100 on every Linux architecture Go supports.
const ClockTicks = 100

// Proc is what /proc says about one process.
type Proc struct {
	// CPU is user plus system time since the process started.
	CPU time.Duration
	// RSS is the resident set size now (VmRSS), HWM its peak (VmHWM), in bytes.
	RSS, HWM int64
}

// ReadProc reads the CPU time and memory of process pid from
// /proc/<pid>/stat and /proc/<pid>/status (Linux only).
func ReadProc(pid int) (Proc, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return Proc{}, fmt.Errorf("read cpu time of process %d: %w", pid, err)
	}
	cpu, err := ParseStatCPU(string(stat))
	if err != nil {
		return Proc{}, fmt.Errorf("process %d: %w", pid, err)
	}
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return Proc{}, fmt.Errorf("read memory of process %d: %w", pid, err)
	}
	defer f.Close()
	rss, hwm, err := ParseStatusMemory(f)
	if err != nil {
		return Proc{}, fmt.Errorf("process %d: %w", pid, err)
	}
	return Proc{CPU: cpu, RSS: rss, HWM: hwm}, nil
}

// ParseStatCPU returns utime+stime of a /proc/<pid>/stat line.
func ParseStatCPU(stat string) (time.Duration, error) {
	// The command name (field 2) is in parentheses and may hold spaces and
	// parentheses itself: count fields from the last ')'.
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("parse /proc stat: no command name in %q", truncate(stat, 80))
	}
	f := strings.Fields(stat[i+1:])
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("parse /proc stat: %d fields after the command name, want at least 13", len(f))
	}
	var ticks uint64
	for _, s := range f[11:13] {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("parse /proc stat cpu time %q: %w", s, err)
		}
		ticks += v
	}
	return time.Duration(ticks) * time.Second / ClockTicks, nil
}

// ParseStatusMemory returns VmRSS and VmHWM, in bytes, of a
// /proc/<pid>/status document.
func ParseStatusMemory(f io.Reader) (rss, hwm int64, err error) {
	sc := bufio.NewScanner(f)
	found := 0
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok || (key != "VmRSS" && key != "VmHWM") {
			continue
		}
		fs := strings.Fields(val)
		if len(fs) != 2 || fs[1] != "kB" {
			return 0, 0, fmt.Errorf("parse /proc status %s: %q", key, val)
		}
		kb, err := strconv.ParseInt(fs[0], 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("parse /proc status %s: %w", key, err)
		}
		if key == "VmRSS" {
			rss = kb << 10
		} else {
			hwm = kb << 10
		}
		found++
	}
	if err := sc.Err(); err != nil {
		return 0, 0, fmt.Errorf("read /proc status: %w", err)
	}
	if found != 2 {
		return 0, 0, fmt.Errorf("parse /proc status: VmRSS or VmHWM missing")
	}
	return rss, hwm, nil
}

// SelfCPU returns the user plus system CPU time of this process so far.
func SelfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
