package sinks_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mailtel/mailtel/pipeline"
	"github.com/mailtel/mailtel/pipeline/app"
	"github.com/mailtel/mailtel/pipeline/config"
	"github.com/mailtel/mailtel/pipeline/obs"
	"github.com/mailtel/mailtel/pipeline/pipelinetest"
	"github.com/mailtel/mailtel/pipeline/sinks"
	"github.com/mailtel/mailtel/schema"
)

// sinksProc is one in-process sinks process: what `sinks run` starts.
type sinksProc struct {
	p   *app.Process
	log *pipelinetest.SyncBuffer
	err chan error // what sinks.Run returned
}

// startSinks starts a process of the configuration doc, as `sinks --sink
// names...` does, until ctx ends.
func startSinks(ctx context.Context, t *testing.T, env *pipelinetest.Env, doc string, names ...string) *sinksProc {
	t.Helper()
	cfg, err := config.Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	cfg.NATS = env.NATS
	sp := &sinksProc{log: &pipelinetest.SyncBuffer{}, err: make(chan error, 1)}
	sp.p, err = app.Start(ctx, cfg, app.Options{Name: "sinks", HTTP: cfg.Sinks.HTTP, LogOutput: sp.log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sp.p.Close)
	go func() { sp.err <- sinks.Run(ctx, sp.p, names, sinks.Options{}) }()
	return sp
}

// waitLog waits until the process logged want, or fails.
func (sp *sinksProc) waitLog(t *testing.T, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(sp.log.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("the process did not log %q:\n%s", want, sp.log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestIdenticalSinksProcesses runs two sinks processes of one
// configuration on one machine, as two identical `sinks --sink log`
// commands do: both start, the second serves health and metrics on a free
// port since the first has [sinks] http, the second log sink takes
// instance slot "2", both answer /healthz and /readyz, and they share the
// work: each writes some events to its own file, and together they write
// every event exactly once.
func TestIdenticalSinksProcesses(t *testing.T) {
	const n = 6000
	env := pipelinetest.Start(t)
	dir := t.TempDir()
	httpAddr := pipelinetest.FreeAddr(t)
	doc := fmt.Sprintf(`
[tracer.log]
type = "log"
level = "trace"
path = %q
prefix = "mail"
format = "json"

[sinks]
batch = 50
http = %q
`, dir, httpAddr)
	cfg, err := config.Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	env.EnsureStreams(t, cfg)

	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a := startSinks(ctx, t, env, doc, "log")
	a.waitLog(t, "sink running")
	b := startSinks(ctx, t, env, doc, "log")
	b.waitLog(t, "sink running")

	if a.p.HTTPAddr != httpAddr || b.p.HTTPAddr == httpAddr || b.p.HTTPAddr == "" {
		t.Fatalf("health and metrics on %s and %s, want %s and another port", a.p.HTTPAddr, b.p.HTTPAddr, httpAddr)
	}
	if want := "health and metrics on " + b.p.HTTPAddr + " (" + httpAddr + " is taken by another process)"; !strings.Contains(b.log.String(), want) {
		t.Errorf("the second process does not log %q:\n%s", want, b.log.String())
	}
	for name, sp := range map[string]*sinksProc{"": a, "2": b} {
		if want := `took instance slot \"` + name + `\"`; !strings.Contains(sp.log.String(), want) {
			t.Errorf("process on %s does not log %q:\n%s", sp.p.HTTPAddr, want, sp.log.String())
		}
		for path, want := range map[string]string{"/healthz": "ok\n", "/readyz": "ready\n"} {
			if code, body := httpGet(t, "http://"+sp.p.HTTPAddr+path); code != http.StatusOK || body != want {
				t.Errorf("%s%s: %d %q", sp.p.HTTPAddr, path, code, body)
			}
		}
	}

	wg.Add(1)
	go func() {
		defer wg.Done()
		pipeline.NewRouter(env.JS, pipeline.NewTable(cfg.SinkSpecs(), cfg.Levels), pipeline.RouterOptionsFrom(cfg),
			zerolog.Nop(), obs.NewMetrics(), obs.NewHealth()).Run(ctx)
	}()
	evs := make([]schema.Event, n)
	for i := range evs {
		evs[i] = schema.Event{ID: fmt.Sprintf("ev-%05d", i), Type: "auth.success", Time: time.Now(), Host: "mx1", Server: "stalwart",
			Fields: []schema.Field{{Key: "accountId", Value: schema.Uint(uint64(i))}}}
	}
	pub := pipeline.NewPublisher(env.JS, cfg.Levels, 512, nil)
	acks, err := pub.PublishAll(ctx, evs)
	pub.Close(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i, ack := range acks {
		if ack.Err != nil {
			t.Fatalf("publish %s: %v", evs[i].ID, ack.Err)
		}
	}

	// read returns how often each file (the log files of the two slots)
	// holds each id.
	read := func() (map[string]int, map[string]int) {
		ids, perFile := map[string]int{}, map[string]int{}
		ents, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), ".") {
				continue // sidecars and instance locks
			}
			data, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
				if line == "" {
					continue
				}
				var rec struct{ ID string }
				if err := json.Unmarshal([]byte(line), &rec); err != nil {
					t.Fatalf("%s: bad line %q: %v", e.Name(), line, err)
				}
				ids[rec.ID]++
				perFile[e.Name()]++
			}
		}
		return ids, perFile
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		ids, _ := read()
		if len(ids) >= n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d events written", len(ids), n)
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond) // a duplicate would show up now
	cancel()
	for _, sp := range []*sinksProc{a, b} {
		if err := <-sp.err; err != nil {
			t.Errorf("sinks on %s: %v", sp.p.HTTPAddr, err)
		}
	}

	ids, perFile := read()
	for id, c := range ids {
		if c != 1 {
			t.Errorf("event %s written %d times", id, c)
		}
	}
	if len(ids) != n {
		t.Errorf("%d distinct events written, want %d", len(ids), n)
	}
	slots := map[string]int{}
	for name, c := range perFile {
		slot := ""
		if strings.HasPrefix(name, "mail.2.") {
			slot = "2"
		}
		slots[slot] += c
	}
	if slots[""] == 0 || slots["2"] == 0 || len(slots) != 2 {
		t.Errorf("events written per slot: %v, want some by each of \"\" and \"2\" (files %v)", slots, perFile)
	}
	t.Logf("%d events, each once: %v", n, perFile)
}

// TestSecondMetricsSink: the metrics sink does not move to a free port
// like the health endpoint (Prometheus scrapes one address): a second
// process running it fails, saying why.
func TestSecondMetricsSink(t *testing.T) {
	env := pipelinetest.Start(t)
	doc := fmt.Sprintf("[metrics.prometheus]\nenable = true\nlisten = %q\n[sinks]\nhttp = %q\n", pipelinetest.FreeAddr(t), pipelinetest.FreeAddr(t))
	cfg, err := config.Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	env.EnsureStreams(t, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	first := startSinks(ctx, t, env, doc)
	first.waitLog(t, "sink running")
	second := startSinks(ctx, t, env, doc)
	select {
	case err := <-second.err:
		if !obs.AddrInUse(err) || !strings.Contains(err.Error(), `another process running the metrics sink "metrics"`) ||
			!strings.Contains(err.Error(), "one process only") {
			t.Errorf("second metrics sink: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a second metrics sink runs")
	}
	cancel()
	if err := <-first.err; err != nil {
		t.Errorf("first metrics sink: %v", err)
	}
}
