package crashtest

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mailtel/mailtel/pipeline"
	"github.com/mailtel/mailtel/pipeline/config"
	"github.com/mailtel/mailtel/pipeline/pipelinetest"
	"github.com/mailtel/mailtel/pipeline/synth"
	"github.com/mailtel/mailtel/schema"
)

var (
	flagLong     = flag.Bool("crash.long", false, "run the soak form: 2,000,000 events, router and sinks killed every few seconds for about 10 minutes (also MAILTEL_SOAK=1)")
	flagSeed     = flag.Uint64("crash.seed", 1, "`seed` of the published event streams and of the kill schedule (0: a new random seed for every run)")
	flagEvents   = flag.Int64("crash.events", 0, "`events` to publish (default 200,000; 2,000,000 with -crash.long)")
	flagKeep     = flag.Bool("crash.keep", false, "keep the work directory (process logs, config, sink files)")
	flagAckWait  = flag.Duration("crash.ack-wait", 5*time.Second, "[router] and [sinks] ack-wait: how soon what a killed process held is redelivered (0: the configuration's defaults, 30s and 60s; the watchdog and the drain deadline then wait longer)")
	flagNoWait   = flag.Bool("crash.nowait", false, "start a killed process's successor at once, without waiting until the killed one is gone (as a supervisor that restarts at once)")
	flagTogether = flag.Bool("crash.together", false, "kill router and sinks together at every step of the kill schedule")
	flagFreeze   = flag.String("crash.freeze", "", `after the first kill, SIGSTOP the running "router" or "sinks" process(es), to check that the watchdog fires`)
)

// profile is the shape of one crash run.
type profile struct {
	name   string
	events int64
	// Kills: the CI form kills each of router and sinks minKills to
	// minKills+2 times; the soak form keeps killing for soak.
	minKills int
	soak     time.Duration
	gapMin   time.Duration // between two kills
	gapMax   time.Duration
	// publish bounds how long the publishers may take after the kills
	// end, drain how long router and sinks may take to catch up after.
	publish, drain time.Duration
}

var (
	ciProfile   = profile{name: "ci", events: 200_000, minKills: 4, gapMin: 500 * time.Millisecond, gapMax: 3 * time.Second, publish: time.Minute, drain: 90 * time.Second}
	soakProfile = profile{name: "soak", events: 2_000_000, soak: 10 * time.Minute, gapMin: time.Second, gapMax: 6 * time.Second, publish: 5 * time.Minute, drain: 5 * time.Minute}
)

// step is one planned crash: after gap, SIGKILL a process of kind and
// start its successor(s).
type step struct {
	gap  time.Duration
	kind string // "router" or "sinks"
	// routers is how many router processes run after a router step (1 or
	// 2: sometimes two share the consumer).
	routers int
}

// plan draws the kill schedule from rng.
func plan(p profile, rng *rand.Rand) []step {
	gap := func() time.Duration { return p.gapMin + time.Duration(rng.Int64N(int64(p.gapMax-p.gapMin))) }
	routers := func() int {
		if rng.IntN(10) < 4 {
			return 2
		}
		return 1
	}
	var steps []step
	if p.soak == 0 {
		for range p.minKills + rng.IntN(3) {
			steps = append(steps, step{kind: "router", routers: routers()})
		}
		for range p.minKills + rng.IntN(3) {
			steps = append(steps, step{kind: "sinks"})
		}
		rng.Shuffle(len(steps), func(i, j int) { steps[i], steps[j] = steps[j], steps[i] })
		for i := range steps {
			steps[i].gap = gap()
		}
		return steps
	}
	for total := time.Duration(0); total < p.soak; {
		s := step{gap: gap(), kind: "sinks"}
		if rng.IntN(2) == 0 {
			s.kind, s.routers = "router", routers()
		}
		total += s.gap
		steps = append(steps, s)
	}
	return steps
}

// TestCrash runs the real router, sinks and publisher binaries against a
// JetStream server, SIGKILLs router and sinks processes at random moments
// while events flow (restarting them at once, sometimes with two routers
// sharing the consumer), and checks that each log sink holds exactly the
// events it should, each exactly once.
//
// It runs twice: with the router copying to both sinks, and with sink all
// fed by the NATS server ([router] server-fan-out), so that the kills hit
// both ways of filling a ROUTED stream.
func TestCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test: builds and runs the binaries for about a minute; skipped with -short")
	}
	t.Run("router", func(t *testing.T) { testCrash(t, false) })
	t.Run("server-fan-out", func(t *testing.T) { testCrash(t, true) })
}

func testCrash(t *testing.T, serverFanOut bool) {
	prof := ciProfile
	if *flagLong || os.Getenv("MAILTEL_SOAK") == "1" {
		prof = soakProfile
	}
	if *flagEvents != 0 {
		if *flagEvents < 2 {
			t.Fatalf("-crash.events %d: want at least 2 (the events are split between two publishers)", *flagEvents)
		}
		prof.events = *flagEvents
	}
	seed := *flagSeed
	if seed == 0 {
		seed = 1 + rand.Uint64N(1<<20)
	}
	rerun := fmt.Sprintf("go test ./pipeline/crashtest -run %s -count=1 -crash.seed=%d -crash.events=%d", t.Name(), seed, prof.events)
	if prof.name == "soak" {
		rerun += " -crash.long -timeout 30m"
	}
	if *flagNATSServer != "" {
		rerun += " -crash.nats-server=" + *flagNATSServer
	}
	if *flagStress {
		rerun += " -crash.stress"
	}
	if *flagTogether {
		rerun += " -crash.together"
	}
	if *flagNoWait {
		rerun += " -crash.nowait"
	}
	if *flagAckWait != 5*time.Second {
		rerun += " -crash.ack-wait=" + flagAckWait.String()
	}
	t.Logf("crash test %s: seed %d, %d events (rerun: %s)", prof.name, seed, prof.events, rerun)
	began := time.Now()

	bin := buildBinaries(t)
	dir := workDir(t)
	srv := startServer(t, dir)
	startStress(t)
	cfgPath := writeConfig(t, dir, serverFanOut, *flagAckWait)
	if ackWait := longestAckWait(); ackWait > 5*time.Second {
		// What a killed process held waits ackWait for its redelivery;
		// a few kills in a row can hold all a consumer may have unacked.
		prof.drain = max(prof.drain, 2*ackWait+30*time.Second)
	}

	// Two publishers with their own seeds: one as fast as it can, one paced
	// to last as long as the kill schedule.
	rng := rand.New(rand.NewPCG(seed, 0x6372617368))
	steps := plan(prof, rng)
	var schedule time.Duration
	for _, s := range steps {
		schedule += s.gap
	}
	half := prof.events / 2
	streams := []*stream{
		{seed: 2 * seed, count: half},
		{seed: 2*seed + 1, count: prof.events - half, rate: float64(prof.events-half) / schedule.Seconds()},
	}
	exp, err := newExpected(streams)
	if err != nil {
		t.Fatal(err)
	}
	wantAll, wantAuth := exp.want(allRule), exp.want(authRule)
	storedAll := wantAll // copies in ROUTED_all
	if serverFanOut {
		storedAll = prof.events // the server copies every event; the sink filters
	}
	t.Logf("expect %d events at sink all, %d at sink auth; %d kills planned over %s", wantAll, wantAuth, len(steps), schedule)

	t.Logf("server: %s %s", srv.describe(), srv.url)
	c := newCluster(t, bin, dir, cfgPath, srv.url)
	defer func() {
		if t.Failed() {
			t.Logf("timeline:\n%s", c.timelineText())
			t.Logf("process logs:\n%s", c.logsOf(15, "router", "sinks", "publisher"))
		}
	}()
	ch := &chaos{c: c, rng: rng, dir: dir, routers: []*proc{c.start("router")}, sinks: c.start("sinks"), kills: map[string]int{}, maxRouters: 1}
	for _, p := range []*proc{ch.routers[0], ch.sinks} {
		if err := waitReady(p, 30*time.Second); err != nil {
			t.Fatalf("%v; log:\n%s", err, tail(p.logPath, 30))
		}
	}
	var pubs []*proc
	for _, s := range streams {
		args := []string{"--seed", strconv.FormatUint(s.seed, 10), "--count", strconv.FormatInt(s.count, 10)}
		if s.rate > 0 {
			args = append(args, "--rate", strconv.FormatFloat(s.rate, 'f', 1, 64))
		}
		pubs = append(pubs, c.start("publisher", args...))
	}
	wd := startWatchdog(t, c, srv, dir)
	defer wd.Stop()

	for i, s := range steps {
		if !sleepWatching(t, c, s.gap) {
			t.FailNow()
		}
		if *flagFreeze != "" && i > 0 {
			continue // frozen: no more kills, which would unfreeze the run
		}
		ch.crash(s, fmt.Sprintf("(step %d/%d)", i+1, len(steps)))
		if *flagFreeze != "" {
			ch.freeze(*flagFreeze)
		}
	}
	c.note("kill schedule done: %d router kills, %d sinks kills", ch.kills["router"], ch.kills["sinks"])
	published := waitPublishers(t, c, pubs, streams, prof.publish)
	publishedAt := c.elapsed()

	// Router and sinks catch up, then stop.
	if err := waitDrained(t, c, srv.js, prof.drain, storedAll); err != nil {
		t.Fatal(err)
	}
	drainedAt := c.elapsed()
	wd.Stop()
	for _, p := range append(ch.routers, ch.sinks) {
		c.stop(p)
	}
	ch.writers = append(ch.writers, writer{name: ch.sinks.name, until: c.elapsed(), sizes: fileSizes(dir)})
	for _, p := range c.unexpectedExits("router", "sinks") {
		t.Errorf("%s exited on its own: %s; log:\n%s", p.name, exitText(p.waitErr), tail(p.logPath, 30))
	}

	counts := checkStreams(t, srv.js, prof.events, storedAll, wantAuth)
	if st, err := srv.js.Stream(context.Background(), "ROUTED_all"); err != nil {
		t.Fatal(err)
	} else if got := len(st.CachedInfo().Config.Sources) > 0; got != serverFanOut {
		t.Errorf("ROUTED_all has a stream source: %v, want %v", got, serverFanOut)
	}

	// What the sinks wrote.
	checkedAt := time.Now()
	all := newTally("all", exp, allRule)
	if err := checkJSONSink(filepath.Join(dir, "all"), all); err != nil {
		t.Fatal(err)
	}
	auth := newTally("auth", exp, authRule)
	if err := checkTextSink(filepath.Join(dir, "auth"), auth); err != nil {
		t.Fatal(err)
	}
	ra, rt := all.result(20), auth.result(20)
	report(t, "all", filepath.Join(dir, "all"), false, ra, ch.writers)
	report(t, "auth", filepath.Join(dir, "auth"), true, rt, ch.writers)

	// Figures.
	routerRedeliv, ru := c.sumMetric("router", `mailtel_redelivered_total{stage="router"}`)
	allRedeliv, su := c.sumMetric("sinks", `mailtel_redelivered_total{stage="sink:all"}`)
	authRedeliv, _ := c.sumMetric("sinks", `mailtel_redelivered_total{stage="sink:auth"}`)
	t.Logf("RESULT seed %d: %d events published (%d streams), EVENTS %d, ROUTED_all %d, ROUTED_auth %d, DLQ %d",
		seed, published, len(streams), counts["EVENTS"], counts["ROUTED_all"], counts["ROUTED_auth"], counts["DLQ"])
	t.Logf("RESULT kills: %d router, %d sinks (SIGKILL; up to %d routers at once); publishers done at %s, drained at %s, checked in %s, total %s",
		ch.kills["router"], ch.kills["sinks"], ch.maxRouters, publishedAt, drainedAt, time.Since(checkedAt).Round(time.Millisecond), time.Since(began).Round(time.Millisecond))
	t.Logf("RESULT sink all: %d lines, %d distinct events of %d wanted; sink auth: %d lines, %d distinct of %d wanted",
		ra.lines, ra.held, ra.want, rt.lines, rt.held, rt.want)
	t.Logf("RESULT redeliveries (mailtel_redelivered_total, last scrape of each process, taken just before its kill or stop; %d router and %d sinks processes unscraped): router %.0f, sink all %.0f, sink auth %.0f",
		ru, su, routerRedeliv, allRedeliv, authRedeliv)
	if n := c.logsContaining("sinks", "log file locked: waiting"); n > 0 {
		t.Logf("RESULT %d sinks processes waited for the lock of a log file (a killed predecessor still held it)", n)
	}
}

// chaos is the state of the kill schedule: the processes running and what
// was done to them.
type chaos struct {
	c          *cluster
	rng        *rand.Rand
	dir        string
	routers    []*proc
	sinks      *proc
	kills      map[string]int
	writers    []writer // the sinks processes killed so far, in order
	maxRouters int
}

// crash carries out one step: SIGKILL a router (a random one when two
// run) or the sinks process, or with -crash.together both, and start
// successors at once.
func (ch *chaos) crash(s step, why string) {
	router := s.kind == "router" || *flagTogether
	sinks := s.kind == "sinks" || *flagTogether
	if router {
		victim := ch.rng.IntN(len(ch.routers))
		ch.c.kill(ch.routers[victim], fmt.Sprintf("%s; %d router(s) running", why, len(ch.routers)), nil)
		ch.routers = append(ch.routers[:victim], ch.routers[victim+1:]...)
		ch.kills["router"]++
	}
	if sinks {
		victim := ch.sinks
		ch.c.kill(victim, why, func() string {
			sizes := fileSizes(ch.dir)
			ch.writers = append(ch.writers, writer{name: victim.name, until: ch.c.elapsed(), sizes: sizes})
			return "files after: " + sizes.String()
		})
		ch.sinks = ch.c.start("sinks")
		ch.kills["sinks"]++
	}
	if router {
		for len(ch.routers) < max(s.routers, 1) {
			ch.routers = append(ch.routers, ch.c.start("router"))
		}
		ch.maxRouters = max(ch.maxRouters, len(ch.routers))
	}
}

// freeze SIGSTOPs the running processes of kind (-crash.freeze): the run
// stalls, and the watchdog must say so.
func (ch *chaos) freeze(kind string) {
	procs := ch.routers
	if kind == "sinks" {
		procs = []*proc{ch.sinks}
	} else if kind != "router" {
		ch.c.t.Fatalf("-crash.freeze %q: want router or sinks", kind)
	}
	for _, p := range procs {
		if err := waitReady(p, 30*time.Second); err != nil {
			ch.c.t.Fatal(err)
		}
		p.cmd.Process.Signal(syscall.SIGSTOP)
		ch.c.note("STOP  %-12s pid %-7d (-crash.freeze)", p.name, p.cmd.Process.Pid)
	}
}

// waitPublishers waits for every publisher to exit 0 having stored its
// whole stream, and returns how many events they stored.
func waitPublishers(t *testing.T, c *cluster, pubs []*proc, streams []*stream, within time.Duration) int64 {
	t.Helper()
	deadline := time.Now().Add(within)
	for _, p := range pubs {
		select {
		case <-p.done:
		case <-c.wd.Firing():
			reason, _ := c.wd.Fired()
			t.Fatal(c.wd.Failure(reason))
		case <-time.After(time.Until(deadline)):
			c.wd.fire(fmt.Sprintf("%s still running %s after the kill schedule", p.name, within))
			t.Fatalf("%s still running %s after the kill schedule; log:\n%s", p.name, within, tail(p.logPath, 20))
		}
		c.note("exit  %-12s %s: %s", p.name, exitText(p.waitErr), strings.TrimSpace(p.stdout.String()))
	}
	var published int64
	for i, p := range pubs {
		if p.waitErr != nil {
			t.Fatalf("%s failed: %v; log:\n%s", p.name, p.waitErr, tail(p.logPath, 20))
		}
		n, dup, failed, err := parsePublished(p.stdout.String())
		if err != nil {
			t.Fatalf("%s: %v", p.name, err)
		}
		// The ids are unique, so a duplicate can only be the publisher's
		// own retry of a publish whose acknowledgement took longer than
		// pipeline.PublishAckTimeout and which JetStream had stored: by
		// design, not a failure (checkStreams checks that EVENTS holds
		// every event once).
		if n+dup != streams[i].count || failed != 0 {
			t.Errorf("%s: published %d, duplicate %d, failed %d; want %d published or retried, no failures", p.name, n, dup, failed, streams[i].count)
		} else if dup > 0 {
			c.note("note  %s retried %d publishes whose acknowledgement took longer than %s; JetStream had stored them (duplicate)", p.name, dup, pipeline.PublishAckTimeout)
		}
		published += n + dup
	}
	return published
}

// checkStreams checks what the streams hold: one EVENTS message per
// event, one copy per event in the ROUTED stream of each sink that wants it
// (the router's copies are deduplicated by Nats-Msg-Id), no dead letters.
// It returns the message count of each stream.
func checkStreams(t *testing.T, js jetstream.JetStream, events, storedAll, wantAuth int64) map[string]uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	counts := map[string]uint64{}
	for _, name := range []string{"EVENTS", "ROUTED_all", "ROUTED_auth", "DLQ"} {
		st, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatalf("stream %s: %v", name, err)
		}
		info, err := st.Info(ctx)
		if err != nil {
			t.Fatalf("stream %s info: %v", name, err)
		}
		counts[name] = info.State.Msgs
	}
	if counts["EVENTS"] != uint64(events) {
		t.Errorf("EVENTS holds %d messages, want %d (one per published event)", counts["EVENTS"], events)
	}
	if counts["ROUTED_all"] != uint64(storedAll) || counts["ROUTED_auth"] != uint64(wantAuth) {
		t.Errorf("ROUTED_all holds %d copies and ROUTED_auth %d, want %d and %d: copies were stored twice or lost",
			counts["ROUTED_all"], counts["ROUTED_auth"], storedAll, wantAuth)
	}
	if counts["DLQ"] != 0 {
		t.Errorf("DLQ holds %d dead letters, want none", counts["DLQ"])
	}
	return counts
}

// writer is one sinks process and the sizes of the sinks' files once it
// had exited: the bytes between the previous writer's sizes and these were
// written by it (a single sinks process runs at a time).
type writer struct {
	name  string
	until time.Duration
	sizes sizes
}

// whoWrote names the sinks process that wrote the byte at p.
func whoWrote(writers []writer, p pos) string {
	rel := filepath.Base(filepath.Dir(p.file)) + "/" + filepath.Base(p.file)
	var from int64
	for _, w := range writers {
		end, ok := w.sizes[rel]
		if ok && p.offset < end {
			return fmt.Sprintf("by %s (its bytes %d-%d; it exited at %s, %d bytes after this line)", w.name, from, end, w.until, end-p.offset)
		}
		if ok {
			from = end
		}
	}
	return "by an unknown writer"
}

// report fails the test with what is wrong with one sink's output.
func report(t *testing.T, sink, dir string, text bool, r result, writers []writer) {
	t.Helper()
	if r.ok() {
		return
	}
	t.Errorf("sink %s: holds %d distinct events of %d wanted, in %d lines: %d missing, %d held more than once (%d extra lines), %d wrong lines",
		sink, r.held, r.want, r.lines, r.missingN, r.duplicatedN, r.extraCopies, r.wrongN)
	if len(r.missing) > 0 {
		t.Errorf("sink %s: missing (first %d): %s", sink, len(r.missing), strings.Join(r.missing, ", "))
	}
	if len(r.duplicated) > 0 {
		where := positions(dir, text, r.duplicated)
		var b strings.Builder
		for _, id := range r.duplicated {
			fmt.Fprintf(&b, "\n  %s at", id)
			for _, p := range where[id] {
				fmt.Fprintf(&b, "\n    %s, written %s", p, whoWrote(writers, p))
			}
		}
		t.Errorf("sink %s: held more than once (first %d; the timeline below has every kill):%s", sink, len(r.duplicated), b.String())
	}
	for _, w := range r.wrong {
		t.Errorf("sink %s: %s", sink, w)
	}
	if r.wrongN > len(r.wrong) {
		t.Errorf("sink %s: ... and %d more wrong lines", sink, r.wrongN-len(r.wrong))
	}
}

// sleepWatching sleeps d, failing the test (and returning false) as soon
// as a router or sinks process exits without having been killed, or the
// watchdog fired.
func sleepWatching(t *testing.T, c *cluster, d time.Duration) bool {
	t.Helper()
	end := time.Now().Add(d)
	for {
		if reason, fired := c.wd.Fired(); fired {
			t.Error(c.wd.Failure(reason))
			return false
		}
		if bad := c.unexpectedExits("router", "sinks"); len(bad) > 0 {
			for _, p := range bad {
				t.Errorf("%s exited on its own: %s; log:\n%s", p.name, exitText(p.waitErr), tail(p.logPath, 30))
			}
			return false
		}
		left := time.Until(end)
		if left <= 0 {
			return true
		}
		time.Sleep(min(left, 100*time.Millisecond))
	}
}

// waitDrained polls the router's and the sinks' consumers until nothing is
// pending or awaiting an ack, the router's first: once it is drained every
// copy is in ROUTED.
func waitDrained(t *testing.T, c *cluster, js jetstream.JetStream, within time.Duration, storedAll int64) error {
	t.Helper()
	deadline := time.Now().Add(within)
	consumers := []struct{ stream, name string }{
		{"EVENTS", "router"},
		{"ROUTED_all", pipeline.SinkConsumerName("all")},
		{"ROUTED_auth", pipeline.SinkConsumerName("auth")},
	}
	var state string
	for time.Now().Before(deadline) {
		if !sleepWatching(t, c, 200*time.Millisecond) {
			if _, fired := c.wd.Fired(); fired {
				return errStalled
			}
			return fmt.Errorf("a process exited while draining")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		done := true
		var parts []string
		for _, cn := range consumers {
			if err := pipelinetest.Settled(ctx, js, cn.stream, cn.name); err != nil {
				done = false
				parts = append(parts, err.Error())
			}
		}
		// A stream the server fills may still be catching up while its
		// sink has nothing pending.
		if st, err := js.Stream(ctx, "ROUTED_all"); err != nil || st.CachedInfo().State.Msgs < uint64(storedAll) {
			done = false
			if err == nil {
				parts = append(parts, fmt.Sprintf("ROUTED_all holds %d of %d", st.CachedInfo().State.Msgs, storedAll))
			}
		}
		cancel()
		state = strings.Join(parts, "; ")
		if done {
			c.note("drained: %s", state)
			return nil
		}
	}
	err := fmt.Errorf("router and sinks did not catch up within %s: %s", within, state)
	c.wd.fire(err.Error())
	return err
}

func consumerInfo(ctx context.Context, js jetstream.JetStream, stream, name string) (*jetstream.ConsumerInfo, error) {
	cons, err := js.Consumer(ctx, stream, name)
	if err != nil {
		return nil, err
	}
	return cons.Info(ctx)
}

var publishedRE = regexp.MustCompile(`published (\d+), duplicate (\d+), failed (\d+)`)

// parsePublished reads the summary `publisher gen` prints on stdout.
func parsePublished(out string) (n, dup, failed int64, err error) {
	m := publishedRE.FindStringSubmatch(out)
	if m == nil {
		return 0, 0, 0, fmt.Errorf("no summary in the publisher's output %q", out)
	}
	n, _ = strconv.ParseInt(m[1], 10, 64)
	dup, _ = strconv.ParseInt(m[2], 10, 64)
	failed, _ = strconv.ParseInt(m[3], 10, 64)
	return n, dup, failed, nil
}

// sizes maps "all/<file>" and "auth/<file>" to a size in bytes.
type sizes map[string]int64

func (s sizes) String() string {
	var parts []string
	for k, v := range s {
		parts = append(parts, fmt.Sprintf("%s=%d", k, v))
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}

// fileSizes returns the sizes of the sinks' files (logs and sidecars), to
// tell which process wrote a line.
func fileSizes(dir string) sizes {
	out := sizes{}
	for _, sub := range []string{"all", "auth"} {
		ents, _ := os.ReadDir(filepath.Join(dir, sub))
		for _, e := range ents {
			if info, err := e.Info(); err == nil {
				out[sub+"/"+e.Name()] = info.Size()
			}
		}
	}
	return out
}

// longestAckWait is the longest ack wait of the router's and the sinks'
// consumers under -crash.ack-wait.
func longestAckWait() time.Duration {
	if *flagAckWait > 0 {
		return *flagAckWait
	}
	c, err := config.Load("")
	if err != nil {
		return time.Minute
	}
	return max(c.Router.AckWait.D(), c.Sinks.AckWait.D())
}

// workDir returns the directory for the configuration, the sinks' files and
// the process logs. It is removed at the end unless -crash.keep is set (a
// failing run reports what it found; its files are tens of megabytes).
func workDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "mailtel-crash-*")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		switch {
		case *flagKeep || kept(dir):
			t.Logf("work directory kept: %s (logs/, all/, auth/, mailtel.toml)", dir)
		case t.Failed():
			t.Logf("work directory removed; rerun with -crash.keep to keep the process logs and sink files")
			os.RemoveAll(dir)
		default:
			os.RemoveAll(dir)
		}
	})
	return dir
}

// writeConfig writes the configuration every process reads: two log
// sinks, and ack waits of ackWait (the defaults if 0; the test's 5s makes
// what a killed process held come back within seconds).
func writeConfig(t *testing.T, dir string, serverFanOut bool, ackWait time.Duration) string {
	t.Helper()
	fanOut := "[]"
	if serverFanOut {
		fanOut = `["all"]`
	}
	ackWaitLine := "# ack-wait: the default"
	if ackWait > 0 {
		ackWaitLine = fmt.Sprintf("ack-wait = %q", ackWait.String())
	}
	cfg := fmt.Sprintf(`# written by TestCrash
[tracer.all]
type = "log"
level = "trace"
format = "json"
path = %s

[tracer.auth]
type = "log"
level = "trace"
format = "text"
events = ["auth.*"]
path = %s

[router]
%s
server-fan-out = %s

[sinks]
%s

[logging]
level = "info"
`, strconv.Quote(filepath.Join(dir, "all")), strconv.Quote(filepath.Join(dir, "auth")), ackWaitLine, fanOut, ackWaitLine)
	path := filepath.Join(dir, "mailtel.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o640); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestSynthTypesIgnoreStart backs the assumption TestCrash's expectations
// rest on: `publisher gen` starts its generator at time.Now, and the ids
// and types of a seed's events do not depend on the start time.
func TestSynthTypesIgnoreStart(t *testing.T) {
	for _, seed := range []uint64{1, 2, 0xfeed} {
		t.Run(strconv.FormatUint(seed, 16), func(t *testing.T) {
			a := synth.New(synth.Options{Seed: seed, Start: time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)})
			b := synth.New(synth.Options{Seed: seed})
			var ea, eb schema.Event
			for n := range 20000 {
				a.Next(&ea)
				b.Next(&eb)
				if ea.ID != eb.ID || ea.Type != eb.Type {
					t.Fatalf("event %d: %s %s with one start, %s %s with another", n, ea.ID, ea.Type, eb.ID, eb.Type)
				}
			}
		})
	}
}

// TestTextType checks the parsing of the type out of Stalwart text lines.
func TestTextType(t *testing.T) {
	for _, tc := range []struct{ line, want string }{
		{`2026-01-01T00:00:00Z INFO Authentication successful (auth.success) accountName = "a"`, "auth.success"},
		{`2026-01-01T00:00:00Z DEBUG Client request started (auth.client-request-started)`, "auth.client-request-started"},
		{`2026-01-01T00:00:00Z INFO Odd (thing) description (auth.failed) x = 1`, "auth.failed"},
		{`no type here`, ""},
	} {
		if got := textType([]byte(tc.line)); got != tc.want {
			t.Errorf("textType(%q) = %q, want %q", tc.line, got, tc.want)
		}
	}
}
