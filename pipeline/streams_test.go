package pipeline_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mailtel/mailtel/pipeline"
	"github.com/mailtel/mailtel/pipeline/config"
	"github.com/mailtel/mailtel/pipeline/pipelinetest"
)

// TestEnsureStreamsPerSink checks that every sink gets a ROUTED stream of
// its own holding exactly routed.<sink>.>, that ensuring again changes
// nothing, and that a single ROUTED stream of an earlier mailtel, holding
// every routed.> subject, gives an error that says what to do.
func TestEnsureStreamsPerSink(t *testing.T) {
	env := pipelinetest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cfg := config.Default()
	for range 2 {
		if err := pipeline.EnsureStreams(ctx, env.JS, cfg, "log", "siem"); err != nil {
			t.Fatal(err)
		}
	}
	for name, subject := range map[string]string{"EVENTS": "events.>", "DLQ": "dlq.>", "ROUTED_log": "routed.log.>", "ROUTED_siem": "routed.siem.>"} {
		st, err := env.JS.Stream(ctx, name)
		if err != nil {
			t.Fatalf("stream %s: %v", name, err)
		}
		if got := st.CachedInfo().Config.Subjects; len(got) != 1 || got[0] != subject {
			t.Errorf("stream %s subjects %v, want [%s]", name, got, subject)
		}
		window := cfg.Streams.Duplicates.D()
		if strings.HasPrefix(name, "ROUTED_") {
			window = cfg.Streams.RoutedDuplicates.D()
		}
		if got := st.CachedInfo().Config.Duplicates; got != window {
			t.Errorf("stream %s duplicate window %v, want %v", name, got, window)
		}
	}

	old := pipelinetest.Start(t)
	if _, err := old.JS.CreateStream(ctx, jetstream.StreamConfig{Name: "ROUTED", Subjects: []string{"routed.>"}}); err != nil {
		t.Fatal(err)
	}
	err := pipeline.EnsureStreams(ctx, old.JS, cfg, "log")
	if err == nil || !strings.Contains(err.Error(), "create or update stream ROUTED_log") || !strings.Contains(err.Error(), "a stream of an earlier mailtel, ROUTED") {
		t.Errorf("EnsureStreams next to an old ROUTED stream: %v", err)
	}
}

// TestEnsureStreamsServerFanOut switches a sink from the router to the
// server and back: the server's copies start right after the router
// consumer's ack floor, ensuring again leaves the source where it is, and
// going back to the router is refused with what to do.
func TestEnsureStreamsServerFanOut(t *testing.T) {
	env := pipelinetest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cfg, err := config.Parse([]byte("[tracer.log]\ntype = \"stdout\"\nlevel = \"trace\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := pipeline.EnsureStreams(ctx, env.JS, cfg); err != nil {
		t.Fatal(err)
	}
	const n, routed = 100, 40
	for i := range n {
		if _, err := env.JS.Publish(ctx, "events.auth.success", []byte(strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	// The router acked the first 40 events.
	cons, err := env.JS.CreateOrUpdateConsumer(ctx, cfg.Streams.Events, jetstream.ConsumerConfig{
		Durable: cfg.Router.Consumer, AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(routed)
	if err != nil {
		t.Fatal(err)
	}
	for m := range batch.Messages() {
		if err := m.DoubleAck(ctx); err != nil {
			t.Fatal(err)
		}
	}

	cfg.Router.ServerFanOut = []string{"log"}
	for range 2 {
		if err := pipeline.EnsureStreams(ctx, env.JS, cfg); err != nil {
			t.Fatal(err)
		}
	}
	st, err := env.JS.Stream(ctx, "ROUTED_log")
	if err != nil {
		t.Fatal(err)
	}
	srcs := st.CachedInfo().Config.Sources
	if len(srcs) != 1 || srcs[0].Name != "EVENTS" || srcs[0].OptStartSeq != routed+1 {
		t.Fatalf("sources of ROUTED_log: %+v, want EVENTS from sequence %d", srcs, routed+1)
	}
	var info *jetstream.StreamInfo
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if info, err = st.Info(ctx); err != nil {
			t.Fatal(err)
		}
		if info.State.Msgs >= n-routed {
			break
		}
	}
	if info.State.Msgs != n-routed {
		t.Fatalf("ROUTED_log holds %d messages, want %d", info.State.Msgs, n-routed)
	}
	first, err := st.GetMsg(ctx, info.State.FirstSeq)
	if err != nil {
		t.Fatal(err)
	}
	if first.Subject != "routed.log.auth.success" || string(first.Data) != strconv.Itoa(routed) {
		t.Errorf("first copy: subject %s data %q, want routed.log.auth.success %q", first.Subject, first.Data, strconv.Itoa(routed))
	}

	cfg.Router.ServerFanOut = nil
	err = pipeline.EnsureStreams(ctx, env.JS, cfg)
	if err == nil || !strings.Contains(err.Error(), "not in [router] server-fan-out") || !strings.Contains(err.Error(), "nats stream rm ROUTED_log") {
		t.Errorf("EnsureStreams back to the router: %v", err)
	}
}
