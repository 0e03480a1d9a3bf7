package sinks_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
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
	"github.com/mailtel/mailtel/pipeline/pipelinetest"
	"github.com/mailtel/mailtel/pipeline/sink"
	"github.com/mailtel/mailtel/pipeline/sinks"
	"github.com/mailtel/mailtel/pipeline/sinks/metrics"
	"github.com/mailtel/mailtel/pipeline/sinks/webhook"
	"github.com/mailtel/mailtel/pipeline/sinktest"
	"github.com/mailtel/mailtel/schema"
)

// TestConformance runs the sink conformance suite against every kind the
// registry holds, each sink built as a process builds it: from a section
// of a configuration file, through config.Parse and sinks.Build. A kind
// registered without a harness here fails the test.
func TestConformance(t *testing.T) {
	harnesses := map[string]map[string]sinktest.Factory{
		"log":            {"json": tracerHarness("json"), "text": tracerHarness("text")},
		"console":        {"text": consoleHarness("console")},
		"stdout":         {"json": consoleHarness("stdout")},
		"webhook":        {"": webhookHarness},
		"metrics":        {"": metricsHarness},
		"open-telemetry": {"": otelHarness},
	}
	for _, f := range sink.Factories() {
		hs, ok := harnesses[f.Kind]
		if !ok {
			t.Errorf("sink kind %s (section %s) has no conformance harness: add one here", f.Kind, f.Section)
			continue
		}
		for variant, h := range hs {
			name := f.Kind
			if variant != "" {
				name += "_" + variant
			}
			t.Run(name, func(t *testing.T) { sinktest.Run(t, h) })
		}
	}
}

// specFrom parses doc, a configuration with one sink section, and returns
// that sink's spec.
func specFrom(t *testing.T, doc string) config.SinkSpec {
	t.Helper()
	c, err := config.Parse([]byte(doc))
	if err != nil {
		t.Fatalf("parse %q: %v", doc, err)
	}
	specs := c.SinkSpecs()
	if len(specs) != 1 {
		t.Fatalf("parse %q: %d sinks, want 1", doc, len(specs))
	}
	return specs[0]
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
		spec := specFrom(t, fmt.Sprintf("[tracer.%s]\ntype = \"log\"\npath = %q\nprefix = \"conf\"\nformat = %q\n", sinktest.DefaultName, dir, format))
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
		for id, n := range readLines(t, data, format) {
			got[id] += n
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
	spec := specFrom(t, fmt.Sprintf("[webhook.%s]\nurl = %q\nevents = [\"*\"]\nsignature-key = %q\ntimeout = \"2s\"\nbatch-size = 4\nconcurrency = 2\n",
		sinktest.DefaultName, srv.URL+"/events", rc.key))
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
	spec := specFrom(t, "[metrics.prometheus]\nenable = true\n")
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

// consoleHarness is a console or stdout tracer (typ) writing to a buffer
// in its default format (text for console) or JSON (stdout, as set here).
// Written reads the lines back. Writing to a buffer cannot fail: Fail is
// nil. A console tracer remembers the ids it printed recently, so Replay
// returns the same sink.
func consoleHarness(typ string) sinktest.Factory {
	return func(t *testing.T) *sinktest.Harness {
		var out pipelinetest.SyncBuffer
		doc := fmt.Sprintf("[tracer.%s]\ntype = %q\n", sinktest.DefaultName, typ)
		format := "text"
		if typ == "stdout" {
			doc += "format = \"json\"\n"
			format = "json"
		}
		h := &sinktest.Harness{Sink: build(t, specFrom(t, doc), sinks.Options{Stdout: &out})}
		h.Written = func(t *testing.T) map[string]int { return readLines(t, []byte(out.String()), format) }
		h.Replay = func(*testing.T) sink.Sink { return h.Sink }
		return h
	}
}

// readLines counts the event ids of JSON lines (their "id") or text lines
// (their sinktest.FieldID field; Stalwart's line has no id).
func readLines(t *testing.T, data []byte, format string) map[string]int {
	t.Helper()
	got := map[string]int{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if format == "json" {
			var rec struct{ ID string }
			if err := json.Unmarshal(line, &rec); err != nil || rec.ID == "" {
				t.Fatalf("line %q is not a JSON event with an id: %v", line, err)
			}
			got[rec.ID]++
			continue
		}
		m := textID.FindSubmatch(line)
		if m == nil {
			t.Fatalf("line %q has no %s field", line, sinktest.FieldID)
		}
		got[string(m[1])]++
	}
	return got
}
