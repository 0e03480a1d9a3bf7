package pipeline_test

import (
	"context"
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
	s := config.Default().Streams
	for range 2 {
		if err := pipeline.EnsureStreams(ctx, env.JS, s, []string{"log", "siem"}); err != nil {
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
	}

	old := pipelinetest.Start(t)
	if _, err := old.JS.CreateStream(ctx, jetstream.StreamConfig{Name: "ROUTED", Subjects: []string{"routed.>"}}); err != nil {
		t.Fatal(err)
	}
	err := pipeline.EnsureStreams(ctx, old.JS, s, []string{"log"})
	if err == nil || !strings.Contains(err.Error(), "create or update stream ROUTED_log") || !strings.Contains(err.Error(), "a stream of an earlier mailtel, ROUTED") {
		t.Errorf("EnsureStreams next to an old ROUTED stream: %v", err)
	}
}
