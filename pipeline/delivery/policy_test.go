package delivery_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailtel/mailtel/pipeline/delivery"
	"github.com/mailtel/mailtel/pipeline/sink"
	"github.com/mailtel/mailtel/schema"
)

// dest is a destination whose answer each test scripts: fail(attempt,
// batch) returns the error of a write, and delivered lists, per attempt,
// which events a write reports with Delivered before it fails.
type dest struct {
	mu      sync.Mutex
	fail    func(attempt int, batch []*schema.Event) error
	partial func(attempt int, batch []*schema.Event) []*schema.Event
	calls   [][]string // ids of each write
	written []string
}

func (d *dest) Write(ctx context.Context, batch []*schema.Event) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	ids := make([]string, len(batch))
	for i, ev := range batch {
		ids[i] = ev.ID
	}
	d.calls = append(d.calls, ids)
	attempt := len(d.calls)
	if d.partial != nil {
		part := d.partial(attempt, batch)
		for _, ev := range part {
			d.written = append(d.written, ev.ID)
		}
		sink.Delivered(ctx, part)
	}
	var err error
	if d.fail != nil {
		err = d.fail(attempt, batch)
	}
	if err == nil {
		for _, ev := range batch {
			d.written = append(d.written, ev.ID)
		}
	}
	return err
}

func batch(n int) []*schema.Event {
	evs := make([]*schema.Event, n)
	for i := range evs {
		evs[i] = &schema.Event{ID: fmt.Sprintf("e%d", i), Type: "auth.success"}
	}
	return evs
}

type namedError struct{ ids []string }

func (e *namedError) Error() string      { return "rejected " + strings.Join(e.ids, ",") }
func (e *namedError) EventIDs() []string { return e.ids }

type retryAfter struct{ d time.Duration }

func (e retryAfter) Error() string             { return "slow down" }
func (e retryAfter) RetryAfter() time.Duration { return e.d }

var quick = delivery.Policy{Base: time.Microsecond, Max: time.Microsecond, DiscardAfter: time.Hour}

func TestDo(t *testing.T) {
	down := errors.New("connection refused")
	tests := []struct {
		name    string
		n       int
		fail    func(attempt int, batch []*schema.Event) error
		partial func(attempt int, batch []*schema.Event) []*schema.Event
		// want: the ids of every write, written and rejected indexes.
		calls    [][]string
		written  []int
		rejected []int
		failures int
	}{
		{name: "first write succeeds", n: 3,
			calls: [][]string{{"e0", "e1", "e2"}}, written: []int{0, 1, 2}},
		{name: "outage: probes one event, then the rest", n: 4,
			fail: func(a int, _ []*schema.Event) error {
				if a <= 3 {
					return down
				}
				return nil
			},
			calls:   [][]string{{"e0", "e1", "e2", "e3"}, {"e0"}, {"e0"}, {"e0"}, {"e1", "e2", "e3"}},
			written: []int{0, 1, 2, 3}, failures: 3},
		{name: "permanent: all rejected", n: 2,
			fail:  func(int, []*schema.Event) error { return sink.Permanent(errors.New("400 bad request")) },
			calls: [][]string{{"e0", "e1"}}, rejected: []int{0, 1}},
		{name: "permanent naming one event: the others are written", n: 3,
			fail: func(a int, _ []*schema.Event) error {
				return sink.Permanent(fmt.Errorf("post: %w", &namedError{[]string{"e1"}}))
			},
			calls: [][]string{{"e0", "e1", "e2"}}, written: []int{0, 2}, rejected: []int{1}},
		{name: "partly delivered, then retried: only the rest again", n: 4,
			partial: func(a int, b []*schema.Event) []*schema.Event {
				if a == 1 {
					return b[:2]
				}
				return nil
			},
			fail: func(a int, _ []*schema.Event) error {
				if a == 1 {
					return down
				}
				return nil
			},
			calls:   [][]string{{"e0", "e1", "e2", "e3"}, {"e2"}, {"e3"}},
			written: []int{0, 1, 2, 3}, failures: 1},
		{name: "probe rejected for good, next event probes", n: 3,
			fail: func(a int, _ []*schema.Event) error {
				switch a {
				case 1:
					return down
				case 2:
					return sink.Permanent(errors.New("422"))
				}
				return nil
			},
			calls:   [][]string{{"e0", "e1", "e2"}, {"e0"}, {"e1"}, {"e2"}},
			written: []int{1, 2}, rejected: []int{0}, failures: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := &dest{fail: tt.fail, partial: tt.partial}
			var written []int
			failures := 0
			out := quick.Do(context.Background(), batch(tt.n), d.Write, delivery.Hooks{
				Written: func(idx []int) { written = append(written, idx...) },
				Failed:  func(delivery.Failure) { failures++ },
			})
			slices.Sort(written)
			if !slices.EqualFunc(d.calls, tt.calls, slices.Equal) {
				t.Errorf("writes %v, want %v", d.calls, tt.calls)
			}
			if !slices.Equal(written, tt.written) {
				t.Errorf("written %v, want %v", written, tt.written)
			}
			if !slices.Equal(out.Rejected, tt.rejected) {
				t.Errorf("rejected %v, want %v (reason %v)", out.Rejected, tt.rejected, out.Reason)
			}
			if len(tt.rejected) > 0 && !sink.IsPermanent(out.Reason) {
				t.Errorf("reason %v is not permanent", out.Reason)
			}
			if failures != tt.failures || out.Attempts != len(tt.calls) {
				t.Errorf("%d failures, %d attempts; want %d, %d", failures, out.Attempts, tt.failures, len(tt.calls))
			}
			if len(out.Unwritten) > 0 || out.Expired {
				t.Errorf("unwritten %v, expired %v", out.Unwritten, out.Expired)
			}
		})
	}
}

// TestDoDiscardAfter: a destination that stays down is given up when the
// batch has failed for DiscardAfter, counted from its first failure, not
// from the events' own time, with a reason that says how long and how
// many attempts.
func TestDoDiscardAfter(t *testing.T) {
	p := delivery.Policy{Base: 10 * time.Millisecond, Max: 20 * time.Millisecond, DiscardAfter: 200 * time.Millisecond}
	evs := batch(3)
	for _, ev := range evs {
		ev.Time = time.Now().Add(-30 * 24 * time.Hour) // last month's history
	}
	d := &dest{fail: func(int, []*schema.Event) error { return errors.New("connection refused") }}
	start := time.Now()
	out := p.Do(context.Background(), evs, d.Write, delivery.Hooks{})
	took := time.Since(start)
	if !out.Expired || !slices.Equal(out.Rejected, []int{0, 1, 2}) {
		t.Fatalf("outcome %+v", out)
	}
	if took < p.DiscardAfter || took > p.DiscardAfter+time.Second {
		t.Errorf("gave up after %s, want about %s", took, p.DiscardAfter)
	}
	msg := out.Reason.Error()
	for _, want := range []string{"gave up after failing for", fmt.Sprintf("(%d attempts", out.Attempts), "discard-after 200ms", "connection refused"} {
		if !strings.Contains(msg, want) {
			t.Errorf("reason %q lacks %q", msg, want)
		}
	}
	if out.Attempts < 5 || !sink.IsPermanent(out.Reason) {
		t.Errorf("%d attempts, permanent %v", out.Attempts, sink.IsPermanent(out.Reason))
	}
}

// TestDoStop: when Sleep says stop, what is not written is returned as
// Unwritten with the last error.
func TestDoStop(t *testing.T) {
	d := &dest{
		partial: func(a int, b []*schema.Event) []*schema.Event {
			if a == 1 {
				return b[:1]
			}
			return nil
		},
		fail: func(int, []*schema.Event) error { return errors.New("timeout") },
	}
	out := quick.Do(context.Background(), batch(3), d.Write, delivery.Hooks{
		Sleep: func(context.Context, time.Duration) bool { return false },
	})
	if !slices.Equal(out.Unwritten, []int{1, 2}) || out.Stopped == nil || len(out.Rejected) > 0 {
		t.Errorf("outcome %+v", out)
	}
}

// TestDoRecovered: Recovered is told once, when a write succeeds after
// failures.
func TestDoRecovered(t *testing.T) {
	d := &dest{fail: func(a int, _ []*schema.Event) error {
		if a <= 2 {
			return errors.New("503")
		}
		return nil
	}}
	var recovered []int
	quick.Do(context.Background(), batch(2), d.Write, delivery.Hooks{
		Recovered: func(attempts int, _ time.Duration) { recovered = append(recovered, attempts) },
	})
	if !slices.Equal(recovered, []int{3}) {
		t.Errorf("recovered %v, want [3]", recovered)
	}
}

func TestWait(t *testing.T) {
	p := delivery.Policy{Base: time.Millisecond, Max: 8 * time.Millisecond}
	for attempt := 1; attempt <= 10; attempt++ {
		w := p.Wait(attempt, errors.New("x"))
		if w < 0 || w > min(time.Millisecond<<(attempt-1), 8*time.Millisecond) {
			t.Errorf("attempt %d waits %s", attempt, w)
		}
		if w := p.Wait(attempt, fmt.Errorf("w: %w", retryAfter{2 * time.Second})); w != 2*time.Second {
			t.Errorf("attempt %d with Retry-After 2s waits %s", attempt, w)
		}
	}
	if w := p.Wait(1, retryAfter{48 * time.Hour}); w != delivery.MaxRetryAfter {
		t.Errorf("Retry-After of two days waits %s, want the cap %s", w, delivery.MaxRetryAfter)
	}
	def := delivery.Policy{}.WithDefaults()
	if def.Base != delivery.DefaultBase || def.Max != delivery.DefaultMax || def.DiscardAfter != delivery.DefaultDiscardAfter {
		t.Errorf("defaults %+v", def)
	}
}

func TestDeliveredOutsideDo(t *testing.T) {
	sink.Delivered(context.Background(), batch(1)) // does nothing, does not panic
}
