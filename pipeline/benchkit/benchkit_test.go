package benchkit

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/mailtel/mailtel/pipeline/sinks/tracer"
	"github.com/mailtel/mailtel/schema"
)

func TestPercentile(t *testing.T) {
	ms := func(vs ...int) []time.Duration {
		out := make([]time.Duration, len(vs))
		for i, v := range vs {
			out[i] = time.Duration(v) * time.Millisecond
		}
		return out
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = 100 - i // unsorted: Summarize sorts
	}
	for _, tc := range []struct {
		name               string
		in                 []time.Duration
		p50, p95, p99, max time.Duration
		mean               time.Duration
	}{
		{"empty", nil, 0, 0, 0, 0, 0},
		{"one", ms(7), 7 * time.Millisecond, 7 * time.Millisecond, 7 * time.Millisecond, 7 * time.Millisecond, 7 * time.Millisecond},
		{"1 to 100", ms(hundred...), 50 * time.Millisecond, 95 * time.Millisecond, 99 * time.Millisecond, 100 * time.Millisecond, 50500 * time.Microsecond},
		{"outlier", ms(1, 1, 1, 1, 1000), time.Millisecond, time.Second, time.Second, time.Second, 200800 * time.Microsecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := Summarize(tc.in)
			if l.N != len(tc.in) || l.P50 != tc.p50 || l.P95 != tc.p95 || l.P99 != tc.p99 || l.Max != tc.max || l.Mean != tc.mean {
				t.Errorf("got %+v, want p50 %v p95 %v p99 %v max %v mean %v", l, tc.p50, tc.p95, tc.p99, tc.max, tc.mean)
			}
		})
	}
}

func TestJudge(t *testing.T) {
	for _, tc := range []struct {
		slope, stderr float64
		want          Verdict
	}{
		{0.1, 0.01, Flat}, // the bench process over an hour
		{-0.29, 0.37, Flat},
		{0.94, 0.01, Flat},
		{0.2, 0.4, CannotTell},    // two errors reach the bar
		{-0.29, 1.07, CannotTell}, // the NATS server over an hour with server fan-out
		{1.69, 1.24, CannotTell},  // and through the router
		{10.7, 14.6, CannotTell},  // a 10-minute soak of the NATS server
		{3, 1, Grows},             // two errors above the bar
		{7.97, 2.64, Grows},       // the NATS server's first 30 minutes in one run
		{40.5, 13.9, Grows},       // and its first 10 in another
		{3, math.NaN(), CannotTell},
		{math.NaN(), 0.1, CannotTell},
	} {
		if got := Judge(tc.slope, tc.stderr); got != tc.want {
			t.Errorf("Judge(%v, %v) = %v, want %v", tc.slope, tc.stderr, got, tc.want)
		}
	}
	if Flat.String() != "flat" || Grows.String() != "grows" || CannotTell.String() != "cannot tell" {
		t.Errorf("verdicts read %q, %q, %q", Flat, Grows, CannotTell)
	}
}

func TestParseStatCPU(t *testing.T) {
	// Field 2 holds spaces and a ')'; utime=250 stime=50 ticks.
	stat := "1234 (my (odd) proc) S 1 1234 1234 0 -1 4194560 1000 0 0 0 250 50 0 0 20 0 8 0 100 1000000 500 18446744073709551615"
	got, err := ParseStatCPU(stat)
	if err != nil {
		t.Fatal(err)
	}
	if want := 3 * time.Second; got != want {
		t.Errorf("cpu %v, want %v", got, want)
	}
	for _, bad := range []string{"", "1234 no parens S 1", "1234 (x) S 1 2 3"} {
		if _, err := ParseStatCPU(bad); err == nil {
			t.Errorf("ParseStatCPU(%q) succeeded", bad)
		}
	}
}

func TestParseStatusMemory(t *testing.T) {
	status := "Name:\tbench\nVmPeak:\t  100000 kB\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\nThreads:\t8\n"
	rss, hwm, err := ParseStatusMemory(strings.NewReader(status))
	if err != nil {
		t.Fatal(err)
	}
	if rss != 10<<20 || hwm != 20<<20 {
		t.Errorf("rss %d hwm %d, want %d %d", rss, hwm, 10<<20, 20<<20)
	}
	if _, _, err := ParseStatusMemory(strings.NewReader("Name:\tx\nVmRSS:\t1 kB\n")); err == nil {
		t.Error("a status without VmHWM parsed")
	}
}

// TestReadProcSelf reads this process: it has used some CPU and holds
// some memory, and its peak is at least its current size.
func TestReadProcSelf(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc on this system")
	}
	sum := 0
	for i := 0; i < 5_000_000; i++ { // some CPU time to see
		sum += i % 7
	}
	p, err := ReadProc(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if p.RSS <= 0 || p.HWM < p.RSS {
		t.Errorf("rss %d hwm %d", p.RSS, p.HWM)
	}
	if self := SelfCPU(); self <= 0 || p.CPU > self+20*time.Millisecond {
		t.Errorf("/proc says %v of cpu, getrusage %v (sum %d)", p.CPU, self, sum)
	}
}

func TestParsePromText(t *testing.T) {
	text := `# HELP mailtel_received_total Events received by a stage.
# TYPE mailtel_received_total counter
mailtel_received_total{stage="router"} 1500
mailtel_received_total{stage="sink:log"} 700
mailtel_routed_total{sink="log"} 1.5e+03
mailtel_routed_total{sink="a } \" b"} 2
go_memstats_mallocs_total 123456
go_gc_duration_seconds{quantile="1"} NaN
some_gauge 7 1700000000000
`
	ss, err := ParsePromText(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		match []string
		want  float64
		ok    bool
	}{
		{"mailtel_received_total", []string{`stage="router"`}, 1500, true},
		{"mailtel_received_total", nil, 2200, true},
		{"mailtel_routed_total", nil, 1502, true},
		{"go_memstats_mallocs_total", nil, 123456, true},
		{"some_gauge", nil, 7, true},
		{"missing_total", nil, 0, false},
		{"mailtel_received_total", []string{`stage="nope"`}, 0, false},
	} {
		t.Run(tc.name+strings.Join(tc.match, ","), func(t *testing.T) {
			got, ok := ss.Sum(tc.name, tc.match...)
			if got != tc.want || ok != tc.ok {
				t.Errorf("Sum = %v, %v; want %v, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
	for _, bad := range []string{"metric_without_value\n", "m{a=\"b\" 1\n", "m abc\n", "m 1 2 3\n"} {
		if _, err := ParsePromText(strings.NewReader(bad)); err == nil {
			t.Errorf("ParsePromText(%q) succeeded", bad)
		}
	}
}

// TestScrapeAndGather reads one registry twice, over HTTP as a router's
// /metrics is read, and in process: both give the same figures.
func TestScrapeAndGather(t *testing.T) {
	reg := prometheus.NewRegistry()
	cv := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mailtel_routed_total"}, []string{"sink"})
	reg.MustRegister(cv)
	cv.WithLabelValues("log").Add(5)
	cv.WithLabelValues("hook").Add(3)
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()

	scraped, err := Scrape(context.Background(), srv.URL, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	gathered, err := Gather(reg)
	if err != nil {
		t.Fatal(err)
	}
	for name, ss := range map[string]PromSamples{"scraped": scraped, "gathered": gathered} {
		if v, _ := ss.Sum("mailtel_routed_total"); v != 8 {
			t.Errorf("%s: sum %v, want 8", name, v)
		}
		if v, _ := ss.Sum("mailtel_routed_total", `sink="hook"`); v != 3 {
			t.Errorf("%s: hook %v, want 3", name, v)
		}
	}
	if got := CounterValue(cv.WithLabelValues("log")); got != 5 {
		t.Errorf("CounterValue = %v, want 5", got)
	}
	notFound := httptest.NewServer(http.NotFoundHandler())
	defer notFound.Close()
	if _, err := Scrape(context.Background(), notFound.URL, time.Second); err == nil {
		t.Error("scraping a 404 succeeded")
	}
}

// failing is a sink whose Write fails: TimedSink must pass the error on
// and record nothing.
type failing struct{}

func (failing) Write(context.Context, []*schema.Event) error { return errors.New("disk full") }
func (failing) Close(context.Context) error                  { return nil }

// TestTimedSink wraps a real log tracer: the events reach the file, and the
// decorator records the count, the time of the write and the latency of
// each published event.
func TestTimedSink(t *testing.T) {
	dir := t.TempDir()
	tr, err := tracer.New("log", &tracer.Config{Type: "log", Path: dir, Prefix: "t", Format: "json", Rotate: "never"}, tracer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	rec := NewLatencyRecorder()
	ts := &TimedSink{Sink: tr, Recorder: rec}
	defer ts.Close(context.Background())

	batch := []*schema.Event{
		{ID: "e1", Type: "auth.success", Time: time.Now().UTC(), Server: "stalwart"},
		{ID: "e2", Type: "auth.failed", Time: time.Now().UTC(), Server: "stalwart"},
	}
	before := time.Now()
	rec.Published("e1", before.Add(-5*time.Millisecond))
	rec.Published("e2", before.Add(-10*time.Millisecond))
	rec.Published("e3", before) // never written
	if err := ts.Write(context.Background(), batch); err != nil {
		t.Fatal(err)
	}
	if err := ts.Write(context.Background(), batch[:1]); err != nil { // a redelivery
		t.Fatal(err)
	}
	if ts.Written() != 3 {
		t.Errorf("written %d, want 3", ts.Written())
	}
	if lw := ts.LastWrite(); lw.Before(before) || lw.After(time.Now()) {
		t.Errorf("last write %v not within the test", lw)
	}
	lat, unmatched, pending := rec.Result()
	if len(lat) != 2 || unmatched != 1 || pending != 1 {
		t.Fatalf("latencies %v, unmatched %d, pending %d; want 2, 1, 1", lat, unmatched, pending)
	}
	if lat[0] < 5*time.Millisecond || lat[1] < 10*time.Millisecond {
		t.Errorf("latencies %v shorter than the time since publishing", lat)
	}
	f, err := os.Open(filepath.Join(dir, "t"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	lines := 0
	for sc := bufio.NewScanner(f); sc.Scan(); {
		lines++
	}
	if lines != 2 {
		t.Errorf("the file holds %d lines, want 2 (the tracer skips the redelivery)", lines)
	}

	bad := &TimedSink{Sink: failing{}}
	if err := bad.Write(context.Background(), batch); err == nil || bad.Written() != 0 || !bad.LastWrite().IsZero() {
		t.Errorf("failing write: err %v, written %d, last %v", err, bad.Written(), bad.LastWrite())
	}
}

func TestReportJSONAndPrint(t *testing.T) {
	r := &Report{Meta: Meta{Mode: "short", N: 10, Router: "process", GoVersion: "go1.26", GOMAXPROCS: 2, NumCPU: 2}}
	r.Add("single", "throughput", 12345.6, "events/s")
	r.Add("single", "router cpu", math.NaN(), "µs/event")
	r.Add("latency", "publish->write p99", 0.5, "ms")
	r.Series = map[string][]Sample{"rss": {{At: 10 * time.Second, Value: 40}}}
	path := filepath.Join(t.TempDir(), "out", "results.json")
	if err := r.WriteJSON(path); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Meta Meta
		Rows []struct {
			Scenario, Metric, Unit string
			Value                  *float64
		}
		Series map[string][]struct {
			At    float64 `json:"at_seconds"`
			Value float64
		}
	}
	if err := json.Unmarshal(data, &got); err != nil {
		t.Fatal(err)
	}
	if got.Meta.N != 10 || len(got.Rows) != 3 || *got.Rows[0].Value != 12345.6 || got.Rows[1].Value != nil ||
		got.Series["rss"][0].At != 10 {
		t.Errorf("round trip: %s", data)
	}
	var out strings.Builder
	if err := r.Print(&out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"12346", "n/a", "0.500", "publish->write p99"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
	if v, ok := r.Get("single", "throughput"); !ok || v != 12345.6 {
		t.Errorf("Get = %v, %v", v, ok)
	}
}
