package sinks_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailtel/mailtel/catalog"
	"github.com/mailtel/mailtel/pipeline"
	"github.com/mailtel/mailtel/pipeline/app"
	"github.com/mailtel/mailtel/pipeline/config"
	"github.com/mailtel/mailtel/pipeline/ingest"
	"github.com/mailtel/mailtel/pipeline/pipelinetest"
	"github.com/mailtel/mailtel/pipeline/sinks"
	"github.com/mailtel/mailtel/pipeline/synth"
	"github.com/mailtel/mailtel/schema"
)

// TestFileToLogSinksExactlyOnce publishes 10,000 JSON lines with the code
// behind `publisher file`, routes them with a real router and writes them
// with real log sinks, then reads the files: every event a sink should get
// is there exactly once, and nothing else is.
func TestFileToLogSinksExactlyOnce(t *testing.T) {
	const n = 10000
	env := pipelinetest.Start(t)
	dir := t.TempDir()
	cfg, err := config.Parse([]byte(`
[tracing.level]
"auth.success" = "debug"      # info by default: the override keeps it out of "main"
"delivery.attempt-start" = "warn"   # debug by default: the override brings it into "main"

[tracer.main]
type = "log"
level = "info"
path = "` + dir + `"
prefix = "main"
format = "json"
disabled-events = ["network.*"]

[tracer.auth]
type = "log"
level = "trace"
path = "` + dir + `"
prefix = "auth"
format = "json"
events = ["auth.*"]
`))
	if err != nil {
		t.Fatal(err)
	}
	cfg.NATS = env.NATS

	// The input: synthetic Stalwart and Dovecot traffic as JSON lines.
	var lines bytes.Buffer
	g := synth.New(synth.Options{Seed: 42, Start: time.Date(2026, 11, 21, 0, 0, 0, 0, time.UTC)})
	var ev schema.Event
	for i := 0; i < n; i++ {
		g.Next(&ev)
		if ev.Server == "dovecot" {
			lines.Write(schema.AppendDovecot(nil, &ev))
		} else {
			lines.Write(schema.AppendStalwart(nil, &ev))
		}
		lines.WriteByte('\n')
	}
	// What each sink must receive, decided here from the catalog, not by
	// the router's table.
	levels := catalog.NewLevels(map[string]catalog.Level{"auth.success": catalog.LevelDebug, "delivery.attempt-start": catalog.LevelWarn})
	want := map[string]map[string]bool{"main": {}, "auth": {}}
	types := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(lines.Bytes()))
	for sc.Scan() {
		var e schema.Event
		if _, err := ingest.Decode(sc.Bytes(), &e); err != nil {
			t.Fatal(err)
		}
		types[e.Type] = true
		lv := levels.Of(e.Type)
		if lv >= catalog.LevelInfo && lv != catalog.LevelDisable && !strings.HasPrefix(e.Type, "network.") {
			want["main"][e.ID] = true
		}
		if strings.HasPrefix(e.Type, "auth.") && lv != catalog.LevelDisable {
			want["auth"][e.ID] = true
		}
	}
	for _, typ := range []string{"auth.success", "delivery.attempt-start", "network.connection-start", "auth.failed"} {
		if !types[typ] {
			t.Fatalf("the synthetic input has no %s event; the test would prove nothing about it", typ)
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	p, err := app.Start(ctx, cfg, app.Options{Name: "e2e"})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		pipeline.NewRouter(p.JS, pipeline.NewTable(cfg.SinkSpecs(), cfg.Levels), pipeline.RouterOptionsFrom(cfg), p.Log, p.Metrics, p.Health).Run(ctx)
	}()
	go func() {
		defer wg.Done()
		if err := sinks.Run(ctx, p, nil, sinks.Options{}); err != nil {
			t.Errorf("sinks: %v", err)
		}
	}()

	pub := pipeline.NewPublisher(p.JS, cfg.Levels, 1024, p.Metrics)
	counts, err := ingest.File(ctx, bytes.NewReader(lines.Bytes()), pub, p.JS, func(r ingest.Rejection) { t.Errorf("line %d: %v", r.Line, r.Err) })
	pub.Close(ctx)
	if err != nil || counts.Published != n {
		t.Fatalf("published %+v, %v", counts, err)
	}

	read := func(prefix string) map[string]int {
		got := map[string]int{}
		files, _ := filepath.Glob(filepath.Join(dir, prefix+".*"))
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			for _, line := range bytes.Split(bytes.TrimSpace(data), []byte("\n")) {
				if len(line) == 0 {
					continue
				}
				var rec struct{ ID, Type string }
				if err := json.Unmarshal(line, &rec); err != nil {
					t.Fatalf("%s: bad line %q: %v", f, line, err)
				}
				got[rec.ID]++
			}
		}
		return got
	}
	deadline := time.Now().Add(60 * time.Second)
	for len(read("main")) < len(want["main"]) || len(read("auth")) < len(want["auth"]) {
		if time.Now().After(deadline) {
			t.Fatalf("sinks wrote main %d/%d auth %d/%d", len(read("main")), len(want["main"]), len(read("auth")), len(read("auth")))
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond) // anything extra or duplicated shows up now
	cancel()
	wg.Wait()
	for sink, ids := range want {
		got := read(sink)
		for id, c := range got {
			if c != 1 {
				t.Errorf("sink %s wrote %s %d times", sink, id, c)
			}
			if !ids[id] {
				t.Errorf("sink %s wrote %s, which it should not get", sink, id)
			}
		}
		if len(got) != len(ids) {
			t.Errorf("sink %s wrote %d events, want %d", sink, len(got), len(ids))
		}
		t.Logf("sink %s: %d of %d events, each once", sink, len(got), n)
	}
}
