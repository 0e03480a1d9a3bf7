package outbound

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailtel/mailtel/pipeline/sink"
	"github.com/mailtel/mailtel/schema"
)

func events(n int) []*schema.Event {
	out := make([]*schema.Event, n)
	for i := range out {
		out[i] = &schema.Event{ID: string(rune('a'+i%26)) + strings.Repeat("x", i/26), Type: "auth.success"}
	}
	return out
}

// TestSenderFoldsErrors: delivered chunks are reported at once; a batch
// whose failures are all permanent fails permanently; one retryable
// failure makes it retryable, after the longest wait asked for; a
// duplicate id is sent once.
func TestSenderFoldsErrors(t *testing.T) {
	errPerm, errLater := errors.New("refused"), errors.New("busy")
	for _, tc := range []struct {
		name      string
		fail      map[int]error // by chunk (first event's index / 10)
		permanent bool
		after     time.Duration
	}{
		{"all delivered", nil, false, 0},
		{"one permanent", map[int]error{1: errPerm}, true, 0},
		{"permanent and retryable", map[int]error{0: errPerm, 2: errLater}, false, 7 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			sent := map[string]int{}
			send := func(_ context.Context, chunk []*schema.Event) error {
				mu.Lock()
				defer mu.Unlock()
				for _, ev := range chunk {
					sent[ev.ID]++
				}
				return tc.fail[int(chunk[0].ID[0]-'a')/10]
			}
			classify := func(err error) (bool, time.Duration) {
				if errors.Is(err, errPerm) {
					return true, 0
				}
				return false, 7 * time.Second
			}
			s := NewSender("test sink", 10, 1, 0, send, classify)
			batch := append(events(26), events(1)...) // "a" twice
			err := s.Write(context.Background(), batch)
			if n := sent["a"]; n != 1 {
				t.Errorf("event a sent %d times, want once", n)
			}
			switch {
			case tc.fail == nil && err != nil:
				t.Errorf("Write = %v, want nil", err)
			case tc.fail != nil && err == nil:
				t.Errorf("Write = nil, want an error")
			case err != nil && sink.IsPermanent(err) != tc.permanent:
				t.Errorf("Write = %v: permanent %v, want %v", err, sink.IsPermanent(err), tc.permanent)
			case err != nil && !strings.HasPrefix(err.Error(), "test sink: "):
				t.Errorf("Write = %v, want it to name the sink", err)
			}
			var ra *RetryAfterError
			if got := errors.As(err, &ra); got != (tc.after > 0) || got && ra.After != tc.after {
				t.Errorf("Write = %v: retry after %v, want %v", err, ra, tc.after)
			}
		})
	}
}

// TestSenderThrottles: the requests of one slot start throttle apart.
func TestSenderThrottles(t *testing.T) {
	var starts []time.Time
	send := func(context.Context, []*schema.Event) error { starts = append(starts, time.Now()); return nil }
	s := NewSender("t", 5, 1, 50*time.Millisecond, send, func(error) (bool, time.Duration) { return false, 0 })
	if err := s.Write(context.Background(), events(15)); err != nil {
		t.Fatal(err)
	}
	if len(starts) != 3 {
		t.Fatalf("%d requests, want 3", len(starts))
	}
	for i := 1; i < len(starts); i++ {
		if d := starts[i].Sub(starts[i-1]); d < 45*time.Millisecond {
			t.Errorf("request %d started %s after the one before, want >= 50ms", i, d)
		}
	}
}

// TestSecretsScrub: every form of a secret goes, the longest first, and
// one cut at the end of a snippet too.
func TestSecretsScrub(t *testing.T) {
	raw := "https://user:pa%2Fss@h/hook?api_key=k3y-value&x=1"
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	var s Secrets
	s.AddURL(raw, u)
	s.AddHeader("Bearer tok-123456")
	s.Add("tok") // too short to look for
	answer := "bad key k3y-value, pa/ss or pa%2Fss; token tok-123456 (Bearer tok-123456)"
	got := s.Scrub(answer, 1000)
	for _, leak := range []string{"k3y-value", "pa/ss", "pa%2Fss", "tok-123456"} {
		if strings.Contains(got, leak) {
			t.Errorf("Scrub left %q: %s", leak, got)
		}
	}
	if !strings.Contains(got, "token") {
		t.Errorf("Scrub removed a short word: %s", got)
	}
	if got := s.Scrub("prefix k3y-val", len("prefix k3y-val")); strings.Contains(got, "k3y-val") {
		t.Errorf("Scrub of a snippet cut inside a secret: %q", got)
	}
}
