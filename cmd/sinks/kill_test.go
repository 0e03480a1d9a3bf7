package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mailtel/mailtel/pipeline"
	"github.com/mailtel/mailtel/pipeline/config"
	"github.com/mailtel/mailtel/pipeline/obs"
	"github.com/mailtel/mailtel/pipeline/pipelinetest"
	"github.com/mailtel/mailtel/pipeline/synth"
	"github.com/mailtel/mailtel/schema"
)

// slowReceiver takes every POST, holds the answer for delay, then answers
// 200. It remembers, per request, when its body arrived and when it was
// answered, so a test can tell which requests were in flight at a moment.
type slowReceiver struct {
	delay time.Duration

	mu        sync.Mutex
	delivered map[string]int
	requests  []request
}

type request struct {
	ids            []string
	body, answered time.Time // answered is zero until the 200 is written
}

func (rc *slowReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	data, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	var req struct {
		Events []struct {
			ID string `json:"id"`
		} `json:"events"`
	}
	if err := json.Unmarshal(data, &req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	rc.mu.Lock()
	i := len(rc.requests)
	rq := request{body: time.Now()}
	for _, e := range req.Events {
		rq.ids = append(rq.ids, e.ID)
		rc.delivered[e.ID]++ // a receiver acts on what it got, answered or not
	}
	rc.requests = append(rc.requests, rq)
	rc.mu.Unlock()
	time.Sleep(rc.delay)
	w.WriteHeader(http.StatusOK)
	rc.mu.Lock()
	rc.requests[i].answered = time.Now()
	rc.mu.Unlock()
}

// inFlight returns the events of the requests whose body had arrived by at
// and whose answer had not been sent by then (or was sent less than grace
// before it, too late for the sink to ack before it died).
func (rc *slowReceiver) inFlight(at time.Time, grace time.Duration) (requests, events int) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for _, rq := range rc.requests {
		if rq.body.Before(at) && (rq.answered.IsZero() || rq.answered.After(at.Add(-grace))) {
			requests++
			events += len(rq.ids)
		}
	}
	return requests, events
}

// TestSIGKILLDuringDelivery kills the real sinks process with SIGKILL
// while its webhook's POSTs are in flight, starts it again, and checks
// that the receiver got every event, and the events it got twice are at
// most those of the requests in flight at the kill: the sink acks each
// request's events when its 2xx arrives, not after the whole fetch.
func TestSIGKILLDuringDelivery(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills the sinks binary")
	}
	env := pipelinetest.Start(t)
	bin := filepath.Join(t.TempDir(), "sinks")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	rc := &slowReceiver{delay: 150 * time.Millisecond, delivered: map[string]int{}}
	srv := httptest.NewServer(rc)
	defer srv.Close()

	// One fetch is 500 events; a request carries 20, two at a time.
	conf := fmt.Sprintf(`
[nats]
url = %q
[webhook.siem]
url = "%s/hook"
events = ["*"]
batch-size = 20
concurrency = 2
throttle = "1ms"
[sinks]
batch = 500
ack-wait = "5s"   # what the killed process held is redelivered after this
http = "127.0.0.1:0"
[logging]
format = "json"
`, env.NATS.URL, srv.URL)
	path := filepath.Join(t.TempDir(), "mailtel.toml")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	env.EnsureStreams(t, cfg)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go pipeline.NewRouter(env.JS, pipeline.NewTable(cfg.SinkSpecs(), cfg.Levels), pipeline.RouterOptionsFrom(cfg), zerolog.Nop(), obs.NewMetrics(), obs.NewHealth()).Run(ctx)

	const n = 3000
	g := synth.New(synth.Options{Seed: 9, Start: time.Now().Add(-time.Hour)})
	evs := make([]schema.Event, n)
	for i := range evs {
		g.Next(&evs[i])
	}
	pub := pipeline.NewPublisher(env.JS, cfg.Levels, 1024, nil)
	if _, err := pub.PublishAll(ctx, evs); err != nil {
		t.Fatal(err)
	}
	pub.Close(ctx)
	routed := func() int {
		st, err := env.JS.Stream(ctx, cfg.Streams.RoutedStream("siem"))
		if err != nil {
			return -1
		}
		info, err := st.Info(ctx)
		if err != nil {
			return -1
		}
		return int(info.State.Msgs)
	}
	pipelinetest.WaitFor(t, 20*time.Second, "the router copies every event", func() bool {
		return pipelinetest.Settled(ctx, env.JS, cfg.Streams.Events, cfg.Router.Consumer) == nil
	})
	want := routed()

	start := func(name string) *exec.Cmd {
		cmd := exec.Command(bin, "--config", path)
		logf, err := os.Create(filepath.Join(t.TempDir(), name+".log"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { logf.Close() })
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		return cmd
	}
	received := func() int {
		rc.mu.Lock()
		defer rc.mu.Unlock()
		return len(rc.delivered)
	}

	first := start("first")
	// Kill once a few fetches are done, while two requests are held.
	pipelinetest.WaitFor(t, 30*time.Second, "deliveries under way", func() bool {
		req, _ := rc.inFlight(time.Now(), 0)
		return received() >= 700 && req == 2
	})
	killed := time.Now()
	if err := first.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	first.Wait()
	reqs, inFlight := rc.inFlight(killed, 20*time.Millisecond)
	before := received()

	start("second")
	pipelinetest.WaitFor(t, 60*time.Second, "every event delivered after the restart", func() bool { return received() == want })
	rc.mu.Lock()
	dups := 0
	for _, c := range rc.delivered {
		dups += c - 1
	}
	rc.mu.Unlock()
	t.Logf("%d events for the webhook; SIGKILL after %d had arrived, with %d requests (%d events) in flight; %d delivered twice",
		want, before, reqs, inFlight, dups)
	if dups > inFlight {
		t.Errorf("%d events delivered twice, more than the %d of the requests in flight at the kill", dups, inFlight)
	}
	if inFlight == 0 || inFlight >= cfg.Sinks.Batch {
		t.Errorf("%d events in flight at the kill: the test did not kill mid-delivery", inFlight)
	}
}
