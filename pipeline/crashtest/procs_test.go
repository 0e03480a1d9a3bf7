package crashtest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mailtel/mailtel/pipeline/pipelinetest"
)

// buildBinaries returns the directory of the router, sinks and publisher
// executables (see pipelinetest.Binaries).
func buildBinaries(t *testing.T) string { return pipelinetest.Binaries(t) }

func TestMain(m *testing.M) {
	code := m.Run()
	pipelinetest.RemoveBinaries()
	os.Exit(code)
}

// proc is one run of one binary. Its stdout and stderr go to a log file in
// the work directory (a publisher's stdout is also kept in memory).
type proc struct {
	name    string // "router#3"
	kind    string // router, sinks, publisher
	http    string // address of /metrics ("" for none)
	logPath string
	cmd     *exec.Cmd
	stdout  bytes.Buffer // publishers only

	done    chan struct{} // closed once the process has exited and been reaped
	waitErr error         // set before done is closed

	mu       sync.Mutex
	signaled string             // the signal we sent ("" if none)
	metrics  map[string]float64 // last scrape of /metrics
}

// exitedUnasked reports whether the process has exited without being
// signalled by the test.
func (p *proc) exitedUnasked() bool {
	select {
	case <-p.done:
	default:
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.signaled == ""
}

func (p *proc) running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// cluster runs the processes of one crash test and keeps the timeline of
// what it did to them. Its methods are called from the test goroutine only,
// except running and timeline reads, which are guarded by mu.
type cluster struct {
	t       *testing.T
	bin     string // directory of the executables
	dir     string // work directory
	config  string // configuration file
	natsURL string
	begin   time.Time
	wd      *watchdog // nil until the run starts, or with -crash.watchdog=0

	mu       sync.Mutex
	procs    []*proc
	count    map[string]int
	timeline []string
}

func newCluster(t *testing.T, bin, dir, config, natsURL string) *cluster {
	c := &cluster{t: t, bin: bin, dir: dir, config: config, natsURL: natsURL, begin: time.Now(), count: map[string]int{}}
	if err := os.MkdirAll(filepath.Join(dir, "logs"), 0o750); err != nil {
		t.Fatal(err)
	}
	// Runs before the NATS server is stopped (cleanups run last-in first-out).
	t.Cleanup(c.killAll)
	return c
}

func (c *cluster) elapsed() time.Duration { return time.Since(c.begin).Round(time.Millisecond) }

// note adds a line to the timeline and to the test log.
func (c *cluster) note(format string, args ...any) {
	c.t.Log(c.record(format, args...))
}

// record adds a line to the timeline only, and returns it; unlike note it
// is safe after the test ended.
func (c *cluster) record(format string, args ...any) string {
	line := fmt.Sprintf("%9s  ", c.elapsed()) + fmt.Sprintf(format, args...)
	c.mu.Lock()
	c.timeline = append(c.timeline, line)
	c.mu.Unlock()
	return line
}

// start starts one process of kind ("router", "sinks" or "publisher gen")
// with extra arguments. Router and sinks get their own --http port.
func (c *cluster) start(kind string, args ...string) *proc {
	c.t.Helper()
	c.mu.Lock()
	c.count[kind]++
	n := c.count[kind]
	c.mu.Unlock()
	p := &proc{name: fmt.Sprintf("%s#%d", kind, n), kind: kind, done: make(chan struct{})}
	argv := []string{"--config", c.config, "--nats", c.natsURL}
	exe := kind
	switch kind {
	case "router", "sinks":
		p.http = pipelinetest.FreeAddr(c.t)
		argv = append([]string{"run", "--http", p.http}, argv...)
	case "publisher":
		argv = append([]string{"gen"}, argv...)
	}
	argv = append(argv, args...)
	p.logPath = filepath.Join(c.dir, "logs", fmt.Sprintf("%s-%d.log", kind, n))
	logf, err := os.Create(p.logPath)
	if err != nil {
		c.t.Fatal(err)
	}
	p.cmd = exec.Command(filepath.Join(c.bin, exe), argv...)
	p.cmd.Stderr = logf
	p.cmd.Stdout = logf
	// Every goroutine in the traceback a SIGQUIT (the watchdog) prints.
	p.cmd.Env = append(os.Environ(), "GOTRACEBACK=all")
	setDeathSignal(p.cmd)
	if kind == "publisher" {
		p.cmd.Stdout = &p.stdout
	}
	if err := p.cmd.Start(); err != nil {
		logf.Close()
		c.t.Fatalf("start %s: %v", p.name, err)
	}
	go func() {
		p.waitErr = p.cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	c.mu.Lock()
	c.procs = append(c.procs, p)
	c.mu.Unlock()
	c.note("start %-12s pid %-7d %s", p.name, p.cmd.Process.Pid, strings.Join(args, " "))
	return p
}

// signal sends sig to p, then the signals of then (SIGCONT: a stopped
// process handles the signal), and waits (up to wait) for it to exit.
// Before that it scrapes p's /metrics, so the counters of a killed process
// are kept. It returns false if p did not exit in time.
func (c *cluster) signal(p *proc, sig syscall.Signal, wait time.Duration, then ...syscall.Signal) bool {
	if p.http != "" {
		if m, err := scrape(p.http, time.Second); err == nil {
			p.mu.Lock()
			p.metrics = m
			p.mu.Unlock()
		}
	}
	p.mu.Lock()
	if p.signaled == "" {
		p.signaled = sig.String()
	}
	p.mu.Unlock()
	if err := p.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		c.t.Errorf("signal %s: %v", p.name, err)
	}
	for _, s := range then {
		p.cmd.Process.Signal(s)
	}
	select {
	case <-p.done:
		return true
	case <-time.After(wait):
		return false
	}
}

// kill SIGKILLs p and waits until it is reaped, so its file locks are
// released before a successor starts. The timeline gets why, what p's
// last scrape counted, and after() (the state once p is dead) if not nil.
//
// With -crash.nowait it does not wait: the successor starts while p may
// still be dying, as under a supervisor that restarts at once.
func (c *cluster) kill(p *proc, why string, after func() string) {
	c.t.Helper()
	wait := 10 * time.Second
	if *flagNoWait {
		wait = 0
	}
	killed := time.Now()
	if !c.signal(p, syscall.SIGKILL, wait) && !*flagNoWait {
		c.t.Fatalf("%s did not die within 10s of SIGKILL", p.name)
	}
	if *flagNoWait {
		// To the timeline only: the test may have ended when p is gone.
		go func() {
			<-p.done
			c.record("gone  %-12s pid %-7d %s after SIGKILL", p.name, p.cmd.Process.Pid, time.Since(killed).Round(time.Microsecond))
		}()
	}
	extra := ""
	if after != nil {
		extra = " " + after()
	}
	c.note("KILL  %-12s pid %-7d %s; last scrape: %s;%s", p.name, p.cmd.Process.Pid, why, p.counters(), extra)
}

// counters summarises the last scrape of p: what it received, routed or
// wrote, and how many redeliveries it saw.
func (p *proc) counters() string {
	p.mu.Lock()
	m := p.metrics
	p.mu.Unlock()
	if m == nil {
		return "none"
	}
	var parts []string
	for k, v := range m {
		for _, prefix := range []string{"mailtel_written_total", "mailtel_routed_total", "mailtel_redelivered_total", "mailtel_received_total"} {
			if strings.HasPrefix(k, prefix) {
				parts = append(parts, fmt.Sprintf("%s=%.0f", strings.TrimPrefix(k, "mailtel_"), v))
			}
		}
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}

// stop SIGTERMs p and waits up to 30s for it to exit; a process that
// takes longer is killed and the test fails.
func (c *cluster) stop(p *proc) {
	c.t.Helper()
	if !p.running() {
		return
	}
	if !c.signal(p, syscall.SIGTERM, 30*time.Second) {
		c.signal(p, syscall.SIGKILL, 10*time.Second)
		c.t.Errorf("%s did not stop within 30s of SIGTERM (killed); log %s:\n%s", p.name, p.logPath, tail(p.logPath, 40))
		return
	}
	c.note("stop  %-12s pid %-7d exit: %v; last scrape: %s", p.name, p.cmd.Process.Pid, exitText(p.waitErr), p.counters())
	if p.waitErr != nil {
		c.t.Errorf("%s exited with %v after SIGTERM; log %s:\n%s", p.name, p.waitErr, p.logPath, tail(p.logPath, 40))
	}
}

// killAll SIGKILLs every process still running (test cleanup).
func (c *cluster) killAll() {
	c.mu.Lock()
	procs := append([]*proc(nil), c.procs...)
	c.mu.Unlock()
	for _, p := range procs {
		if p.running() {
			p.mu.Lock()
			if p.signaled == "" {
				p.signaled = "killed at cleanup"
			}
			p.mu.Unlock()
			p.cmd.Process.Kill()
			<-p.done
		}
	}
}

// anyRunning reports whether a process of kind is running.
func (c *cluster) anyRunning(kind string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range c.procs {
		if p.kind == kind && p.running() {
			return true
		}
	}
	return false
}

// unexpectedExits returns the processes that exited without being asked.
func (c *cluster) unexpectedExits(kinds ...string) []*proc {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*proc
	for _, p := range c.procs {
		for _, k := range kinds {
			if p.kind == k && p.exitedUnasked() {
				out = append(out, p)
			}
		}
	}
	return out
}

// sumMetric adds up, over every process of kind, the last scraped value of
// the series named series (e.g. `mailtel_redelivered_total{stage="router"}`),
// and says how many processes of kind had no scrape.
func (c *cluster) sumMetric(kind, series string) (sum float64, unscraped int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range c.procs {
		if p.kind != kind {
			continue
		}
		p.mu.Lock()
		m := p.metrics
		p.mu.Unlock()
		if m == nil {
			unscraped++
			continue
		}
		sum += m[series]
	}
	return sum, unscraped
}

func (c *cluster) timelineText() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return strings.Join(c.timeline, "\n")
}

// logsOf returns the tails of the logs of every process of the kinds.
func (c *cluster) logsOf(lines int, kinds ...string) string {
	c.mu.Lock()
	procs := append([]*proc(nil), c.procs...)
	c.mu.Unlock()
	var b strings.Builder
	for _, p := range procs {
		for _, k := range kinds {
			if p.kind == k {
				fmt.Fprintf(&b, "--- %s (%s, exit: %s), last %d lines:\n%s\n", p.name, p.logPath, exitText(p.waitErr), lines, tail(p.logPath, lines))
			}
		}
	}
	return b.String()
}

// logsContaining counts the processes of kind whose log holds text.
func (c *cluster) logsContaining(kind, text string) int {
	c.mu.Lock()
	procs := append([]*proc(nil), c.procs...)
	c.mu.Unlock()
	n := 0
	for _, p := range procs {
		if data, err := os.ReadFile(p.logPath); p.kind == kind && err == nil && bytes.Contains(data, []byte(text)) {
			n++
		}
	}
	return n
}

func exitText(err error) string {
	if err == nil {
		return "0"
	}
	return err.Error()
}

// scrape reads the mailtel_* series of a Prometheus /metrics page.
func scrape(addr string, timeout time.Duration) (map[string]float64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scrape %s: %s", addr, resp.Status)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "mailtel_") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		out[line[:i]] = v
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("scrape %s: %w", addr, err)
	}
	return out, nil
}

// waitReady polls p's /readyz until it answers 200, p exits, or the
// deadline passes.
func waitReady(p *proc, within time.Duration) error {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if !p.running() {
			return fmt.Errorf("%s exited: %s", p.name, exitText(p.waitErr))
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.http+"/readyz", nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				cancel()
				return nil
			}
		}
		cancel()
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s not ready after %s", p.name, within)
}

// tail returns the last n lines of the file at path, leaving out a
// goroutine dump the process printed on SIGQUIT (the watchdog shows it
// summarised).
func tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return "(" + err.Error() + ")"
	}
	if i := bytes.Index(data, []byte("\nSIGQUIT: quit\n")); i >= 0 {
		data = append(data[:i+1:i+1], fmt.Sprintf("(goroutine dump on SIGQUIT: %d bytes)\n", len(data)-i-1)...)
	} else if bytes.HasPrefix(data, []byte("SIGQUIT: quit\n")) {
		data = []byte(fmt.Sprintf("(goroutine dump on SIGQUIT: %d bytes)\n", len(data)))
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
