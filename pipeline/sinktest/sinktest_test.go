package sinktest_test

import (
	"context"
	"errors"
	"maps"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"github.com/mailtel/mailtel/pipeline/sink"
	"github.com/mailtel/mailtel/pipeline/sinktest"
	"github.com/mailtel/mailtel/schema"
)

// store is an in-memory destination; memSink writes to it. They exist to
// test the suite itself: a correct memSink must pass, and each flaw must
// make the suite fail.
type store struct {
	mu      sync.Mutex
	written map[string]int
	mode    sinktest.FailMode
}

// memSink writes to a store, skipping ids it already holds (idempotent
// across "restarts", since the store outlives the sink), unless flawed.
type memSink struct {
	st   *store
	flaw string
}

func (s *memSink) Write(ctx context.Context, batch []*schema.Event) error {
	s.st.mu.Lock()
	defer s.st.mu.Unlock()
	switch s.st.mode {
	case sinktest.FailPermanent:
		return sink.Permanent(errors.New("destination refuses the events"))
	case sinktest.FailRetryable:
		if s.flaw != "writes-on-retryable-failure" {
			return errors.New("destination unavailable")
		}
	}
	for _, ev := range batch {
		switch {
		case s.flaw == "duplicates":
			s.st.written[ev.ID] += 2
		case s.flaw == "not-idempotent" || s.flaw == "writes-on-retryable-failure":
			s.st.written[ev.ID]++
		case s.st.written[ev.ID] == 0:
			s.st.written[ev.ID] = 1
		}
	}
	if s.st.mode == sinktest.FailRetryable {
		return errors.New("destination timed out after writing")
	}
	return nil
}

func (s *memSink) Close(context.Context) error { return nil }

func memFactory(flaw string) sinktest.Factory {
	return func(t *testing.T) *sinktest.Harness {
		st := &store{written: map[string]int{}}
		h := &sinktest.Harness{
			Sink: &memSink{st: st, flaw: flaw},
			Written: func(*testing.T) map[string]int {
				st.mu.Lock()
				defer st.mu.Unlock()
				return maps.Clone(st.written)
			},
			Fail: func(m sinktest.FailMode) { st.mu.Lock(); st.mode = m; st.mu.Unlock() },
		}
		h.Replay = func(*testing.T) sink.Sink { return &memSink{st: st, flaw: flaw} }
		return h
	}
}

// TestSuitePassesCorrectSink runs every sub-test (none is skipped: the
// memory sink supports failures and replays).
func TestSuitePassesCorrectSink(t *testing.T) {
	sinktest.Run(t, memFactory(""))
}

// TestFlawedSink is run by TestSuiteCatchesFlaws in a child process, with
// the flaw in SINKTEST_FLAW; it is skipped otherwise.
func TestFlawedSink(t *testing.T) {
	flaw := os.Getenv("SINKTEST_FLAW")
	if flaw == "" {
		t.Skip("run by TestSuiteCatchesFlaws")
	}
	sinktest.Run(t, memFactory(flaw))
}

// TestSuiteCatchesFlaws checks that the suite fails sinks that break the
// contract: each flawed sink is run through the sub-test that must catch
// it, in a child test process, which must fail saying why.
func TestSuiteCatchesFlaws(t *testing.T) {
	for _, tc := range []struct {
		flaw, subtest, want string
	}{
		{"duplicates", "batch_written_once", "written 2 times"},
		{"writes-on-retryable-failure", "retryable_errors_retried", "not written exactly once"},
		{"not-idempotent", "replay_idempotent", "written 2 times"},
	} {
		t.Run(tc.flaw, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run", "^TestFlawedSink$/^"+tc.subtest+"$", "-test.count=1")
			cmd.Env = append(os.Environ(), "SINKTEST_FLAW="+tc.flaw)
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) {
				t.Fatalf("the suite passed a sink that %s (err %v):\n%s", tc.flaw, err, out)
			}
			if !strings.Contains(string(out), "--- FAIL: TestFlawedSink/"+tc.subtest) || !strings.Contains(string(out), tc.want) {
				t.Errorf("the suite failed, but not in %s saying %q:\n%s", tc.subtest, tc.want, out)
			}
		})
	}
}
