package otel_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/mailtel/mailtel/catalog"
	"github.com/mailtel/mailtel/pipeline/config/value"
	"github.com/mailtel/mailtel/pipeline/delivery"
	"github.com/mailtel/mailtel/pipeline/sink"
	"github.com/mailtel/mailtel/pipeline/sinks/otel"
	"github.com/mailtel/mailtel/pipeline/synth"
	"github.com/mailtel/mailtel/schema"
)

// httpConfig is a valid configuration sending to endpoint without
// throttling.
func httpConfig(endpoint string) otel.Config {
	c := *otel.DefaultConfig()
	c.Endpoint = endpoint
	c.Throttle = 0
	return c
}

func newSink(t *testing.T, c otel.Config, o otel.Options) *otel.Sink {
	t.Helper()
	s, err := otel.New("test", c, o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	return s
}

// synthetic returns n events of synth's stream (seed 1). Every tenth
// event also carries fields of the kinds synth does not make (int, bool,
// float, bytes, a repeated key), so that they cross the wire in bulk too.
func synthetic(n int) []*schema.Event {
	g := synth.New(synth.Options{Seed: 1, Start: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)})
	out := make([]*schema.Event, n)
	for i := range out {
		ev := new(schema.Event)
		g.Next(ev)
		if i%10 == 0 {
			ev.Fields = append(ev.Fields,
				schema.Field{Key: "code", Value: schema.Int(-int64(i))},
				schema.Field{Key: "tls", Value: schema.Bool(i%20 == 0)},
				schema.Field{Key: "score", Value: schema.Float(float64(i) / 4)},
				schema.Field{Key: "raw", Value: schema.Bytes([]byte{0, 1, byte(i)})},
				schema.Field{Key: "rcpt", Value: schema.String("a@example.org")},
				schema.Field{Key: "rcpt", Value: schema.String("b@example.org")},
			)
		}
		out[i] = ev
	}
	return out
}

// TestTenThousandEvents writes 10,000 synthetic events through the
// runtime's retry policy (so that sink.Delivered is live) to a real
// OTLP/HTTP receiver: each arrives exactly once, as the mapping says.
func TestTenThousandEvents(t *testing.T) {
	rc := newReceiver(t, nil)
	c := httpConfig(rc.URL())
	s := newSink(t, c, otel.Options{})
	events := synthetic(10000)

	written := make([]int, len(events))
	start := time.Now()
	out := delivery.Policy{}.Do(context.Background(), events, s.Write, delivery.Hooks{
		Written: func(idx []int) {
			for _, i := range idx {
				written[i]++
			}
		},
	})
	elapsed := time.Since(start)
	if out.Attempts != 1 || len(out.Rejected) > 0 || len(out.Unwritten) > 0 {
		t.Fatalf("outcome %+v", out)
	}
	for i, n := range written {
		if n != 1 {
			t.Fatalf("event %d reported written %d times", i, n)
		}
	}
	reqs, got, logs := rc.snapshot()
	if len(reqs) != 20 {
		t.Errorf("%d requests, want 20 of %d events", len(reqs), c.BatchSize)
	}
	for _, r := range reqs {
		if r.Method != http.MethodPost || r.Path != "/v1/logs" || r.ContentType != "application/x-protobuf" || r.Records != 500 {
			t.Fatalf("request %+v", r)
		}
		if ua := r.Header.Get("User-Agent"); ua != "mailtel" {
			t.Errorf("User-Agent %q", ua)
		}
	}
	if m := rc.maxInFlight.Load(); m > int32(c.Concurrency) {
		t.Errorf("%d requests in flight at once, concurrency is %d", m, c.Concurrency)
	}
	byID := make(map[string]*schema.Event, len(events))
	for _, ev := range events {
		byID[ev.ID] = ev
		if got[ev.ID] != 1 {
			t.Fatalf("event %s received %d times", ev.ID, got[ev.ID])
		}
	}
	if len(got) != len(events) {
		t.Fatalf("received %d distinct events, want %d", len(got), len(events))
	}
	seen := map[pcommon.ValueType]int{}
	for _, ld := range logs {
		eachRecord(ld, func(res pcommon.Map, scope string, lr plog.LogRecord) {
			id, _ := lr.Attributes().Get(otel.AttrEventID)
			ev := byID[id.Str()]
			checkRecord(t, ev, res, scope, lr)
			lr.Attributes().Range(func(_ string, v pcommon.Value) bool {
				seen[v.Type()]++
				return true
			})
		})
	}
	for _, typ := range []pcommon.ValueType{pcommon.ValueTypeStr, pcommon.ValueTypeInt, pcommon.ValueTypeDouble, pcommon.ValueTypeBool,
		pcommon.ValueTypeSlice, pcommon.ValueTypeMap, pcommon.ValueTypeBytes} {
		if seen[typ] == 0 {
			t.Errorf("no attribute of type %s crossed the wire", typ)
		}
	}
	t.Logf("10000 events in %d requests in %s (%.0f events/s); attribute types seen: %v", len(reqs), elapsed.Round(time.Millisecond),
		float64(len(events))/elapsed.Seconds(), seen)
}

func eachRecord(ld plog.Logs, f func(res pcommon.Map, scope string, lr plog.LogRecord)) {
	rls := ld.ResourceLogs()
	for i := 0; i < rls.Len(); i++ {
		sls := rls.At(i).ScopeLogs()
		for j := 0; j < sls.Len(); j++ {
			lrs := sls.At(j).LogRecords()
			for k := 0; k < lrs.Len(); k++ {
				f(rls.At(i).Resource().Attributes(), sls.At(j).Scope().Name(), lrs.At(k))
			}
		}
	}
}

var severities = map[catalog.Level]struct {
	num  plog.SeverityNumber
	text string
}{
	catalog.LevelTrace: {1, "TRACE"}, catalog.LevelDebug: {5, "DEBUG"}, catalog.LevelInfo: {9, "INFO"},
	catalog.LevelWarn: {13, "WARN"}, catalog.LevelError: {17, "ERROR"},
}

// checkRecord checks one received record against the event it came from.
func checkRecord(t *testing.T, ev *schema.Event, res pcommon.Map, scope string, lr plog.LogRecord) {
	t.Helper()
	if ev == nil {
		t.Fatalf("a record with an unknown event.id")
	}
	wantService := map[string]string{"stalwart": "stalwart-mail", "dovecot": "dovecot"}[ev.Server]
	if v, _ := res.Get("service.name"); v.Str() != wantService {
		t.Fatalf("%s: service.name %q, want %q", ev.ID, v.Str(), wantService)
	}
	if v, _ := res.Get("host.name"); v.Str() != ev.Host || ev.Host == "" {
		t.Fatalf("%s: host.name %q, want %q", ev.ID, v.Str(), ev.Host)
	}
	if scope != "mailtel" {
		t.Fatalf("scope %q", scope)
	}
	if lr.EventName() != ev.Type {
		t.Fatalf("%s: event name %q, want %q", ev.ID, lr.EventName(), ev.Type)
	}
	sev := severities[ev.Level]
	if lr.SeverityNumber() != sev.num || lr.SeverityText() != sev.text {
		t.Fatalf("%s: severity %d %q for level %s", ev.ID, lr.SeverityNumber(), lr.SeverityText(), ev.Level)
	}
	if !lr.Timestamp().AsTime().Equal(ev.Time) {
		t.Fatalf("%s: time %s, want %s", ev.ID, lr.Timestamp().AsTime(), ev.Time)
	}
	if lr.ObservedTimestamp() == 0 {
		t.Fatalf("%s: no observed time", ev.ID)
	}
	typ, ok := catalog.Lookup(ev.Type)
	if !ok || lr.Body().Str() != typ.Description {
		t.Fatalf("%s: body %q, want the catalog's description of %s", ev.ID, lr.Body().Str(), ev.Type)
	}
	checkAttrs(t, ev.ID, lr.Attributes(), ev.Fields, true)
}

// checkAttrs checks that m holds exactly fields (and event.id when top).
func checkAttrs(t *testing.T, id string, m pcommon.Map, fields []schema.Field, top bool) {
	t.Helper()
	want := map[string][]schema.Value{}
	var order []string
	for _, f := range fields {
		if want[f.Key] == nil {
			order = append(order, f.Key)
		}
		want[f.Key] = append(want[f.Key], f.Value)
	}
	n := len(order)
	if top {
		n++
		if v, _ := m.Get(otel.AttrEventID); v.Str() != id {
			t.Fatalf("event.id %q, want %q", v.Str(), id)
		}
	}
	if m.Len() != n {
		t.Fatalf("%s: %d attributes, want %d (%v)", id, m.Len(), n, m.AsRaw())
	}
	for _, k := range order {
		got, ok := m.Get(k)
		if !ok {
			t.Fatalf("%s: no attribute %q", id, k)
		}
		vs := want[k]
		if len(vs) == 1 {
			checkValue(t, id+"."+k, got, vs[0])
			continue
		}
		if got.Type() != pcommon.ValueTypeSlice || got.Slice().Len() != len(vs) {
			t.Fatalf("%s.%s: repeated key: got %s %v, want a list of %d", id, k, got.Type(), got.AsRaw(), len(vs))
		}
		for i, v := range vs {
			checkValue(t, fmt.Sprintf("%s.%s[%d]", id, k, i), got.Slice().At(i), v)
		}
	}
}

// checkValue checks one attribute value against the mapping of the
// package documentation.
func checkValue(t *testing.T, path string, got pcommon.Value, v schema.Value) {
	t.Helper()
	fail := func(want any) {
		t.Fatalf("%s: got %s %v, want %v (from %s)", path, got.Type(), got.AsRaw(), want, v.Kind())
	}
	switch v.Kind() {
	case schema.KindString:
		if got.Type() != pcommon.ValueTypeStr || got.Str() != v.Str() {
			fail(v.Str())
		}
	case schema.KindInt:
		if got.Type() != pcommon.ValueTypeInt || got.Int() != v.Int() {
			fail(v.Int())
		}
	case schema.KindUint:
		if got.Type() != pcommon.ValueTypeInt || uint64(got.Int()) != v.Uint() {
			fail(v.Uint())
		}
	case schema.KindFloat:
		if got.Type() != pcommon.ValueTypeDouble || got.Double() != v.Float() {
			fail(v.Float())
		}
	case schema.KindBool:
		if got.Type() != pcommon.ValueTypeBool || got.Bool() != v.Bool() {
			fail(v.Bool())
		}
	case schema.KindTime:
		if got.Type() != pcommon.ValueTypeStr || got.Str() != v.Time().Format(time.RFC3339Nano) {
			fail(v.Time())
		}
	case schema.KindDuration:
		if got.Type() != pcommon.ValueTypeInt || got.Int() != v.Duration().Milliseconds() {
			fail(v.Duration())
		}
	case schema.KindIP:
		if got.Type() != pcommon.ValueTypeStr || got.Str() != v.IP().String() {
			fail(v.IP())
		}
	case schema.KindBytes:
		if got.Type() != pcommon.ValueTypeBytes || !bytes.Equal(got.Bytes().AsRaw(), v.BytesValue()) {
			fail(v.BytesValue())
		}
	case schema.KindList:
		if got.Type() != pcommon.ValueTypeSlice || got.Slice().Len() != len(v.List()) {
			fail(v.List())
		}
		for i, e := range v.List() {
			checkValue(t, fmt.Sprintf("%s[%d]", path, i), got.Slice().At(i), e)
		}
	case schema.KindEvent:
		if got.Type() != pcommon.ValueTypeMap {
			fail("a map")
		}
		m := got.Map()
		if name, _ := m.Get("eventName"); name.Str() != v.Event().Type {
			fail(v.Event().Type)
		}
		m.Remove("eventName")
		checkAttrs(t, path, m, v.Event().Fields, false)
	default:
		t.Fatalf("%s: unexpected kind %s", path, v.Kind())
	}
}

func testEvents(tag string, n int) []*schema.Event {
	out := make([]*schema.Event, n)
	for i := range out {
		out[i] = &schema.Event{ID: fmt.Sprintf("%s-%d", tag, i), Type: "auth.success", Level: catalog.LevelInfo,
			Time: time.Date(2026, 3, 1, 12, 0, i, 0, time.UTC), Server: "stalwart", Host: "mx1.example.com",
			Fields: []schema.Field{{Key: "accountName", Value: schema.String("john")}}}
	}
	return out
}

func eventIDs(evs []*schema.Event) []string {
	out := make([]string, len(evs))
	for i, ev := range evs {
		out[i] = ev.ID
	}
	return out
}

// TestStatuses: 408, 425, 429 and 5xx are retried (the webhook's rule,
// not OTLP's: see the package documentation), every other status is
// permanent and names the events of the refused request.
func TestStatuses(t *testing.T) {
	for _, tc := range []struct {
		status    int
		retryable bool
	}{
		{400, false}, {401, false}, {403, false}, {404, false}, {413, false},
		{408, true}, {425, true}, {429, true}, {500, true}, {501, true}, {502, true}, {503, true}, {504, true}, {505, true},
	} {
		t.Run(fmt.Sprint(tc.status), func(t *testing.T) {
			rc := newReceiver(t, func(int) answer {
				return answer{status: tc.status, body: []byte("no"), contentType: "text/plain"}
			})
			s := newSink(t, httpConfig(rc.URL()), otel.Options{})
			evs := testEvents("st", 3)
			err := s.Write(context.Background(), evs)
			if err == nil {
				t.Fatal("no error")
			}
			if sink.IsPermanent(err) == tc.retryable {
				t.Fatalf("permanent=%v, want %v: %v", sink.IsPermanent(err), !tc.retryable, err)
			}
			var ee *otel.ExportError
			if !errors.As(err, &ee) || ee.StatusCode != tc.status || ee.Retryable != tc.retryable {
				t.Fatalf("error %v: want an ExportError with status %d", err, tc.status)
			}
			ids := sink.FailedEventIDs(err)
			if tc.retryable && ids != nil || !tc.retryable && !slices.Equal(ids, eventIDs(evs)) {
				t.Fatalf("failed ids %v", ids)
			}
			if !strings.Contains(err.Error(), fmt.Sprintf("answered %d", tc.status)) || !strings.Contains(err.Error(), ": no") {
				t.Fatalf("error %q does not say the status and the answer", err)
			}
		})
	}
}

// TestPermanentNamesOnlyItsRequest: with several requests in a batch, a
// permanent refusal of one names its events only; the others are
// delivered.
func TestPermanentNamesOnlyItsRequest(t *testing.T) {
	rc := newReceiver(t, func(n int) answer {
		if n == 1 {
			return answer{status: 400}
		}
		return answer{status: 200}
	})
	c := httpConfig(rc.URL())
	c.BatchSize, c.Concurrency = 2, 1
	s := newSink(t, c, otel.Options{})
	evs := testEvents("p", 6)
	out := delivery.Policy{}.Do(context.Background(), evs, s.Write, delivery.Hooks{})
	if !slices.Equal(out.Rejected, []int{2, 3}) {
		t.Fatalf("rejected %v, want [2 3]", out.Rejected)
	}
	_, got, _ := rc.snapshot()
	for i, ev := range evs {
		if want := map[bool]int{true: 0, false: 1}[i == 2 || i == 3]; got[ev.ID] != want {
			t.Errorf("%s received %d times, want %d", ev.ID, got[ev.ID], want)
		}
	}
}

// TestStatusMessage: the message of a google.rpc.Status answer, which
// OTLP/HTTP servers send, is what the error says.
func TestStatusMessage(t *testing.T) {
	st, _ := proto.Marshal(&spb.Status{Code: 3, Message: "log record 7: attribute too long"})
	rc := newReceiver(t, func(int) answer {
		return answer{status: 400, body: st, contentType: "application/x-protobuf"}
	})
	s := newSink(t, httpConfig(rc.URL()), otel.Options{})
	err := s.Write(context.Background(), testEvents("m", 1))
	if err == nil || !strings.HasSuffix(err.Error(), "answered 400 Bad Request: log record 7: attribute too long") {
		t.Fatalf("error %v", err)
	}
}

// TestBareEndpoint: the endpoint is used as is (as Stalwart does); a 404
// for one without a path says so.
func TestBareEndpoint(t *testing.T) {
	rc := newReceiver(t, func(int) answer { return answer{status: 404} })
	s := newSink(t, httpConfig(rc.srv.URL), otel.Options{})
	err := s.Write(context.Background(), testEvents("b", 1))
	reqs, _, _ := rc.snapshot()
	if len(reqs) != 1 || reqs[0].Path != "/" {
		t.Fatalf("requests %+v, want one to /", reqs)
	}
	if err == nil || !sink.IsPermanent(err) || !strings.Contains(err.Error(), "usually /v1/logs") {
		t.Fatalf("error %v", err)
	}
}

// TestRetryAfter: Retry-After, in seconds or as a date, reaches the
// runtime's wait; the longest of the failed requests wins.
func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name  string
		value func(n int) string
		want  time.Duration
	}{
		{"seconds", func(int) string { return "7" }, 7 * time.Second},
		{"date", func(int) string { return now.Add(90 * time.Second).Format(http.TimeFormat) }, 90 * time.Second},
		{"past date", func(int) string { return now.Add(-time.Hour).Format(http.TimeFormat) }, 0},
		{"longest", func(n int) string { return fmt.Sprint(3 + n) }, 4 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc := newReceiver(t, func(n int) answer {
				return answer{status: 503, header: map[string]string{"Retry-After": tc.value(n)}, delay: 50 * time.Millisecond}
			})
			c := httpConfig(rc.URL())
			c.BatchSize = 1
			s := newSink(t, c, otel.Options{Now: func() time.Time { return now }})
			err := s.Write(context.Background(), testEvents("ra", 2))
			if err == nil || sink.IsPermanent(err) {
				t.Fatalf("error %v, want a retryable one", err)
			}
			var ra sink.RetryAfter
			if tc.want == 0 {
				if errors.As(err, &ra) && ra.RetryAfter() != 0 {
					t.Fatalf("retry after %s, want none", ra.RetryAfter())
				}
				return
			}
			if !errors.As(err, &ra) || ra.RetryAfter() != tc.want {
				t.Fatalf("error %v: want retry after %s", err, tc.want)
			}
			if w := (delivery.Policy{}).Wait(1, err); w < tc.want {
				t.Fatalf("the policy waits %s, want at least %s", w, tc.want)
			}
		})
	}
}

// TestRetriedUntilDelivered: a collector that answers 503 twice and then
// accepts gets every event once, through the runtime's retry policy.
func TestRetriedUntilDelivered(t *testing.T) {
	rc := newReceiver(t, func(n int) answer {
		if n < 2 {
			return answer{status: 503, header: map[string]string{"Retry-After": "0"}}
		}
		return answer{status: 200}
	})
	c := httpConfig(rc.URL())
	c.BatchSize = 4
	s := newSink(t, c, otel.Options{})
	evs := testEvents("r", 10)
	out := delivery.Policy{Base: time.Millisecond, Max: 5 * time.Millisecond}.Do(context.Background(), evs, s.Write, delivery.Hooks{})
	if len(out.Rejected) > 0 || len(out.Unwritten) > 0 {
		t.Fatalf("outcome %+v", out)
	}
	_, got, _ := rc.snapshot()
	for _, ev := range evs {
		if got[ev.ID] != 1 {
			t.Errorf("%s received %d times", ev.ID, got[ev.ID])
		}
	}
}

// TestTimeout: a collector slower than timeout is a retryable failure,
// and Write returns within about the timeout.
func TestTimeout(t *testing.T) {
	rc := newReceiver(t, func(int) answer { return answer{status: 200, delay: 3 * time.Second} })
	c := httpConfig(rc.URL())
	c.Timeout = value.Duration(100 * time.Millisecond)
	s := newSink(t, c, otel.Options{})
	start := time.Now()
	err := s.Write(context.Background(), testEvents("to", 2))
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Write took %s with a 100ms timeout", d)
	}
	if err == nil || sink.IsPermanent(err) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error %v, want a retryable deadline exceeded", err)
	}
	if _, got, _ := rc.snapshot(); len(got) != 0 {
		t.Fatalf("received %v", got)
	}
}

// TestCancel: a cancelled context stops Write with a retryable error.
func TestCancel(t *testing.T) {
	rc := newReceiver(t, func(int) answer { return answer{status: 200, delay: 3 * time.Second} })
	s := newSink(t, httpConfig(rc.URL()), otel.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err := s.Write(ctx, testEvents("c", 2))
	if err == nil || sink.IsPermanent(err) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error %v", err)
	}
}

// TestPartialSuccess: a partial success that refuses some records counts
// the request as delivered, with a warning and the count; one that refuses
// every record is permanent for the events of the request.
func TestPartialSuccess(t *testing.T) {
	const secret = "pArt-s3cret-t0ken"
	t.Run("some", func(t *testing.T) {
		rc := newReceiver(t, func(int) answer {
			return answer{status: 200, rejected: 3, message: "3 records too old (token " + secret + ")"}
		})
		c := httpConfig(rc.URL())
		c.Headers = otel.Headers{"Authorization": "Bearer " + secret}
		var logBuf bytes.Buffer
		s := newSink(t, c, otel.Options{Log: zerolog.New(&logBuf)})
		evs := testEvents("ps", 10)
		written := 0
		out := delivery.Policy{}.Do(context.Background(), evs, s.Write, delivery.Hooks{Written: func(idx []int) { written += len(idx) }})
		if written != 10 || len(out.Rejected) > 0 {
			t.Fatalf("written %d, outcome %+v", written, out)
		}
		if s.Rejected() != 3 {
			t.Fatalf("Rejected() = %d, want 3", s.Rejected())
		}
		line := logBuf.String()
		if !strings.Contains(line, `"rejected":3`) || !strings.Contains(line, `"records":10`) || !strings.Contains(line, "too old") {
			t.Fatalf("warning %q", line)
		}
		if strings.Contains(line, secret) {
			t.Fatalf("the warning repeats a secret: %q", line)
		}
	})
	t.Run("all", func(t *testing.T) {
		rc := newReceiver(t, func(int) answer { return answer{status: 200, rejected: 10, message: "schema mismatch"} })
		s := newSink(t, httpConfig(rc.URL()), otel.Options{})
		evs := testEvents("pa", 10)
		err := s.Write(context.Background(), evs)
		if !sink.IsPermanent(err) || !slices.Equal(sink.FailedEventIDs(err), eventIDs(evs)) {
			t.Fatalf("error %v, ids %v", err, sink.FailedEventIDs(err))
		}
		if !strings.Contains(err.Error(), "rejected 10 of 10 records: schema mismatch") {
			t.Fatalf("error %q", err)
		}
	})
}

// TestSecretsNeverInErrors: the endpoint's password and query values and
// the header values reach the collector but no error: neither in the URL
// errors name, nor in an answer that repeats them, nor in a network error.
func TestSecretsNeverInErrors(t *testing.T) {
	const (
		pass   = "p4ss-w0rd-x"
		key    = "q-k3y-value"
		apiKey = "h34der-api-key"
		token  = "t0ken-abc-def"
	)
	var echo string
	rc := newReceiver(t, func(int) answer {
		return answer{status: 401, body: []byte(echo), contentType: "text/plain"}
	})
	u, _ := url.Parse(rc.URL())
	u.User = url.UserPassword("otel", pass)
	u.RawQuery = "api_key=" + key
	endpoint := u.String()
	c := httpConfig(endpoint)
	c.Headers = otel.Headers{"X-Api-Key": apiKey, "Authorization": "Bearer " + token}
	s := newSink(t, c, otel.Options{})
	secrets := []string{pass, key, apiKey, token, base64.StdEncoding.EncodeToString([]byte("otel:" + pass))}

	check := func(what string, err error) {
		t.Helper()
		if err == nil {
			t.Fatalf("%s: no error", what)
		}
		for _, sec := range secrets {
			if strings.Contains(err.Error(), sec) {
				t.Fatalf("%s: error repeats a secret: %v", what, err)
			}
		}
		if !strings.Contains(err.Error(), value.RedactURL(endpoint)) {
			t.Fatalf("%s: error %q does not name the endpoint as value.RedactURL shows it (%s)", what, err, value.RedactURL(endpoint))
		}
	}
	// The collector repeats everything it got.
	err := s.Write(context.Background(), testEvents("s", 1))
	reqs, _, _ := rc.snapshot()
	h := reqs[0].Header
	echo = fmt.Sprintf("bad credentials: %s %s %s url=%s", h.Get("Authorization"), h.Get("X-Api-Key"), pass, endpoint)
	if h.Get("X-Api-Key") != apiKey || h.Get("Authorization") != "Bearer "+token {
		t.Fatalf("headers not sent: %v", h)
	}
	check("plain 401", err)
	err = s.Write(context.Background(), testEvents("s2", 1))
	check("401 repeating the secrets", err)
	if !strings.Contains(err.Error(), "bad credentials: "+value.Redacted) {
		t.Fatalf("error %q does not keep the answer, masked", err)
	}

	// Nothing listens: the client's error names the URL.
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close()
	down := fmt.Sprintf("http://otel:%s@%s/v1/logs?api_key=%s", pass, addr, key)
	c2 := httpConfig(down)
	c2.Headers = c.Headers
	s2 := newSink(t, c2, otel.Options{})
	err = s2.Write(context.Background(), testEvents("s3", 1))
	if err == nil || sink.IsPermanent(err) {
		t.Fatalf("connection refused: %v, want a retryable error", err)
	}
	endpoint = down
	check("connection refused", err)

	// A bad endpoint: Validate says what is wrong, never the URL.
	bad := httpConfig("http://otel:" + pass + "@host:port/v1/logs")
	if err := bad.Validate(); err == nil || strings.Contains(err.Error(), pass) || !strings.HasPrefix(err.Error(), "endpoint: ") {
		t.Fatalf("Validate: %v", err)
	}
}

// TestDuplicatesAndNils: an event whose id came earlier in the batch, and
// a nil event, are not sent.
func TestDuplicatesAndNils(t *testing.T) {
	rc := newReceiver(t, nil)
	s := newSink(t, httpConfig(rc.URL()), otel.Options{})
	evs := testEvents("d", 3)
	if err := s.Write(context.Background(), []*schema.Event{evs[0], nil, evs[1], evs[0], evs[2], evs[1]}); err != nil {
		t.Fatal(err)
	}
	reqs, got, _ := rc.snapshot()
	if len(reqs) != 1 || reqs[0].Records != 3 || len(got) != 3 {
		t.Fatalf("requests %+v, received %v", reqs, got)
	}
}

// TestThrottle: consecutive requests of one slot start throttle apart.
func TestThrottle(t *testing.T) {
	rc := newReceiver(t, nil)
	c := httpConfig(rc.URL())
	c.BatchSize, c.Concurrency, c.Throttle = 1, 1, value.Duration(50*time.Millisecond)
	s := newSink(t, c, otel.Options{})
	start := time.Now()
	if err := s.Write(context.Background(), testEvents("th", 4)); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Fatalf("4 requests in %s with a 50ms throttle", d)
	}
}

func TestClose(t *testing.T) {
	rc := newReceiver(t, nil)
	s, err := otel.New("c", httpConfig(rc.URL()), otel.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := s.Close(context.Background()); err != nil {
			t.Fatalf("Close: %v", err)
		}
	}
	if err := s.Write(context.Background(), testEvents("x", 1)); err == nil {
		t.Fatal("Write after Close succeeded")
	}
}

// TestHeaders: configured headers are sent, percent-decoded as Stalwart's
// exporter decodes them; Host sets the request's host; Content-Type stays
// OTLP's.
func TestHeaders(t *testing.T) {
	rc := newReceiver(t, nil)
	c := httpConfig(rc.URL())
	c.Headers = otel.Headers{"Authorization": "Basic%20dXNlcjpwYXNz", "X-Raw": "100%", "Host": "collector.example",
		"Content-Type": "text/plain", "User-Agent": "custom/1"}
	s := newSink(t, c, otel.Options{})
	if err := s.Write(context.Background(), testEvents("h", 1)); err != nil {
		t.Fatal(err)
	}
	reqs, _, _ := rc.snapshot()
	h := reqs[0].Header
	if h.Get("Authorization") != "Basic dXNlcjpwYXNz" || h.Get("X-Raw") != "100%" || reqs[0].Host != "collector.example" ||
		reqs[0].ContentType != "application/x-protobuf" || h.Get("User-Agent") != "custom/1" {
		t.Fatalf("request %+v", reqs[0])
	}
}
