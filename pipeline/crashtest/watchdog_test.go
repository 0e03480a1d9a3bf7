package crashtest

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mailtel/mailtel/pipeline"
)

var flagWatchdog = flag.Duration("crash.watchdog", 20*time.Second,
	"fail a run that makes no progress for this `long` (no sink file grew, or a consumer with work kept its ack floor), "+
		"after dumping consumers, streams, connections, goroutines and logs; 0 turns it off")

// watchdog fails a crash run that stopped making progress, instead of
// letting it hang until the drain deadline or the go test timeout, and
// says why it stopped: it checks every second whether the sinks' files
// changed and whether the router's and sinks' consumers moved, and when
// nothing moved for long while work was left (a publisher runs, a consumer
// has messages pending or unacked, or the server still copies into a
// stream), or a wait of the test timed out (see fire), it writes a dump to
// the test log and to watchdog.txt in the work directory:
//
//   - every stream's state and sources, every consumer's info (pending, ack
//     pending, redelivered, waiting pulls, delivered and ack floor
//     sequences, with how long ago each last moved), twice, 3s apart;
//   - the server's client connections;
//   - the timeline of the run;
//   - for every live router and sinks process: its counters, its last 50
//     log lines, then its goroutines (it is sent SIGQUIT, on which a Go
//     program prints them to stderr, its log, and exits), summarised by
//     stack;
//   - a nats-server process's last log lines, and the server's goroutines
//     (the test process's for the embedded server; a nats-server process
//     is sent SIGQUIT too).
//
// The work directory is then kept, and the test goroutine, which polls
// Fired, fails the test.
type watchdog struct {
	t     *testing.T
	c     *cluster
	srv   *natsServer
	dir   string
	after time.Duration
	// watched are the consumers whose progress counts.
	watched []consumerRef

	once   sync.Once
	firing chan struct{} // closed when a dump starts
	fired  chan struct{} // closed when it is done
	reason string        // set before firing is closed

	stopc, exited chan struct{}
}

type consumerRef struct{ stream, name string }

func (r consumerRef) String() string { return r.stream + "/" + r.name }

// startWatchdog starts watching the run (nil with -crash.watchdog=0).
func startWatchdog(t *testing.T, c *cluster, srv *natsServer, dir string) *watchdog {
	if *flagWatchdog <= 0 {
		return nil
	}
	// A killed process's messages come back after the ack wait: the
	// pipeline may pause that long by design.
	after := max(*flagWatchdog, longestAckWait()+10*time.Second)
	w := &watchdog{t: t, c: c, srv: srv, dir: dir, after: after,
		watched: []consumerRef{{"EVENTS", "router"}, {"ROUTED_all", pipeline.SinkConsumerName("all")}, {"ROUTED_auth", pipeline.SinkConsumerName("auth")}},
		firing:  make(chan struct{}), fired: make(chan struct{}), stopc: make(chan struct{}), exited: make(chan struct{})}
	c.wd = w
	c.note("watchdog: fails the run after %s without progress", after)
	go w.loop()
	return w
}

// Stop ends the watching (and waits for a dump in progress). It is safe on
// a nil watchdog and idempotent.
func (w *watchdog) Stop() {
	if w == nil {
		return
	}
	select {
	case <-w.stopc:
	default:
		close(w.stopc)
	}
	<-w.exited
}

// Firing returns a channel closed once the watchdog started a dump (nil,
// which blocks for ever, on a nil watchdog).
func (w *watchdog) Firing() <-chan struct{} {
	if w == nil {
		return nil
	}
	return w.firing
}

// Fired reports whether the watchdog fired; if it did, it waits for the
// dump to be complete and returns why it fired.
func (w *watchdog) Fired() (string, bool) {
	if w == nil {
		return "", false
	}
	select {
	case <-w.firing:
	default:
		return "", false
	}
	<-w.fired
	return w.reason, true
}

// Failure is the message the test fails with after the watchdog fired.
func (w *watchdog) Failure(reason string) string {
	return fmt.Sprintf("WATCHDOG: %s; the dump above has the consumers, streams, connections, goroutines and last log lines (also in %s)",
		reason, filepath.Join(w.dir, "watchdog.txt"))
}

// progress is what the watchdog compares between two checks.
type progress struct {
	sinks     map[string]string // sink -> sizes of its files
	floors    map[consumerRef]uint64
	busy      map[consumerRef]bool // has messages pending or awaiting an ack
	lastSinks map[string]time.Time
	lastFloor map[consumerRef]time.Time
}

func (w *watchdog) loop() {
	defer close(w.exited)
	now := time.Now()
	p := progress{sinks: map[string]string{}, floors: map[consumerRef]uint64{}, busy: map[consumerRef]bool{},
		lastSinks: map[string]time.Time{}, lastFloor: map[consumerRef]time.Time{}}
	anyWrite, noted := now, now
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-w.stopc:
			return
		case <-tick.C:
		}
		now := time.Now()
		for _, sink := range []string{"all", "auth"} {
			s := sinkSizes(w.dir, sink)
			if s != p.sinks[sink] || p.lastSinks[sink].IsZero() {
				p.sinks[sink], p.lastSinks[sink] = s, now
				anyWrite = now
			}
		}
		// Idle: nothing left to do (the kill schedule may go on after
		// every event was written). Time without writes counts only while
		// something is left: a publisher runs, a consumer has messages
		// pending or unacked, or the server still copies into a stream.
		idle := !w.c.anyRunning("publisher")
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		note := now.Sub(noted) >= 5*time.Second
		line := []string{fmt.Sprintf("progress: log bytes all %d auth %d", logBytes(w.dir, "all"), logBytes(w.dir, "auth"))}
		for _, ref := range w.watched {
			info, err := consumerInfo(ctx, w.srv.js, ref.stream, ref.name)
			if err != nil {
				line = append(line, fmt.Sprintf("%s: %v", ref.name, err))
				idle = false
				continue // not created yet, or the server is slow: the file rule still applies
			}
			line = append(line, fmt.Sprintf("%s pending %d ack-pending %d ack-floor %d waiting %d", ref.name, info.NumPending, info.NumAckPending, info.AckFloor.Stream, info.NumWaiting))
			if f := info.AckFloor.Stream; f != p.floors[ref] || p.lastFloor[ref].IsZero() {
				p.floors[ref], p.lastFloor[ref] = f, now
			}
			p.busy[ref] = info.NumPending+uint64(info.NumAckPending) > 0
			idle = idle && !p.busy[ref]
		}
		if idle {
			lag, err := sourceLag(ctx, w.srv.js)
			if lag > 0 || err != nil {
				idle = false
				line = append(line, fmt.Sprintf("source lag %d", lag))
			}
		}
		cancel()
		if idle {
			anyWrite = now
		}
		if note {
			// Every 5s, for the timeline: how the run moved before a stall.
			w.c.note("%s", strings.Join(line, "; "))
			noted = now
		}
		var reason string
		if quiet := now.Sub(anyWrite); quiet >= w.after {
			reason = fmt.Sprintf("no sink wrote for %s (files: all %s; auth %s)", quiet.Round(time.Second), p.sinks["all"], p.sinks["auth"])
		}
		for _, ref := range w.watched {
			if quiet := now.Sub(p.lastFloor[ref]); reason == "" && p.busy[ref] && !p.lastFloor[ref].IsZero() && quiet >= w.after {
				reason = fmt.Sprintf("consumer %s has work but its ack floor stayed at stream sequence %d for %s", ref, p.floors[ref], quiet.Round(time.Second))
			}
		}
		if reason != "" {
			w.fire(reason)
			return
		}
	}
}

// sourceLag adds up the lag of the sources of every ROUTED stream the
// server fills (server fan-out).
func sourceLag(ctx context.Context, js jetstream.JetStream) (uint64, error) {
	var lag uint64
	for _, name := range []string{"ROUTED_all", "ROUTED_auth"} {
		st, err := js.Stream(ctx, name)
		if err != nil {
			return 0, err
		}
		for _, src := range st.CachedInfo().Sources {
			lag += src.Lag
		}
	}
	return lag, nil
}

// fire writes the dump once (later calls wait for it) and leaves the run
// for the test goroutine to fail. The test goroutine calls it itself when
// one of its waits timed out.
func (w *watchdog) fire(reason string) {
	if w == nil {
		return
	}
	w.once.Do(func() {
		w.reason = reason
		close(w.firing)
		defer close(w.fired)
		keepDir(w.dir)
		w.c.note("WATCHDOG fired: %s", reason)
		var b strings.Builder
		w.dump(&b, reason)
		path := filepath.Join(w.dir, "watchdog.txt")
		if err := os.WriteFile(path, []byte(b.String()), 0o640); err != nil {
			fmt.Fprintf(&b, "\n(write %s: %v)\n", path, err)
		}
		w.t.Logf("WATCHDOG DUMP (%s):\n%s", path, b.String())
	})
	<-w.fired
}

func (w *watchdog) dump(b *strings.Builder, reason string) {
	fmt.Fprintf(b, "=== watchdog at %s: %s\n", w.c.elapsed(), reason)
	fmt.Fprintf(b, "server: %s %s; sink files: %s\n", w.srv.describe(), w.srv.url, fileSizes(w.dir))

	fmt.Fprintf(b, "\n=== JetStream state\n")
	b.WriteString(jetStreamState(w.srv.js))
	time.Sleep(3 * time.Second)
	fmt.Fprintf(b, "\n=== JetStream state 3s later\n")
	b.WriteString(jetStreamState(w.srv.js))

	fmt.Fprintf(b, "\n=== client connections of the server\n")
	if conns, err := w.srv.connections(); err != nil {
		fmt.Fprintf(b, "  (%v)\n", err)
	} else {
		b.WriteString(conns)
	}

	fmt.Fprintf(b, "\n=== timeline\n%s\n", w.c.timelineText())

	// The processes: counters and logs first, then their goroutines.
	w.c.mu.Lock()
	procs := append([]*proc(nil), w.c.procs...)
	w.c.mu.Unlock()
	for _, p := range procs {
		if !p.running() {
			continue
		}
		if p.kind == "publisher" {
			fmt.Fprintf(b, "\n=== %s (pid %d, running), last 20 log lines:\n%s\n", p.name, p.cmd.Process.Pid, tail(p.logPath, 20))
			continue
		}
		fmt.Fprintf(b, "\n=== %s (pid %d, running)\n", p.name, p.cmd.Process.Pid)
		if m, err := scrape(p.http, 2*time.Second); err != nil {
			fmt.Fprintf(b, "metrics: %v\n", err)
		} else {
			fmt.Fprintf(b, "metrics:\n%s", metricLines(m))
		}
		fmt.Fprintf(b, "last 50 log lines (%s):\n%s\n", p.logPath, tail(p.logPath, 50))
		size := fileSize(p.logPath)
		if !w.c.signal(p, syscall.SIGQUIT, 10*time.Second, syscall.SIGCONT) {
			fmt.Fprintf(b, "goroutines: %s did not exit within 10s of SIGQUIT\n", p.name)
			continue
		}
		dump, err := readFrom(p.logPath, size)
		if err != nil {
			fmt.Fprintf(b, "goroutines: %v\n", err)
			continue
		}
		fmt.Fprintf(b, "goroutines after SIGQUIT (exit: %s; the full dump is at the end of %s), by stack:\n%s", exitText(p.waitErr), p.logPath, summarizeGoroutines(dump))
	}

	if w.srv.logPath != "" {
		// Its warnings say when it was slow ("Readloop processing time").
		fmt.Fprintf(b, "\n=== %s, last 30 log lines (%s):\n%s\n", w.srv.describe(), w.srv.logPath, tail(w.srv.logPath, 30))
	}
	fmt.Fprintf(b, "\n=== goroutines of the %s", w.srv.describe())
	if w.srv.embedded != nil {
		b.WriteString(" (the test process; pprof, by stack)")
	}
	b.WriteString(":\n")
	if g, err := w.srv.goroutines(); err != nil {
		fmt.Fprintf(b, "  (%v)\n", err)
	} else {
		b.WriteString(g)
	}
}

// jetStreamState describes every stream and every consumer of each.
func jetStreamState(js jetstream.JetStream) string {
	var b strings.Builder
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	now := time.Now()
	ago := func(t *time.Time) string {
		if t == nil || t.IsZero() {
			return "never"
		}
		return now.Sub(*t).Round(time.Millisecond).String() + " ago"
	}
	var names []string
	lister := js.StreamNames(ctx)
	for n := range lister.Name() {
		names = append(names, n)
	}
	if err := lister.Err(); err != nil {
		fmt.Fprintf(&b, "  list streams: %v\n", err)
	}
	sort.Strings(names)
	for _, name := range names {
		st, err := js.Stream(ctx, name)
		if err != nil {
			fmt.Fprintf(&b, "  stream %s: %v\n", name, err)
			continue
		}
		si := st.CachedInfo()
		s := si.State
		fmt.Fprintf(&b, "  stream %s: msgs %d bytes %d first %d last %d (last stored %s) deleted %d consumers %d\n",
			name, s.Msgs, s.Bytes, s.FirstSeq, s.LastSeq, ago(&s.LastTime), s.NumDeleted, s.Consumers)
		for _, src := range si.Sources {
			fmt.Fprintf(&b, "    source %s: lag %d, active %s ago, error %v\n", src.Name, src.Lag, src.Active.Round(time.Millisecond), src.Error)
		}
		cl := st.ListConsumers(ctx)
		for ci := range cl.Info() {
			fmt.Fprintf(&b, "    consumer %s: pending %d ack-pending %d redelivered %d waiting-pulls %d; delivered consumer seq %d stream seq %d (%s); ack floor consumer seq %d stream seq %d (%s); max-ack-pending %d ack-wait %s\n",
				ci.Name, ci.NumPending, ci.NumAckPending, ci.NumRedelivered, ci.NumWaiting,
				ci.Delivered.Consumer, ci.Delivered.Stream, ago(ci.Delivered.Last),
				ci.AckFloor.Consumer, ci.AckFloor.Stream, ago(ci.AckFloor.Last),
				ci.Config.MaxAckPending, ci.Config.AckWait)
		}
		if err := cl.Err(); err != nil {
			fmt.Fprintf(&b, "    list consumers: %v\n", err)
		}
	}
	return b.String()
}

// metricLines prints the mailtel_* series of a scrape, sorted.
func metricLines(m map[string]float64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "  %s %g\n", k, m[k])
	}
	return b.String()
}

// logBytes is the size of one sink's log files (sidecars left out).
func logBytes(dir, sink string) int64 {
	var n int64
	files, _ := logFiles(filepath.Join(dir, sink))
	for _, f := range files {
		n += fileSize(f)
	}
	return n
}

// sinkSizes describes the sizes of the files of one sink's directory.
func sinkSizes(dir, sink string) string {
	s := sizes{}
	for k, v := range fileSizes(dir) {
		if strings.HasPrefix(k, sink+"/") {
			s[k] = v
		}
	}
	return s.String()
}

var (
	// keptDirs are the work directories kept for the post-mortem.
	keptDirs sync.Map
	// goroutineHeader is the first line of a goroutine in a Go traceback.
	goroutineHeader = regexp.MustCompile(`^goroutine \d+ (?:[a-z]+=\S+ )*\[([^\]]*)\]:$`)
	callArgs        = regexp.MustCompile(`\((?:0x[0-9a-f]+|\.\.\.|, |\{|\}|[0-9a-fx?]+)*\)$`)
	pcOffset        = regexp.MustCompile(` \+0x[0-9a-f]+( fp=.*)?$`)
	inGoroutine     = regexp.MustCompile(` in goroutine \d+$`)
)

// keepDir keeps the work directory dir when its test ends.
func keepDir(dir string) { keptDirs.Store(dir, true) }

func kept(dir string) bool { _, ok := keptDirs.Load(dir); return ok }

// summarizeGoroutines groups the goroutines of a Go traceback (as printed
// on SIGQUIT) by stack, most frequent first: "N goroutine(s) [states]"
// then one line per frame, "function  dir/file.go:line". Arguments,
// offsets and the runtime's own frames are left out, and goroutines of
// the runtime alone (GC workers and the like) are only counted. Text that
// is not a goroutine (the signal header, registers) is dropped.
func summarizeGoroutines(dump string) string {
	type group struct {
		n      int
		states map[string]int
		stack  string
	}
	groups := map[string]*group{}
	var order []string
	total, runtimeOnly := 0, 0
	for _, block := range strings.Split(dump, "\n\n") {
		lines := strings.Split(strings.TrimSpace(block), "\n")
		m := goroutineHeader.FindStringSubmatch(lines[0])
		if m == nil {
			continue
		}
		total++
		var stack []string
		for i := 1; i < len(lines); i++ {
			fn := strings.TrimSpace(lines[i])
			if strings.HasPrefix(lines[i], "\t") {
				continue // a file line without its function line
			}
			where := ""
			if i+1 < len(lines) && strings.HasPrefix(lines[i+1], "\t") {
				i++
				where = shortPath(pcOffset.ReplaceAllString(strings.TrimSpace(lines[i]), ""))
			}
			fn = inGoroutine.ReplaceAllString(callArgs.ReplaceAllString(fn, ""), "")
			if strings.HasPrefix(fn, "runtime.") || strings.HasPrefix(fn, "created by runtime.") {
				continue
			}
			stack = append(stack, "    "+fn+"  "+where)
		}
		if len(stack) == 0 {
			runtimeOnly++
			continue
		}
		key := strings.Join(stack, "\n")
		g := groups[key]
		if g == nil {
			g = &group{states: map[string]int{}, stack: key}
			groups[key] = g
			order = append(order, key)
		}
		g.n++
		g.states[m[1]]++
	}
	sort.SliceStable(order, func(i, j int) bool { return groups[order[i]].n > groups[order[j]].n })
	var b strings.Builder
	fmt.Fprintf(&b, "  %d goroutines: %d of the runtime alone, the others in %d distinct stacks\n", total, runtimeOnly, len(order))
	for _, key := range order {
		g := groups[key]
		var states []string
		for s, n := range g.states {
			if n > 1 {
				s = fmt.Sprintf("%s x%d", s, n)
			}
			states = append(states, s)
		}
		sort.Strings(states)
		fmt.Fprintf(&b, "  %d goroutine(s) [%s]:\n%s\n", g.n, strings.Join(states, "; "), g.stack)
	}
	if total == 0 {
		b.WriteString("  (no goroutine found; the raw output follows)\n" + dump)
	}
	return b.String()
}

// shortPath keeps the last two elements of the path of a "path:line"
// frame location.
func shortPath(loc string) string {
	i := strings.LastIndexByte(loc, '/')
	if i <= 0 {
		return loc
	}
	if j := strings.LastIndexByte(loc[:i], '/'); j >= 0 {
		return loc[j+1:]
	}
	return loc
}

// errStalled is returned by the test's waits when the watchdog fired.
var errStalled = errors.New("the watchdog fired")

// TestSummarizeGoroutines checks the summary of a SIGQUIT traceback (a
// router's, cut short): the runtime's goroutine only counted, two
// goroutines with one stack grouped, arguments and offsets left out.
func TestSummarizeGoroutines(t *testing.T) {
	dump, err := os.ReadFile(filepath.Join("testdata", "sigquit.txt"))
	if err != nil {
		t.Fatal(err)
	}
	got := summarizeGoroutines(string(dump))
	for _, want := range []string{
		"5 goroutines: 1 of the runtime alone, the others in 3 distinct stacks\n",
		"  2 goroutine(s) [select x2]:\n" +
			"    github.com/nats-io/nats.go/jetstream.(*pullSubscription).pullMessages  jetstream/pull.go:1098\n" +
			"    github.com/nats-io/nats.go/jetstream.(*pullConsumer).Consume.gowrap1  jetstream/pull.go:424\n" +
			"    created by github.com/nats-io/nats.go/jetstream.(*pullConsumer).Consume  jetstream/pull.go:424\n",
		"  1 goroutine(s) [chan receive]:\n    github.com/mailtel/mailtel/pipeline.(*Router).Run  pipeline/router.go:188\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("summary lacks %q; got:\n%s", want, got)
		}
	}
	for _, bad := range []string{"runtime.gopark", "0x28c8", "rax", "+0x"} {
		if strings.Contains(got, bad) {
			t.Errorf("summary holds %q; got:\n%s", bad, got)
		}
	}
	if got := summarizeGoroutines("no traceback here"); !strings.Contains(got, "no goroutine found") {
		t.Errorf("summary of text without goroutines: %q", got)
	}
}
