package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mailtel/mailtel/pipeline/app"
	"github.com/mailtel/mailtel/pipeline/benchkit"
)

// TestMain lets the test binary be the raw hop's process, as the hop
// scenario starts this binary again to run it.
func TestMain(m *testing.M) {
	if spec := os.Getenv(rawHopEnv); spec != "" {
		app.Main("bench raw hop", func(ctx context.Context) error { return runRawHopChild(ctx, spec) })
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestParseFlags(t *testing.T) {
	for _, tc := range []struct {
		name    string
		args    []string
		wantErr string
		check   func(*options) bool
	}{
		{"defaults", nil, "", func(o *options) bool {
			return o.n == 300_000 && o.latency == 10*time.Second && len(o.only) == len(allScenarios)
		}},
		{"short", []string{"-short"}, "", func(o *options) bool { return o.n == 50_000 && o.latency == 4*time.Second }},
		{"n overrides short", []string{"-short", "-n", "7"}, "", func(o *options) bool { return o.n == 7 }},
		{"soak measures the rates and the hop first", []string{"-soak", "2m"}, "", func(o *options) bool {
			return slices.Equal(o.only, []string{scSingle, scSingleServer, scHop}) && slices.Equal(o.soaks, []string{scSoak, scSoakServer})
		}},
		{"soak of the router only", []string{"-soak", "2m", "-soak-variants", "router"}, "", func(o *options) bool {
			return slices.Equal(o.only, []string{scSingle, scHop}) && slices.Equal(o.soaks, []string{scSoak})
		}},
		{"soak at a given rate", []string{"-soak", "2m", "-rate", "100"}, "", func(o *options) bool { return len(o.only) == 0 }},
		{"soak shorter than its warm-up", []string{"-soak", "1m"}, "-warmup 1m0s", nil},
		{"soak shorter than its warm-up in whole intervals", []string{"-soak", "40s", "-warmup", "10s"}, "-warmup 10s (1m0s in whole -interval 1m0s)", nil},
		{"warm-up of whole intervals", []string{"-soak", "90s", "-warmup", "30s", "-interval", "30s"}, "", func(o *options) bool { return o.warmup == 30*time.Second }},
		{"unknown soak variant", []string{"-soak", "2m", "-soak-variants", "router,kafka"}, `unknown variant "kafka"`, nil},
		{"negative n", []string{"-n", "-1"}, "-n -1", nil},
		{"three rounds by default", nil, "", func(o *options) bool { return o.rounds == 3 }},
		{"no rounds", []string{"-rounds", "0"}, "-rounds 0", nil},
		{"unknown scenario", []string{"-only", "single,turbo"}, `unknown scenario "turbo"`, nil},
		{"latency alone needs a rate", []string{"-only", "latency"}, "give -rate", nil},
		{"latency-server needs single-server", []string{"-only", "single,latency-server"}, "add it, or give -rate", nil},
		{"latency alone with a rate", []string{"-only", "latency", "-rate", "10"}, "", func(o *options) bool { return o.rate == 10 }},
		{"bad router", []string{"-router", "remote"}, `-router "remote"`, nil},
		{"embedded server by default", nil, "", func(o *options) bool { return o.natsServer == serverEmbedded }},
		{"a soak's server is a process", []string{"-soak", "2m"}, "", func(o *options) bool { return o.natsServer == serverProcess }},
		{"a soak on the embedded server", []string{"-soak", "2m", "-nats-server", "embedded"}, "", func(o *options) bool { return o.natsServer == serverEmbedded }},
		{"bad server", []string{"-nats-server", "remote"}, `-nats-server "remote"`, nil},
		{"server environment", []string{"-soak", "2m", "-nats-server-env", "GOGC=50", "-nats-server-env", "GOMEMLIMIT=2GiB"}, "", func(o *options) bool {
			return slices.Equal(o.serverEnv, []string{"GOGC=200", "GOMEMLIMIT=3GiB", "GOGC=50", "GOMEMLIMIT=2GiB"})
		}},
		{"a server process gets deploy's GC settings", []string{"-soak", "2m"}, "", func(o *options) bool {
			return slices.Equal(o.serverEnv, []string{"GOGC=200", "GOMEMLIMIT=3GiB"})
		}},
		{"an embedded server gets no environment", []string{"-soak", "2m", "-nats-server", "embedded"}, "", func(o *options) bool { return len(o.serverEnv) == 0 }},
		{"server environment without a server process", []string{"-nats-server-env", "GOGC=50"}, "wants -nats-server process", nil},
		{"server environment without a value", []string{"-soak", "2m", "-nats-server-env", "GOGC"}, "want KEY=VALUE", nil},
		{"bad duration", []string{"-latency", "soon"}, "invalid value", nil},
		{"negative rate", []string{"-rate", "-5"}, "-rate -5", nil},
		{"stray argument", []string{"fast"}, `unexpected argument "fast"`, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			o, err := parseFlags(tc.args, &stderr)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error()+stderr.String(), tc.wantErr) {
					t.Fatalf("err %v (stderr %q), want %q", err, stderr.String(), tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tc.check(o) {
				t.Errorf("options %+v", o)
			}
		})
	}
}

func TestHelpHasExample(t *testing.T) {
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), []string{"-help"}, &stdout, &stderr)
	if err == nil || !strings.Contains(stderr.String(), "Example:") || !strings.Contains(stderr.String(), "go run ./cmd/bench -short") {
		t.Errorf("err %v, help:\n%s", err, stderr.String())
	}
}

type result struct {
	Meta struct {
		N         int
		Mode      string
		Router    string
		GoVersion string            `json:"go_version"`
		Settings  map[string]string `json:"settings"`
	}
	Rows []struct {
		Scenario, Metric, Unit string
		Value                  *float64
	}
	Series map[string][]struct {
		At    float64 `json:"at_seconds"`
		Value float64
	}
}

func (r result) get(t *testing.T, scenario, metric string) float64 {
	t.Helper()
	for _, row := range r.Rows {
		if row.Scenario == scenario && row.Metric == metric {
			if row.Value == nil {
				t.Fatalf("%s %s has no value", scenario, metric)
			}
			return *row.Value
		}
	}
	t.Fatalf("no row %s %s", scenario, metric)
	return 0
}

func runBench(t *testing.T, args ...string) (result, string) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "bench", "results.json")
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := run(ctx, append(args, "-out", out, "-stall", "20s"), &stdout, &stderr); err != nil {
		t.Fatalf("bench: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var r result
	if err := json.Unmarshal(data, &r); err != nil {
		t.Fatal(err)
	}
	return r, stdout.String()
}

// TestRunInProcess runs every scenario on a few thousand events with the
// router in this process: every figure is there and plausible.
func TestRunInProcess(t *testing.T) {
	r, table := runBench(t, "-n", "3000", "-latency", "1s", "-router", "inproc")
	if r.Meta.N != 3000 || r.Meta.Router != "inproc" || r.Meta.GoVersion == "" {
		t.Errorf("meta %+v", r.Meta)
	}
	for _, m := range []struct{ sc, metric string }{
		{scBaseline, "publish only"}, {scBaseline, "consume only"}, {scBaseline, "publish+consume"},
		{scSingle, "throughput"}, {scFanout, "throughput"}, {scLatency, "published rate"},
		{scHop, "router"}, {scHop, "raw-hop"}, {scSummary, "router/raw-hop"},
		{scSingleServer, "throughput"}, {scFanoutServer, "throughput"}, {scLatencyServer, "published rate"},
	} {
		if v := r.get(t, m.sc, m.metric); v <= 0 {
			t.Errorf("%s %s = %v", m.sc, m.metric, v)
		}
	}
	for _, sc := range []string{scFanout, scFanoutServer} {
		for _, sink := range []string{"log", "metrics", "hook"} {
			if v := r.get(t, sc, "written "+sink); v != 3000 {
				t.Errorf("%s: %s wrote %v, want 3000 (every synthetic event has a level a trace sink and \"*\" take)", sc, sink, v)
			}
		}
	}
	// With server fan-out the router copies nothing.
	if v := r.get(t, scFanoutServer, "copies routed"); v != 0 {
		t.Errorf("fanout-server: the router copied %v events", v)
	}
	p50, p99 := r.get(t, scLatency, "publish->write p50"), r.get(t, scLatency, "publish->write p99")
	if p50 <= 0 || p99 < p50 {
		t.Errorf("latency p50 %v p99 %v", p50, p99)
	}
	for _, ratio := range []string{"single/baseline", "single-server/baseline", "fanout-server/baseline", "round 1: single-server/baseline"} {
		if v := r.get(t, scSummary, ratio); v <= 0 {
			t.Errorf("%s %v", ratio, v)
		}
	}
	if !strings.Contains(table, "publish->write p99") {
		t.Errorf("table:\n%s", table)
	}
}

// TestRunRouterProcess builds the real router and measures it from
// outside.
func TestRunRouterProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("builds cmd/router")
	}
	r, _ := runBench(t, "-n", "3000", "-only", "single,hop", "-rounds", "1")
	if cpu := r.get(t, scSingle, "router cpu"); cpu <= 0 {
		t.Errorf("router cpu %v µs/event", cpu)
	}
	if allocs := r.get(t, scSingle, "router allocs"); allocs <= 0 {
		t.Errorf("router allocs %v per event", allocs)
	}
	if rss := r.get(t, scSingle, "router peak rss"); rss < 1 || rss > 4096 {
		t.Errorf("router peak rss %v MiB", rss)
	}
	// The raw hop ran in a process of its own (this test binary again).
	if v := r.get(t, scSummary, "router/raw-hop"); v <= 0 {
		t.Errorf("router/raw-hop %v", v)
	}
}

// TestSoak runs both soak variants for a few seconds, with intervals of a
// second and a second of warm-up.
func TestSoak(t *testing.T) {
	r, table := runBench(t, "-soak", "3500ms", "-sample", "500ms", "-interval", "1s", "-warmup", "1s", "-rate", "500", "-router", "inproc")
	if r.Meta.Mode != "soak" || r.Meta.Settings["nats_server"] != serverProcess {
		t.Errorf("mode %q, nats server %q", r.Meta.Mode, r.Meta.Settings["nats_server"])
	}
	// 3.5 s is shorter than the warm-up plus a duplicate window: the verdicts say so.
	if n := strings.Count(table, "the soak ended before the duplicate windows were full"); n != 2 {
		t.Errorf("%d verdict lines say the soak was too short for a steady state, want 2 (one per variant):\n%s", n, table)
	}
	for _, sc := range []string{scSoak, scSoakServer} {
		for _, p := range []string{"nats-server", "bench"} {
			slope, slopeErr, v := r.get(t, sc, "rss slope "+p), r.get(t, sc, "rss slope error "+p), r.get(t, sc, "rss verdict "+p)
			if want := benchkit.Judge(slope, slopeErr); v != float64(want) {
				t.Errorf("%s: rss verdict %s %v for a slope of %v ± %v, want %v", sc, p, v, slope, slopeErr, float64(want))
			}
			if !strings.Contains(table, fmt.Sprintf("%s %s (%+.2f ± %.2f MiB/min)", p, benchkit.Judge(slope, slopeErr), slope, slopeErr)) {
				t.Errorf("%s: no verdict on %s in the output", sc, p)
			}
		}
		p99, max := r.get(t, sc, "publish->write p99"), r.get(t, sc, "publish->write max")
		if p99 <= 0 || max < p99 {
			t.Errorf("%s: p99 %v max %v", sc, p99, max)
		}
		if n, warm := r.get(t, sc, "events measured"), r.get(t, sc, "events written in warm-up"); n <= 0 || warm <= 0 || n+warm > 1800 {
			t.Errorf("%s: %v events measured after the warm-up, %v in it (published ~1750)", sc, n, warm)
		}
		// The router in process; the server in a process of its own.
		r.get(t, sc, "rss slope nats-server")
		r.get(t, sc, "rss slope bench")
		if v := r.get(t, sc, "rss max nats-server"); v <= 0 {
			t.Errorf("%s: nats-server rss max %v", sc, v)
		}
		for _, p := range []string{"nats-server", "bench"} {
			if v := r.get(t, sc, "cpu "+p); !(v > 0) {
				t.Errorf("%s: cpu %s %v µs/event", sc, p, v)
			}
		}
		if v := r.get(t, sc, "dup window ids max (estimate)"); v <= 0 {
			t.Errorf("%s: %v ids in the duplicate windows", sc, v)
		}
		// Per interval, every process's CPU in cores and the machine's
		// shares, in percent.
		for name, ok := range map[string]func(float64) bool{
			"cpu cores nats-server": func(v float64) bool { return v > 0 && v <= float64(runtime.NumCPU()) },
			"cpu cores bench":       func(v float64) bool { return v > 0 && v <= float64(runtime.NumCPU()) },
			"host cpu steal %":      func(v float64) bool { return v >= 0 && v <= 100 },
			"host cpu iowait %":     func(v float64) bool { return v >= 0 && v <= 100 },
		} {
			got := r.Series[sc+" per interval: "+name]
			if len(got) == 0 {
				t.Errorf("%s: no series %q", sc, name)
			}
			for _, v := range got {
				if !ok(v.Value) {
					t.Errorf("%s: %s %v at %v", sc, name, v.Value, v.At)
				}
			}
		}
		// The server's heap: its slope from the live heap of its gctrace
		// lines, and a profile after the memory warm-up and at the end.
		r.get(t, sc, "heap slope nats-server")
		r.get(t, sc, "rss slope nats-server (second half)")
		profiles := strings.Fields(r.Meta.Settings[sc+".heap_profiles"])
		if len(profiles) != 2 {
			t.Errorf("%s: heap profiles %q, want two", sc, profiles)
		}
		for _, p := range profiles {
			if data, err := os.ReadFile(p); err != nil || len(data) < 2 || data[0] != 0x1f || data[1] != 0x8b {
				t.Errorf("%s: heap profile %s is not a gzipped profile (%d bytes, %v)", sc, p, len(data), err)
			}
		}
	}
	if !strings.Contains(table, "go tool pprof -top -base") {
		t.Errorf("no command to compare the heap profiles:\n%s", table)
	}
	if !strings.Contains(table, "soak-server per 1s") || !strings.Contains(table, "nats-server rss") || !strings.Contains(table, "io wait%") {
		t.Errorf("table:\n%s", table)
	}
	if !strings.Contains(table, "soak.png") {
		t.Errorf("no plot named:\n%s", table)
	}
}

// TestInterrupted stops a run from outside: it fails saying so, and leaves
// no temporary directory behind.
func TestInterrupted(t *testing.T) {
	before, _ := filepath.Glob(filepath.Join(os.TempDir(), "mailtel-bench-*"))
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(1500*time.Millisecond, cancel)
	var stdout, stderr bytes.Buffer
	err := run(ctx, []string{"-n", "2000", "-only", "single,latency", "-latency", "30s", "-router", "inproc",
		"-out", filepath.Join(t.TempDir(), "r.json")}, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "context canceled") {
		t.Fatalf("err %v", err)
	}
	after, _ := filepath.Glob(filepath.Join(os.TempDir(), "mailtel-bench-*"))
	if len(after) > len(before) {
		t.Errorf("temporary directories left: before %v, after %v", before, after)
	}
}

// TestSustainedThenSoak runs the sustained phase, shortened to seconds,
// and a soak at half the rate it measured; the phase checks itself that
// every event was written once and none dead-lettered.
func TestSustainedThenSoak(t *testing.T) {
	fill, measure := sustainedFill, sustainedMeasure
	sustainedFill, sustainedMeasure = time.Second, 2*time.Second
	t.Cleanup(func() { sustainedFill, sustainedMeasure = fill, measure })
	r, _ := runBench(t, "-n", "3000", "-rounds", "1", "-soak", "3s", "-soak-variants", "router",
		"-sample", "500ms", "-interval", "1s", "-warmup", "1s", "-router", "inproc", "-nats-server", "embedded")
	sus := r.get(t, scSustained, "throughput")
	if sus <= 0 {
		t.Fatalf("sustained throughput %v", sus)
	}
	if got := r.get(t, scSoak, "target rate"); math.Abs(got-sus/2) > sus*1e-9 {
		t.Errorf("soak at %v events/s, want half the sustained %v", got, sus)
	}
	if m := r.get(t, scSustained, "measured"); m < 1.9 || m > 3 {
		t.Errorf("measured for %vs, want about 2s", m)
	}
	if n, whole := r.get(t, scSustained, "events"), r.get(t, scSustained, "throughput, whole phase"); n < whole*2.9 {
		t.Errorf("%v events published in the phase, fewer than were written in its 3s (%v/s)", n, whole)
	}
	if v := r.get(t, scSummary, scSustained+"/"+scSingle); v <= 0 {
		t.Errorf("sustained/single %v", v)
	}
}
