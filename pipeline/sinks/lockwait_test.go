package sinks_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/mailtel/mailtel/pipeline/app"
	"github.com/mailtel/mailtel/pipeline/config"
	"github.com/mailtel/mailtel/pipeline/pipelinetest"
	"github.com/mailtel/mailtel/pipeline/sinks"
	"github.com/mailtel/mailtel/pipeline/sinks/tracer"
)

// TestRunWaitsForLockedLogFile: a sinks process started while its killed
// predecessor still holds the lock of its log file (a supervisor restarts
// at once; the predecessor is gone tens of milliseconds after SIGKILL)
// waits for the lock instead of exiting, which left no sinks process and
// stopped the pipeline (the crash test's -crash.nowait found it). A lock
// that is not released within the wait still fails with ErrLocked.
func TestRunWaitsForLockedLogFile(t *testing.T) {
	env := pipelinetest.Start(t)
	for _, tc := range []struct {
		name    string
		release time.Duration // when the holder lets go (0: never)
	}{
		{"released by a dying predecessor", 500 * time.Millisecond},
		{"held by a live instance", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := config.Parse([]byte("[tracer.all]\ntype = \"log\"\nformat = \"json\"\npath = \"" + t.TempDir() + "\"\n"))
			if err != nil {
				t.Fatal(err)
			}
			cfg.NATS = env.NATS
			holder, err := tracer.New("all", cfg.SinkSpecs()[0].Tracer, tracer.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer holder.Close(context.Background())

			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			p, err := app.Start(ctx, cfg, app.Options{Name: "lockwait"})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			wait := 3 * time.Second
			if tc.release == 0 {
				wait = 300 * time.Millisecond
			}
			done := make(chan error, 1)
			started := time.Now()
			go func() { done <- sinks.Run(ctx, p, nil, sinks.Options{LockWait: wait}) }()

			if tc.release == 0 {
				select {
				case err := <-done:
					if !errors.Is(err, tracer.ErrLocked) {
						t.Fatalf("Run with the log file locked for good: %v, want an error wrapping tracer.ErrLocked", err)
					}
					if took := time.Since(started); took < wait {
						t.Errorf("Run gave up after %s, before its lock wait of %s", took, wait)
					}
				case <-time.After(10 * time.Second):
					t.Fatal("Run still waiting 10s after a lock wait of 300ms")
				}
				return
			}

			select {
			case err := <-done:
				t.Fatalf("Run returned while the log file was locked: %v", err)
			case <-time.After(tc.release):
			}
			if err := holder.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(5 * time.Second)
			for p.Health.Ready() != nil {
				select {
				case err := <-done:
					t.Fatalf("Run returned once the lock was released: %v", err)
				default:
				}
				if time.Now().After(deadline) {
					t.Fatalf("sink not running 5s after the lock was released: %v", p.Health.Ready())
				}
				time.Sleep(20 * time.Millisecond)
			}
			cancel()
			if err := <-done; err != nil {
				t.Fatalf("Run: %v", err)
			}
		})
	}
}
