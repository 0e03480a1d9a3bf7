package sinks_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/mailtel/mailtel/catalog"
	"github.com/mailtel/mailtel/pipeline"
	"github.com/mailtel/mailtel/pipeline/app"
	"github.com/mailtel/mailtel/pipeline/config"
	"github.com/mailtel/mailtel/pipeline/ingest"
	"github.com/mailtel/mailtel/pipeline/pipelinetest"
	"github.com/mailtel/mailtel/pipeline/sinks"
	"github.com/mailtel/mailtel/pipeline/sinks/webhook"
	"github.com/mailtel/mailtel/pipeline/sinktest"
	"github.com/mailtel/mailtel/pipeline/synth"
	"github.com/mailtel/mailtel/schema"
)

// siemReceiver is a SIEM webhook receiver on 127.0.0.1 that goes through
// the failures a real one has, in order: (before it listens: connection
// refused), three 500s, two requests it never answers (the sink times
// out), a 429 with Retry-After: 1, then 200s. A body holding an event with
// data.mailtelMarker = "reject" is answered 400 whatever the phase.
type siemReceiver struct {
	key []byte

	mu        sync.Mutex
	requests  int            // requests without a marker event
	answers   map[int]int    // status (0: no answer) -> count
	delivered map[string]int // native event id -> times answered 200
	rejected  map[string]bool
	badSig    int
	at429     time.Time
	early     int // requests that came too soon after the 429
}

func (rc *siemReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	arrived := time.Now()
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	var req struct {
		Events []struct {
			ID   string                     `json:"id"`
			Data map[string]json.RawMessage `json:"data"`
		} `json:"events"`
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if r.Header.Get("X-Signature") != webhook.Sign(rc.key, body) {
		rc.badSig++
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	if err := json.Unmarshal(body, &req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	for _, e := range req.Events {
		if string(e.Data["mailtelMarker"]) == `"reject"` {
			for _, e := range req.Events {
				rc.rejected[e.ID] = true
			}
			rc.answers[http.StatusBadRequest]++
			http.Error(w, "event "+e.ID+" rejected by policy", http.StatusBadRequest)
			return
		}
	}
	// Parallel chunks of the attempt that got the 429 may arrive just
	// after it; anything later must wait for Retry-After.
	if !rc.at429.IsZero() && arrived.After(rc.at429.Add(300*time.Millisecond)) && arrived.Before(rc.at429.Add(900*time.Millisecond)) {
		rc.early++
	}
	n := rc.requests
	rc.requests++
	switch {
	case n < 3:
		rc.answers[http.StatusInternalServerError]++
		http.Error(w, "internal error", http.StatusInternalServerError)
	case n < 5:
		rc.answers[0]++
		rc.mu.Unlock()
		select { // never answer: the sink's timeout ends the request
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
		rc.mu.Lock()
	case n == 5:
		rc.answers[http.StatusTooManyRequests]++
		rc.at429 = time.Now()
		w.Header().Set("Retry-After", "1")
		http.Error(w, "slow down", http.StatusTooManyRequests)
	default:
		rc.answers[http.StatusOK]++
		for _, e := range req.Events {
			rc.delivered[e.ID]++
		}
	}
}

// TestWebhookEndToEnd publishes 2,000 Stalwart and Dovecot events as JSON
// lines through the publisher's code, routes them with a real router and
// delivers them with sinks.Run to a webhook receiver that refuses
// connections, fails, times out, throttles and rejects some events. Every
// event the webhook should get is delivered exactly once or, if rejected,
// is in the DLQ with the receiver's answer as the reason; none is lost and
// none is both.
func TestWebhookEndToEnd(t *testing.T) {
	const n = 2000
	env := pipelinetest.Start(t)

	// A port nothing listens on yet: the first requests are refused.
	port := pipelinetest.ReservePort(t)
	addr := port.Addr

	rc := &siemReceiver{key: []byte("siem-secret"), answers: map[int]int{}, delivered: map[string]int{}, rejected: map[string]bool{}}
	cfg, err := config.Parse([]byte(`
[webhook.siem]
url = "http://` + addr + `/mail"
events = ["auth.*", "smtp.*", "delivery.*", "imap.*"]
signature-key = "siem-secret"
timeout = "2s"                  # generous: a request answered late is retried and delivered twice
batch-size = 25
concurrency = 4
throttle = "1ms"                # the default, 1s between requests of a slot, makes the test slow
max-backoff = "2s"

[sinks]
batch = 100
`))
	if err != nil {
		t.Fatal(err)
	}
	cfg.NATS = env.NATS

	// The input, and what the webhook must get, decided from the catalog.
	var lines bytes.Buffer
	g := synth.New(synth.Options{Seed: 11, Start: time.Date(2026, 11, 21, 0, 0, 0, 0, time.UTC)})
	var ev schema.Event
	markers := 0
	for i := 0; i < n; i++ {
		g.Next(&ev)
		if ev.Server == schema.ServerDovecot {
			lines.Write(schema.AppendDovecot(nil, &ev))
		} else {
			// Three events the receiver rejects: two early smtp ones, one late auth one.
			smtp, auth := strings.HasPrefix(ev.Type, "smtp."), strings.HasPrefix(ev.Type, "auth.")
			if markers < 3 && (smtp && i%97 == 0 || auth && i > n/2) {
				ev.Fields = append(ev.Fields, schema.Field{Key: "mailtelMarker", Value: schema.String("reject")})
				markers++
			}
			lines.Write(schema.AppendStalwart(nil, &ev))
		}
		lines.WriteByte('\n')
	}
	levels := catalog.NewLevels(nil)
	want := map[string]bool{}   // native ids the webhook should get
	marked := map[string]bool{} // of which the receiver rejects these
	sc := bufio.NewScanner(bytes.NewReader(lines.Bytes()))
	for sc.Scan() {
		var e schema.Event
		if _, err := ingest.Decode(sc.Bytes(), &e); err != nil {
			t.Fatal(err)
		}
		cat, _, _ := strings.Cut(e.Type, ".")
		if (cat == "auth" || cat == "smtp" || cat == "delivery" || cat == "imap") && levels.Of(e.Type) != catalog.LevelDisable {
			id := schema.StalwartNativeID(e.ID)
			if want[id] {
				t.Fatalf("two input events have the native id %s", id)
			}
			want[id] = true
			if v, ok := e.Get("mailtelMarker"); ok && v.Str() == "reject" {
				marked[id] = true
			}
		}
	}
	if len(marked) != 3 {
		t.Fatalf("%d marked events among those the webhook gets, want 3", len(marked))
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p, err := app.Start(ctx, cfg, app.Options{Name: "webhook-e2e"})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Add(2)
	go func() {
		defer wg.Done()
		pipeline.NewRouter(p.JS, pipeline.NewTable(cfg.SinkSpecs(), cfg.Levels), pipeline.RouterOptionsFrom(cfg), p.Log, p.Metrics, p.Health).Run(ctx)
	}()
	go func() {
		defer wg.Done()
		if err := sinks.Run(ctx, p, nil, sinks.Options{}); err != nil {
			t.Errorf("sinks: %v", err)
		}
	}()

	pub := pipeline.NewPublisher(p.JS, cfg.Levels, 1024, p.Metrics)
	counts, err := ingest.File(ctx, bytes.NewReader(lines.Bytes()), pub, p.JS, func(r ingest.Rejection) { t.Errorf("line %d: %v", r.Line, r.Err) })
	pub.Close(ctx)
	if err != nil || counts.Published != n {
		t.Fatalf("published %+v, %v", counts, err)
	}

	// Connections are refused until the sink has retried twice.
	retried := func() int {
		var m dto.Metric
		p.Metrics.Retried.WithLabelValues("sink:siem").Write(&m)
		return int(m.GetCounter().GetValue())
	}
	pipelinetest.WaitFor(t, 15*time.Second, "the sink retries refused connections", func() bool { return retried() >= 2 })
	ln, err := port.Listen()
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(rc)
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	defer srv.Close()

	dlq := func() map[string]string {
		out := map[string]string{}
		for _, d := range sinktest.DeadLetters(t, p.JS, cfg.Streams.DLQ, "siem") {
			id := schema.StalwartNativeID(d.EventID)
			if _, dup := out[id]; dup {
				t.Errorf("event %s dead-lettered twice", id)
			}
			out[id] = d.Reason
		}
		return out
	}
	pipelinetest.WaitFor(t, 30*time.Second, "every event delivered or dead-lettered", func() bool {
		rc.mu.Lock()
		done := len(rc.delivered)
		rc.mu.Unlock()
		return done+len(dlq()) >= len(want)
	})
	// Nothing more can arrive once the sink's consumer has acked everything.
	pipelinetest.WaitFor(t, 15*time.Second, "the sink's consumer acks everything", func() bool {
		return pipelinetest.Settled(ctx, p.JS, cfg.Streams.RoutedStream("siem"), pipeline.SinkConsumerName("siem")) == nil
	})
	cancel()
	wg.Wait()

	dead := dlq()
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for id, c := range rc.delivered {
		switch {
		case !want[id]:
			t.Errorf("event %s delivered, but the webhook should not get it", id)
		case c != 1:
			t.Errorf("event %s delivered %d times", id, c)
		case dead[id] != "":
			t.Errorf("event %s delivered and dead-lettered", id)
		}
	}
	for id, reason := range dead {
		if !want[id] {
			t.Errorf("event %s dead-lettered, but the webhook should not get it", id)
		}
		if !rc.rejected[id] {
			t.Errorf("event %s dead-lettered although the receiver never refused it: %s", id, reason)
		}
		if !strings.Contains(reason, "400") || !strings.Contains(reason, "rejected by policy") {
			t.Errorf("event %s dead-lettered with reason %q, want the receiver's 400 answer", id, reason)
		}
	}
	lost := 0
	for id := range want {
		if rc.delivered[id] == 0 && dead[id] == "" {
			lost++
			if lost <= 10 {
				t.Errorf("event %s neither delivered nor dead-lettered", id)
			}
		}
	}
	for id := range marked {
		if dead[id] == "" {
			t.Errorf("marked event %s is not in the DLQ", id)
		}
	}
	if rc.badSig > 0 {
		t.Errorf("%d requests had a bad X-Signature", rc.badSig)
	}
	for status, what := range map[int]string{500: "500", 0: "unanswered", 429: "429", 400: "400", 200: "200"} {
		if rc.answers[status] == 0 {
			t.Errorf("the receiver gave no %s answer; the test did not exercise it", what)
		}
	}
	if rc.early > 0 {
		t.Errorf("%d requests came within a second of the 429 with Retry-After: 1", rc.early)
	}
	t.Logf("%d events published, %d for the webhook: %d delivered once, %d dead-lettered (%d marked); answers %v; %d retries",
		n, len(want), len(rc.delivered), len(dead), len(marked), rc.answers, retried())
}
