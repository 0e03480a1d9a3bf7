package sinks_test

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/mailtel/mailtel/pipeline"
	"github.com/mailtel/mailtel/pipeline/pipelinetest"
	"github.com/mailtel/mailtel/pipeline/sinktest"
	"github.com/mailtel/mailtel/pipeline/synth"
)

var outageFor = flag.Duration("outage", 3*time.Minute, "how long TestWebhookOutage's receiver refuses connections")

// recoveringReceiver answers, once it listens, 500, 429 (Retry-After: 1)
// and 500 once each, then 200 to everything, and counts each event id it
// accepted.
type recoveringReceiver struct {
	mu        sync.Mutex
	requests  int
	answers   []int
	delivered map[string]int
}

func (rc *recoveringReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	var req struct {
		Events []struct {
			ID string `json:"id"`
		} `json:"events"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.requests++
	status := http.StatusOK
	switch rc.requests {
	case 1, 3:
		status = http.StatusInternalServerError
	case 2:
		status = http.StatusTooManyRequests
		w.Header().Set("Retry-After", "1")
	}
	rc.answers = append(rc.answers, status)
	if status != http.StatusOK {
		http.Error(w, http.StatusText(status), status)
		return
	}
	for _, e := range req.Events {
		rc.delivered[e.ID]++
	}
}

// TestWebhookOutage runs a webhook sink with the default settings against
// a receiver that refuses connections for -outage (3 minutes), then answers
// 500, 429 and 500 once each, then recovers, while events keep arriving.
// No event may be dead-lettered and every one is delivered once; while the
// receiver is down the sink holds at most one batch unacked, /readyz says
// degraded and mailtel_sink_up is 0.
func TestWebhookOutage(t *testing.T) {
	env := pipelinetest.Start(t)
	port := pipelinetest.ReservePort(t) // refused until the receiver listens there
	addr := port.Addr

	tp := startPipeline(t, env, `
[webhook.siem]
url = "http://`+addr+`/mail?api_key=outage-test"
events = ["*"]
`)
	p, cfg := tp.P, tp.Cfg
	g := synth.New(synth.Options{Seed: 5, Start: time.Now().Add(-time.Hour)})
	readyz := func() string {
		resp, err := http.Get("http://" + p.HTTPAddr + "/readyz")
		if err != nil {
			return err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return fmt.Sprintf("%d %s", resp.StatusCode, strings.TrimSpace(string(b)))
	}
	gauge := func() float64 {
		var m dto.Metric
		p.Metrics.SinkUp.WithLabelValues("siem").Write(&m)
		return m.GetGauge().GetValue()
	}
	sinkInfo := func() (uint64, int) {
		return tp.Consumer(cfg.Streams.RoutedStream("siem"), pipeline.SinkConsumerName("siem"))
	}

	// The sink starts on a full backlog, so that it holds a whole batch
	// and has the next ones fetched when its first write fails.
	down := time.Now()
	tp.Publish(g, 3000)
	pipelinetest.WaitFor(t, 30*time.Second, "the router copies the first events", tp.RouterIdle)
	tp.StartSinks()
	pipelinetest.WaitFor(t, 30*time.Second, "the sink pauses: /readyz says degraded", func() bool {
		return strings.Contains(readyz(), "degraded") && gauge() == 0
	})
	t.Logf("down: %s", readyz())
	if s := readyz(); !strings.HasPrefix(s, "200 ") || !strings.Contains(s, "sink:siem") || strings.Contains(s, "outage-test") {
		t.Errorf("/readyz while the receiver is down: %q (want 200, degraded, naming the sink, without the URL's query)", s)
	}
	maxAck, published := 0, false
	for time.Since(down) < *outageFor {
		if !published && time.Since(down) > *outageFor/3 {
			tp.Publish(g, 2000) // more arrives during the outage: it waits in JetStream
			published = true
		}
		// What the process holds: the server counts messages given back
		// (nak) as unacked too, until it delivers them again.
		var m dto.Metric
		p.Metrics.SinkHeld.WithLabelValues("siem").Write(&m)
		held := int(m.GetGauge().GetValue())
		maxAck = max(maxAck, held)
		if held > cfg.Sinks.Batch {
			t.Errorf("%s into the outage the sinks process holds %d messages, more than one batch (%d)", time.Since(down).Round(time.Second), held, cfg.Sinks.Batch)
		}
		if g := gauge(); g != 0 {
			t.Errorf("mailtel_sink_up = %v during the outage", g)
		}
		time.Sleep(time.Second)
	}
	pending, _ := sinkInfo()
	t.Logf("after %s down: the process held at most %d messages, %d wait in JetStream; %s", time.Since(down).Round(time.Second), maxAck, pending, readyz())

	rc := &recoveringReceiver{delivered: map[string]int{}}
	ln, err := port.Listen()
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(rc)
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	defer srv.Close()
	up := time.Now()

	pipelinetest.WaitFor(t, 5*time.Minute, "every event delivered after the receiver is back", func() bool {
		pending, ack := sinkInfo()
		rc.mu.Lock()
		n := len(rc.delivered)
		rc.mu.Unlock()
		return pending == 0 && ack == 0 && n == tp.Routed("siem")
	})
	drained := time.Since(up)
	pipelinetest.WaitFor(t, 10*time.Second, "/readyz says ready again", func() bool { return readyz() == "200 ready" && gauge() == 1 })

	if dead := sinktest.DeadLetters(t, p.JS, cfg.Streams.DLQ, "siem"); len(dead) > 0 {
		t.Errorf("%d dead letters, want none; first: %s", len(dead), dead[0].Reason)
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	dups := 0
	for _, c := range rc.delivered {
		if c > 1 {
			dups++
		}
	}
	if dups > 0 {
		t.Errorf("%d events delivered more than once", dups)
	}
	if len(rc.answers) < 4 || rc.answers[0] != 500 || rc.answers[1] != 429 || rc.answers[2] != 500 {
		t.Errorf("receiver answers began %v, want 500, 429, 500, then 200s", rc.answers[:min(4, len(rc.answers))])
	}
	t.Logf("%d events delivered once, 0 dead letters; receiver back for %s before the backlog was drained; %d requests",
		len(rc.delivered), drained.Round(time.Second), rc.requests)
}
