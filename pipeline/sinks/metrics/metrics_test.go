package metrics_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"

	"github.com/mailtel/mailtel/catalog"
	"github.com/mailtel/mailtel/pipeline/config/value"
	"github.com/mailtel/mailtel/pipeline/sinks/metrics"
	"github.com/mailtel/mailtel/schema"
)

func newSink(t testing.TB, stalwartNames bool) (*metrics.Sink, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	cfg := &metrics.Config{Prometheus: metrics.Prometheus{StalwartNames: stalwartNames}}
	s, err := metrics.New("metrics", cfg, reg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s, reg
}

func event(id, typ string, lv catalog.Level, server string, fields ...schema.Field) *schema.Event {
	return &schema.Event{ID: id, Type: typ, Time: time.Unix(1700000000, 0), Level: lv, Host: "mx1", Server: server, Fields: fields}
}

// counterValue returns the value of mailtel_events_total with the labels,
// and false when that series does not exist.
func counterValue(t *testing.T, reg *prometheus.Registry, typ, level, source string) (float64, bool) {
	t.Helper()
	for _, m := range gather(t, reg)[metrics.EventsTotal].GetMetric() {
		l := labels(m)
		if l["type"] == typ && l["level"] == level && l["source"] == source {
			return m.GetCounter().GetValue(), true
		}
	}
	return 0, false
}

// gather returns the metric families of reg by name.
func gather(t *testing.T, reg *prometheus.Registry) map[string]*dto.MetricFamily {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	out := map[string]*dto.MetricFamily{}
	for _, mf := range mfs {
		out[mf.GetName()] = mf
	}
	return out
}

func labels(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, lp := range m.GetLabel() {
		out[lp.GetName()] = lp.GetValue()
	}
	return out
}

func TestCountsOncePerEvent(t *testing.T) {
	s, reg := newSink(t, false)
	batch := []*schema.Event{
		event("1", "auth.success", catalog.LevelInfo, "stalwart"),
		event("2", "auth.success", catalog.LevelInfo, "stalwart"),
		event("3", "auth.success", catalog.LevelWarn, "Stalwart"),
		event("4", "auth.request-finished", catalog.LevelInfo, "dovecot"),
		event("5", "auth.success", catalog.LevelInfo, "postfix"),
		event("6", "nosuch.event", catalog.LevelDebug, "stalwart"),
		event("7", "other.unknown-thing", catalog.LevelDebug, "stalwart"),
		event("8", "auth.success", catalog.Level(42), "stalwart"),
		event("", "auth.failed", catalog.LevelWarn, "stalwart"), // no id: always counted
		event("", "auth.failed", catalog.LevelWarn, "stalwart"),
	}
	if err := s.Write(context.Background(), batch); err != nil {
		t.Fatalf("Write: %v", err)
	}
	// The same batch again (a redelivery to this instance) counts nothing
	// new, except the events without an id.
	if err := s.Write(context.Background(), batch[:8]); err != nil {
		t.Fatalf("Write again: %v", err)
	}
	tests := []struct {
		typ, level, source string
		want               float64
	}{
		{"auth.success", "info", "stalwart", 2},
		{"auth.success", "warn", "stalwart", 1},
		{"auth.request-finished", "info", "dovecot", 1},
		{"auth.success", "info", "other", 1},
		{"unknown", "debug", "stalwart", 2},
		{"auth.success", "unknown", "stalwart", 1},
		{"auth.failed", "warn", "stalwart", 2},
	}
	for _, tt := range tests {
		t.Run(tt.typ+"/"+tt.level+"/"+tt.source, func(t *testing.T) {
			got, ok := counterValue(t, reg, tt.typ, tt.level, tt.source)
			if !ok || got != tt.want {
				t.Errorf("%s{%s,%s,%s} = %v (exists %v), want %v", metrics.EventsTotal, tt.typ, tt.level, tt.source, got, ok, tt.want)
			}
		})
	}
	if n := len(gather(t, reg)[metrics.EventsTotal].GetMetric()); n != len(tests) {
		t.Errorf("%d series of %s, want %d", n, metrics.EventsTotal, len(tests))
	}
}

func TestDedupeWindowForgets(t *testing.T) {
	// The dedupe set is bounded: long after an id was counted it is
	// forgotten and counted again. 1<<16 ids are enough to push it out.
	s, reg := newSink(t, false)
	first := event("first", "auth.success", catalog.LevelInfo, "stalwart")
	ctx := context.Background()
	if err := s.Write(ctx, []*schema.Event{first}); err != nil {
		t.Fatal(err)
	}
	batch := make([]*schema.Event, 1<<16)
	for i := range batch {
		batch[i] = event(fmt.Sprint("e", i), "auth.failed", catalog.LevelWarn, "stalwart")
	}
	if err := s.Write(ctx, batch); err != nil {
		t.Fatal(err)
	}
	if err := s.Write(ctx, []*schema.Event{first}); err != nil {
		t.Fatal(err)
	}
	if got, _ := counterValue(t, reg, "auth.success", "info", "stalwart"); got != 2 {
		t.Errorf("auth.success = %v, want 2 (forgotten after the window)", got)
	}
	if got, _ := counterValue(t, reg, "auth.failed", "warn", "stalwart"); got != 1<<16 {
		t.Errorf("auth.failed = %v, want %d", got, 1<<16)
	}
}

func TestHistograms(t *testing.T) {
	tests := []struct {
		name     string
		ev       *schema.Event
		metric   string
		typ      string
		wantSum  float64
		wantSeen bool
	}{
		{"stalwart elapsed", event("a", "smtp.rcpt-to", catalog.LevelInfo, "stalwart",
			schema.Field{Key: "elapsed", Value: schema.Duration(1500 * time.Millisecond)}),
			metrics.DurationSeconds, "smtp.rcpt-to", 1.5, true},
		{"dovecot duration", event("b", "auth.request-finished", catalog.LevelInfo, "dovecot",
			schema.Field{Key: "duration", Value: schema.Duration(155 * time.Microsecond)}),
			metrics.DurationSeconds, "auth.request-finished", 0.000155, true},
		{"elapsed without a unit is ignored", event("c", "smtp.rcpt-to", catalog.LevelInfo, "stalwart",
			schema.Field{Key: "elapsed", Value: schema.Uint(1500)}),
			metrics.DurationSeconds, "smtp.rcpt-to", 0, false},
		{"size", event("d", "delivery.delivered", catalog.LevelInfo, "stalwart",
			schema.Field{Key: "size", Value: schema.Uint(2048)}),
			metrics.SizeBytes, "delivery.delivered", 2048, true},
		{"dovecot message_size", event("e", "mail.delivery-finished", catalog.LevelInfo, "dovecot",
			schema.Field{Key: "message_size", Value: schema.Uint(12345)}),
			metrics.SizeBytes, "mail.delivery-finished", 12345, true},
		{"negative size is ignored", event("f", "delivery.delivered", catalog.LevelInfo, "stalwart",
			schema.Field{Key: "size", Value: schema.Int(-1)}),
			metrics.SizeBytes, "delivery.delivered", 0, false},
		{"unknown type", event("g", "nosuch.event", catalog.LevelInfo, "stalwart",
			schema.Field{Key: "elapsed", Value: schema.Duration(2 * time.Second)}),
			metrics.DurationSeconds, "unknown", 2, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.typ != "unknown" {
				if _, ok := catalog.Lookup(tt.typ); !ok {
					t.Fatalf("test uses %q, which the catalog does not know", tt.typ)
				}
			}
			s, reg := newSink(t, false)
			if err := s.Write(context.Background(), []*schema.Event{tt.ev}); err != nil {
				t.Fatal(err)
			}
			h, ok := histogram(t, reg, tt.metric, tt.typ)
			if ok != tt.wantSeen {
				t.Fatalf("%s{type=%q} exists = %v, want %v", tt.metric, tt.typ, ok, tt.wantSeen)
			}
			if !ok {
				return
			}
			if h.GetSampleCount() != 1 || h.GetSampleSum() != tt.wantSum {
				t.Errorf("%s{type=%q}: count %d sum %v, want 1 and %v", tt.metric, tt.typ, h.GetSampleCount(), h.GetSampleSum(), tt.wantSum)
			}
		})
	}
}

func histogram(t *testing.T, reg *prometheus.Registry, name, typ string) (*dto.Histogram, bool) {
	t.Helper()
	for _, m := range gather(t, reg)[name].GetMetric() {
		if labels(m)["type"] == typ {
			return m.GetHistogram(), true
		}
	}
	return nil, false
}

func TestStalwartNames(t *testing.T) {
	s, reg := newSink(t, true)
	batch := []*schema.Event{
		event("1", "auth.success", catalog.LevelInfo, "stalwart"),
		event("2", "auth.success", catalog.LevelInfo, "stalwart"),
		event("3", "delivery.dsn-perm-fail", catalog.LevelInfo, "stalwart"),
		event("4", "auth.request-finished", catalog.LevelInfo, "dovecot"), // not a Stalwart type
		event("5", "nosuch.event", catalog.LevelInfo, "stalwart"),
	}
	if err := s.Write(context.Background(), batch); err != nil {
		t.Fatal(err)
	}
	mfs := gather(t, reg)
	tests := []struct {
		name, help string
		want       float64
	}{
		{"auth_success", "Authentication successful", 2},
		{"delivery_dsn_perm_fail", "DSN permanent failure notification", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mf, ok := mfs[tt.name]
			if !ok {
				t.Fatalf("no metric %s", tt.name)
			}
			if mf.GetType() != dto.MetricType_COUNTER || mf.GetHelp() != tt.help || len(mf.GetMetric()) != 1 {
				t.Fatalf("%s: type %v help %q, %d series; want a counter %q with one series", tt.name, mf.GetType(), mf.GetHelp(), len(mf.GetMetric()), tt.help)
			}
			if got := mf.GetMetric()[0].GetCounter().GetValue(); got != tt.want {
				t.Errorf("%s = %v, want %v", tt.name, got, tt.want)
			}
		})
	}
	for _, absent := range []string{"auth_request_finished", "nosuch_event", "auth_failed"} {
		if _, ok := mfs[absent]; ok {
			t.Errorf("metric %s exists, want none (not a Stalwart type, or not seen)", absent)
		}
	}
	// The only lint problems are the missing _total suffixes, kept for
	// compatibility with Stalwart's names.
	problems, err := promlint.NewWithMetricFamilies(mustGather(t, reg)).Lint()
	if err != nil {
		t.Fatal(err)
	}
	if len(problems) != len(tests) {
		t.Errorf("%d lint problems, want %d (one per Stalwart-named counter)", len(problems), len(tests))
	}
	for _, p := range problems {
		if !strings.Contains(p.Text, `"_total" suffix`) || strings.HasPrefix(p.Metric, "mailtel_") {
			t.Errorf("lint: %s: %s", p.Metric, p.Text)
		}
	}
}

func mustGather(t *testing.T, reg *prometheus.Registry) []*dto.MetricFamily {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	return mfs
}

func TestStalwartNameRule(t *testing.T) {
	tests := []struct{ id, want string }{
		{"auth.success", "auth_success"},
		{"delivery.dsn-perm-fail", "delivery_dsn_perm_fail"},
		{"smtp.rcpt-to", "smtp_rcpt_to"},
	}
	for _, tt := range tests {
		t.Run(tt.id, func(t *testing.T) {
			if got := metrics.StalwartName(tt.id); got != tt.want {
				t.Errorf("StalwartName(%q) = %q, want %q", tt.id, got, tt.want)
			}
		})
	}
	// The rule must not make two catalog types share a name.
	seen := map[string]string{}
	for _, typ := range catalog.All() {
		if typ.Source != catalog.SourceStalwart {
			continue
		}
		n := metrics.StalwartName(typ.ID)
		if prev, ok := seen[n]; ok {
			t.Errorf("%s and %s both map to %s", prev, typ.ID, n)
		}
		seen[n] = typ.ID
	}
}

func TestLint(t *testing.T) {
	s, reg := newSink(t, false)
	var batch []*schema.Event
	for i, typ := range catalog.All() {
		batch = append(batch, event(fmt.Sprint(i), typ.ID, typ.Level, typ.Source.String(),
			schema.Field{Key: "elapsed", Value: schema.Duration(time.Duration(i) * time.Millisecond)},
			schema.Field{Key: "size", Value: schema.Uint(uint64(i) * 100)}))
	}
	batch = append(batch, event("x", "nosuch.event", catalog.LevelInfo, "exim"))
	if err := s.Write(context.Background(), batch); err != nil {
		t.Fatal(err)
	}
	// Lint what a scraper gets from /metrics.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addr, _, err := metrics.Serve(ctx, &metrics.Prometheus{Listen: "127.0.0.1:0"}, reg)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	problems, err := promlint.New(resp.Body).Lint()
	if err != nil {
		t.Fatalf("lint /metrics: %v", err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
	mfs := gather(t, reg)
	if n := len(mfs[metrics.EventsTotal].GetMetric()); n != catalog.Len()+1 {
		t.Errorf("%d series of %s, want %d", n, metrics.EventsTotal, catalog.Len()+1)
	}
	for _, name := range []string{metrics.DurationSeconds, metrics.SizeBytes} {
		if n := len(mfs[name].GetMetric()); n != catalog.Len() { // the unknown event has no fields
			t.Errorf("%d series of %s, want %d", n, name, catalog.Len())
		}
	}
}

func TestNewTwiceOnOneRegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := metrics.New("metrics", &metrics.Config{}, reg); err != nil {
		t.Fatal(err)
	}
	if _, err := metrics.New("metrics", &metrics.Config{}, reg); err == nil {
		t.Error("second New on one registry succeeded, want a registration error")
	}
}

func TestWriteHonoursContext(t *testing.T) {
	s, reg := newSink(t, false)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Write(ctx, []*schema.Event{event("1", "auth.success", catalog.LevelInfo, "stalwart")}); err == nil {
		t.Error("Write with an ended context succeeded")
	}
	if _, ok := counterValue(t, reg, "auth.success", "info", "stalwart"); ok {
		t.Error("an event was counted by a Write that failed")
	}
	if err := s.Close(context.Background()); err != nil {
		t.Error(err)
	}
	if err := s.Close(context.Background()); err != nil {
		t.Error(err)
	}
}

func TestServe(t *testing.T) {
	s, reg := newSink(t, false)
	if err := s.Write(context.Background(), []*schema.Event{event("1", "auth.success", catalog.LevelInfo, "stalwart")}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		auth      value.BasicAuth
		setAuth   func(*http.Request)
		wantCode  int
		wantInBod string
	}{
		{"no auth configured", value.BasicAuth{}, func(*http.Request) {}, 200, metrics.EventsTotal},
		{"basic: none given", value.BasicAuth{Username: "prom", Secret: "s3cret"}, func(*http.Request) {}, 401, ""},
		{"basic: wrong secret", value.BasicAuth{Username: "prom", Secret: "s3cret"},
			func(r *http.Request) { r.SetBasicAuth("prom", "nope") }, 401, ""},
		{"basic: wrong user", value.BasicAuth{Username: "prom", Secret: "s3cret"},
			func(r *http.Request) { r.SetBasicAuth("root", "s3cret") }, 401, ""},
		{"basic: right", value.BasicAuth{Username: "prom", Secret: "s3cret"},
			func(r *http.Request) { r.SetBasicAuth("prom", "s3cret") }, 200, metrics.EventsTotal},
		{"bearer: none given", value.BasicAuth{Secret: "tok"}, func(*http.Request) {}, 401, ""},
		{"bearer: wrong", value.BasicAuth{Secret: "tok"},
			func(r *http.Request) { r.Header.Set("Authorization", "Bearer nope") }, 401, ""},
		{"bearer: right", value.BasicAuth{Secret: "tok"},
			func(r *http.Request) { r.Header.Set("Authorization", "Bearer tok") }, 200, metrics.EventsTotal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			addr, _, err := metrics.Serve(ctx, &metrics.Prometheus{Listen: "127.0.0.1:0", Auth: tt.auth}, reg)
			if err != nil {
				t.Fatalf("Serve: %v", err)
			}
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
			if err != nil {
				t.Fatal(err)
			}
			tt.setAuth(req)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatalf("GET /metrics: %v", err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.wantCode {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.wantCode)
			}
			if tt.wantCode == 401 && resp.Header.Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
			if !strings.Contains(string(body), tt.wantInBod) {
				t.Errorf("body lacks %q:\n%s", tt.wantInBod, body)
			}
			if tt.wantCode == 401 && strings.Contains(string(body), metrics.EventsTotal) {
				t.Error("401 answer leaks metrics")
			}
		})
	}
}

func TestServeStopsWithContext(t *testing.T) {
	reg := prometheus.NewRegistry()
	ctx, cancel := context.WithCancel(context.Background())
	addr, _, err := metrics.Serve(ctx, &metrics.Prometheus{Listen: "127.0.0.1:0"}, reg)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			return // stopped
		}
		resp.Body.Close()
		if time.Now().After(deadline) {
			t.Fatal("server still answers 5s after its context ended")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestServeBadAddress(t *testing.T) {
	if _, _, err := metrics.Serve(context.Background(), &metrics.Prometheus{Listen: "127.0.0.1:notaport"}, prometheus.NewRegistry()); err == nil {
		t.Error("Serve on a bad address succeeded")
	}
}

// BenchmarkWrite measures the per-event cost after warm-up. Each event
// carries a duration and a size; ids cycle through a pool twice as large as
// the dedupe memory, so every Write counts its event and the dedupe set is
// exercised.
func BenchmarkWrite(b *testing.B) {
	s, _ := newSink(b, true)
	types := []string{"auth.success", "smtp.rcpt-to", "delivery.delivered", "auth.request-finished", "nosuch.event"}
	events := make([]*schema.Event, 1<<17)
	for i := range events {
		events[i] = event(fmt.Sprint("ev-", i), types[i%len(types)], catalog.LevelInfo, "stalwart",
			schema.Field{Key: "remoteIp", Value: schema.String("192.0.2.1")},
			schema.Field{Key: "elapsed", Value: schema.Duration(time.Duration(i%5000) * time.Millisecond)},
			schema.Field{Key: "size", Value: schema.Uint(uint64(i % 100000))})
	}
	ctx := context.Background()
	if err := s.Write(ctx, events); err != nil { // warm-up: create the series, fill the dedupe set
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		j := i % len(events)
		if err := s.Write(ctx, events[j:j+1]); err != nil {
			b.Fatal(err)
		}
	}
}
