package ingest

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/mailtel/mailtel/pipeline"
	"github.com/mailtel/mailtel/pipeline/config"
	"github.com/mailtel/mailtel/pipeline/ingest/dovecot"
	"github.com/mailtel/mailtel/pipeline/ingest/format"
	"github.com/mailtel/mailtel/pipeline/ingest/stalwart"
	"github.com/mailtel/mailtel/pipeline/obs"
	"github.com/mailtel/mailtel/schema"
)

// PathPrefix is the path of the ingest endpoints, PathPrefix + the name of
// a format.
const PathPrefix = "/v1/ingest/"

// Paths of the built-in formats served by Handler.
const (
	PathStalwart = PathPrefix + stalwart.Name
	PathDovecot  = PathPrefix + dovecot.Name
)

// Handler serves one endpoint for every format registered (with package
// format) when it was made:
//
//	POST /v1/ingest/<format>
//
// such as
//
//	POST /v1/ingest/stalwart  {"events":[{id,createdAt,type,data}, ...]}
//	POST /v1/ingest/dovecot   one event_exporter JSON object
//
// A POST to /v1/ingest/<name> of no such format is answered 404 with
// {"error":"..."} naming the formats served, before anything else is
// checked.
//
// Before it reads a byte of a request's body it checks, in this order:
// the bearer token or basic auth (schemes are case-insensitive), and that
// an X-Signature is there when a signature key is set (401); that the
// Content-Type is application/json, parameters allowed (415: a browser
// cannot send that type to another origin without asking first); that
// the Content-Length is within max-body (413); and that the request's
// bytes (its Content-Length, or max-body for a chunked body, and
// RequestOverhead) keep the bytes of the requests in flight within
// max-in-flight-bytes (503 with Retry-After: 1). These answers close the
// connection instead of reading the body. Then it reads the body into a
// buffer of its size, checks its X-Signature (base64 HMAC-SHA256 of the
// body, as Stalwart signs its webhooks; 401), and walks the events in
// place: each is checked against the limits on its raw JSON (see
// checkRaw), decoded, checked and published in turn (a format whose body
// is one event, format.Format's Split nil, is that event), so the body is the
// only copy of the request that lives as long as the request. An event
// whose decoding takes more memory than RequestOverhead reserves the rest
// while it is decoded and published; when max-in-flight-bytes has no room
// for it, it fails (503, Retry-After: 1).
//
// It answers 200 only after JetStream stored every accepted event of the
// request and the dead letter of every rejected one, with
// {"accepted":N,"duplicates":N,"rejected":[{"index":i,"error":"..."}]}.
// Events of a batch that cannot be parsed, are over the limits, or whose
// encoding is larger than the NATS server takes (see
// pipeline.MaxEventSize) are rejected one by one and dead-lettered without
// failing the others. A batch may carry at most MaxRejected bad events: at
// the next one the rest of the batch, from that event on, is not ingested
// but dead-lettered as one (cut to fit), and the answer is 400 with the
// same counts. A body that is not what the endpoint takes gets 400 (413
// when too large, 408 when not read within the read timeout) with
// {"error":"..."}.
//
// When an event or a dead letter could not be stored (the NATS connection
// is down, the request's store deadline passed, the client went away),
// the answer is 503 with the same counts, of what was stored, and
// "failed":[{"index":i,"error":"..."}] naming what was not, so the sender
// retries; a retry stores nothing twice (events are deduplicated by id,
// dead letters by a hash of the input). A request is not started while
// the connection is down, and one in progress stops when it goes down.
//
// Handler is safe for concurrent use.
type Handler struct {
	pub *pipeline.Publisher
	js  jetstream.JetStream
	cfg config.Publisher
	// creds are the credentials requests must carry: cfg's at first, then
	// those SetCredentials gave.
	creds   atomic.Pointer[config.Publisher]
	log     zerolog.Logger
	metrics *obs.Metrics
	limits  Limits
	mux     *http.ServeMux
	formats map[string]format.Format // by name
	known   string                   // their names, for the 404 answer
	maxBody int64
	budget  *budget
	// write is the server's write timeout (see NewServer), which bounds
	// the store of a request so that its answer can still be written.
	write   time.Duration
	refused *prometheus.CounterVec
}

// StoreTimeout bounds the time one request may take to store its events
// and dead letters, from the time its body was read. The write timeout
// bounds it further: a request is answered before the server would cut
// its connection.
const StoreTimeout = 60 * time.Second

// MaxRejected is the most bad events one request may carry; see Handler.
const MaxRejected = 1000

// RequestOverhead is what a request reserves of max-in-flight-bytes on top
// of its body: its buffers, and the decoding of an event of a usual size.
// An event whose decoding takes more reserves the rest while it is
// decoded and published.
const RequestOverhead = 64 << 10

// Defaults of a zero [publisher] section (see config.Publisher).
const (
	DefaultMaxBody          = 8 << 20
	DefaultMaxInFlightBytes = 64 << 20
)

// ErrNotConnected is the reason of what a request could not store because
// the NATS connection was not connected.
var ErrNotConnected = errors.New("not connected to NATS")

// NewHandler returns the ingest handler. Authentication is required when
// cfg sets a token, a user/password or a signature key. js is the
// JetStream context of pub, used for dead letters and to watch the
// connection. Its metrics (mailtel_ingest_in_flight_bytes,
// mailtel_ingest_refused_total) are registered in m's registry.
func NewHandler(pub *pipeline.Publisher, js jetstream.JetStream, cfg config.Publisher, log zerolog.Logger, m *obs.Metrics) *Handler {
	h := &Handler{pub: pub, js: js, cfg: cfg, log: log, metrics: m, limits: LimitsFrom(cfg), mux: http.NewServeMux(),
		maxBody: int64(cfg.MaxBody)}
	if h.maxBody <= 0 {
		h.maxBody = DefaultMaxBody
	}
	limit := int64(cfg.MaxInFlightBytes)
	if limit <= 0 {
		limit = DefaultMaxInFlightBytes
	}
	inFlight, refused := ingestMetrics(m)
	h.budget = &budget{limit: max(limit, h.maxBody+RequestOverhead), gauge: inFlight}
	h.refused = refused
	_, h.write, _ = timeouts(cfg)
	h.creds.Store(&cfg)
	h.formats = map[string]format.Format{}
	for _, f := range format.All() {
		h.formats[f.Name] = f
	}
	h.known = strings.Join(format.Names(), ", ")
	h.mux.HandleFunc("POST "+PathPrefix+"{format}", h.ingest)
	return h
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

// SetCredentials makes requests from now on authenticate with the token,
// user/password and signature key of c (a configuration reload). A
// request whose headers were already checked finishes under the old ones.
// It reports whether they changed. The caller has validated c with the
// listener the handler serves: credentials are required beyond loopback.
func (h *Handler) SetCredentials(c config.Publisher) bool {
	old := h.creds.Load()
	next := *old
	next.Token, next.User, next.Password, next.SignatureKey = c.Token, c.User, c.Password, c.SignatureKey
	h.creds.Store(&next)
	return old.Token != next.Token || old.User != next.User || old.Password != next.Password || old.SignatureKey != next.SignatureKey
}

// ingestMetrics returns the handler's metrics, registered in m's registry
// (or the ones registered there before, by another handler).
func ingestMetrics(m *obs.Metrics) (prometheus.Gauge, *prometheus.CounterVec) {
	g := prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "mailtel", Name: "ingest_in_flight_bytes",
		Help: "Bytes reserved by the ingest requests being read or handled (at most [publisher] max-in-flight-bytes)."})
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "mailtel", Name: "ingest_refused_total",
		Help: "Ingest requests refused, by reason: unauthorized, media-type, too-large, busy (over max-in-flight-bytes)."}, []string{"reason"})
	if m == nil || m.Registry == nil {
		return g, c
	}
	var are prometheus.AlreadyRegisteredError
	if err := m.Registry.Register(g); errors.As(err, &are) {
		g = are.ExistingCollector.(prometheus.Gauge)
	}
	if err := m.Registry.Register(c); errors.As(err, &are) {
		c = are.ExistingCollector.(*prometheus.CounterVec)
	}
	return g, c
}

type rejected struct {
	Index int    `json:"index"`
	Error string `json:"error"`
}

type answer struct {
	Accepted   int        `json:"accepted"`
	Duplicates int        `json:"duplicates"`
	Rejected   []rejected `json:"rejected,omitempty"`
	Failed     []rejected `json:"failed,omitempty"`
	Error      string     `json:"error,omitempty"`
}

// ingest serves POST /v1/ingest/{format}.
func (h *Handler) ingest(w http.ResponseWriter, r *http.Request) {
	began := time.Now()
	f, ok := h.formats[r.PathValue("format")]
	if !ok {
		h.unknown(w, r)
		return
	}
	body, done, ok := h.admit(w, r)
	if !ok {
		return
	}
	defer done()
	if f.Split == nil {
		h.one(w, r, f, body, began)
	} else {
		h.batch(w, r, f, body, began)
	}
}

// unknown answers a request to the endpoint of no format, without reading
// its body.
func (h *Handler) unknown(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("format")
	if len(name) > 64 {
		name = name[:64] + "..."
	}
	if r.ContentLength != 0 {
		w.Header().Set("Connection", "close")
	}
	writeJSON(w, http.StatusNotFound, answer{Error: fmt.Sprintf("unknown ingest format %q: the formats are %s", name, h.known)})
}

// batch ingests a body of many events, which f.Split finds.
func (h *Handler) batch(w http.ResponseWriter, r *http.Request, f format.Format, body []byte, began time.Time) {
	rq := h.newRequest(r, began, func(i int) string { return fmt.Sprintf("%s event %d", f.Name, i) })
	err := f.Split(body, func(raw, rest []byte) bool {
		if rq.add(raw, true, f.Decode) {
			return true
		}
		rq.refuseRest(rest)
		return false
	})
	a, ok := rq.finish()
	switch {
	case !ok:
		h.unavailable(w, a)
	case err != nil: // not a batch: nothing was taken
		a.Error = err.Error()
		writeJSON(w, http.StatusBadRequest, a)
	case rq.tooMany >= 0:
		a.Error = fmt.Sprintf("more than %d bad events: event %d and those after it were not ingested, but dead-lettered as one", MaxRejected, rq.tooMany)
		writeJSON(w, http.StatusBadRequest, a)
	default:
		writeJSON(w, http.StatusOK, a)
	}
}

// one ingests a body that is one event.
func (h *Handler) one(w http.ResponseWriter, r *http.Request, f format.Format, body []byte, began time.Time) {
	rq := h.newRequest(r, began, func(int) string { return f.Name + " event" })
	rq.add(body, json.Valid(body), f.Decode)
	a, ok := rq.finish()
	switch {
	case !ok:
		h.unavailable(w, a)
	case len(a.Rejected) > 0:
		// Rejected and dead-lettered: the sender should not retry.
		writeJSON(w, http.StatusBadRequest, answer{Error: f.Name + " event: " + a.Rejected[0].Error})
	default:
		writeJSON(w, http.StatusOK, a)
	}
}

// admit checks a request before its body is read (see Handler), reserves
// its bytes, reads its body and checks its signature. Unless it returns
// true, it has answered; done gives the reserved bytes back.
func (h *Handler) admit(w http.ResponseWriter, r *http.Request) (body []byte, done func(), ok bool) {
	if err := h.authenticate(r); err != nil {
		h.refuse(w, r, http.StatusUnauthorized, "unauthorized", err)
		return nil, nil, false
	}
	if err := checkContentType(r.Header.Get("Content-Type")); err != nil {
		h.refuse(w, r, http.StatusUnsupportedMediaType, "media-type", err)
		return nil, nil, false
	}
	n := r.ContentLength
	if n > h.maxBody {
		h.refuse(w, r, http.StatusRequestEntityTooLarge, "too-large", fmt.Errorf("body of %d bytes, larger than %d bytes (max-body)", n, h.maxBody))
		return nil, nil, false
	}
	reserve := n
	if reserve < 0 {
		reserve = h.maxBody // chunked: as much as it may grow to
	}
	reserve += RequestOverhead
	if !h.budget.acquire(reserve) {
		w.Header().Set("Retry-After", "1")
		h.refuse(w, r, http.StatusServiceUnavailable, "busy", fmt.Errorf("busy: the requests in flight hold %d bytes, and %d more would pass the limit of %d (max-in-flight-bytes); retry",
			h.budget.used.Load(), reserve, h.budget.limit))
		return nil, nil, false
	}
	done = func() { h.budget.release(reserve) }
	body, status, err := h.readBody(w, r, n)
	if err == nil {
		if err = h.checkSignature(r, body); err != nil {
			status = http.StatusUnauthorized
			h.refused.WithLabelValues("unauthorized").Inc()
		}
	}
	if err != nil {
		done()
		h.fail(w, status, err)
		return nil, nil, false
	}
	return body, done, true
}

// refuse answers a request whose body was not read, and closes the
// connection after the answer rather than read the body to reuse it.
func (h *Handler) refuse(w http.ResponseWriter, r *http.Request, status int, reason string, err error) {
	h.refused.WithLabelValues(reason).Inc()
	h.log.Debug().Err(err).Int("status", status).Str("remote", r.RemoteAddr).Msg("ingest request refused")
	if r.ContentLength != 0 {
		w.Header().Set("Connection", "close")
	}
	writeJSON(w, status, answer{Error: err.Error()})
}

// readBody reads a body of n bytes (-1: chunked, up to max-body) into a
// buffer of its size. It returns the status of the answer when it fails.
func (h *Handler) readBody(w http.ResponseWriter, r *http.Request, n int64) ([]byte, int, error) {
	var body []byte
	var err error
	if n >= 0 {
		body = make([]byte, n)
		_, err = io.ReadFull(r.Body, body)
	} else {
		body, err = io.ReadAll(http.MaxBytesReader(w, r.Body, h.maxBody))
	}
	var tooBig *http.MaxBytesError
	var nerr net.Error
	switch {
	case err == nil:
		return body, 0, nil
	case errors.As(err, &tooBig):
		return nil, http.StatusRequestEntityTooLarge, fmt.Errorf("body larger than %d bytes (max-body)", tooBig.Limit)
	case errors.As(err, &nerr) && nerr.Timeout():
		return nil, http.StatusRequestTimeout, fmt.Errorf("read body: not read within the read timeout: %w", err)
	}
	return nil, http.StatusBadRequest, fmt.Errorf("read body: %w", err)
}

// authenticate checks what the headers can tell before the body is read:
// the bearer token or basic auth, and that an X-Signature (base64 of an
// HMAC-SHA256) is there when a signature key is set.
func (h *Handler) authenticate(r *http.Request) error {
	c := h.creds.Load()
	if c.Token != "" || c.User != "" {
		scheme, cred, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		ok := false
		switch {
		case c.Token != "" && strings.EqualFold(scheme, "Bearer"):
			ok = equal(strings.TrimLeft(cred, " "), c.Token)
		case c.User != "" && strings.EqualFold(scheme, "Basic"):
			u, p, has := r.BasicAuth()
			user, pass := equal(u, c.User), equal(p, c.Password)
			ok = has && user && pass
		}
		if !ok {
			return errors.New("missing or wrong credentials")
		}
	}
	if c.SignatureKey != "" {
		if sig, err := base64.StdEncoding.DecodeString(r.Header.Get("X-Signature")); err != nil || len(sig) != sha256.Size {
			return errors.New("missing or wrong X-Signature")
		}
	}
	return nil
}

// checkSignature checks the X-Signature of the body, when a signature key
// is set: the base64 HMAC-SHA256 of the body, as Stalwart signs its
// webhooks.
func (h *Handler) checkSignature(r *http.Request, body []byte) error {
	key := h.creds.Load().SignatureKey
	if key == "" {
		return nil
	}
	got, err := base64.StdEncoding.DecodeString(r.Header.Get("X-Signature"))
	mac := hmac.New(sha256.New, []byte(key))
	mac.Write(body)
	if err != nil || !hmac.Equal(got, mac.Sum(nil)) {
		return errors.New("missing or wrong X-Signature")
	}
	return nil
}

// equal compares a credential in constant time, its length included.
func equal(a, b string) bool {
	ha, hb := sha256.Sum256([]byte(a)), sha256.Sum256([]byte(b))
	return subtle.ConstantTimeCompare(ha[:], hb[:]) == 1
}

// checkContentType accepts application/json, with parameters
// (application/json; charset=utf-8), in any case.
func checkContentType(ct string) error {
	if mt, _, _ := strings.Cut(ct, ";"); strings.EqualFold(strings.TrimSpace(mt), "application/json") {
		return nil
	}
	if ct == "" {
		return errors.New("no Content-Type: want application/json")
	}
	if len(ct) > 64 {
		ct = ct[:64] + "..."
	}
	return fmt.Errorf("content type %q: want application/json", ct)
}

// outcome is what became of one event of a request.
type outcome uint8

const (
	unsettled    outcome = iota // published or not, JetStream has not answered
	stored                      // stored in EVENTS
	duplicate                   // EVENTS held it already
	failed                      // not stored: request.errs
	rejectedOpen                // rejected; its dead letter is in flight or not sent
	rejectedDone                // rejected and dead-lettered
	rejectedLost                // rejected; its dead letter was not stored: request.errs
)

// request is the state of one request: one byte per event, the reasons of
// its rejected events (at most MaxRejected and one) and the errors of the
// failed ones.
type request struct {
	h       *Handler
	ctx     context.Context
	stop    func() // ends ctx and the watch of the connection
	label   func(i int) string
	letters *letters
	wg      sync.WaitGroup // events and dead letters in flight
	tooMany int            // the event at which the batch was cut, or -1

	mu       sync.Mutex
	outcomes []outcome
	rejected []rejected
	errs     map[int]error
}

// newRequest starts the store of a request's events (label(i) names event
// i in reasons), all under one deadline: StoreTimeout, the server's write
// timeout from began (the end of its headers), the request's context, and
// the NATS connection (the request stops at once when the connection is
// not connected).
func (h *Handler) newRequest(r *http.Request, began time.Time, label func(i int) string) *request {
	limit := StoreTimeout
	if left := time.Until(began.Add(h.write - min(time.Second, h.write/10))); left < limit {
		limit = max(left, 0)
	}
	ctx, cancel := context.WithTimeoutCause(r.Context(), limit, fmt.Errorf("not stored within %v", limit.Round(time.Millisecond)))
	ctx, lost := context.WithCancelCause(ctx)
	nc := h.js.Conn()
	changed := nc.StatusChanged(nats.DISCONNECTED, nats.RECONNECTING, nats.CLOSED)
	go func() {
		if s, ok := <-changed; ok {
			lost(fmt.Errorf("%w: connection %s", ErrNotConnected, s))
		}
	}()
	if s := nc.Status(); s != nats.CONNECTED {
		lost(fmt.Errorf("%w: connection %s", ErrNotConnected, s))
	}
	return &request{h: h, ctx: ctx, label: label, letters: newLetters(h.js, 0), tooMany: -1, errs: map[int]error{},
		stop: func() {
			nc.RemoveStatusListener(changed) // closes changed
			lost(nil)
			cancel()
		}}
}

// add takes the next event of the request, raw (valid JSON, as far as the
// caller knows): it parses and checks it, and publishes it or rejects and
// dead-letters it. It returns false, having taken nothing, when the event
// is bad and the request has MaxRejected bad events already. Once the
// request's context ended, events are only counted (and reported failed).
func (rq *request) add(raw []byte, valid bool, parse func([]byte, *schema.Event) error) bool {
	rq.mu.Lock()
	i := len(rq.outcomes)
	rq.outcomes = append(rq.outcomes, unsettled)
	rq.mu.Unlock()
	if rq.ctx.Err() != nil {
		return true // failed with the cause
	}
	// What the limits refuse is refused before the adapter decodes it.
	// The memory its decoding takes beyond what the request reserved is
	// reserved while it is decoded and published, and what its strings
	// grow by (the encoding holds it) until JetStream has answered.
	var decoded, grown int64
	var err error
	if valid {
		decoded, grown, err = checkRaw(raw, rq.h.limits)
	}
	if err == nil {
		transient := max(decoded-RequestOverhead, 0)
		if need := transient + grown; need > 0 && !rq.h.budget.acquire(need) {
			if need > rq.h.budget.limit {
				err = fmt.Errorf("event would take about %d bytes of memory to decode, more than max-in-flight-bytes (%d)", need, rq.h.budget.limit)
			} else {
				rq.mu.Lock()
				rq.outcomes[i], rq.errs[i] = failed, fmt.Errorf("busy: no memory left for an event that takes about %d bytes decoded (max-in-flight-bytes); retry", need)
				rq.mu.Unlock()
				return true
			}
		} else {
			defer rq.h.budget.release(transient)
		}
	}
	if err == nil {
		ev := new(schema.Event)
		if err = parse(raw, ev); err == nil {
			err = rq.h.limits.Check(ev)
		}
		if err == nil {
			rq.wg.Add(1)
			err = rq.h.pub.Publish(rq.ctx, ev, func(a pipeline.Ack) {
				rq.h.budget.release(grown)
				rq.mu.Lock()
				switch {
				case a.Err != nil:
					rq.outcomes[i] = failed
					rq.errs[i] = a.Err
				case a.Duplicate:
					rq.outcomes[i] = duplicate
				default:
					rq.outcomes[i] = stored
				}
				rq.mu.Unlock()
				rq.wg.Done()
			})
			if err == nil {
				return true
			}
			rq.wg.Done()
			rq.h.budget.release(grown)
			tooLarge := (*pipeline.TooLargeError)(nil)
			if !errors.As(err, &tooLarge) {
				if rq.ctx.Err() == nil {
					rq.mu.Lock()
					rq.outcomes[i], rq.errs[i] = failed, err
					rq.mu.Unlock()
				} // else unsettled: failed with the cause
				return true
			}
			err = tooLarge
		} else {
			rq.h.budget.release(grown)
		}
	}
	if !rq.reject(i, raw, err, false) {
		rq.mu.Lock()
		rq.outcomes = rq.outcomes[:i]
		rq.mu.Unlock()
		return false
	}
	return true
}

// reject records event i as rejected for reason and dead-letters raw,
// unless the request has MaxRejected rejected events already and force is
// false.
func (rq *request) reject(i int, raw []byte, reason error, force bool) bool {
	rq.mu.Lock()
	if len(rq.rejected) >= MaxRejected && !force {
		rq.mu.Unlock()
		return false
	}
	rq.rejected = append(rq.rejected, rejected{Index: i, Error: reason.Error()})
	if i == len(rq.outcomes) {
		rq.outcomes = append(rq.outcomes, unsettled)
	}
	rq.outcomes[i] = rejectedOpen
	rq.mu.Unlock()
	reason = fmt.Errorf("%s: %w", rq.label(i), reason)
	if m := rq.h.metrics; m != nil {
		m.Published.WithLabelValues("rejected").Inc()
	}
	rq.h.log.Warn().Err(reason).Msg("rejected event")
	if rq.ctx.Err() != nil {
		return true // not connected or out of time: failed with the cause
	}
	rq.wg.Add(1)
	rq.letters.send(rq.ctx, raw, reason, func(err error) {
		if err == nil {
			if m := rq.h.metrics; m != nil {
				m.DeadLettered.WithLabelValues("ingest").Inc()
			}
		} else {
			rq.h.log.Error().Err(err).Msg("dead-letter rejected event")
		}
		rq.mu.Lock()
		if err != nil {
			rq.outcomes[i], rq.errs[i] = rejectedLost, err
		} else {
			rq.outcomes[i] = rejectedDone
		}
		rq.mu.Unlock()
		rq.wg.Done()
	})
	return true
}

// refuseRest cuts a batch with too many bad events at its next event: the
// rest of the body, from that event on, is dead-lettered as one.
func (rq *request) refuseRest(rest []byte) {
	rq.mu.Lock()
	i := len(rq.outcomes)
	rq.mu.Unlock()
	rq.tooMany = i
	rq.reject(i, rest, fmt.Errorf("this and the events after it were not ingested: the batch has more than %d bad events", MaxRejected), true)
}

// finish waits until JetStream answered for every event and dead letter
// of the request, or its deadline, and returns the answer and whether
// everything was stored; the answer's counts are what JetStream
// acknowledged.
func (rq *request) finish() (answer, bool) {
	waited := make(chan struct{})
	go func() { rq.wg.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-rq.ctx.Done():
	}
	cause := context.Cause(rq.ctx)
	rq.stop()
	rq.mu.Lock()
	defer rq.mu.Unlock()
	if m := rq.h.metrics; m != nil {
		m.Received.WithLabelValues("ingest").Add(float64(len(rq.outcomes)))
	}
	why := "not stored" // cannot happen: the wait ended early
	if cause != nil {
		why = cause.Error()
	}
	a := answer{Rejected: rq.rejected}
	for i, o := range rq.outcomes {
		switch o {
		case stored:
			a.Accepted++
		case duplicate:
			a.Accepted++
			a.Duplicates++
		case unsettled:
			a.Failed = append(a.Failed, rejected{Index: i, Error: why})
		case failed:
			a.Failed = append(a.Failed, rejected{Index: i, Error: rq.errs[i].Error()})
		case rejectedOpen:
			a.Failed = append(a.Failed, rejected{Index: i, Error: "rejected, and its dead letter was not stored: " + why})
		case rejectedLost:
			a.Failed = append(a.Failed, rejected{Index: i, Error: "rejected, and its dead letter was not stored: " + rq.errs[i].Error()})
		}
	}
	if len(a.Failed) > 0 {
		a.Error = fmt.Sprintf("%d of %d events not stored; first: event %d: %s", len(a.Failed), len(rq.outcomes), a.Failed[0].Index, a.Failed[0].Error)
		return a, false
	}
	return a, true
}

// unavailable answers 503 for a request of which something could not be
// stored: the sender should retry.
func (h *Handler) unavailable(w http.ResponseWriter, a answer) {
	h.log.Error().Str("error", a.Error).Int("status", http.StatusServiceUnavailable).Msg("ingest failed")
	w.Header().Set("Retry-After", "1")
	writeJSON(w, http.StatusServiceUnavailable, a)
}

func (h *Handler) fail(w http.ResponseWriter, status int, err error) {
	if status >= 500 {
		h.log.Error().Err(err).Int("status", status).Msg("ingest failed")
	}
	writeJSON(w, status, answer{Error: err.Error()})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}
