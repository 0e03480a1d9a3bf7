package webhook_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailtel/mailtel/pipeline/config/value"
	"github.com/mailtel/mailtel/pipeline/delivery"
	"github.com/mailtel/mailtel/pipeline/sink"

	"github.com/mailtel/mailtel/catalog"
	"github.com/mailtel/mailtel/pipeline/ingest/stalwart"
	"github.com/mailtel/mailtel/pipeline/sinks/outbound"
	"github.com/mailtel/mailtel/pipeline/sinks/webhook"
	"github.com/mailtel/mailtel/schema"
)

// answer is what the receiver replies to one request.
type answer struct {
	status int
	header map[string]string
	body   string
	delay  time.Duration
}

// receiver is a webhook endpoint on 127.0.0.1 that records what it gets.
// Events of requests answered 2xx count as received.
type receiver struct {
	srv *httptest.Server

	mu       sync.Mutex
	requests []request
	bodies   [][]byte
	received map[string]int // event id -> times received in a 2xx request
	// answer decides the reply to request n (from 0); nil means 200.
	answer func(n int, body []byte) answer

	inFlight, maxInFlight atomic.Int32
}

func newReceiver(t *testing.T, tls bool, fn func(n int, body []byte) answer) *receiver {
	t.Helper()
	r := &receiver{received: map[string]int{}, answer: fn}
	h := http.HandlerFunc(r.serve)
	if tls {
		r.srv = httptest.NewTLSServer(h)
	} else {
		r.srv = httptest.NewServer(h)
	}
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	n := r.inFlight.Add(1)
	defer r.inFlight.Add(-1)
	for {
		m := r.maxInFlight.Load()
		if n <= m || r.maxInFlight.CompareAndSwap(m, n) {
			break
		}
	}
	body, err := io.ReadAll(req.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	i := len(r.requests)
	r.requests = append(r.requests, request{Method: req.Method, Path: req.URL.Path, Header: req.Header.Clone()})
	r.bodies = append(r.bodies, body)
	a := answer{status: http.StatusOK}
	if r.answer != nil {
		a = r.answer(i, body)
	}
	r.mu.Unlock()
	if a.delay > 0 {
		select {
		case <-time.After(a.delay):
		case <-req.Context().Done():
			return
		}
	}
	if a.status/100 == 2 {
		events, err := stalwart.DecodeBatch(body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.mu.Lock()
		for _, ev := range events {
			r.received[schema.StalwartNativeID(ev.ID)]++
		}
		r.mu.Unlock()
	}
	for k, v := range a.header {
		w.Header().Set(k, v)
	}
	w.WriteHeader(a.status)
	io.WriteString(w, a.body)
}

func (r *receiver) requestCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.requests)
}

// checkOnce fails unless every event of batch was received exactly once
// and nothing else was.
func (r *receiver) checkOnce(t *testing.T, batch []*schema.Event) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, ev := range batch {
		if n := r.received[ev.ID]; n != 1 {
			t.Errorf("event %s received %d times, want 1", ev.ID, n)
		}
	}
	if len(r.received) != len(batch) {
		t.Errorf("received %d distinct events, want %d", len(r.received), len(batch))
	}
}

// request is what the receiver keeps of a request besides its body.
type request struct {
	Method, Path string
	Header       http.Header
}

// hmacBase64 computes a Stalwart signature independently of the package.
func hmacBase64(key string, body []byte) string {
	m := hmac.New(sha256.New, []byte(key))
	m.Write(body)
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func events(n int, prefix string) []*schema.Event {
	out := make([]*schema.Event, n)
	for i := range out {
		out[i] = &schema.Event{
			ID: fmt.Sprintf("%s-%03d", prefix, i), Type: "auth.success", Time: t0.Add(time.Duration(i) * time.Second),
			Level: catalog.LevelInfo, Host: "mx1", Server: "stalwart",
			Fields: []schema.Field{
				{Key: "accountName", Value: schema.String("john")},
				{Key: "elapsed", Value: schema.Duration(12 * time.Millisecond)},
			},
		}
	}
	return out
}

// cfg returns a webhook configuration for the receiver that sends at once
// (no throttle) and waits at most 5s.
func cfg(r *receiver, mods ...func(*webhook.Config)) *webhook.Config {
	c := &webhook.Config{URL: r.srv.URL + "/hook", Events: []string{"*"}, BatchSize: 100, Concurrency: 4,
		Timeout: value.Duration(5 * time.Second)}
	for _, m := range mods {
		m(c)
	}
	return c
}

func newSink(t *testing.T, c *webhook.Config, opts webhook.Options) *webhook.Sink {
	t.Helper()
	s, err := webhook.New("siem", c, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	return s
}

func TestDeliver(t *testing.T) {
	tests := []struct {
		name     string
		mod      func(*webhook.Config)
		wantAuth string
		wantSig  string // key to verify X-Signature with; "" = no header
	}{
		{"plain", func(*webhook.Config) {}, "", ""},
		{"signed", func(c *webhook.Config) { c.SignatureKey = "k3y" }, "", "k3y"},
		{"basic auth", func(c *webhook.Config) { c.Auth = value.BasicAuth{Username: "u", Secret: "p@ss"} },
			"Basic " + base64.StdEncoding.EncodeToString([]byte("u:p@ss")), ""},
		{"bearer", func(c *webhook.Config) { c.Auth = value.BasicAuth{Secret: "tok"} }, "Bearer tok", ""},
		{"headers", func(c *webhook.Config) {
			c.Headers = map[string]string{"X-Tenant": "acme", "User-Agent": "mailtel-test"}
			c.SignatureKey = "other key"
		}, "", "other key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newReceiver(t, false, nil)
			c := cfg(r, tt.mod)
			s := newSink(t, c, webhook.Options{})
			batch := events(250, "ev")
			if err := s.Write(context.Background(), batch); err != nil {
				t.Fatalf("Write: %v", err)
			}
			r.checkOnce(t, batch)
			r.mu.Lock()
			defer r.mu.Unlock()
			var sizes []int
			for i, req := range r.requests {
				body := r.bodies[i]
				if req.Method != http.MethodPost || req.Path != "/hook" {
					t.Errorf("request %d: %s %s", i, req.Method, req.Path)
				}
				if ct := req.Header.Get("Content-Type"); ct != "application/json" {
					t.Errorf("Content-Type %q", ct)
				}
				if got := req.Header.Get("Authorization"); got != tt.wantAuth {
					t.Errorf("Authorization %q, want %q", got, tt.wantAuth)
				}
				sig := req.Header.Get("X-Signature")
				if tt.wantSig == "" && sig != "" {
					t.Errorf("X-Signature %q without a key", sig)
				}
				if tt.wantSig != "" {
					if want := webhook.Sign([]byte(tt.wantSig), body); sig != want {
						t.Errorf("X-Signature %q, want %q", sig, want)
					}
					if want := hmacBase64(tt.wantSig, body); sig != want {
						t.Errorf("X-Signature %q, independent HMAC says %q", sig, want)
					}
				}
				for k, v := range c.Headers {
					if got := req.Header.Get(k); got != v {
						t.Errorf("header %s = %q, want %q", k, got, v)
					}
				}
				evs, err := stalwart.DecodeBatch(body)
				if err != nil {
					t.Fatalf("body %d: %v", i, err)
				}
				sizes = append(sizes, len(evs))
			}
			slices.Sort(sizes)
			if !slices.Equal(sizes, []int{50, 100, 100}) {
				t.Errorf("chunk sizes %v, want [50 100 100]", sizes)
			}
		})
	}
}

func TestBodyIsStalwartFormat(t *testing.T) {
	r := newReceiver(t, false, nil)
	s := newSink(t, cfg(r), webhook.Options{})
	batch := events(2, "fmt")
	if err := s.Write(context.Background(), batch); err != nil {
		t.Fatal(err)
	}
	want := `{"events":[` + string(schema.AppendStalwart(nil, batch[0])) + "," + string(schema.AppendStalwart(nil, batch[1])) + `]}`
	r.mu.Lock()
	defer r.mu.Unlock()
	if got := string(r.bodies[0]); got != want {
		t.Errorf("body\n%s\nwant\n%s", got, want)
	}
	if !strings.Contains(want, `"createdAt":"2025-03-01T12:00:00Z","type":"auth.success"`) {
		t.Errorf("unexpected Stalwart rendering: %s", want)
	}
}

func TestRetryAfterServerError(t *testing.T) {
	fail := atomic.Bool{}
	fail.Store(true)
	r := newReceiver(t, false, func(int, []byte) answer {
		if fail.Load() {
			return answer{status: http.StatusInternalServerError, body: "db down"}
		}
		return answer{status: http.StatusOK}
	})
	s := newSink(t, cfg(r, func(c *webhook.Config) { c.BatchSize = 10; c.Concurrency = 2 }), webhook.Options{})
	batch := events(35, "r")
	err := s.Write(context.Background(), batch)
	if err == nil || sink.IsPermanent(err) {
		t.Fatalf("Write = %v, want a retryable error", err)
	}
	var se *webhook.StatusError
	if !errors.As(err, &se) || se.StatusCode != 500 || !strings.Contains(err.Error(), "db down") {
		t.Errorf("error %v does not carry the 500 and its body", err)
	}
	var ra *outbound.RetryAfterError
	if errors.As(err, &ra) {
		t.Errorf("RetryAfterError %v without a Retry-After header", ra)
	}
	fail.Store(false)
	if err := s.Write(context.Background(), batch); err != nil {
		t.Fatalf("retry: %v", err)
	}
	r.checkOnce(t, batch)
}

func TestTooManyRequests(t *testing.T) {
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name       string
		status     int
		retryAfter string
		want       time.Duration // 0: no RetryAfterError
	}{
		{"seconds", 429, "2", 2 * time.Second},
		{"http date", 429, now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{"date in the past", 503, now.Add(-time.Minute).Format(http.TimeFormat), 0},
		{"an hour (delivery caps what it waits)", 503, "3600", time.Hour},
		{"too early", 425, "1", time.Second},
		{"garbage", 429, "soon", 0},
		{"none", 429, "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newReceiver(t, false, func(int, []byte) answer {
				return answer{status: tt.status, header: map[string]string{"Retry-After": tt.retryAfter}}
			})
			s := newSink(t, cfg(r), webhook.Options{Now: func() time.Time { return now }})
			err := s.Write(context.Background(), events(3, "tm"))
			if err == nil || sink.IsPermanent(err) {
				t.Fatalf("Write = %v, want a retryable error", err)
			}
			var ra *outbound.RetryAfterError
			got := time.Duration(0)
			if errors.As(err, &ra) {
				got = ra.After
			}
			if got != tt.want {
				t.Errorf("retry after %v, want %v (error: %v)", got, tt.want, err)
			}
		})
	}
}

func TestPermanentStatus(t *testing.T) {
	long := strings.Repeat("x", 2000)
	tests := []struct {
		name   string
		status int
		body   string
	}{
		{"bad request", 400, "missing field " + long},
		{"unauthorized", 401, "bad token"},
		{"redirect is not followed", 302, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newReceiver(t, false, func(int, []byte) answer {
				return answer{status: tt.status, body: tt.body, header: map[string]string{"Location": "/elsewhere"}}
			})
			s := newSink(t, cfg(r), webhook.Options{})
			batch := events(5, "p")
			err := s.Write(context.Background(), batch)
			if !sink.IsPermanent(err) {
				t.Fatalf("Write = %v, want a permanent error", err)
			}
			var se *webhook.StatusError
			if !errors.As(err, &se) {
				t.Fatalf("no StatusError in %v", err)
			}
			if se.StatusCode != tt.status {
				t.Errorf("status %d, want %d", se.StatusCode, tt.status)
			}
			want := tt.body
			if len(want) > webhook.MaxSnippet {
				want = want[:webhook.MaxSnippet]
			}
			if se.Body != want {
				t.Errorf("body snippet of %d bytes, want the first %d", len(se.Body), len(want))
			}
			if !strings.Contains(err.Error(), fmt.Sprint(tt.status)) {
				t.Errorf("error %q does not name the status", err)
			}
			if got, want := webhook.FailedIDs(err), ids(batch); !slices.Equal(got, want) {
				t.Errorf("FailedIDs = %v, want %v", got, want)
			}
			if n := r.requestCount(); n != 1 {
				t.Errorf("%d requests, want 1 (no redirect followed)", n)
			}
		})
	}
}

func ids(evs []*schema.Event) []string {
	out := make([]string, len(evs))
	for i, ev := range evs {
		out[i] = ev.ID
	}
	return out
}

func TestTimeoutIsRetryable(t *testing.T) {
	r := newReceiver(t, false, func(n int, _ []byte) answer {
		if n == 0 {
			return answer{status: 200, delay: 2 * time.Second}
		}
		return answer{status: 200}
	})
	s := newSink(t, cfg(r, func(c *webhook.Config) { c.Timeout = value.Duration(100 * time.Millisecond) }), webhook.Options{})
	batch := events(4, "to")
	start := time.Now()
	err := s.Write(context.Background(), batch)
	if err == nil || sink.IsPermanent(err) {
		t.Fatalf("Write = %v, want a retryable error", err)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error %v is not a deadline", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Write took %v with a 100ms timeout", d)
	}
	if err := s.Write(context.Background(), batch); err != nil {
		t.Fatalf("retry: %v", err)
	}
	r.checkOnce(t, batch)
}

// TestPartialFailureRetrySendsNothingTwice: each chunk answered 2xx is
// reported with sink.Delivered at once, so the runtime's retry of the
// batch (delivery.Policy.Do) sends only what was not delivered.
func TestPartialFailureRetrySendsNothingTwice(t *testing.T) {
	for _, conc := range []int{1, 3} {
		t.Run(fmt.Sprint("concurrency ", conc), func(t *testing.T) {
			// The request carrying p-015 fails the first time.
			var failedOnce atomic.Bool
			r := newReceiver(t, false, func(_ int, body []byte) answer {
				if strings.Contains(string(body), `"p-015"`) && !failedOnce.Swap(true) {
					return answer{status: http.StatusBadGateway}
				}
				return answer{status: http.StatusOK}
			})
			s := newSink(t, cfg(r, func(c *webhook.Config) { c.BatchSize = 10; c.Concurrency = conc }), webhook.Options{})
			batch := events(30, "p")
			var reported []int
			var failures []error
			out := delivery.Policy{Base: time.Millisecond, Max: time.Millisecond}.Do(context.Background(), batch, s.Write, delivery.Hooks{
				Written: func(idx []int) { reported = append(reported, idx...) },
				Failed:  func(f delivery.Failure) { failures = append(failures, f.Err) },
			})
			if len(out.Rejected) > 0 || len(out.Unwritten) > 0 {
				t.Fatalf("outcome %+v", out)
			}
			if len(failures) != 1 || sink.IsPermanent(failures[0]) {
				t.Fatalf("failures %v, want one retryable", failures)
			}
			r.checkOnce(t, batch)
			slices.Sort(reported)
			if len(reported) != len(batch) || reported[0] != 0 || reported[len(reported)-1] != len(batch)-1 || slices.Compact(reported) == nil {
				t.Errorf("written reported for %v", reported)
			}
			// The first attempt: p-000.., the failing p-010.. and, if it
			// was started before the failure, p-020..; then a probe of
			// p-010 alone; then the rest in one request (p-011..p-019) or,
			// if p-020.. was not started, two. Five either way.
			if n, wantRequests := r.requestCount(), 5; n != wantRequests {
				t.Errorf("%d requests, want %d", n, wantRequests)
			}
		})
	}
}

func TestDuplicateIDInBatchSentOnce(t *testing.T) {
	r := newReceiver(t, false, nil)
	s := newSink(t, cfg(r), webhook.Options{})
	batch := events(3, "d")
	batch = append(batch, batch[1], nil)
	if err := s.Write(context.Background(), batch); err != nil {
		t.Fatal(err)
	}
	r.checkOnce(t, batch[:3])
}

func TestConcurrencyBound(t *testing.T) {
	tests := []struct{ conc, chunks int }{{1, 5}, {3, 12}}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.conc), func(t *testing.T) {
			r := newReceiver(t, false, func(int, []byte) answer { return answer{status: 200, delay: 50 * time.Millisecond} })
			s := newSink(t, cfg(r, func(c *webhook.Config) { c.BatchSize = 5; c.Concurrency = tt.conc }), webhook.Options{})
			batch := events(5*tt.chunks, "c")
			if err := s.Write(context.Background(), batch); err != nil {
				t.Fatal(err)
			}
			r.checkOnce(t, batch)
			if got := int(r.maxInFlight.Load()); got != tt.conc {
				t.Errorf("at most %d requests in flight, want exactly %d", got, tt.conc)
			}
		})
	}
}

func TestThrottle(t *testing.T) {
	const throttle = 80 * time.Millisecond
	var (
		mu    sync.Mutex
		times []time.Time
	)
	r := newReceiver(t, false, func(int, []byte) answer {
		mu.Lock()
		times = append(times, time.Now())
		mu.Unlock()
		return answer{status: 200}
	})
	s := newSink(t, cfg(r, func(c *webhook.Config) {
		c.BatchSize = 1
		c.Concurrency = 1
		c.Throttle = value.Duration(throttle)
	}), webhook.Options{})
	batch := events(4, "th")
	if err := s.Write(context.Background(), batch); err != nil {
		t.Fatal(err)
	}
	r.checkOnce(t, batch)
	mu.Lock()
	defer mu.Unlock()
	for i := 1; i < len(times); i++ {
		// The receiver sees the requests a little after they start; allow
		// for jitter in that delay.
		if gap := times[i].Sub(times[i-1]); gap < throttle-20*time.Millisecond {
			t.Errorf("requests %d and %d %v apart, want at least %v", i-1, i, gap, throttle)
		}
	}
}

func TestTLS(t *testing.T) {
	tests := []struct {
		allowInvalid bool
		wantOK       bool
	}{{false, false}, {true, true}}
	for _, tt := range tests {
		t.Run(fmt.Sprint("allow-invalid-certs=", tt.allowInvalid), func(t *testing.T) {
			r := newReceiver(t, true, nil)
			s := newSink(t, cfg(r, func(c *webhook.Config) { c.AllowInvalidCerts = tt.allowInvalid }), webhook.Options{})
			batch := events(3, "tls")
			err := s.Write(context.Background(), batch)
			if tt.wantOK {
				if err != nil {
					t.Fatalf("Write: %v", err)
				}
				r.checkOnce(t, batch)
				return
			}
			if err == nil || sink.IsPermanent(err) {
				t.Fatalf("Write = %v, want a retryable certificate error", err)
			}
			if !strings.Contains(err.Error(), "certificate") {
				t.Errorf("error %q does not mention the certificate", err)
			}
			if r.requestCount() != 0 {
				t.Error("the receiver got a request over an unverified connection")
			}
		})
	}
}

func TestCanceledContext(t *testing.T) {
	r := newReceiver(t, false, nil)
	s := newSink(t, cfg(r), webhook.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := s.Write(ctx, events(3, "cx"))
	if err == nil || sink.IsPermanent(err) || !errors.Is(err, context.Canceled) {
		t.Fatalf("Write = %v, want a retryable context error", err)
	}
	if r.requestCount() != 0 {
		t.Errorf("%d requests with a canceled context", r.requestCount())
	}
}

func TestConnectionRefusedIsRetryable(t *testing.T) {
	r := newReceiver(t, false, nil)
	r.srv.Close()
	s := newSink(t, cfg(r, func(c *webhook.Config) { c.URL += "?api_key=Sekr1tQuery" }), webhook.Options{})
	err := s.Write(context.Background(), events(1, "cr"))
	if err == nil || sink.IsPermanent(err) {
		t.Fatalf("Write = %v, want a retryable error", err)
	}
	if strings.Contains(err.Error(), "Sekr1tQuery") {
		t.Errorf("error repeats the URL's query: %v", err)
	}
}

// TestAnswersNeverShowSecrets: a receiver that repeats in its answer what
// it was sent (the URL's user info and query, the headers, the
// Authorization) does not make the sink's errors, which become log lines
// and dead-letter reasons, show the configured secrets.
func TestAnswersNeverShowSecrets(t *testing.T) {
	secrets := []string{"Urlpa55word", "Qu3ryKey/+=", "H3aderVal", "Auth5ecret", "S1gnKey"}
	echo := func(req *http.Request, body string) string {
		return fmt.Sprintf("rejected %s: query %q, escaped %s, key %q, authorization %q, url password %q",
			body, req.URL.Query().Get("api_key"), req.URL.RawQuery, req.Header.Get("X-Api-Key"), req.Header.Get("Authorization"), secrets[0])
	}
	for _, tc := range []struct {
		name  string
		basic bool
		pad   int // bytes before the echo, to cut the answer in the middle of a secret
	}{
		{"bearer", false, 0},
		{"basic", true, 0},
		{"cut", true, webhook.MaxSnippet - len("rejected : query \"") - len("Qu3ryK")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
				http.Error(w, echo(req, strings.Repeat("x", tc.pad)), http.StatusBadRequest)
			}))
			t.Cleanup(srv.Close)
			c := &webhook.Config{URL: strings.Replace(srv.URL, "://", "://user:"+secrets[0]+"@", 1) + "/hook?api_key=" + url.QueryEscape(secrets[1]) + "&v=2",
				Headers: map[string]string{"X-Api-Key": secrets[2]}, Auth: value.BasicAuth{Secret: secrets[3]}, SignatureKey: secrets[4],
				Timeout: value.Duration(5 * time.Second)}
			if tc.basic {
				c.Auth.Username = "user"
			}
			s := newSink(t, c, webhook.Options{})
			err := s.Write(context.Background(), events(1, "sec"))
			if !sink.IsPermanent(err) {
				t.Fatalf("Write = %v, want a permanent error", err)
			}
			msg := err.Error()
			for _, v := range append(secrets, url.QueryEscape(secrets[1]), base64.StdEncoding.EncodeToString([]byte("user:"+secrets[3])),
				base64.StdEncoding.EncodeToString([]byte("user:"+secrets[0])), "Qu3ryK") {
				if strings.Contains(msg, v) {
					t.Errorf("error shows %q: %s", v, msg)
				}
			}
			if !strings.Contains(msg, "/hook?api_key=xxxxx&v=xxxxx") || !strings.Contains(msg, "user:xxxxx@") {
				t.Errorf("error does not name the receiver with its secrets masked: %s", msg)
			}
		})
	}
}

func TestNewErrorNeverShowsURL(t *testing.T) {
	for _, u := range []string{"https://u:pa55%zz@h/hook?key=k3y", "https://u:pa55/x@h/hook?key=k3y"} {
		_, err := webhook.New("w", &webhook.Config{URL: u}, webhook.Options{})
		if err == nil {
			t.Fatalf("New accepted %s", u)
		}
		if strings.Contains(err.Error(), "pa55") || strings.Contains(err.Error(), "k3y") {
			t.Errorf("New(%s): %v shows the URL", u, err)
		}
	}
}

func TestCloseIdempotent(t *testing.T) {
	r := newReceiver(t, false, nil)
	s := newSink(t, cfg(r), webhook.Options{})
	for range 2 {
		if err := s.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Write(context.Background(), events(1, "cl")); err == nil {
		t.Error("Write after Close succeeded")
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  *webhook.Config
		want string
	}{
		{"nil", nil, "no configuration"},
		{"no url", &webhook.Config{}, "url"},
		{"relative url", &webhook.Config{URL: "/hook"}, "url"},
		{"ftp", &webhook.Config{URL: "ftp://127.0.0.1/"}, "url"},
		{"negative batch", &webhook.Config{URL: "http://127.0.0.1/", BatchSize: -1}, "batch-size"},
		{"negative timeout", &webhook.Config{URL: "http://127.0.0.1/", Timeout: -1}, "timeout"},
		{"bad header name", &webhook.Config{URL: "http://127.0.0.1/", Headers: map[string]string{"X Bad": "v"}}, "headers.X Bad"},
		{"bad header value", &webhook.Config{URL: "http://127.0.0.1/", Headers: map[string]string{"X-Ok": "a\r\nb"}}, "headers.X-Ok"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := webhook.New("w", tt.cfg, webhook.Options{})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New = %v, want an error about %s", err, tt.want)
			}
		})
	}
}

func TestFailedIDs(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want []string
	}{
		{"nil", nil, nil},
		{"plain", errors.New("x"), nil},
		{"rejected, wrapped", sink.Permanent(fmt.Errorf("w: %w", &webhook.StatusError{StatusCode: 422, IDs: []string{"a"}})), []string{"a"}},
		{"joined", sink.Permanent(errors.Join(&webhook.StatusError{StatusCode: 400, IDs: []string{"b", "c"}},
			fmt.Errorf("x: %w", &webhook.StatusError{StatusCode: 413, IDs: []string{"a"}}))), []string{"b", "c", "a"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := webhook.FailedIDs(tt.err); !slices.Equal(got, tt.want) {
				t.Errorf("FailedIDs = %v, want %v", got, tt.want)
			}
		})
	}
}

func BenchmarkEncodeBatch(b *testing.B) {
	batch := events(100, "bench")
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		buf = webhook.AppendBody(buf[:0], batch)
	}
	b.SetBytes(int64(len(buf)))
}

// The webhook is a sink.Sink; the guard lives here so that the package
// itself does not import the engine.
var _ sink.Sink = (*webhook.Sink)(nil)
