// Package outbound is what the sinks that send events to a remote receiver
// share (the webhook, OpenTelemetry): a batch cut into requests that go out
// a few at a time, each request slot throttled, every delivered request
// reported to the runtime at once (sink.Delivered), the errors of the
// requests folded into the batch's (permanent, retry after), Retry-After
// read, and the configuration's secrets kept out of what a receiver
// answers. It imports neither the engine nor the NATS server.
package outbound

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mailtel/mailtel/pipeline/sink"
	"github.com/mailtel/mailtel/schema"
)

// SendFunc sends one request of events. Sender calls it with a slot of its
// own, once the slot's throttle has passed.
type SendFunc func(ctx context.Context, chunk []*schema.Event) error

// ClassifyFunc says of an error of a SendFunc whether it is permanent (a
// retry cannot fix it) and, when it is not, how long the receiver asked
// to wait before the next try (0 when it did not say).
type ClassifyFunc func(err error) (permanent bool, retryAfter time.Duration)

// Sender writes batches as requests of at most Size events, at most
// Concurrency at a time; the requests of one slot start at least Throttle
// apart. Its Write follows the sink.Sink contract, and is safe for
// concurrent use (the slots are shared).
type Sender struct {
	name     string
	size     int
	throttle time.Duration
	send     SendFunc
	classify ClassifyFunc
	slots    chan *slot
}

// slot is one of the request slots; last is when its last request started.
type slot struct{ last time.Time }

// NewSender returns a Sender for the sink called name ("webhook siem": its
// errors start with it). classify sorts the errors of send: a batch with a
// retryable failure is retried after the longest wait its receivers asked
// for.
func NewSender(name string, size, concurrency int, throttle time.Duration, send SendFunc, classify ClassifyFunc) *Sender {
	s := &Sender{name: name, size: max(size, 1), throttle: throttle, send: send, classify: classify,
		slots: make(chan *slot, max(concurrency, 1))}
	for range cap(s.slots) {
		s.slots <- &slot{}
	}
	return s
}

// Write sends the events of batch that are not nil and not preceded by an
// event of the same id. It returns nil when every request was delivered;
// else an error that is permanent (sink.Permanent) when every failed
// request failed for good, retryable otherwise (a *RetryAfterError when a
// receiver said when). Delivered requests are reported with
// sink.Delivered as they succeed, so a retry sends only the rest.
func (s *Sender) Write(ctx context.Context, batch []*schema.Event) error {
	chunks := split(unique(batch), s.size)
	errs := s.deliver(ctx, chunks)
	var retry, perm []error
	var after time.Duration
	for _, err := range errs {
		if err == nil {
			continue
		}
		permanent, wait := s.classify(err)
		if permanent {
			perm = append(perm, err)
			continue
		}
		retry = append(retry, err)
		after = max(after, wait)
	}
	if len(retry) > 0 {
		err := fmt.Errorf("%s: %d of %d requests failed: %w", s.name, len(retry)+len(perm), len(chunks), errors.Join(retry...))
		if after > 0 {
			return &RetryAfterError{After: after, Err: err}
		}
		return err
	}
	if len(perm) == 0 {
		return nil
	}
	return sink.Permanent(fmt.Errorf("%s: %w", s.name, errors.Join(perm...)))
}

// deliver sends the chunks and returns the error of each (nil when
// delivered). After a retryable failure it starts no further chunk: the
// receiver is struggling, and the retry of the batch will send them.
func (s *Sender) deliver(ctx context.Context, chunks [][]*schema.Event) []error {
	errs := make([]error, len(chunks))
	var (
		wg     sync.WaitGroup
		failed atomic.Bool
	)
	for i, chunk := range chunks {
		var sl *slot
		select {
		case sl = <-s.slots:
		case <-ctx.Done():
		}
		if sl == nil || failed.Load() {
			if sl != nil {
				s.slots <- sl
			}
			for j := i; j < len(chunks); j++ {
				errs[j] = fmt.Errorf("%d events not sent: %w", len(chunks[j]), notStarted(ctx))
			}
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { s.slots <- sl }()
			err := sl.wait(ctx, s.throttle)
			if err == nil {
				sl.last = time.Now()
				err = s.send(ctx, chunk)
			} else {
				err = fmt.Errorf("%d events not sent: throttled: %w", len(chunk), err)
			}
			errs[i] = err
			if err == nil {
				sink.Delivered(ctx, chunk)
			} else if permanent, _ := s.classify(err); !permanent {
				failed.Store(true)
			}
		}()
	}
	wg.Wait()
	return errs
}

func notStarted(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return errors.New("an earlier request of the batch failed")
}

// wait blocks until the slot may start its next request.
func (sl *slot) wait(ctx context.Context, throttle time.Duration) error {
	if throttle <= 0 || sl.last.IsZero() {
		return nil
	}
	d := time.Until(sl.last.Add(throttle))
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// unique returns the events of batch that are not nil and not preceded by
// an event of the same id.
func unique(batch []*schema.Event) []*schema.Event {
	seen := make(map[string]struct{}, len(batch))
	out := make([]*schema.Event, 0, len(batch))
	for _, ev := range batch {
		if ev == nil {
			continue
		}
		if ev.ID != "" {
			if _, dup := seen[ev.ID]; dup {
				continue
			}
			seen[ev.ID] = struct{}{}
		}
		out = append(out, ev)
	}
	return out
}

// split cuts events into chunks of at most n.
func split(events []*schema.Event, n int) [][]*schema.Event {
	var chunks [][]*schema.Event
	for len(events) > 0 {
		k := min(n, len(events))
		chunks = append(chunks, events[:k:k])
		events = events[k:]
	}
	return chunks
}

// RetryAfterError is a retryable failure of Write for which a receiver
// said when to try again (the longest wait when several requests failed).
// It is never permanent. The runtime does not retry before After has
// passed (see delivery.Policy.Wait, which caps it at
// delivery.MaxRetryAfter).
type RetryAfterError struct {
	After time.Duration
	Err   error
}

func (e *RetryAfterError) Error() string {
	return fmt.Sprintf("%v (retry after %s)", e.Err, e.After)
}

func (e *RetryAfterError) Unwrap() error { return e.Err }

// RetryAfter returns After (it implements sink.RetryAfter).
func (e *RetryAfterError) RetryAfter() time.Duration { return e.After }

// ParseRetryAfter reads a Retry-After header value: delay-seconds or an
// HTTP date (a date in the past is 0). ok is false when there is none or
// it cannot be read.
func ParseRetryAfter(v string, now time.Time) (d time.Duration, ok bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if n, err := strconv.ParseUint(v, 10, 32); err == nil {
		return time.Duration(n) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}

// RetryableStatus reports whether an HTTP answer with this status is worth
// retrying: 408, 425, 429 and every 5xx. A receiver that fails with a 5xx
// is most often restarting or overloaded, and a retry costs only a delay
// (bounded by discard-after), while a permanent verdict dead-letters the
// events; every other status is permanent.
func RetryableStatus(code int) bool {
	switch code {
	case http.StatusRequestTimeout, http.StatusTooEarly, http.StatusTooManyRequests:
		return true
	}
	return code >= 500
}

// NewClient returns the HTTP client of a sink that POSTs events, and its
// transport (for CloseIdleConnections): proxies from the environment, TLS
// 1.2 or later, certificates verified unless allowInvalidCerts (Stalwart's
// allow-invalid-certs, the operator's explicit choice for a receiver with a
// self-signed certificate), up to concurrency idle connections kept, and
// redirects not followed, since a 301 or 302 would turn the POST into a GET.
func NewClient(allowInvalidCerts bool, concurrency int) (*http.Client, *http.Transport) {
	tr, ok := http.DefaultTransport.(*http.Transport)
	if ok {
		tr = tr.Clone()
	} else {
		tr = &http.Transport{Proxy: http.ProxyFromEnvironment}
	}
	tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: allowInvalidCerts} //nolint:gosec
	tr.MaxIdleConnsPerHost = concurrency
	return &http.Client{Transport: tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}, tr
}
