package sinks_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"

	"github.com/mailtel/mailtel/catalog"
	"github.com/mailtel/mailtel/pipeline"
	"github.com/mailtel/mailtel/pipeline/app"
	"github.com/mailtel/mailtel/pipeline/config"
	"github.com/mailtel/mailtel/pipeline/pipelinetest"
	"github.com/mailtel/mailtel/pipeline/sinks"
	"github.com/mailtel/mailtel/pipeline/sinktest"
	"github.com/mailtel/mailtel/pipeline/synth"
	"github.com/mailtel/mailtel/schema"
)

// otelLevels are the [tracing.level] overrides of the OpenTelemetry
// end-to-end tests. The synthetic traffic has only debug, info and warn
// events; these bring trace and error in and move one type from debug to
// info, so that every severity is exported and severities are checked
// against the effective level, not the catalog's default.
var otelLevels = map[string]catalog.Level{
	"smtp.ehlo":              catalog.LevelTrace,
	"auth.failed":            catalog.LevelError,
	"delivery.dsn-perm-fail": catalog.LevelError,
	"delivery.attempt-start": catalog.LevelInfo,
}

// otelCollector is an OTLP/HTTP logs receiver on 127.0.0.1 built on the
// collector's own pdata packages: it decodes every request with
// plogotlp.ExportRequest.UnmarshalProto and answers 200 with an
// ExportLogsServiceResponse, or what fail says for request n (from 0).
// The records of requests answered 200 are kept by their event.id
// attribute, with their resource and scope.
type otelCollector struct {
	// fail returns the status and Retry-After of request n; status 0
	// means 200.
	fail func(n int) (status int, retryAfter string)

	mu       sync.Mutex
	requests int
	answers  map[int]int // status -> count
	bad      []string    // requests that were not OTLP logs requests
	got      map[string][]otelRecord
	records  int
	at429    time.Time
	early    int // requests that came too soon after a 429 with Retry-After: 1
}

// otelRecord is one log record as the collector received it.
type otelRecord struct {
	rec   plog.LogRecord
	res   pcommon.Resource
	scope pcommon.InstrumentationScope
}

func newOTelCollector(fail func(int) (int, string)) *otelCollector {
	return &otelCollector{fail: fail, answers: map[int]int{}, got: map[string][]otelRecord{}}
}

func (rc *otelCollector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	arrived := time.Now()
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	req := plogotlp.NewExportRequest()
	if err := req.UnmarshalProto(body); err != nil || r.Method != http.MethodPost || r.URL.Path != "/v1/logs" ||
		r.Header.Get("Content-Type") != "application/x-protobuf" {
		rc.mu.Lock()
		rc.bad = append(rc.bad, fmt.Sprintf("%s %s (%s): %v", r.Method, r.URL.Path, r.Header.Get("Content-Type"), err))
		rc.mu.Unlock()
		http.Error(w, "not an OTLP logs request", http.StatusBadRequest)
		return
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	// Chunks sent together with the one that got the 429 may arrive just
	// after it; anything later must wait for Retry-After.
	if !rc.at429.IsZero() && arrived.After(rc.at429.Add(300*time.Millisecond)) && arrived.Before(rc.at429.Add(900*time.Millisecond)) {
		rc.early++
	}
	n := rc.requests
	rc.requests++
	status, retryAfter := 0, ""
	if rc.fail != nil {
		status, retryAfter = rc.fail(n)
	}
	if status != 0 && status != http.StatusOK {
		rc.answers[status]++
		if status == http.StatusTooManyRequests {
			rc.at429 = arrived
		}
		if retryAfter != "" {
			w.Header().Set("Retry-After", retryAfter)
		}
		http.Error(w, http.StatusText(status), status)
		return
	}
	rc.answers[http.StatusOK]++
	rls := req.Logs().ResourceLogs()
	for i := 0; i < rls.Len(); i++ {
		sls := rls.At(i).ScopeLogs()
		for j := 0; j < sls.Len(); j++ {
			lrs := sls.At(j).LogRecords()
			for k := 0; k < lrs.Len(); k++ {
				id := ""
				if v, ok := lrs.At(k).Attributes().Get("event.id"); ok {
					id = v.AsString()
				}
				rc.got[id] = append(rc.got[id], otelRecord{rec: lrs.At(k), res: rls.At(i).Resource(), scope: sls.At(j).Scope()})
				rc.records++
			}
		}
	}
	resp, _ := plogotlp.NewExportResponse().MarshalProto()
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.Write(resp)
}

func (rc *otelCollector) received() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.records
}

// otelEvents returns n synthetic Stalwart and Dovecot events, each its own
// copy. The generator's traffic carries strings, uints, IPs, durations,
// times, lists and nested events; every fifth event also gets fields of the
// kinds it lacks (double, bool, negative int, bytes, a uint above
// MaxInt64, a mixed list, a field without a value, a key given twice), so
// that every value type of the mapping is exported.
func otelEvents(seed uint64, n int) []schema.Event {
	g := synth.New(synth.Options{Seed: seed, Start: time.Date(2026, 11, 21, 0, 0, 0, 0, time.UTC)})
	evs := make([]schema.Event, n)
	var ev schema.Event
	for i := range evs {
		g.Next(&ev)
		e := ev
		e.Fields = append([]schema.Field(nil), ev.Fields...)
		if i%5 == 2 {
			e.Fields = append(e.Fields,
				schema.Field{Key: "spamScore", Value: schema.Float(float64(i%97)/7 - 4.3)},
				schema.Field{Key: "tlsResumed", Value: schema.Bool(i%10 == 2)},
				schema.Field{Key: "clockSkew", Value: schema.Int(-int64(i) * 1000)},
				schema.Field{Key: "digest", Value: schema.Bytes([]byte{0, 0xff, byte(i), byte(i >> 8), '\n'})},
				schema.Field{Key: "traceId", Value: schema.Uint(math.MaxUint64 - uint64(i))},
				schema.Field{Key: "mixed", Value: schema.List(schema.Int(int64(i)), schema.Bool(true), schema.Float(0.1),
					schema.IP(netip.MustParseAddr("2001:db8::25")), schema.Duration(1500*time.Millisecond))},
				schema.Field{Key: "unset"},
				schema.Field{Key: "warning", Value: schema.String("first")},
				schema.Field{Key: "warning", Value: schema.Uint(uint64(i))},
			)
		}
		evs[i] = e
	}
	return evs
}

// otelPipeline is an embedded NATS server with a real router and the sinks
// run by sinks.Run, configured with one [tracer.otel] section that exports
// to its collector.
type otelPipeline struct {
	p      *app.Process
	cfg    *config.Config
	rc     *otelCollector
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// startOTelPipeline starts an otelPipeline whose [tracer.otel] section has
// sinkKeys besides type, transport, endpoint and level, and whose collector
// answers as fail says.
func startOTelPipeline(t *testing.T, sinkKeys string, fail func(int) (int, string)) *otelPipeline {
	t.Helper()
	env := pipelinetest.Start(t)
	rc := newOTelCollector(fail)
	srv := httptest.NewServer(rc) // 127.0.0.1, a port of its own
	t.Cleanup(srv.Close)
	var levels strings.Builder
	for id, l := range otelLevels {
		fmt.Fprintf(&levels, "%q = %q\n", id, l)
	}
	cfg, err := config.Parse([]byte(`
[tracing.level]
` + levels.String() + `
[tracer.otel]
type = "open-telemetry"
transport = "http"
endpoint = "` + srv.URL + `/v1/logs"
level = "trace"
` + sinkKeys + `

[sinks]
batch = 1000
`))
	if err != nil {
		t.Fatal(err)
	}
	cfg.NATS = env.NATS
	ctx, cancel := context.WithCancel(context.Background())
	p, err := app.Start(ctx, cfg, app.Options{Name: "otel-e2e"})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	op := &otelPipeline{p: p, cfg: cfg, rc: rc, cancel: cancel}
	t.Cleanup(func() { op.stop(); p.Close() })
	op.wg.Add(2)
	go func() {
		defer op.wg.Done()
		pipeline.NewRouter(p.JS, pipeline.NewTable(cfg.SinkSpecs(), cfg.Levels), pipeline.RouterOptionsFrom(cfg), p.Log, p.Metrics, p.Health).Run(ctx)
	}()
	go func() {
		defer op.wg.Done()
		if err := sinks.Run(ctx, p, nil, sinks.Options{}); err != nil {
			t.Errorf("sinks: %v", err)
		}
	}()
	return op
}

// stop stops the router and the sinks and waits for them.
func (op *otelPipeline) stop() { op.cancel(); op.wg.Wait() }

// publish publishes evs with the publisher's code: every one is stored,
// none a duplicate.
func (op *otelPipeline) publish(t *testing.T, evs []schema.Event) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pub := pipeline.NewPublisher(op.p.JS, op.cfg.Levels, 1024, op.p.Metrics)
	acks, err := pub.PublishAll(ctx, evs)
	pub.Close(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i, a := range acks {
		if a.Err != nil || a.Duplicate {
			t.Fatalf("publish %s: %+v", evs[i].ID, a)
		}
	}
}

// settle waits until the sink's consumer has acked everything, so that
// nothing more can arrive, then stops the pipeline.
func (op *otelPipeline) settle(t *testing.T) {
	t.Helper()
	pipelinetest.WaitFor(t, 15*time.Second, "the sink's consumer acks everything", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		return pipelinetest.Settled(ctx, op.p.JS, op.cfg.Streams.RoutedStream("otel"), pipeline.SinkConsumerName("otel")) == nil
	})
	op.stop()
}

// check asserts that the collector received every event of evs exactly
// once and nothing else, that no request was malformed and nothing was
// dead-lettered, and compares every record with its event field by field.
func (op *otelPipeline) check(t *testing.T, evs []schema.Event, start time.Time) {
	t.Helper()
	end := time.Now()
	for _, d := range sinktest.DeadLetters(t, op.p.JS, op.cfg.Streams.DLQ, "otel") {
		t.Errorf("event %s (%s) dead-lettered: %s", d.EventID, d.Type, d.Reason)
	}
	levels := catalog.NewLevels(otelLevels)
	rc := op.rc
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for _, b := range rc.bad {
		t.Errorf("malformed request: %s", b)
	}
	want := make(map[string]*schema.Event, len(evs))
	for i := range evs {
		want[evs[i].ID] = &evs[i]
	}
	var problems []string
	for id, recs := range rc.got {
		switch {
		case want[id] == nil:
			problems = append(problems, fmt.Sprintf("record with event.id %q, which was not published (%d times)", id, len(recs)))
		case len(recs) != 1:
			problems = append(problems, fmt.Sprintf("event %s received %d times", id, len(recs)))
		}
	}
	missing := 0
	for id := range want {
		if len(rc.got[id]) == 0 {
			missing++
			problems = append(problems, fmt.Sprintf("event %s never received", id))
		}
	}
	for i := range evs {
		ev := &evs[i]
		for _, r := range rc.got[ev.ID] {
			for _, p := range compareRecord(ev, levels.Of(ev.Type), r, start, end) {
				problems = append(problems, fmt.Sprintf("event %s (%s %s): %s", ev.ID, ev.Server, ev.Type, p))
			}
		}
	}
	for i, p := range problems {
		if i == 30 {
			t.Errorf("... and %d more", len(problems)-i)
			break
		}
		t.Error(p)
	}
	t.Logf("%d events published, %d records received (%d distinct, %d missing); answers %v",
		len(evs), rc.records, len(rc.got), missing, rc.answers)
}

// otelSeverity is the mapping of the package documentation: severity
// number and text of each level.
var otelSeverity = map[catalog.Level]struct {
	num  plog.SeverityNumber
	text string
}{
	catalog.LevelTrace: {1, "TRACE"},
	catalog.LevelDebug: {5, "DEBUG"},
	catalog.LevelInfo:  {9, "INFO"},
	catalog.LevelWarn:  {13, "WARN"},
	catalog.LevelError: {17, "ERROR"},
}

// otelService is the service.name of the package documentation:
// Stalwart's own value for Stalwart, the server kind otherwise.
func otelService(server string) string {
	switch server {
	case "stalwart":
		return "stalwart-mail"
	case "":
		return "unknown_service"
	}
	return server
}

// compareRecord compares the record r with the event ev it carries, whose
// effective level is level, as the mapping says, written here from the
// specification rather than from the sink's encoder. It returns the
// differences.
func compareRecord(ev *schema.Event, level catalog.Level, r otelRecord, start, end time.Time) []string {
	var diffs []string
	diff := func(format string, args ...any) { diffs = append(diffs, fmt.Sprintf(format, args...)) }
	lr := r.rec
	if got := lr.EventName(); got != ev.Type {
		diff("event name %q, want %q", got, ev.Type)
	}
	sev := otelSeverity[level]
	if lr.SeverityNumber() != sev.num || lr.SeverityText() != sev.text {
		diff("severity %d %q, want %d %q (level %s)", lr.SeverityNumber(), lr.SeverityText(), sev.num, sev.text, level)
	}
	if got := lr.Timestamp().AsTime(); !got.Equal(ev.Time) {
		diff("timestamp %v, want the event's time %v", got, ev.Time)
	}
	if obs := lr.ObservedTimestamp().AsTime(); lr.ObservedTimestamp() == 0 || obs.Before(start.Add(-time.Second)) || obs.After(end.Add(time.Second)) {
		diff("observed timestamp %v, not within the test's run %v..%v", obs, start, end)
	}
	typ, ok := catalog.Lookup(ev.Type)
	if !ok || typ.Description == "" {
		diff("type %s has no catalog description; the test cannot check the body", ev.Type)
	} else if lr.Body().Type() != pcommon.ValueTypeStr || lr.Body().Str() != typ.Description {
		diff("body %s %q, want the catalog description %q", lr.Body().Type(), lr.Body().AsString(), typ.Description)
	}
	if r.scope.Name() != "mailtel" {
		diff("scope %q, want mailtel", r.scope.Name())
	}
	// Resource: exactly service.name and host.name.
	res := r.res.Attributes()
	if v, ok := res.Get("service.name"); !ok || v.Type() != pcommon.ValueTypeStr || v.Str() != otelService(ev.Server) {
		diff("resource service.name %v, want %q (server %q)", res.AsRaw()["service.name"], otelService(ev.Server), ev.Server)
	}
	if v, ok := res.Get("host.name"); !ok || v.Type() != pcommon.ValueTypeStr || v.Str() != ev.Host {
		diff("resource host.name %v, want %q", res.AsRaw()["host.name"], ev.Host)
	}
	if res.Len() != 2 {
		diff("resource has %d attributes %v, want service.name and host.name", res.Len(), res.AsRaw())
	}
	// Attributes: the fields, typed, plus event.id.
	attrs := lr.Attributes()
	if v, ok := attrs.Get("event.id"); !ok || v.Type() != pcommon.ValueTypeStr || v.Str() != ev.ID {
		diff("attribute event.id %v, want %q", attrs.AsRaw()["event.id"], ev.ID)
	}
	n := compareFields(attrs, ev.Fields, "", diff)
	if _, ok := fieldsByKey(ev.Fields)["event.id"]; !ok {
		n++
	}
	if attrs.Len() != n {
		diff("%d attributes, want %d (the fields and event.id): %v", attrs.Len(), n, keysOf(attrs))
	}
	return diffs
}

// fieldsByKey gathers the values of fields by key, in order.
func fieldsByKey(fields []schema.Field) map[string][]schema.Value {
	m := map[string][]schema.Value{}
	for _, f := range fields {
		m[f.Key] = append(m[f.Key], f.Value)
	}
	return m
}

// compareFields compares the map m with fields: one entry per distinct
// key, its value the field's value or, for a key given more than once, an
// array of the values in order. It returns the number of entries fields
// make. The event.id key at the top level is the event's id, checked by
// the caller.
func compareFields(m pcommon.Map, fields []schema.Field, path string, diff func(string, ...any)) int {
	byKey := fieldsByKey(fields)
	for key, vals := range byKey {
		if path == "" && key == "event.id" {
			continue
		}
		got, ok := m.Get(key)
		if !ok {
			diff("attribute %s%s missing", path, key)
			continue
		}
		if len(vals) == 1 {
			compareValue(got, vals[0], path+key, diff)
			continue
		}
		if got.Type() != pcommon.ValueTypeSlice || got.Slice().Len() != len(vals) {
			diff("attribute %s%s is %s %v, want an array of the %d values of the repeated key", path, key, got.Type(), got.AsRaw(), len(vals))
			continue
		}
		for i, v := range vals {
			compareValue(got.Slice().At(i), v, fmt.Sprintf("%s%s[%d]", path, key, i), diff)
		}
	}
	return len(byKey)
}

// compareValue compares one attribute value with the field value it
// carries: strings, ints, doubles, bools, bytes and arrays keep their type;
// a uint is an int of the same 64 bits; a duration is int milliseconds; an
// IP and a time (RFC 3339, UTC) are strings; a nested event is a map of
// eventName and its fields; no value is an empty value.
func compareValue(got pcommon.Value, v schema.Value, path string, diff func(string, ...any)) {
	want := func(typ pcommon.ValueType, ok bool, wantDesc any) {
		if got.Type() != typ {
			diff("attribute %s is %s %v, want %s %v (field kind %v)", path, got.Type(), got.AsRaw(), typ, wantDesc, v.Kind())
		} else if !ok {
			diff("attribute %s is %v, want %v", path, got.AsRaw(), wantDesc)
		}
	}
	switch v.Kind() {
	case schema.KindString:
		want(pcommon.ValueTypeStr, got.Str() == v.Str(), v.Str())
	case schema.KindInt:
		want(pcommon.ValueTypeInt, got.Int() == v.Int(), v.Int())
	case schema.KindUint:
		want(pcommon.ValueTypeInt, uint64(got.Int()) == v.Uint(), v.Uint())
	case schema.KindFloat:
		want(pcommon.ValueTypeDouble, got.Double() == v.Float(), v.Float())
	case schema.KindBool:
		want(pcommon.ValueTypeBool, got.Bool() == v.Bool(), v.Bool())
	case schema.KindDuration:
		ms := int64(v.Duration() / time.Millisecond)
		want(pcommon.ValueTypeInt, got.Int() == ms, ms)
	case schema.KindIP:
		want(pcommon.ValueTypeStr, got.Str() == v.IP().String(), v.IP().String())
	case schema.KindTime:
		ts, err := time.Parse(time.RFC3339Nano, got.Str())
		want(pcommon.ValueTypeStr, err == nil && ts.Equal(v.Time()) && strings.HasSuffix(got.Str(), "Z"), v.Time().UTC())
	case schema.KindBytes:
		want(pcommon.ValueTypeBytes, bytes.Equal(got.Bytes().AsRaw(), v.BytesValue()), v.BytesValue())
	case schema.KindNone:
		want(pcommon.ValueTypeEmpty, true, nil)
	case schema.KindList:
		if got.Type() != pcommon.ValueTypeSlice || got.Slice().Len() != len(v.List()) {
			diff("attribute %s is %s %v, want an array of %d values", path, got.Type(), got.AsRaw(), len(v.List()))
			return
		}
		for i, e := range v.List() {
			compareValue(got.Slice().At(i), e, fmt.Sprintf("%s[%d]", path, i), diff)
		}
	case schema.KindEvent:
		nested := v.Event()
		if got.Type() != pcommon.ValueTypeMap {
			diff("attribute %s is %s %v, want a map of the nested %s event", path, got.Type(), got.AsRaw(), nested.Type)
			return
		}
		m := got.Map()
		n := compareFields(m, nested.Fields, path+".", diff)
		if nested.Type != "" {
			n++
			if name, ok := m.Get("eventName"); !ok || name.Str() != nested.Type {
				diff("attribute %s.eventName is %v, want %q", path, m.AsRaw()["eventName"], nested.Type)
			}
		}
		if m.Len() != n {
			diff("attribute %s has %d entries, want %d: %v", path, m.Len(), n, keysOf(m))
		}
	default:
		diff("field %s of kind %v: the test does not know its mapping", path, v.Kind())
	}
}

func keysOf(m pcommon.Map) []string {
	var keys []string
	for k := range m.All() {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// requireCoverage fails the test unless evs exercise every part of the
// mapping: each value kind (also inside lists and nested events), repeated
// keys, both servers, several hosts and every severity.
func requireCoverage(t *testing.T, evs []schema.Event) {
	t.Helper()
	kinds := map[schema.Kind]int{}
	var walk func(v schema.Value)
	walk = func(v schema.Value) {
		kinds[v.Kind()]++
		for _, e := range v.List() {
			walk(e)
		}
		if e := v.Event(); e != nil {
			for _, f := range e.Fields {
				walk(f.Value)
			}
		}
	}
	servers, hosts, types, levels := map[string]bool{}, map[string]bool{}, map[string]bool{}, map[catalog.Level]bool{}
	lv := catalog.NewLevels(otelLevels)
	repeated := 0
	for i := range evs {
		ev := &evs[i]
		servers[ev.Server], hosts[ev.Host], types[ev.Type], levels[lv.Of(ev.Type)] = true, true, true, true
		for key, vals := range fieldsByKey(ev.Fields) {
			if len(vals) > 1 && key != "" {
				repeated++
			}
		}
		for _, f := range ev.Fields {
			walk(f.Value)
		}
	}
	for k := schema.KindNone; k <= schema.KindEvent; k++ {
		if kinds[k] == 0 {
			t.Errorf("the events have no %v value; the test would prove nothing about it", k)
		}
	}
	for l := catalog.LevelTrace; l <= catalog.LevelError; l++ {
		if !levels[l] {
			t.Errorf("no event has level %s", l)
		}
	}
	if levels[catalog.LevelDisable] {
		t.Errorf("some events are disabled: they would not be exported")
	}
	if !servers[schema.ServerStalwart] || !servers[schema.ServerDovecot] || len(hosts) < 4 {
		t.Errorf("servers %v, hosts %v: want Stalwart and Dovecot events from several hosts", servers, hosts)
	}
	if repeated == 0 || len(types) < 50 {
		t.Errorf("%d events with a repeated key, %d types: want some and many", repeated, len(types))
	}
	if t.Failed() {
		t.FailNow()
	}
	t.Logf("%d events: %d types, servers %v, %d hosts, value kinds %v", len(evs), len(types), servers, len(hosts), kinds)
}

// TestOTelEndToEnd publishes 10,000 Stalwart and Dovecot events with the
// publisher's code, routes them with a real router and exports them with
// the OpenTelemetry sink, run by sinks.Run, to a local OTLP/HTTP receiver:
// every event arrives exactly once, and every record carries its event as
// the mapping says, compared field by field with the published event.
func TestOTelEndToEnd(t *testing.T) {
	const n = 10000
	evs := otelEvents(5, n)
	requireCoverage(t, evs)
	start := time.Now()
	op := startOTelPipeline(t, `throttle = 0
timeout = "5s"`, nil)
	op.publish(t, evs)
	pipelinetest.WaitFor(t, 30*time.Second, "the collector receives every event", func() bool { return op.rc.received() >= n })
	op.settle(t)
	op.check(t, evs, start)
	t.Logf("took %v", time.Since(start).Round(time.Millisecond))
}

// TestOTelEndToEndCollectorFailing is TestOTelEndToEnd with 2,000 events
// and a collector that fails for a while: 503 for its first four requests,
// then a 429 with Retry-After: 1, then 200. The sink retries (honouring
// Retry-After) and still delivers every event exactly once; nothing is
// dead-lettered. It can take ten seconds: when the sink pauses, the
// runner gives back what it fetched beyond the batch it retries, and
// JetStream redelivers that after the runner's release delay (twice the
// pull expiry, 10s).
func TestOTelEndToEndCollectorFailing(t *testing.T) {
	const n, failures = 2000, 4
	evs := otelEvents(6, n)
	start := time.Now()
	op := startOTelPipeline(t, `throttle = 0
timeout = "5s"
batch-size = 200
concurrency = 2
max-backoff = "300ms"`, func(i int) (int, string) {
		switch {
		case i < failures:
			return http.StatusServiceUnavailable, ""
		case i == failures:
			return http.StatusTooManyRequests, "1"
		}
		return 0, ""
	})
	op.publish(t, evs)
	pipelinetest.WaitFor(t, 30*time.Second, "the collector receives every event", func() bool { return op.rc.received() >= n })
	op.settle(t)
	op.check(t, evs, start)

	var m dto.Metric
	op.p.Metrics.Retried.WithLabelValues("sink:otel").Write(&m)
	op.rc.mu.Lock()
	defer op.rc.mu.Unlock()
	if op.rc.answers[http.StatusServiceUnavailable] != failures || op.rc.answers[http.StatusTooManyRequests] != 1 {
		t.Errorf("answers %v: want %d 503s and one 429", op.rc.answers, failures)
	}
	if op.rc.early > 0 {
		t.Errorf("%d requests came within a second of the 429 with Retry-After: 1", op.rc.early)
	}
	if m.GetCounter().GetValue() == 0 {
		t.Errorf("the sink counted no retries")
	}
	t.Logf("%v retries; took %v", m.GetCounter().GetValue(), time.Since(start).Round(time.Millisecond))
}
