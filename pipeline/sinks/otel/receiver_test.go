package otel_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"

	"github.com/mailtel/mailtel/pipeline/sinks/otel"
)

// answer is what the receiver replies to one request.
type answer struct {
	status      int
	header      map[string]string
	body        []byte // sent as is; nil with status 2xx means an empty ExportLogsServiceResponse
	contentType string
	delay       time.Duration
	// rejected and message make a 2xx answer a partial success.
	rejected int64
	message  string
}

// request is what the receiver saw of one request.
type request struct {
	Method, Path, ContentType, Host string
	Header                          http.Header
	Records                         int
}

// receiver is an OTLP/HTTP logs receiver on 127.0.0.1. It decodes every
// request as a collector does (plogotlp.ExportRequest.UnmarshalProto); the
// records of requests answered 2xx without a partial success count as
// received, by their event.id attribute.
type receiver struct {
	srv *httptest.Server

	mu       sync.Mutex
	requests []request
	received map[string]int // event.id -> times received
	logs     []plog.Logs    // what was received, in order
	// answer decides the reply to request n (from 0); nil means 200.
	answer func(n int) answer

	inFlight, maxInFlight atomic.Int32
}

func newReceiver(t *testing.T, fn func(n int) answer) *receiver {
	t.Helper()
	r := &receiver{received: map[string]int{}, answer: fn}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

// URL is the receiver's logs endpoint.
func (r *receiver) URL() string { return r.srv.URL + "/v1/logs" }

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	n := r.inFlight.Add(1)
	defer r.inFlight.Add(-1)
	for {
		m := r.maxInFlight.Load()
		if n <= m || r.maxInFlight.CompareAndSwap(m, n) {
			break
		}
	}
	body, err := io.ReadAll(req.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	er := plogotlp.NewExportRequest()
	if err := er.UnmarshalProto(body); err != nil {
		http.Error(w, "decode: "+err.Error(), http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	i := len(r.requests)
	r.requests = append(r.requests, request{Method: req.Method, Path: req.URL.Path, Host: req.Host,
		ContentType: req.Header.Get("Content-Type"), Header: req.Header.Clone(), Records: er.Logs().LogRecordCount()})
	r.mu.Unlock()
	a := answer{status: http.StatusOK}
	if r.answer != nil {
		a = r.answer(i)
	}
	if a.delay > 0 {
		select {
		case <-time.After(a.delay):
		case <-req.Context().Done():
			return
		}
	}
	for k, v := range a.header {
		w.Header().Set(k, v)
	}
	body = a.body
	if a.status/100 == 2 && body == nil {
		resp := plogotlp.NewExportResponse()
		if a.rejected > 0 || a.message != "" {
			resp.PartialSuccess().SetRejectedLogRecords(a.rejected)
			resp.PartialSuccess().SetErrorMessage(a.message)
		}
		body, _ = resp.MarshalProto()
		a.contentType = "application/x-protobuf"
	}
	if a.contentType != "" {
		w.Header().Set("Content-Type", a.contentType)
	}
	w.WriteHeader(a.status)
	w.Write(body)
	if a.status/100 != 2 || a.rejected > 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.logs = append(r.logs, er.Logs())
	rls := er.Logs().ResourceLogs()
	for i := 0; i < rls.Len(); i++ {
		sls := rls.At(i).ScopeLogs()
		for j := 0; j < sls.Len(); j++ {
			lrs := sls.At(j).LogRecords()
			for k := 0; k < lrs.Len(); k++ {
				id, _ := lrs.At(k).Attributes().Get(otel.AttrEventID)
				r.received[id.Str()]++
			}
		}
	}
}

func (r *receiver) snapshot() ([]request, map[string]int, []plog.Logs) {
	r.mu.Lock()
	defer r.mu.Unlock()
	got := make(map[string]int, len(r.received))
	for k, v := range r.received {
		got[k] = v
	}
	return append([]request(nil), r.requests...), got, append([]plog.Logs(nil), r.logs...)
}
