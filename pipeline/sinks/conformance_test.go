package sinks_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mailtel/mailtel/pipeline/config"
	"github.com/mailtel/mailtel/pipeline/sink"
	"github.com/mailtel/mailtel/pipeline/sinks"
	"github.com/mailtel/mailtel/pipeline/sinks/metrics"
	"github.com/mailtel/mailtel/pipeline/sinks/webhook"
	"github.com/mailtel/mailtel/pipeline/sinktest"
	"github.com/mailtel/mailtel/schema"
)

// TestConformance runs the sink conformance suite against every kind of
// sink, each built by sinks.Build from its configuration.
func TestConformance(t *testing.T) {
	t.Run("tracer_json", func(t *testing.T) { sinktest.Run(t, tracerHarness("json")) })
	t.Run("tracer_text", func(t *testing.T) { sinktest.Run(t, tracerHarness("text")) })
	t.Run("webhook", func(t *testing.T) { sinktest.Run(t, webhookHarness) })
	t.Run("metrics", func(t *testing.T) { sinktest.Run(t, metricsHarness) })
}

func build(t *testing.T, spec config.SinkSpec, o sinks.Options) sink.Sink {
	t.Helper()
	s, err := sinks.Build(spec, o)
	if err != nil {
		t.Fatalf("build sink %s: %v", spec.Name, err)
	}
	return s
}

// tracerHarness is a log tracer writing to a temporary directory. Written
// reads the log files back: the "id" of each JSON line, or the
// sinktest.FieldID field of each text line (Stalwart's line has no id).
// Root ignores file permissions, so the tracer's destination cannot be made
// to fail for real here: Fail is nil. A log tracer is idempotent across
// restarts, so Replay closes the sink and opens a new one on the same
// directory.
func tracerHarness(format string) sinktest.Factory {
	return func(t *testing.T) *sinktest.Harness {
		dir := t.TempDir()
		spec := config.SinkSpec{Name: sinktest.DefaultName, Kind: config.KindLog,
			Tracer: &config.Tracer{Type: config.KindLog, Path: dir, Prefix: "conf", Format: format}}
		h := &sinktest.Harness{Sink: build(t, spec, sinks.Options{})}
		h.Written = func(t *testing.T) map[string]int { return readTracer(t, dir, format) }
		h.Replay = func(t *testing.T) sink.Sink {
			if err := h.Sink.Close(context.Background()); err != nil {
				t.Fatalf("close tracer: %v", err)
			}
			return build(t, spec, sinks.Options{})
		}
		return h
	}
}

var textID = regexp.MustCompile(sinktest.FieldID + ` = "([^"]*)"`)

func readTracer(t *testing.T, dir, format string) map[string]int {
	t.Helper()
	got := map[string]int{}
	files, err := filepath.Glob(filepath.Join(dir, "conf.*"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatalf("read log: %v", err)
		}
		sc := bufio.NewScanner(bytes.NewReader(data))
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			line := sc.Bytes()
			if format == "json" {
				var rec struct{ ID string }
				if err := json.Unmarshal(line, &rec); err != nil || rec.ID == "" {
					t.Fatalf("%s: line %q is not a JSON event with an id: %v", f, line, err)
				}
				got[rec.ID]++
				continue
			}
			m := textID.FindSubmatch(line)
			if m == nil {
				t.Fatalf("%s: line %q has no %s field", f, line, sinktest.FieldID)
			}
			got[string(m[1])]++
		}
	}
	return got
}

// receiver is a webhook receiver on 127.0.0.1 that checks X-Signature and
// answers as its mode says: 200 (counting the events it got); 500s and 429s,
// and once a hang past the sink's timeout; or 400.
type receiver struct {
	key []byte

	mu     sync.Mutex
	mode   sinktest.FailMode
	fails  int
	got    map[string]int // event id -> times delivered (answered 200)
	badSig int
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	rc.mu.Lock()
	if r.Header.Get("X-Signature") != webhook.Sign(rc.key, body) {
		rc.badSig++
		rc.mu.Unlock()
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	mode := rc.mode
	n := rc.fails
	if mode != sinktest.FailNone {
		rc.fails++
	}
	rc.mu.Unlock()
	switch mode {
	case sinktest.FailRetryable:
		switch {
		case n == 2: // once: hang until the sink gives up on the request
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
		case n%2 == 0:
			http.Error(w, "down for maintenance", http.StatusInternalServerError)
		default:
			http.Error(w, "slow down", http.StatusTooManyRequests)
		}
		return
	case sinktest.FailPermanent:
		http.Error(w, "rejected: bad event", http.StatusBadRequest)
		return
	}
	var req struct {
		Events []struct{ ID string } `json:"events"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	rc.mu.Lock()
	for _, e := range req.Events {
		rc.got[schema.StalwartNativeID(e.ID)]++
	}
	rc.mu.Unlock()
}

// webhookHarness is a webhook sink posting in chunks of 4 to a receiver
// that can be told to fail. Its timeout is generous (2s): a request
// answered after the timeout is retried and, the receiver having taken it,
// delivered twice, which a loaded machine must not cause. The webhook does
// not promise idempotency across batches, so Replay is nil.
func webhookHarness(t *testing.T) *sinktest.Harness {
	rc := &receiver{key: []byte("conformance-key"), got: map[string]int{}}
	srv := httptest.NewServer(rc)
	t.Cleanup(srv.Close)
	spec := config.SinkSpec{Name: sinktest.DefaultName, Kind: config.KindWebhook, Webhook: &config.Webhook{
		URL: srv.URL + "/events", SignatureKey: string(rc.key), Timeout: config.Duration(2 * time.Second),
		BatchSize: 4, Concurrency: 2}}
	return &sinktest.Harness{
		Sink: build(t, spec, sinks.Options{}),
		Written: func(t *testing.T) map[string]int {
			rc.mu.Lock()
			defer rc.mu.Unlock()
			if rc.badSig > 0 {
				t.Errorf("%d requests with a bad X-Signature", rc.badSig)
			}
			return maps.Clone(rc.got)
		},
		Fail: func(m sinktest.FailMode) { rc.mu.Lock(); rc.mode = m; rc.mu.Unlock() },
	}
}

// metricsHarness is the metrics sink with its own registry. Written reads
// mailtel_events_total back from the registry, per event type (the suite's
// events have distinct types). Counting cannot fail: Fail is nil. The sink
// is idempotent for redeliveries to the same instance, so Replay returns
// the same sink.
func metricsHarness(t *testing.T) *sinktest.Harness {
	reg := prometheus.NewRegistry()
	spec := config.SinkSpec{Name: sinktest.DefaultName, Kind: config.KindMetrics, Metrics: &config.Metrics{}}
	h := &sinktest.Harness{Sink: build(t, spec, sinks.Options{Registry: reg}),
		Key: func(ev *schema.Event) string { return ev.Type }}
	h.Written = func(t *testing.T) map[string]int {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatalf("gather: %v", err)
		}
		got := map[string]int{}
		for _, mf := range mfs {
			if mf.GetName() != metrics.EventsTotal {
				continue
			}
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "type" {
						got[l.GetValue()] += int(m.GetCounter().GetValue())
					}
				}
			}
		}
		return got
	}
	h.Replay = func(*testing.T) sink.Sink { return h.Sink }
	return h
}
