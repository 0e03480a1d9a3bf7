package secretstest

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mailtel/mailtel/pipeline"
	"github.com/mailtel/mailtel/pipeline/config"
	"github.com/mailtel/mailtel/pipeline/pipelinetest"
	"github.com/mailtel/mailtel/pipeline/sinks/webhook"
)

// TestNoSecretInOutputs runs every process and command with a
// configuration full of secrets, through work and failures, and fails if
// any output holds a secret (see the package documentation).
func TestNoSecretInOutputs(t *testing.T) {
	began := time.Now()
	h := newHarness(t)
	w := newWorld(t, h)
	c := w.configs()
	invalid := w.invalid(c)
	t.Logf("built in %s; work directory %s", time.Since(began).Round(time.Millisecond), h.dir)

	// The router starts the embedded server that takes nats.token.
	httpOf := map[string]string{}
	routerA := h.start("router (console, embedded server)", "router", "run", "--config", c.embedded, "--http", addr(t, httpOf, "router-a"))
	if !waitReady(httpOf["router-a"], 30*time.Second) {
		h.stop(routerA, 5*time.Second)
		t.Fatalf("the router with the embedded server is not ready:\n%s", routerA.stderr.String())
	}
	// A second server, of the test, that takes a user and password; a
	// router connects to it with the password in its URL, and sees it
	// restart.
	upass := startUserPass(t, w)
	routerU := h.start("router (json, user/password server)", "router", "run", "--config", c.userpass, "--http", addr(t, httpOf, "router-u"))

	// What fails without a pipeline: unreachable NATS, credentials
	// refused, invalid files, help. It runs while the pipeline works.
	var side sync.WaitGroup
	side.Add(1)
	go func(cmds []cmd) {
		defer side.Done()
		runAll(h, 4, cmds)
	}(failures(t, w, c, invalid))
	t.Cleanup(side.Wait) // before the processes are killed, should the test stop early

	procs := []*proc{
		h.start("router (json, client of the embedded server)", "router", "run", "--config", c.client, "--http", addr(t, httpOf, "router-b")),
		h.start("sinks (json)", "sinks", "run", "--config", c.client, "--http", addr(t, httpOf, "sinks-a")),
		h.start("sinks (console, failing webhooks)", "sinks", "run", "--config", c.embedded, "--http", addr(t, httpOf, "sinks-b"),
			"--sink", "slow,refused,tls", "--instance", "b"),
		h.start("publisher ingest (console)", "publisher", "ingest", "--config", c.embedded, "--listen", addr(t, httpOf, "ingest-a"), "--http", addr(t, httpOf, "publisher-a")),
		h.start("publisher ingest (json)", "publisher", "ingest", "--config", c.client, "--listen", addr(t, httpOf, "ingest-b"), "--http", addr(t, httpOf, "publisher-b")),
	}
	for _, k := range []string{"router-b", "sinks-a", "sinks-b", "publisher-a", "publisher-b", "router-u"} {
		if !waitReady(httpOf[k], 30*time.Second) {
			stopAll(h, append(procs, routerA, routerU))
			t.Fatalf("%s is not ready; logs:\n%s", k, dump(h.out.all()))
		}
	}

	// Scrape every endpoint while the pipeline works: /readyz says why a
	// sink is degraded.
	metricsAuth := "Basic " + base64.StdEncoding.EncodeToString([]byte("scraper:"+w.metricsSecret))
	scrape := func() {
		for _, k := range []string{"router-a", "router-b", "router-u", "sinks-a", "sinks-b", "publisher-a", "publisher-b"} {
			for _, path := range []string{"/metrics", "/readyz", "/healthz"} {
				h.get("http://"+httpOf[k]+path, "")
			}
		}
		h.get("http://"+w.metricsAddr+"/metrics", metricsAuth)
		h.get("http://"+w.metricsAddr+"/metrics", "")
		h.get("http://"+w.metricsAddr+"/metrics", "Bearer wrong")
	}
	stopScrape := make(chan struct{})
	var stopOnce sync.Once
	endScrape := func() { stopOnce.Do(func() { close(stopScrape) }) }
	t.Cleanup(endScrape)
	scraped := make(chan struct{})
	go func() {
		defer close(scraped)
		for {
			scrape()
			select {
			case <-stopScrape:
				return
			case <-time.After(300 * time.Millisecond):
			}
		}
	}()

	ingest(t, h, w, "http://"+httpOf["ingest-a"], "http://"+httpOf["ingest-b"])

	js := connect(t, pipeline.ServerURL(config.NATS{Listen: w.natsAddr}), config.NATS{Token: w.natsToken})
	want := []string{"dlq.sink.bad.", "dlq.sink.redirect.", "dlq.sink.slow.", "dlq.sink.refused.", "dlq.sink.tls.", "dlq.ingest."}
	var letters map[string]uint64
	if !waitFor(60*time.Second, func() bool {
		letters = subjects(js, "DLQ")
		return w.okEvents.Load() >= 3 && all(letters, want)
	}) {
		t.Errorf("after 60s the ok receiver has %d events (want 3) and the DLQ %v (want each of %v)", w.okEvents.Load(), letters, want)
	}
	t.Logf("pipeline ran: %d events at the ok receiver, dead letters %v (%s)", w.okEvents.Load(), letters, time.Since(began).Round(time.Millisecond))

	// The user/password server restarts: the router says it reconnected.
	upass.restart()
	if !waitFor(15*time.Second, func() bool { return strings.Contains(routerU.stderr.String(), "reconnected to NATS") }) {
		t.Errorf("the router of the user/password server did not log its reconnection:\n%s", routerU.stderr.String())
	}

	runCommands(t, h, w, c, js, httpOf)

	endScrape()
	<-scraped
	scrape()
	stopAll(h, append(procs, routerU))
	readStreams(t, h, js, "nats (token)")
	readStreams(t, h, connect(t, "nats://"+w.upassAddr, config.NATS{User: "mailtel", Password: w.natsPassword}), "nats (user/password)")
	h.stop(routerA, 10*time.Second)
	side.Wait()
	h.recordFiles(w.logs)
	h.recordFiles(filepath.Join(h.dir, "replay-logs"))

	if !w.okCreds.Load() {
		t.Error("the ok receiver never got the configured Authorization, X-Api-Key, query and X-Signature: the secrets were not in use")
	}
	expect(t, &h.out)

	outs := h.out.all()
	found := search(outs, w.s.needles())
	t.Logf("searched %d outputs (%d bytes) for %d secrets in %s", len(outs), size(outs), len(w.s.list), time.Since(began).Round(time.Millisecond))
	if len(found) > 0 {
		t.Errorf("%d secrets found in outputs (channel: secret, lines):\n%s", len(found), report(found))
	}
	if testing.Verbose() {
		channels := map[string]bool{}
		for _, o := range outs {
			channels[strings.SplitN(o.channel, " seq ", 2)[0]] = true
		}
		names := make([]string, 0, len(channels))
		for n := range channels {
			names = append(names, n)
		}
		sort.Strings(names)
		t.Logf("channels searched:\n  %s", strings.Join(names, "\n  "))
	}
}

// TestSearchFinds checks the search itself: it finds each encoding, and
// says where.
func TestSearchFinds(t *testing.T) {
	s := &secretSet{}
	v := s.add("publisher.password", "pub-password")
	s.pair("ingest", v)
	outs := []output{
		{"plain", []byte("ok\nerror: " + strings.ToUpper(v) + " refused")},
		{"basic", []byte("Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte("ingest:"+v)))},
		{"cut", []byte("reason: token SECRET-pub-pa…")},
		{"clean", []byte("nothing here, xxxxx")},
	}
	found := search(outs, s.needles())
	got := map[string]int{}
	for _, f := range found {
		got[f.channel] = f.line
	}
	want := map[string]int{"plain": 2, "basic": 1, "cut": 1}
	for ch, line := range want {
		if got[ch] != line {
			t.Errorf("channel %s: found at line %d, want %d:\n%s", ch, got[ch], line, report(found))
		}
	}
	if _, ok := got["clean"]; ok {
		t.Errorf("found a secret in the clean output:\n%s", report(found))
	}
}

// addr picks a free address for key.
func addr(t *testing.T, m map[string]string, key string) string {
	m[key] = pipelinetest.FreeAddr(t)
	return m[key]
}

// waitReady waits until http://addr/readyz answers 200.
func waitReady(addr string, d time.Duration) bool {
	return waitFor(d, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/readyz", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

func stopAll(h *harness, procs []*proc) {
	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h.stop(p, 10*time.Second)
		}()
	}
	wg.Wait()
}

func dump(outs []output) string {
	var b strings.Builder
	for _, o := range outs {
		fmt.Fprintf(&b, "--- %s\n%s\n", o.channel, o.data)
	}
	return b.String()
}

func size(outs []output) int {
	n := 0
	for _, o := range outs {
		n += len(o.data)
	}
	return n
}

// userPass is the test's own NATS server, with user/password auth.
type userPass struct {
	t   *testing.T
	cfg config.NATS
	mu  sync.Mutex
	srv *pipeline.Embedded
}

func startUserPass(t *testing.T, w *world) *userPass {
	u := &userPass{t: t, cfg: config.NATS{Listen: w.upassAddr, StoreDir: filepath.Join(w.h.dir, "nats-userpass"), Name: "secretstest-userpass",
		User: "mailtel", Password: w.natsPassword}}
	srv, err := pipeline.StartEmbedded(u.cfg)
	if err != nil {
		t.Fatal(err)
	}
	u.srv = srv
	t.Cleanup(func() {
		u.mu.Lock()
		defer u.mu.Unlock()
		u.srv.Close()
	})
	return u
}

// restart stops the server and starts it again on the same address.
func (u *userPass) restart() {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.srv.Close()
	time.Sleep(300 * time.Millisecond)
	srv, err := pipeline.StartEmbedded(u.cfg)
	if err != nil {
		u.t.Fatal(err)
	}
	u.srv = srv
}

// connect connects the test to a server.
func connect(t *testing.T, url string, auth config.NATS) jetstream.JetStream {
	t.Helper()
	auth.URL = url
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	nc, js, err := pipeline.Connect(ctx, auth, "secretstest", 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return js
}

// subjects counts the messages of a stream by subject prefix
// (dlq.sink.bad. for dlq.sink.bad.auth.failed).
func subjects(js jetstream.JetStream, stream string) map[string]uint64 {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return nil
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(">"))
	if err != nil {
		return nil
	}
	out := map[string]uint64{}
	for subj, n := range info.State.Subjects {
		toks := strings.Split(subj, ".")
		k := toks[0] + "." + toks[1] + "."
		if toks[1] == "sink" && len(toks) > 2 {
			k += toks[2] + "."
		}
		out[k] += n
	}
	return out
}

func all(m map[string]uint64, keys []string) bool {
	for _, k := range keys {
		if m[k] == 0 {
			return false
		}
	}
	return true
}

// readStreams records every message of every stream: subject, headers and
// payload.
func readStreams(t *testing.T, h *harness, js jetstream.JetStream, server string) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	names := js.StreamNames(ctx)
	for name := range names.Name() {
		s, err := js.Stream(ctx, name)
		if err != nil {
			t.Errorf("read stream %s: %v", name, err)
			continue
		}
		st := s.CachedInfo().State
		for seq := st.FirstSeq; seq <= st.LastSeq && seq > 0; seq++ {
			m, err := s.GetMsg(ctx, seq)
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				continue
			}
			if err != nil {
				t.Errorf("read stream %s seq %d: %v", name, seq, err)
				break
			}
			var b bytes.Buffer
			fmt.Fprintf(&b, "subject %s\n%s\n", m.Subject, headerLines(http.Header(m.Header)))
			b.Write(m.Data)
			h.out.add(fmt.Sprintf("%s stream %s seq %d", server, name, seq), b.Bytes())
		}
	}
	if err := names.Err(); err != nil {
		t.Errorf("list streams: %v", err)
	}
}

// ingest sends the ingest endpoints good and bad requests, with good and
// bad credentials, and records the answers.
func ingest(t *testing.T, h *harness, w *world, a, b string) {
	bearer := "Bearer " + w.pubToken
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("ingest:"+w.pubPassword))
	stalwart := `{"events":[` +
		`{"id":"st-1","createdAt":"2026-01-02T03:04:05Z","type":"auth.failed","data":{"accountName":"mallory","remoteIp":"192.0.2.7"}},` +
		`{"id":"st-2","createdAt":"2026-01-02T03:04:06Z","type":"auth.success","data":{"accountName":"alice","remoteIp":"192.0.2.8"}},` +
		`{"id":"st-bad","createdAt":"yesterday","type":"auth.failed","data":{}}]}`
	dovecot := `{"event":"auth_request_finished","hostname":"vm","start_time":"2026-11-21T12:19:56.588053Z","end_time":"2026-11-21T12:19:56.588270Z","categories":["auth"],"fields":{"duration":155,"user":"alice"}}`
	badDovecot := `{"event":"auth_request_finished","hostname":"vm","start_time":"not a time","fields":{"user":"bob"}}`
	sign := func(body string) string { return webhook.Sign([]byte(w.pubSigKey), []byte(body)) }
	reqs := []struct {
		name, url, auth, sig, body string
		want                       int
	}{
		{"stalwart batch, bearer token", a + "/v1/ingest/stalwart", bearer, sign(stalwart), stalwart, 200},
		{"dovecot event, basic auth", b + "/v1/ingest/dovecot", basic, sign(dovecot), dovecot, 200},
		{"bad dovecot event", b + "/v1/ingest/dovecot", bearer, sign(badDovecot), badDovecot, 400},
		{"not JSON", a + "/v1/ingest/stalwart", bearer, sign("{nope"), "{nope", 400},
		{"wrong token", a + "/v1/ingest/stalwart", "Bearer " + w.pubToken + "x", sign(stalwart), stalwart, 401},
		{"wrong password", b + "/v1/ingest/stalwart", "Basic " + base64.StdEncoding.EncodeToString([]byte("ingest:x"+w.pubPassword)), sign(stalwart), stalwart, 401},
		{"wrong signature", a + "/v1/ingest/stalwart", bearer, sign(stalwart + " "), stalwart, 401},
		{"no credentials", b + "/v1/ingest/dovecot", "", "", dovecot, 401},
	}
	for _, r := range reqs {
		req, err := http.NewRequest(http.MethodPost, r.url, strings.NewReader(r.body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		if r.auth != "" {
			req.Header.Set("Authorization", r.auth)
		}
		if r.sig != "" {
			req.Header.Set("X-Signature", r.sig)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Errorf("ingest %s: %v", r.name, err)
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		h.out.add("ingest answer to "+r.name, append([]byte(fmt.Sprintf("%d %s\n", resp.StatusCode, headerLines(resp.Header))), body...))
		if resp.StatusCode != r.want {
			t.Errorf("ingest %s: answer %d %s, want %d", r.name, resp.StatusCode, body, r.want)
		}
	}
}

// cmd is one run of a binary: at most d long, then interrupted.
type cmd struct {
	name string
	d    time.Duration
	exe  string
	args []string
}

// runAll runs cmds, n at a time.
func runAll(h *harness, n int, cmds []cmd) {
	fns := make([]func(), len(cmds))
	for i, x := range cmds {
		fns[i] = func() { h.run(x.name, x.d, x.exe, x.args...) }
	}
	parallel(n, fns...)
}

// runCommands runs the commands that read or re-drive what the pipeline
// stored, while it runs.
func runCommands(t *testing.T, h *harness, w *world, c configs, js jetstream.JetStream, httpOf map[string]string) {
	events := h.write("events.jsonl", `{"id":"file-1","createdAt":"2026-01-02T03:04:05Z","type":"auth.failed","data":{"accountName":"eve"}}`+"\n"+
		`{"id":"file-bad","createdAt":"later","type":"auth.failed","data":{}}`+"\n")
	replayTo := fmt.Sprintf("http://replay:%s@%s/hook/replay?api_key=%s&v=1", w.replayPass, w.hooks["ok"].addr, w.replayQuery)
	cmds := []cmd{
		{"sinks dlq list (json logs)", 20 * time.Second, "sinks", []string{"dlq", "list", "--config", c.client}},
		{"sinks dlq list --json (console logs)", 20 * time.Second, "sinks", []string{"dlq", "list", "--json", "--config", c.embedded}},
		{"sinks dlq redrive --dry-run", 20 * time.Second, "sinks", []string{"dlq", "redrive", "--sink", "bad", "--dry-run", "--config", c.client}},
		{"sinks dlq redrive", 20 * time.Second, "sinks", []string{"dlq", "redrive", "--sink", "redirect", "--config", c.embedded}},
		{"sinks tail events", 2 * time.Second, "sinks", []string{"tail", "events.>", "--since", "1h", "--config", c.client}},
		{"sinks tail routed --json", 2 * time.Second, "sinks", []string{"tail", "routed.bad.>", "--since", "1h", "--json", "--config", c.embedded}},
		{"sinks tail dlq", 2 * time.Second, "sinks", []string{"tail", "dlq.>", "--since", "1h", "--config", c.client}},
		{"sinks replay bad (400)", 20 * time.Second, "sinks", []string{"replay", "--sink", "bad", "--since", "1h", "--config", c.client}},
		{"sinks replay redirect (307)", 20 * time.Second, "sinks", []string{"replay", "--sink", "redirect", "--since", "1h", "--config", c.embedded}},
		{"sinks replay refused", 20 * time.Second, "sinks", []string{"replay", "--sink", "refused", "--since", "1h", "--config", c.client}},
		{"sinks replay slow (timeout)", 20 * time.Second, "sinks", []string{"replay", "--sink", "slow", "--since", "1h", "--config", c.client}},
		{"sinks replay tls", 20 * time.Second, "sinks", []string{"replay", "--sink", "tls", "--since", "1h", "--config", c.embedded}},
		{"sinks replay ok --to URL", 20 * time.Second, "sinks", []string{"replay", "--sink", "ok", "--since", "1h", "--to", replayTo, "--config", c.client}},
		{"sinks replay log --to DIR", 20 * time.Second, "sinks", []string{"replay", "--sink", "log", "--since", "1h", "--to", filepath.Join(h.dir, "replay-logs"), "--config", c.client}},
		{"router replay --dry-run", 20 * time.Second, "router", []string{"replay", "--config", c.client, "--since", "1h", "--dry-run"}},
		{"router replay into failing webhooks", 20 * time.Second, "router", []string{"replay", "--config", c.embedded, "--since", "1h",
			"--sink", "bad", "--sink", "redirect", "--sink", "refused", "--sink", "tls", "--sink", "slow"}},
		{"router catalog --json", 20 * time.Second, "router", []string{"catalog", "--json", "--config", c.client}},
		{"router status", 20 * time.Second, "router", []string{"status", "--config", c.client, "--http", httpOf["router-a"] + "," + httpOf["sinks-a"] + "," + httpOf["sinks-b"]}},
		{"router status --json", 20 * time.Second, "router", []string{"status", "--json", "--config", c.embedded, "--http", httpOf["router-b"] + "," + httpOf["sinks-a"] + "," + httpOf["sinks-b"]}},
		{"publisher file", 20 * time.Second, "publisher", []string{"file", "--config", c.client, events}},
		{"publisher gen", 20 * time.Second, "publisher", []string{"gen", "--config", c.embedded, "--count", "5"}},
		{"publisher gen (user/password server)", 20 * time.Second, "publisher", []string{"gen", "--config", c.userpass, "--count", "3"}},
		{"sinks dlq list (user/password server)", 20 * time.Second, "sinks", []string{"dlq", "list", "--config", c.userpass}},
		// Long enough for its embedded server, streams and the line that
		// says where /readyz is, on a machine running other packages' tests.
		{"router up", 12 * time.Second, "router", []string{"up", "--config", c.up, "--rate", "20", "--count", "20"}},
	}
	// One dead letter of each subject, shown.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if s, err := js.Stream(ctx, "DLQ"); err == nil {
		shown := map[string]bool{}
		for seq := uint64(1); seq <= s.CachedInfo().State.LastSeq; seq++ {
			m, err := s.GetMsg(ctx, seq)
			if err != nil {
				continue
			}
			if k := strings.Join(strings.SplitN(m.Subject, ".", 4)[:3], "."); !shown[k] {
				shown[k] = true
				cmds = append(cmds, cmd{"sinks dlq show " + k, 20 * time.Second, "sinks", []string{"dlq", "show", strconv.FormatUint(seq, 10), "--config", c.client}})
			}
		}
	} else {
		t.Errorf("open the DLQ stream: %v", err)
	}
	runAll(h, 3, cmds)
}

// failures are the commands that fail before any work: NATS unreachable
// or refusing the credentials, invalid configuration files and --to URLs;
// and those that print help.
func failures(t *testing.T, w *world, c configs, invalid map[string]string) []cmd {
	closed := fmt.Sprintf("nats://mailtel:%s@%s", w.natsFlagPass, w.closedAddr)
	badURL := fmt.Sprintf("nats://mailtel:%s%%zz@%s", w.natsFlagPass, w.closedAddr)
	slashURL := fmt.Sprintf("nats://mailtel:%s/x@%s", w.natsFlagPass, w.closedAddr) // the password is read as a port
	freeHTTP := func() string { return pipelinetest.FreeAddr(t) }
	// A process retries its first connection until its deadline (30s):
	// it is interrupted after brief, and says what it could not connect to.
	const brief = 3 * time.Second
	cmds := []cmd{
		// Long enough for its "waiting for NATS" warning (after 2s) on a loaded machine.
		{"router (NATS unreachable, user/password)", 2 * brief, "router", []string{"run", "--config", c.closed, "--http", freeHTTP()}},
		{"router (NATS unreachable, tokens)", brief, "router", []string{"run", "--config", c.closedTok, "--http", freeHTTP()}},
		{"sinks (NATS unreachable)", brief, "sinks", []string{"run", "--config", c.closedTok, "--http", freeHTTP()}},
		{"sinks (NATS unreachable, console)", brief, "sinks", []string{"run", "--config", c.closed, "--http", freeHTTP()}},
		{"publisher ingest (NATS unreachable)", brief, "publisher", []string{"ingest", "--config", c.closed, "--listen", freeHTTP(), "--http", freeHTTP()}},
		{"publisher gen (NATS unreachable)", brief, "publisher", []string{"gen", "--config", c.closedTok, "--count", "1"}},
		{"sinks dlq list (NATS unreachable)", 10 * time.Second, "sinks", []string{"dlq", "list", "--config", c.closed, "--timeout", "1s"}},
		{"sinks dlq list --nats with password (unreachable)", 10 * time.Second, "sinks", []string{"dlq", "list", "--config", c.client, "--timeout", "1s", "--nats", closed}},
		{"sinks dlq show --nats invalid URL", 10 * time.Second, "sinks", []string{"dlq", "show", "1", "--config", c.client, "--timeout", "1s", "--nats", badURL}},
		{"sinks dlq list --nats with a '/' in the password", 10 * time.Second, "sinks", []string{"dlq", "list", "--config", c.client, "--timeout", "1s", "--nats", slashURL}},
		{"sinks tail (NATS unreachable)", brief, "sinks", []string{"tail", "events.>", "--config", c.closedTok}},
		{"sinks replay (NATS unreachable)", brief, "sinks", []string{"replay", "--sink", "ok", "--since", "1h", "--config", c.closed}},
		{"router replay (NATS unreachable)", brief, "router", []string{"replay", "--config", c.closedTok, "--since", "1h", "--dry-run"}},
		{"router (NATS refuses the credentials)", 10 * time.Second, "router", []string{"run", "--config", c.wrongAuth, "--http", freeHTTP()}},
		{"sinks dlq list (NATS refuses the credentials)", 10 * time.Second, "sinks", []string{"dlq", "list", "--config", c.wrongAuth}},
		{"sinks replay --to invalid URL (escape)", 10 * time.Second, "sinks", []string{"replay", "--sink", "ok", "--since", "1h", "--config", c.client,
			"--to", fmt.Sprintf("http://replay:%s%%zz@127.0.0.1:1/?api_key=%s", w.replayPass, w.replayQuery)}},
		{"sinks replay --to invalid URL (port)", 10 * time.Second, "sinks", []string{"replay", "--sink", "ok", "--since", "1h", "--config", c.client,
			"--to", fmt.Sprintf("http://replay:%s@127.0.0.1:99999/?api_key=%s", w.replayPass, w.replayQuery)}},
	}
	for _, f := range []string{c.embedded, c.client, c.userpass, c.closed, c.closedTok, c.up} {
		cmds = append(cmds, cmd{"router validate " + filepath.Base(f), 10 * time.Second, "router", []string{"validate", "--config", f}})
	}
	// The effective configuration, every secret in it: as a reference, a
	// literal, in URLs (of the file and of --nats).
	for _, f := range []string{c.embedded, c.client, c.userpass, c.closed, c.closedTok} {
		cmds = append(cmds,
			cmd{"router config " + filepath.Base(f), 10 * time.Second, "router", []string{"config", "--config", f}},
			cmd{"router config --json " + filepath.Base(f), 10 * time.Second, "router", []string{"config", "--json", "--config", f}})
	}
	cmds = append(cmds,
		cmd{"router config --nats with password", 10 * time.Second, "router", []string{"config", "--config", c.client, "--nats", closed}},
		cmd{"router config --json --nats with password", 10 * time.Second, "router", []string{"config", "--json", "--config", c.embedded, "--nats", closed}},
		cmd{"router config (invalid: semantic)", 10 * time.Second, "router", []string{"config", "--config", invalid["semantic"]}},
	)
	var names []string
	for n := range invalid {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		f := invalid[n]
		cmds = append(cmds,
			cmd{"router validate (invalid: " + n + ")", 10 * time.Second, "router", []string{"validate", "--config", f}},
			cmd{"router (invalid: " + n + ")", 10 * time.Second, "router", []string{"run", "--config", f, "--http", freeHTTP()}},
		)
	}
	cmds = append(cmds,
		cmd{"sinks (invalid: semantic)", 10 * time.Second, "sinks", []string{"run", "--config", invalid["semantic"], "--http", freeHTTP()}},
		cmd{"publisher ingest (invalid: semantic)", 10 * time.Second, "publisher", []string{"ingest", "--config", invalid["semantic"]}},
		cmd{"sinks dlq list (invalid: syntax)", 10 * time.Second, "sinks", []string{"dlq", "list", "--config", invalid["syntax"]}},
	)
	helps := [][]string{
		{"router", "--help"}, {"router", "help"}, {"router", "run", "--help"}, {"router", "up", "--help"}, {"router", "replay", "--help"},
		{"router", "validate", "--help"}, {"router", "config", "--help"}, {"router", "catalog", "--help"}, {"router", "status", "--help"}, {"router", "run", "--config", c.client, "--help"},
		{"router", "--version"}, {"router", "version"}, {"sinks", "--version"},
		{"sinks", "--help"}, {"sinks", "run", "--help"}, {"sinks", "replay", "--help"}, {"sinks", "tail", "--help"}, {"sinks", "dlq", "--help"},
		{"sinks", "dlq", "list", "--help"}, {"sinks", "dlq", "show", "--help"}, {"sinks", "dlq", "redrive", "--help"},
		{"sinks", "run", "--config", c.embedded, "--help"},
		{"publisher", "--help"}, {"publisher", "file", "--help"}, {"publisher", "ingest", "--help"}, {"publisher", "gen", "--help"},
		{"publisher", "ingest", "--config", c.client, "--help"},
	}
	for _, a := range helps {
		cmds = append(cmds, cmd{strings.Join(a, " "), 10 * time.Second, a[0], a[1:]})
	}
	return cmds
}

// expect fails the test when an output that must exist does not: a
// search of outputs that never ran finds nothing.
func expect(t *testing.T, o *outputs) {
	checks := []struct{ prefix, text string }{
		{"router (console, embedded server) stderr", "embedded NATS server"},
		{"router (json, user/password server) stderr", "reconnected to NATS"},
		{"sinks (json) stderr", "write failed"},
		{"sinks (console, failing webhooks) stderr", "write failed"},
		{"nats (token) stream DLQ", "answered 400"},
		{"nats (token) stream DLQ", "answered 307"},
		{"nats (token) stream DLQ", "connection refused"},
		{"nats (token) stream DLQ", "certificate"},
		{"nats (token) stream DLQ", "deadline exceeded"},
		{"sinks dlq list (json logs) stdout", "dead letters"},
		{"sinks dlq show dlq.sink.bad stdout", "Mailtel-Reason"},
		{"sinks replay bad (400) stderr", "answered 400"},
		{"sinks replay refused stderr", "connection refused"},
		{"sinks replay ok --to URL stdout", "written"},
		{"router (NATS unreachable, user/password) stderr", "connect to nats"},
		{"sinks dlq list --nats with password (unreachable) stderr", "connect to nats"},
		{"sinks dlq show --nats invalid URL stderr", "not a valid URL"},
		{"router (NATS refuses the credentials) stderr", "Authorization Violation"},
		{"router validate (invalid: semantic) stderr", "webhook.ok.url"},
		{"router validate (invalid: semantic) stderr", "webhook.bad.url"},
		{"router validate (invalid: syntax) stderr", "publisher.token"},
		{"router validate client.toml stdout", "is valid"},
		{"router config embedded.toml stdout", "[webhook.ok.headers]"},
		{"router config embedded.toml stdout", "%{env:"},
		{"router config --json client.toml stdout", `"signature-key": "<redacted>"`},
		{"router config --nats with password stdout", "nats://mailtel:xxxxx@"},
		{"router config (invalid: semantic) stderr", "webhook.ok.url"},
		{"GET http://", "mailtel_sink_up"},
		{"GET http://", "degraded"},
		{"ingest answer to stalwart batch", "accepted"},
		{"sinks tail events stdout", "mallory"},
		{"router up stdout", "health and pipeline metrics"},
		{"router status stdout", "refused"},
		{"router (NATS unreachable, user/password) stderr", "waiting for NATS"},
	}
	for _, c := range checks {
		if len(o.find(c.prefix, c.text)) == 0 {
			t.Errorf("no output %q... holds %q: that channel was not exercised", c.prefix, c.text)
		}
	}
}
