// Package webhook is the sink that POSTs events to an HTTP receiver in the
// format of Stalwart's telemetry webhooks, so a receiver written for
// Stalwart works unchanged: a JSON body {"events":[...]} whose elements are
// Stalwart events ({"id","createdAt","type","data"}), signed like Stalwart
// signs (X-Signature: base64 of the HMAC-SHA256 of the body with the
// signature key).
//
// # Outcomes
//
// Each Write splits its batch into chunks of at most batch-size events and
// POSTs up to concurrency chunks in parallel. A chunk answered 2xx is
// delivered. A network error, a timeout, 408, 429 and 5xx are retryable:
// Write returns an error that is not permanent (a *RetryAfterError when the
// receiver sent Retry-After). Any other answer (3xx, since redirects are not
// followed; 4xx) is permanent: Write returns a pipeline.Permanent error
// holding a *StatusError with the status and the first 512 bytes of the
// answer. Errors name the receiver by its URL with the password and query
// values masked (config.RedactURL), and mask every configured secret the
// receiver's answer repeats.
//
// # Acknowledged request by request
//
// Each chunk answered 2xx is reported to the runtime with
// delivery.Delivered as soon as the answer arrives, so the runtime acks its
// events at once and a retry of the batch does not send them again: a
// crash of the sinks process re-sends at most the chunks in flight, that is
// concurrency × batch-size events. An event whose id appears earlier in the
// same batch is not sent twice.
//
// How long a failing receiver is retried (discard-after, max-backoff) is
// the runtime's policy, shared by every sink (package delivery).
package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mailtel/mailtel/pipeline"
	"github.com/mailtel/mailtel/pipeline/config"
	"github.com/mailtel/mailtel/pipeline/delivery"
	"github.com/mailtel/mailtel/schema"
)

// Defaults for zero values of a configuration that did not go through
// config.Load (which sets the same ones).
const (
	DefaultBatchSize   = 100
	DefaultConcurrency = 4
	DefaultTimeout     = 30 * time.Second
)

// MaxSnippet is how many bytes of a failed answer an error keeps.
const MaxSnippet = 512

// drainLimit is how much of an answer is read (and dropped) so that the
// connection can be reused.
const drainLimit = 64 << 10

// Options are the dependencies of a Sink.
type Options struct {
	// Client sends the requests. When nil, New builds one from the
	// configuration: TLS certificates verified unless allow-invalid-certs,
	// proxies from the environment, redirects not followed. A given Client
	// is used as is (allow-invalid-certs does not apply to it); it should
	// not follow redirects, or a 301/302 turns the POST into a GET.
	Client *http.Client
	// Now is the clock of Retry-After dates; nil means time.Now.
	// Throttling uses the real clock.
	Now func() time.Time
}

// Sink POSTs events to one webhook receiver.
//
// Write follows the pipeline.Sink contract; calls are meant to come from one
// goroutine at a time, but concurrent calls are safe (they share the
// concurrency slots). Close is idempotent.
type Sink struct {
	name   string
	target string // the URL for messages, as config.RedactURL shows it
	url    string
	host   string // a configured Host header, sent as the request's Host
	header http.Header
	key    []byte // signature key; nil when unset
	cfg    config.Webhook
	client *http.Client
	ownsTr *http.Transport // the transport New built, closed by Close
	now    func() time.Time
	slots  chan *slot
	closed atomic.Bool
	// secrets are the configured values that must not reach an error, a
	// log or a dead letter, longest first: scrub removes them from what
	// the receiver answers, since receivers like to repeat what they were
	// sent ("invalid api key ...").
	secrets []string
}

var _ pipeline.Sink = (*Sink)(nil)

// slot is one of the cfg.Concurrency request slots. Consecutive POSTs on a
// slot start at least cfg.Throttle apart.
type slot struct{ last time.Time }

// New returns the sink named name for the webhook configuration cfg. Zero
// batch-size, concurrency and timeout take the defaults config.Load gives
// them; a zero throttle means no throttling. It fails on a URL that is not
// absolute http(s), on negative durations and sizes, and on header names
// or values HTTP cannot carry.
func New(name string, cfg *config.Webhook, opts Options) (*Sink, error) {
	if cfg == nil {
		return nil, fmt.Errorf("webhook %s: no configuration", name)
	}
	c := *cfg
	if c.BatchSize == 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.Concurrency == 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.Timeout == 0 {
		c.Timeout = config.Duration(DefaultTimeout)
	}
	var errs []error
	u, err := config.ParseURL(c.URL) // its error never quotes the URL
	if err != nil {
		errs = append(errs, fmt.Errorf("url: %w", err))
	} else if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, errors.New("url: want an absolute http:// or https:// URL"))
	}
	if c.BatchSize < 0 {
		errs = append(errs, errors.New("batch-size: must be at least 1"))
	}
	if c.Concurrency < 0 {
		errs = append(errs, errors.New("concurrency: must be at least 1"))
	}
	for _, d := range []struct {
		key string
		v   config.Duration
	}{{"timeout", c.Timeout}, {"throttle", c.Throttle}} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("%s: must not be negative", d.key))
		}
	}
	s := &Sink{name: name, url: c.URL, cfg: c, now: opts.Now, client: opts.Client,
		header: http.Header{"Content-Type": {"application/json"}}}
	for k, v := range c.Headers {
		if !validHeaderName(k) || strings.ContainsAny(v, "\r\n\x00") {
			errs = append(errs, fmt.Errorf("headers.%s: not a valid HTTP header", k))
			continue
		}
		if strings.EqualFold(k, "Host") {
			s.host = v
			continue
		}
		s.header.Set(k, v)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("webhook %s: %w", name, errors.Join(errs...))
	}
	s.target = config.RedactURL(c.URL)
	s.secrets = secretsOf(c, u)
	switch a := c.Auth; {
	case a.Username != "":
		s.header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(a.Username+":"+a.Secret)))
	case a.Secret != "":
		s.header.Set("Authorization", "Bearer "+a.Secret)
	}
	if c.SignatureKey != "" {
		s.key = []byte(c.SignatureKey)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.client == nil {
		s.ownsTr = newTransport(c)
		s.client = &http.Client{Transport: s.ownsTr,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	s.slots = make(chan *slot, c.Concurrency)
	for range c.Concurrency {
		s.slots <- &slot{}
	}
	return s, nil
}

func newTransport(c config.Webhook) *http.Transport {
	tr, ok := http.DefaultTransport.(*http.Transport)
	if ok {
		tr = tr.Clone()
	} else {
		tr = &http.Transport{Proxy: http.ProxyFromEnvironment}
	}
	tr.TLSClientConfig = &tls.Config{
		MinVersion: tls.VersionTLS12,
		// allow-invalid-certs is the operator's explicit choice (Stalwart's
		// setting of the same name), for receivers with self-signed certs.
		InsecureSkipVerify: c.AllowInvalidCerts, //nolint:gosec
	}
	tr.MaxIdleConnsPerHost = c.Concurrency
	return tr
}

// minSecret is the length below which a configured value is not looked
// for in answers: a shorter one would mangle them, and hides nothing.
const minSecret = 4

// secretsOf returns what of c must not appear in an error: the URL's
// password (or a user name alone, which may be a token) and query values,
// the header values, the auth secret, the signature key, and the
// Authorization values built from them; each also as a URL encodes it.
// Longest first, so that a secret containing another is removed whole.
func secretsOf(c config.Webhook, u *url.URL) []string {
	seen := map[string]bool{}
	var out []string
	add := func(v string) {
		for _, x := range []string{v, url.QueryEscape(v), url.PathEscape(v)} {
			if len(x) >= minSecret && !seen[x] {
				seen[x] = true
				out = append(out, x)
			}
		}
	}
	basic := func(user, pass string) { add(base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))) }
	if u.User != nil {
		if p, ok := u.User.Password(); ok {
			add(p)
			basic(u.User.Username(), p) // the client sends it as basic auth
		} else {
			add(u.User.Username())
		}
		// The user info as written, escapes and all.
		_, rest, _ := strings.Cut(c.URL, "://")
		if end := strings.IndexAny(rest, "/?#"); end >= 0 {
			rest = rest[:end]
		}
		if at := strings.LastIndexByte(rest, '@'); at >= 0 {
			user, pass, ok := strings.Cut(rest[:at], ":")
			if !ok {
				pass = user
			}
			add(pass)
		}
	}
	for _, kv := range strings.Split(u.RawQuery, "&") {
		if _, v, ok := strings.Cut(kv, "="); ok {
			add(v)
			if dv, err := url.QueryUnescape(v); err == nil {
				add(dv)
			}
		} else {
			add(kv)
		}
	}
	for _, v := range c.Headers {
		add(v)
	}
	add(c.Auth.Secret)
	if c.Auth.Username != "" {
		basic(c.Auth.Username, c.Auth.Secret)
	}
	add(c.SignatureKey)
	sort.Slice(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out
}

// scrub returns text with every configured secret replaced by
// config.Redacted. When text was cut at limit bytes, a secret cut at its
// end is removed too.
func (s *Sink) scrub(text string, limit int) string {
	for _, v := range s.secrets {
		text = strings.ReplaceAll(text, v, config.Redacted)
	}
	if len(text) < limit {
		return text
	}
	for _, v := range s.secrets {
		for n := len(v) - 1; n >= minSecret; n-- {
			if strings.HasSuffix(text, v[:n]) {
				return text[:len(text)-n] + config.Redacted
			}
		}
	}
	return text
}

// validHeaderName reports whether k is an HTTP token.
func validHeaderName(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return true
}

// Close releases idle connections of the client New built. It is
// idempotent; Write fails after it.
func (s *Sink) Close(context.Context) error {
	if s.closed.Swap(true) {
		return nil
	}
	if s.ownsTr != nil {
		s.ownsTr.CloseIdleConnections()
	}
	return nil
}

// Write delivers batch; see the package documentation for the outcomes.
// Nil events are ignored.
func (s *Sink) Write(ctx context.Context, batch []*schema.Event) error {
	if s.closed.Load() {
		return fmt.Errorf("webhook %s: write after close", s.name)
	}
	chunks := split(unique(batch), s.cfg.BatchSize)
	errs := s.deliver(ctx, chunks)

	var retry, perm []error
	var after time.Duration
	for _, err := range errs {
		if err == nil {
			continue
		}
		var se *StatusError
		if errors.As(err, &se) && !se.Retryable() {
			perm = append(perm, err)
			continue
		}
		retry = append(retry, err)
		if se != nil {
			after = max(after, se.RetryAfter)
		}
	}
	if len(retry) > 0 {
		err := fmt.Errorf("webhook %s: %d of %d requests failed: %w", s.name, len(retry)+len(perm), len(chunks), errors.Join(retry...))
		if after > 0 {
			return &RetryAfterError{After: after, Err: err}
		}
		return err
	}
	if len(perm) == 0 {
		return nil
	}
	return delivery.Permanent(fmt.Errorf("webhook %s: %w", s.name, errors.Join(perm...)))
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

// deliver POSTs the chunks, up to cfg.Concurrency at a time, and returns
// the error of each (nil when delivered). After a retryable failure it
// starts no further chunk: the receiver is struggling, and the retry of the
// batch will send them.
func (s *Sink) deliver(ctx context.Context, chunks [][]*schema.Event) []error {
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
			sl = nil
		}
		if sl == nil || failed.Load() {
			if sl != nil {
				s.slots <- sl
			}
			for j := i; j < len(chunks); j++ {
				errs[j] = fmt.Errorf("%d events not sent: %w", len(chunks[j]), errNotStarted(ctx))
			}
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { s.slots <- sl }()
			err := s.post(ctx, sl, chunk)
			errs[i] = err
			var se *StatusError
			if err == nil {
				delivery.Delivered(ctx, chunk)
			} else if !errors.As(err, &se) || se.Retryable() {
				failed.Store(true)
			}
		}()
	}
	wg.Wait()
	return errs
}

func errNotStarted(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return errors.New("an earlier request of the batch failed")
}

// post sends one chunk on slot sl and classifies the answer.
func (s *Sink) post(ctx context.Context, sl *slot, chunk []*schema.Event) error {
	body := AppendBody(make([]byte, 0, 256*len(chunk)), chunk)
	if err := sl.wait(ctx, s.cfg.Throttle.D()); err != nil {
		return fmt.Errorf("%d events not sent: throttled: %w", len(chunk), err)
	}
	rctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout.D())
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, s.url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("post %d events to %s: %w", len(chunk), s.target, err)
	}
	req.Header = s.header.Clone()
	if s.host != "" {
		req.Host = s.host
	}
	if s.key != nil {
		req.Header.Set("X-Signature", Sign(s.key, body))
	}
	sl.last = time.Now()
	resp, err := s.client.Do(req)
	if err != nil {
		// The client's error repeats the URL, whose query may hold a key.
		var ue *url.Error
		if errors.As(err, &ue) {
			ue.URL = s.target
		}
		return fmt.Errorf("post %d events to %s: %w", len(chunk), s.target, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 200 && resp.StatusCode <= 299 {
		io.CopyN(io.Discard, resp.Body, drainLimit)
		return nil
	}
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, MaxSnippet))
	io.CopyN(io.Discard, resp.Body, drainLimit)
	se := &StatusError{StatusCode: resp.StatusCode, Body: s.scrub(string(snippet), MaxSnippet), URL: s.target}
	if se.Retryable() {
		if d, ok := parseRetryAfter(resp.Header.Get("Retry-After"), s.now()); ok {
			se.RetryAfter = d
		}
	} else {
		se.IDs = make([]string, 0, len(chunk))
		for _, ev := range chunk {
			se.IDs = append(se.IDs, ev.ID)
		}
	}
	return fmt.Errorf("post %d events: %w", len(chunk), se)
}

// wait blocks until the slot may start its next POST.
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

// AppendBody appends the body of a POST carrying events,
// {"events":[...]} with each event as schema.AppendStalwart writes it.
func AppendBody(b []byte, events []*schema.Event) []byte {
	b = append(b, `{"events":[`...)
	for i, ev := range events {
		if i > 0 {
			b = append(b, ',')
		}
		b = schema.AppendStalwart(b, ev)
	}
	return append(b, "]}"...)
}

// Sign returns the X-Signature of body: the standard base64 encoding of its
// HMAC-SHA256 with key, as Stalwart computes it.
func Sign(key, body []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write(body)
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// parseRetryAfter reads a Retry-After value: delay-seconds or an HTTP date
// (a date in the past means now).
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
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
