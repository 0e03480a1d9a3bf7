package sinks_test

import (
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/plog/plogotlp"

	"github.com/mailtel/mailtel/pipeline/sinks"
	"github.com/mailtel/mailtel/pipeline/sinks/otel"
	"github.com/mailtel/mailtel/pipeline/sinktest"
)

// otlpReceiver is an OTLP/HTTP logs receiver on 127.0.0.1 that decodes
// each request as a collector does and answers as its mode says: 200
// (counting the records by event.id); 503s and 429s, and once a hang past
// the sink's timeout; or 400.
type otlpReceiver struct {
	mu    sync.Mutex
	mode  sinktest.FailMode
	fails int
	got   map[string]int
}

func (rc *otlpReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	req := plogotlp.NewExportRequest()
	if r.URL.Path != "/v1/logs" || r.Header.Get("Content-Type") != "application/x-protobuf" || req.UnmarshalProto(body) != nil {
		http.Error(w, "not an OTLP logs request", http.StatusBadRequest)
		return
	}
	rc.mu.Lock()
	mode, n := rc.mode, rc.fails
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
			w.Header().Set("Retry-After", "0")
			http.Error(w, "overloaded", http.StatusServiceUnavailable)
		default:
			http.Error(w, "slow down", http.StatusTooManyRequests)
		}
		return
	case sinktest.FailPermanent:
		http.Error(w, "rejected: bad record", http.StatusBadRequest)
		return
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rls := req.Logs().ResourceLogs()
	for i := 0; i < rls.Len(); i++ {
		sls := rls.At(i).ScopeLogs()
		for j := 0; j < sls.Len(); j++ {
			lrs := sls.At(j).LogRecords()
			for k := 0; k < lrs.Len(); k++ {
				id, _ := lrs.At(k).Attributes().Get(otel.AttrEventID)
				rc.got[id.Str()]++
			}
		}
	}
	w.Header().Set("Content-Type", "application/x-protobuf")
}

// otelHarness is an OpenTelemetry sink exporting in chunks of 4 to a
// receiver that can be told to fail. Its timeout is generous (2s), as the
// webhook's: a request answered after the timeout is retried and, the
// receiver having taken it, delivered twice. OTLP promises no idempotency
// across requests, so Replay is nil.
func otelHarness(t *testing.T) *sinktest.Harness {
	rc := &otlpReceiver{got: map[string]int{}}
	srv := httptest.NewServer(rc)
	t.Cleanup(srv.Close)
	s := build(t, specFrom(t, fmt.Sprintf("[tracer.%s]\ntype = \"open-telemetry\"\nendpoint = %q\ntimeout = \"2s\"\nthrottle = 0\nbatch-size = 4\nconcurrency = 2\n",
		sinktest.DefaultName, srv.URL+"/v1/logs")), sinks.Options{})
	return &sinktest.Harness{
		Sink: s,
		Written: func(t *testing.T) map[string]int {
			rc.mu.Lock()
			defer rc.mu.Unlock()
			return maps.Clone(rc.got)
		},
		Fail: func(m sinktest.FailMode) { rc.mu.Lock(); rc.mode = m; rc.mu.Unlock() },
	}
}
