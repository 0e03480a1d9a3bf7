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
// Write returns an error that is not permanent (an *outbound.RetryAfterError when the
// receiver sent Retry-After). Any other answer (3xx, since redirects are not
// followed; 4xx) is permanent: Write returns a sink.Permanent error
// holding a *StatusError with the status and the first 512 bytes of the
// answer. Errors name the receiver by its URL with the password and query
// values masked (value.RedactURL), and mask every configured secret the
// receiver's answer repeats.
//
// # Acknowledged request by request
//
// Each chunk answered 2xx is reported to the runtime with
// sink.Delivered as soon as the answer arrives, so the runtime acks its
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
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/mailtel/mailtel/pipeline/config/value"
	"github.com/mailtel/mailtel/pipeline/sinks/outbound"
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
// Write follows the sink.Sink contract; calls are meant to come from one
// goroutine at a time, but concurrent calls are safe (they share the
// concurrency slots). Close is idempotent.
type Sink struct {
	name   string
	target string // the URL for messages, as value.RedactURL shows it
	url    string
	host   string // a configured Host header, sent as the request's Host
	header http.Header
	key    []byte // signature key; nil when unset
	cfg    Config
	client *http.Client
	ownsTr *http.Transport // the transport New built, closed by Close
	now    func() time.Time
	sender *outbound.Sender
	closed atomic.Bool
	// secrets are removed from what the receiver answers before it reaches
	// an error.
	secrets *outbound.Secrets
}

// New returns the sink named name for the webhook configuration cfg. Zero
// batch-size, concurrency and timeout take the defaults config.Load gives
// them; a zero throttle means no throttling. It fails on a URL that is not
// absolute http(s), on negative durations and sizes, and on header names
// or values HTTP cannot carry.
func New(name string, cfg *Config, opts Options) (*Sink, error) {
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
		c.Timeout = value.Duration(DefaultTimeout)
	}
	var errs []error
	u, err := value.ParseURL(c.URL) // its error never quotes the URL
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
		v   value.Duration
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
	s.target = value.RedactURL(c.URL)
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
		s.client, s.ownsTr = outbound.NewClient(c.AllowInvalidCerts, c.Concurrency)
	}
	s.sender = outbound.NewSender("webhook "+name, c.BatchSize, c.Concurrency, c.Throttle.D(), s.post, classify)
	return s, nil
}

// secretsOf returns what of c must not appear in an error: the URL's
// password (or a user name alone, which may be a token) and query values,
// the header values, the auth secret, the signature key, and the
// Authorization values built from them.
func secretsOf(c Config, u *url.URL) *outbound.Secrets {
	var s outbound.Secrets
	s.AddURL(c.URL, u)
	for _, v := range c.Headers {
		s.AddHeader(v)
	}
	s.Add(c.Auth.Secret)
	if c.Auth.Username != "" {
		s.AddBasic(c.Auth.Username, c.Auth.Secret)
	}
	s.Add(c.SignatureKey)
	return &s
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
	return s.sender.Write(ctx, batch)
}

// classify sorts the errors of post for outbound.Sender: an answer that
// is not retryable is permanent; a retryable one may say when to retry.
func classify(err error) (permanent bool, retryAfter time.Duration) {
	var se *StatusError
	if errors.As(err, &se) {
		return !se.Retryable(), se.RetryAfter
	}
	return false, 0
}

// post sends one chunk and classifies the answer.
func (s *Sink) post(ctx context.Context, chunk []*schema.Event) error {
	body := AppendBody(make([]byte, 0, 256*len(chunk)), chunk)
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
	se := &StatusError{StatusCode: resp.StatusCode, Body: s.secrets.Scrub(string(snippet), MaxSnippet), URL: s.target}
	if se.Retryable() {
		if d, ok := outbound.ParseRetryAfter(resp.Header.Get("Retry-After"), s.now()); ok {
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
