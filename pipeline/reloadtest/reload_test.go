package reloadtest

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mailtel/mailtel/catalog"
	"github.com/mailtel/mailtel/pipeline"
	"github.com/mailtel/mailtel/pipeline/config"
	"github.com/mailtel/mailtel/pipeline/pipelinetest"
	"github.com/mailtel/mailtel/schema"
)

func TestMain(m *testing.M) {
	code := m.Run()
	pipelinetest.RemoveBinaries()
	os.Exit(code)
}

// TestReload runs router (reloading on SIGHUP only) and sinks (with
// --watch only) while a publisher sends 400 events/s, and changes their
// configuration three times:
//
//  1. the log sink's level from info to trace: the debug events stored
//     after the reload are written, those routed long before are not;
//  2. an invalid file (a bad level): both processes refuse it, say so in
//     the log and in mailtel_config_reloads_total{result="failure"}, and
//     keep routing and writing by the trace rules;
//  3. a valid file again, with a sink added (auth.* events to another
//     log): it gets the events stored after the reload.
//
// Throughout, the same two processes run, and the log files hold every
// event the rules wanted exactly once and nothing else.
func TestReload(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the router, sinks and publisher binaries")
	}
	bin := pipelinetest.Binaries(t)
	dir := t.TempDir()
	logs := filepath.Join(dir, "logs")
	natsAddr := pipelinetest.FreeAddr(t)
	path := filepath.Join(dir, "mailtel.toml")
	conf := func(level, more string) string {
		return fmt.Sprintf(`[nats]
listen = %q
store-dir = %q
[router]
http = "127.0.0.1:0"
[sinks]
http = "127.0.0.1:0"
[logging]
format = "json"
[tracer.log]
type = "log"
level = %q
path = %q
prefix = "mailtel"
format = "json"
%s`, natsAddr, filepath.Join(dir, "nats"), level, logs, more)
	}
	write := func(doc string) {
		t.Helper()
		// Written whole, then renamed, as editors do: --watch never reads
		// half a file.
		tmp := path + ".new"
		if err := os.WriteFile(tmp, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	write(conf("info", ""))
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}

	router := start(t, dir, filepath.Join(bin, "router"), "run", "--config", path)
	router.waitLog(t, 30*time.Second, "router running", 1)
	sinks := start(t, dir, filepath.Join(bin, "sinks"), "run", "--config", path, "--watch")
	sinks.waitLog(t, 30*time.Second, "sink running", 1)
	pub := start(t, dir, filepath.Join(bin, "publisher"), "gen", "--config", path, "--count", "0", "--rate", "400", "--seed", "11")

	nc, err := nats.Connect("nats://" + natsAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	// Long enough under the info rules for events routed well before the
	// reload (5s of margin, for a router that lags).
	flowing := time.Now()
	pipelinetest.WaitFor(t, 40*time.Second, "10s of events in the log", func() bool {
		return time.Since(flowing) > 10*time.Second && len(readLog(t, logs, "mailtel")) >= 500
	})

	// 1. info -> trace.
	hup1 := time.Now()
	write(conf("trace", ""))
	router.signal(t, syscall.SIGHUP)
	router.waitLog(t, 20*time.Second, `"message":"configuration reloaded"`, 1)
	sinks.waitLog(t, 20*time.Second, `"message":"configuration reloaded"`, 1)
	reloaded1 := time.Now()
	t.Logf("reload 1 (info -> trace) took %s; router: %s", reloaded1.Sub(hup1).Round(time.Millisecond), router.lastLine(t, "configuration reloaded"))
	time.Sleep(3 * time.Second)

	// 2. An invalid file is refused; the trace rules keep running.
	write(conf("verbose", ""))
	router.signal(t, syscall.SIGHUP)
	router.waitLog(t, 20*time.Second, "configuration reload refused", 1)
	sinks.waitLog(t, 20*time.Second, "configuration reload refused", 1)
	t.Logf("invalid file: %s", router.lastLine(t, "configuration reload refused"))
	for _, p := range []*proc{router, sinks} {
		m := p.scrape(t)
		if m[`mailtel_config_reloads_total{result="failure"}`] < 1 || m["mailtel_config_last_reload_successful"] != 0 ||
			m[`mailtel_config_reloads_total{result="success"}`] != 1 {
			t.Errorf("%s metrics after the refused reload: failure %v, success %v, last successful %v (want >= 1, 1, 0)", p.name,
				m[`mailtel_config_reloads_total{result="failure"}`], m[`mailtel_config_reloads_total{result="success"}`], m["mailtel_config_last_reload_successful"])
		}
	}
	invalid := time.Now()
	time.Sleep(3 * time.Second)

	// 3. Valid again, with a sink added.
	hup3 := time.Now()
	write(conf("trace", fmt.Sprintf(`[tracer.audit]
type = "log"
level = "trace"
events = ["auth.*"]
path = %q
prefix = "audit"
format = "json"
`, logs)))
	router.signal(t, syscall.SIGHUP)
	router.waitLog(t, 20*time.Second, `"message":"configuration reloaded"`, 2)
	sinks.waitLog(t, 20*time.Second, `"message":"configuration reloaded"`, 2)
	reloaded3 := time.Now()
	t.Logf("reload 3 (sink added): %s", sinks.lastLine(t, "configuration reloaded"))
	time.Sleep(3 * time.Second)

	pub.signal(t, syscall.SIGTERM)
	pub.wait(t, 30*time.Second)
	for _, p := range []*proc{router, sinks} {
		if err := p.cmd.Process.Signal(syscall.Signal(0)); err != nil {
			t.Fatalf("%s (pid %d) is no longer running after the reloads: %v\n%s", p.name, p.cmd.Process.Pid, err, p.tail(t))
		}
	}

	// Wait for everything stored to be routed and written.
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	drained := func(stream, consumer string) bool {
		return pipelinetest.Settled(ctx, js, stream, consumer) == nil
	}
	pipelinetest.WaitFor(t, 90*time.Second, "router and sinks caught up", func() bool {
		return drained(cfg.Streams.Events, cfg.Router.Consumer) &&
			drained(cfg.Streams.RoutedStream("log"), pipeline.SinkConsumerName("log")) &&
			drained(cfg.Streams.RoutedStream("audit"), pipeline.SinkConsumerName("audit"))
	})

	stored := readEvents(ctx, t, js, cfg.Streams.Events)
	logged, audited := readLog(t, logs, "mailtel"), readLog(t, logs, "audit")
	var debugBefore, debugAfter, debugBetween, authAfter int
	for _, e := range stored {
		lv := catalog.LevelInfo
		if et, ok := catalog.Lookup(e.typ); ok {
			lv = et.Level
		}
		n := logged[e.id]
		switch {
		case lv >= catalog.LevelInfo || e.at.After(reloaded1):
			// Wanted by the rules in force when it was routed.
			if n != 1 {
				t.Errorf("event %s (%s, %s, stored %s) written %d times to the log, want once", e.id, e.typ, lv, e.at.Format(time.RFC3339Nano), n)
			}
			if lv < catalog.LevelInfo {
				debugAfter++
			}
		case e.at.Before(hup1.Add(-5 * time.Second)):
			// Routed by the info rules, well before the reload.
			if n != 0 {
				t.Errorf("debug event %s (%s), stored %s before the reload, written %d times", e.id, e.typ, hup1.Sub(e.at), n)
			}
			debugBefore++
		default:
			// Routed around the reload: by either rules, once at most.
			if n > 1 {
				t.Errorf("event %s (%s) written %d times to the log", e.id, e.typ, n)
			}
			debugBetween++
		}
		delete(logged, e.id)
		wantAudit := strings.HasPrefix(e.typ, "auth.") && e.at.After(reloaded3)
		if n := audited[e.id]; wantAudit && n != 1 || !strings.HasPrefix(e.typ, "auth.") && n != 0 || n > 1 {
			t.Errorf("event %s (%s, stored %s) written %d times to the audit log", e.id, e.typ, e.at.Format(time.RFC3339Nano), n)
		} else if e.at.Before(hup3.Add(-5*time.Second)) && n != 0 {
			t.Errorf("event %s (%s), stored %s before the audit sink was added, is in the audit log", e.id, e.typ, hup3.Sub(e.at))
		}
		if wantAudit {
			authAfter++
		}
		delete(audited, e.id)
	}
	if len(logged) > 0 || len(audited) > 0 {
		t.Errorf("the logs hold %d and %d events that EVENTS does not", len(logged), len(audited))
	}
	t.Logf("%d events stored; debug events: %d routed before the reload (not written), %d after (written), %d around it; %d auth events for the added sink; the refused file at %s",
		len(stored), debugBefore, debugAfter, debugBetween, authAfter, invalid.Format(time.TimeOnly))
	if debugBefore < 50 || debugAfter < 50 || authAfter < 10 {
		t.Errorf("too few events to tell the rules apart: %d debug before, %d after, %d auth after the audit sink (want 50, 50, 10)", debugBefore, debugAfter, authAfter)
	}
	for _, p := range []*proc{router, sinks} {
		if strings.Contains(p.log(t), `"level":"panic"`) || strings.Contains(p.log(t), "goroutine ") {
			t.Errorf("%s log:\n%s", p.name, p.tail(t))
		}
	}
}

// proc is one running binary, its output in a file.
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	exited  chan struct{}
}

func start(t *testing.T, dir, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{name: filepath.Base(bin), logPath: filepath.Join(dir, filepath.Base(bin)+".log"), exited: make(chan struct{})}
	f, err := os.Create(p.logPath)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Dir = dir
	p.cmd.Stdout, p.cmd.Stderr = f, f
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.cmd.Wait(); f.Close(); close(p.exited) }()
	t.Cleanup(func() {
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(20 * time.Second):
			p.cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			t.Logf("%s log (last lines):\n%s", p.name, p.tail(t))
		}
	})
	return p
}

func (p *proc) signal(t *testing.T, s syscall.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(s); err != nil {
		t.Fatalf("signal %s to %s: %v", s, p.name, err)
	}
}

func (p *proc) wait(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case <-p.exited:
	case <-time.After(d):
		t.Fatalf("%s did not exit within %s", p.name, d)
	}
}

func (p *proc) log(t *testing.T) string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func (p *proc) tail(t *testing.T) string {
	lines := strings.Split(strings.TrimSpace(p.log(t)), "\n")
	return strings.Join(lines[max(0, len(lines)-30):], "\n")
}

// lastLine returns the last log line holding text.
func (p *proc) lastLine(t *testing.T, text string) string {
	var last string
	for _, l := range strings.Split(p.log(t), "\n") {
		if strings.Contains(l, text) {
			last = l
		}
	}
	return last
}

// waitLog waits until the log holds text n times; it fails at once if the
// process exits.
func (p *proc) waitLog(t *testing.T, d time.Duration, text string, n int) {
	t.Helper()
	deadline := time.Now().Add(d)
	for strings.Count(p.log(t), text) < n {
		select {
		case <-p.exited:
			t.Fatalf("%s exited while waiting for %q in its log:\n%s", p.name, text, p.tail(t))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %q not in its log %d times after %s:\n%s", p.name, text, n, d, p.tail(t))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// healthAddr finds the address of /metrics in a process log.
var healthAddr = regexp.MustCompile(`"message":"health and metrics on ([^"]+)"`)

// scrape reads the process's /metrics.
func (p *proc) scrape(t *testing.T) map[string]float64 {
	t.Helper()
	m := healthAddr.FindStringSubmatch(p.log(t))
	if m == nil {
		t.Fatalf("%s logged no health and metrics address", p.name)
	}
	addr := m[1]
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("scrape %s: %v", p.name, err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		var name string
		var v float64
		if l := sc.Text(); strings.HasPrefix(l, "mailtel_") {
			if i := strings.LastIndexByte(l, ' '); i > 0 {
				name = l[:i]
				fmt.Sscan(l[i+1:], &v)
				out[name] = v
			}
		}
	}
	return out
}

// stored is one event of EVENTS.
type stored struct {
	id, typ string
	at      time.Time // when JetStream stored it
}

// readEvents reads the whole stream.
func readEvents(ctx context.Context, t *testing.T, js jetstream.JetStream, stream string) []stored {
	t.Helper()
	st, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	var out []stored
	for uint64(len(out)) < info.State.Msgs {
		batch, err := cons.Fetch(1000, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			md, err := m.Metadata()
			if err != nil {
				t.Fatal(err)
			}
			var ev schema.Event
			if err := schema.Unmarshal(m.Data(), &ev); err != nil {
				t.Fatalf("EVENTS message %d: %v", md.Sequence.Stream, err)
			}
			out = append(out, stored{id: ev.ID, typ: ev.Type, at: md.Timestamp})
		}
		if n == 0 {
			t.Fatalf("read %d of the %d events of %s", len(out), info.State.Msgs, stream)
		}
	}
	return out
}

// readLog counts the event ids of every JSON log file prefix.* in dir,
// every instance slot included.
func readLog(t *testing.T, dir, prefix string) map[string]int {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, prefix+".*"))
	out := map[string]int{}
	for _, f := range files {
		if strings.HasSuffix(f, ".idh") || strings.HasSuffix(f, ".lock") {
			continue
		}
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		r := bufio.NewReaderSize(fh, 1<<20)
		for {
			line, err := r.ReadBytes('\n')
			if len(line) > 0 && line[len(line)-1] == '\n' {
				var ev struct {
					ID string `json:"id"`
				}
				if err := json.Unmarshal(line, &ev); err != nil {
					t.Fatalf("%s: %v: %q", f, err, line)
				}
				out[ev.ID]++
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		fh.Close()
	}
	return out
}
