package status

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func ptr[T any](v T) *T { return &v }

// fixedStatus is a pipeline with a paused webhook, a sink no process
// reads, a sink whose stream is missing, and dead letters of every stage.
func fixedStatus() *Status {
	now := time.Date(2026, 11, 21, 12, 0, 5, 0, time.UTC)
	at := func(d time.Duration) *time.Time { return ptr(now.Add(-d)) }
	return &Status{
		Time:         now,
		Server:       "nats://127.0.0.1:4222",
		RateInterval: Duration(2 * time.Second),
		Sinks: []Sink{
			{Name: "log", State: StateUp, FedBy: "router", Behind: 12, Rate: ptr(1310.4), Written: ptr(152300.0)},
			{Name: "metrics", State: StateUp, FedBy: "server", Behind: 0, Rate: ptr(0.5)},
			{Name: "old", State: StateNoStream, Reason: "its ROUTED stream does not exist: no process with a configuration naming the sink has started"},
			{Name: "security", State: StateNotRunning, FedBy: "router", Behind: 1234, Rate: ptr(0.0),
				Reason: "no pull request waiting and nothing delivered lately: no sinks process reads it, or one is paused"},
			{Name: "siem", State: StatePaused, FedBy: "router", Behind: 48211, Rate: ptr(0.0), DeadLetters: 3,
				Reason: "destination failing since 2026-11-21T11:58:00Z: POST https://siem.example.com/mail: 503 Service Unavailable"},
		},
		Consumers: []Consumer{
			{Stream: "EVENTS", Name: "router", State: StateUp, Pending: 3, AckPending: 500, Waiting: 2, AckFloor: 152300, LastActive: at(0), Rate: ptr(1310.4)},
			{Stream: "ROUTED_log", Name: "sink-log", Sink: "log", State: StateUp, Pending: 0, AckPending: 12, Waiting: 1, AckFloor: 152288, LastActive: at(time.Second), Rate: ptr(1310.4)},
			{Stream: "ROUTED_metrics", Name: "sink-metrics", Sink: "metrics", State: StateUp, Waiting: 1, AckFloor: 17, LastActive: at(3 * time.Second), Rate: ptr(0.5)},
			{Stream: "ROUTED_security", Name: "sink-security", Sink: "security", State: StateNotRunning, Pending: 1234, AckFloor: 20000, LastActive: at(2*time.Hour + 3*time.Minute), Rate: ptr(0.0)},
			{Stream: "ROUTED_siem", Name: "sink-siem", Sink: "siem", State: StatePaused, Pending: 47711, AckPending: 500, Redelivered: 500, AckFloor: 90, LastActive: at(2*time.Minute + 5*time.Second), Rate: ptr(0.0)},
			{Stream: "DLQ", Name: "audit", State: StateNotRunning, Pending: 7, LastActive: nil},
		},
		Streams: []Stream{
			{Name: "EVENTS", Messages: 152303, Bytes: 31_457_280, First: at(6*24*time.Hour + 4*time.Hour), Last: at(0),
				Duplicates: Duration(10 * time.Minute), WindowIDs: 786240, WindowBytes: 786240 * BytesPerID},
			{Name: "ROUTED_log", Messages: 152300, Bytes: 31_000_000, First: at(6 * 24 * time.Hour), Last: at(time.Second),
				Duplicates: Duration(2 * time.Minute), WindowIDs: 157248, WindowBytes: 157248 * BytesPerID},
			{Name: "ROUTED_metrics", Messages: 17, Bytes: 3400, First: at(5 * time.Minute), Last: at(3 * time.Second),
				Duplicates: Duration(2 * time.Minute), WindowIDs: 6, WindowBytes: 6 * BytesPerID},
			{Name: "ROUTED_old", Missing: true},
			{Name: "ROUTED_security", Messages: 21234, Bytes: 4_400_000, First: at(3 * time.Hour), Last: at(7 * time.Second),
				Duplicates: Duration(90 * time.Second), WindowIDs: 80, WindowBytes: 80 * BytesPerID},
			{Name: "ROUTED_siem", Messages: 48301, Bytes: 9_900_000, First: at(50 * time.Minute), Last: at(0),
				Duplicates: Duration(2 * time.Minute), WindowIDs: 2400, WindowBytes: 2400 * BytesPerID},
			{Name: "DLQ", Messages: 12, Bytes: 9000, First: at(26 * time.Hour), Last: at(40 * time.Second),
				Duplicates: Duration(10 * time.Minute), WindowIDs: 3, WindowBytes: 3 * BytesPerID},
		},
		DeadLetters: []DeadLetters{{Stage: "ingest", Count: 7}, {Stage: "router", Count: 2}, {Stage: "sink.siem", Count: 3}},
		Endpoints: []Endpoint{
			{Addr: "127.0.0.1:9101", Ready: "ready"},
			{Addr: "127.0.0.1:9102", Ready: "ready, degraded: sink:siem: destination failing since 2026-11-21T11:58:00Z: POST https://siem.example.com/mail: 503 Service Unavailable"},
			{Addr: "10.0.0.7:9102", Error: "no answer: dial tcp 10.0.0.7:9102: connect: connection refused"},
		},
	}
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (go test -update rewrites it); got:\n%s", path, got)
	}
}

func TestRenderGolden(t *testing.T) {
	for _, tc := range []struct {
		name string
		st   *Status
	}{
		{"status.golden", fixedStatus()},
		{"empty.golden", &Status{Time: fixedStatus().Time, Server: "nats://127.0.0.1:4222", Streams: []Stream{{Name: "EVENTS", Missing: true}, {Name: "DLQ", Missing: true}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := Render(&b, tc.st); err != nil {
				t.Fatal(err)
			}
			golden(t, tc.name, b.Bytes())
		})
	}
}

// The JSON form reads back into the same Status.
func TestStatusJSONRoundTrip(t *testing.T) {
	st := fixedStatus()
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"rate_interval":"2s"`, `"duplicates":"10m0s"`, `"state":"paused"`, `"rate":null`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("JSON lacks %s: %s", want, b)
		}
	}
	var back Status
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(&back, st) {
		t.Errorf("JSON round trip differs:\n got %+v\nwant %+v", back, *st)
	}
}

func TestParseReady(t *testing.T) {
	for _, tc := range []struct {
		line               string
		degraded, notReady map[string]string
	}{
		{"ready", map[string]string{}, map[string]string{}},
		{"ready, degraded: sink:siem: destination failing since 2026-11-21T11:58:00Z: 503; retry later; sink:zz: timeout",
			map[string]string{"siem": "destination failing since 2026-11-21T11:58:00Z: 503; retry later", "zz": "timeout"}, map[string]string{}},
		{"not ready: consumer: stopped; nats: disconnected; sink:log: starting",
			map[string]string{}, map[string]string{"log": "starting"}},
		{"404 page not found", map[string]string{}, map[string]string{}},
	} {
		t.Run(tc.line, func(t *testing.T) {
			d, n := ParseReady(tc.line)
			if !reflect.DeepEqual(d, tc.degraded) || !reflect.DeepEqual(n, tc.notReady) {
				t.Errorf("ParseReady = %q, %q; want %q, %q", d, n, tc.degraded, tc.notReady)
			}
		})
	}
}

func TestParseMetrics(t *testing.T) {
	text := `# HELP mailtel_sink_up 1 while ...
# TYPE mailtel_sink_up gauge
mailtel_sink_up{sink="log"} 1
mailtel_sink_up{sink="we\"ird,}"} 0
mailtel_written_total{sink="log"} 1.5e+06
mailtel_written_total{sink="log",broken 3
go_goroutines 12
`
	got := parseMetrics(strings.NewReader(text), "mailtel_sink_up", "mailtel_written_total")
	want := []metricSample{
		{"mailtel_sink_up", map[string]string{"sink": "log"}, 1},
		{"mailtel_sink_up", map[string]string{"sink": `we"ird,}`}, 0},
		{"mailtel_written_total", map[string]string{"sink": "log"}, 1.5e6},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("parseMetrics = %+v\nwant %+v", got, want)
	}
}

func TestStage(t *testing.T) {
	for subject, want := range map[string]string{
		"dlq.sink.siem.auth.failed":   "sink.siem",
		"dlq.sink.log.unknown":        "sink.log",
		"dlq.ingest.unknown":          "ingest",
		"dlq.router.delivery.dsn-x":   "router",
		"dlq.sink":                    "sink",
		"dlq.custom.stage.auth.login": "custom",
	} {
		if got := Stage(subject); got != want {
			t.Errorf("Stage(%q) = %q, want %q", subject, got, want)
		}
	}
}

func TestFormats(t *testing.T) {
	now := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	for i, tc := range [][2]string{
		{count(0), "0"}, {count(999), "999"}, {count(1000), "1,000"}, {count(1234567), "1,234,567"},
		{size(0), "0 B"}, {size(1023), "1023 B"}, {size(1536), "1.5 KiB"}, {size(3 << 30), "3.0 GiB"},
		{rate(nil), "-"}, {rate(ptr(0.25)), "0.2"}, {rate(ptr(1234.5)), "1,235"},
		{window(10 * time.Minute), "10m"}, {window(90 * time.Second), "1m30s"}, {window(time.Hour), "1h"},
		{window(90 * time.Minute), "1h30m"}, {window(0), "none"},
		{ago(nil, now), "-"}, {ago(ptr(now.Add(time.Second)), now), "0s ago"},
		{ago(ptr(now.Add(-61*time.Second)), now), "1m01s ago"}, {ago(ptr(now.Add(-50*time.Hour)), now), "2d02h ago"},
	} {
		if tc[0] != tc[1] {
			t.Errorf("case %d: got %q, want %q", i, tc[0], tc[1])
		}
	}
}
