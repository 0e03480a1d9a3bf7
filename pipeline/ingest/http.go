package ingest

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/mailtel/mailtel/pipeline"
	"github.com/mailtel/mailtel/pipeline/config"
	"github.com/mailtel/mailtel/pipeline/obs"
	"github.com/mailtel/mailtel/schema"
)

// Paths served by Handler.
const (
	PathStalwart = "/v1/ingest/stalwart"
	PathDovecot  = "/v1/ingest/dovecot"
)

// Handler serves the ingest endpoints:
//
//	POST /v1/ingest/stalwart  {"events":[{id,createdAt,type,data}, ...]}
//	POST /v1/ingest/dovecot   one event_exporter JSON object
//
// It answers 200 only after JetStream stored every accepted event of the
// request and the dead letter of every rejected one, with
// {"accepted":N,"duplicates":N,"rejected":[{"index":i,"error":"..."}]}.
// Events of a batch that cannot be parsed, are over the limits, or whose
// encoding is larger than the NATS server takes (see
// pipeline.MaxEventSize) are rejected one by one and dead-lettered without
// failing the others. A body that is not what the endpoint takes gets 400
// (413 when too large) with {"error":"..."}; failed authentication 401.
//
// When an event or a dead letter could not be stored (the NATS connection
// is down, the request's StoreTimeout passed, the client went away), the
// answer is 503 with the same counts, of what was stored, and
// "failed":[{"index":i,"error":"..."}] naming what was not, so the sender
// retries; a retry stores nothing twice (events are deduplicated by id,
// dead letters by a hash of the input). A request is not started while
// the connection is down, and one in progress stops when it goes down.
type Handler struct {
	pub     *pipeline.Publisher
	js      jetstream.JetStream
	cfg     config.Publisher
	log     zerolog.Logger
	metrics *obs.Metrics
	limits  Limits
	mux     *http.ServeMux
}

// StoreTimeout bounds the time one request may take to store its events
// and dead letters, from the time its body was read.
const StoreTimeout = 60 * time.Second

// ErrNotConnected is the reason of what a request could not store because
// the NATS connection was not connected.
var ErrNotConnected = errors.New("not connected to NATS")

// NewHandler returns the ingest handler. Authentication is required when
// cfg sets a token, a user/password or a signature key. js is the
// JetStream context of pub, used for dead letters and to watch the
// connection.
func NewHandler(pub *pipeline.Publisher, js jetstream.JetStream, cfg config.Publisher, log zerolog.Logger, m *obs.Metrics) *Handler {
	h := &Handler{pub: pub, js: js, cfg: cfg, log: log, metrics: m, limits: LimitsFrom(cfg), mux: http.NewServeMux()}
	h.mux.HandleFunc("POST "+PathStalwart, h.stalwart)
	h.mux.HandleFunc("POST "+PathDovecot, h.dovecot)
	return h
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

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

// entry is one event of a request: parsed (ev) or rejected (reason), and
// what became of it.
type entry struct {
	raw    []byte        // the event as sent, for its dead letter
	ev     *schema.Event // nil when rejected
	reason error         // why it was rejected

	// Set once JetStream answered for the event or its dead letter, under
	// request.mu.
	settled bool
	dup     bool
	err     error
}

func (h *Handler) stalwart(w http.ResponseWriter, r *http.Request) {
	body, ok := h.readBody(w, r)
	if !ok {
		return
	}
	var batch struct {
		Events []json.RawMessage `json:"events"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&batch); err != nil {
		h.fail(w, http.StatusBadRequest, fmt.Errorf("body is not {\"events\":[...]}: %w", err))
		return
	}
	if dec.More() {
		h.fail(w, http.StatusBadRequest, errors.New("body has data after the JSON object"))
		return
	}
	if batch.Events == nil {
		h.fail(w, http.StatusBadRequest, errors.New(`body has no "events" array`))
		return
	}
	evs := make([]schema.Event, len(batch.Events))
	es := make([]entry, len(batch.Events))
	for i, raw := range batch.Events {
		es[i].raw = raw
		err := schema.FromStalwart(raw, &evs[i])
		if err == nil {
			err = h.limits.Check(&evs[i])
		}
		if err != nil {
			es[i].reason = err
			continue
		}
		es[i].ev = &evs[i]
	}
	a, ok := h.store(r, es, func(i int) string { return fmt.Sprintf("stalwart event %d", i) })
	if !ok {
		h.log.Error().Str("error", a.Error).Int("status", http.StatusServiceUnavailable).Msg("ingest failed")
		writeJSON(w, http.StatusServiceUnavailable, a)
		return
	}
	writeJSON(w, http.StatusOK, a)
}

func (h *Handler) dovecot(w http.ResponseWriter, r *http.Request) {
	body, ok := h.readBody(w, r)
	if !ok {
		return
	}
	var ev schema.Event
	es := []entry{{raw: body}}
	err := schema.FromDovecot(body, &ev)
	if err == nil {
		err = h.limits.Check(&ev)
	}
	if err != nil {
		es[0].reason = err
	} else {
		es[0].ev = &ev
	}
	a, ok := h.store(r, es, func(int) string { return "dovecot event" })
	switch {
	case !ok:
		h.log.Error().Str("error", a.Error).Int("status", http.StatusServiceUnavailable).Msg("ingest failed")
		writeJSON(w, http.StatusServiceUnavailable, a)
	case len(a.Rejected) > 0:
		// Rejected and dead-lettered: the sender should not retry.
		writeJSON(w, http.StatusBadRequest, answer{Error: "dovecot event: " + a.Rejected[0].Error})
	default:
		writeJSON(w, http.StatusOK, a)
	}
}

// request is the state of one request's store.
type request struct {
	mu sync.Mutex
	es []entry
	wg sync.WaitGroup // events and dead letters in flight
}

// store publishes the parsed events of es and dead-letters the rejected
// ones (label(i) names event i in reasons), all under one
// deadline: StoreTimeout, the request's context, and the NATS connection
// (it stops at once when the connection is not connected). It returns the
// answer and whether everything was stored; the answer's counts are what
// JetStream acknowledged.
func (h *Handler) store(r *http.Request, es []entry, label func(i int) string) (answer, bool) {
	h.metrics.Received.WithLabelValues("ingest").Add(float64(len(es)))
	ctx, cancel := context.WithTimeoutCause(r.Context(), StoreTimeout,
		fmt.Errorf("not stored within %v", StoreTimeout))
	defer cancel()
	ctx, lost := context.WithCancelCause(ctx)
	defer lost(nil)
	nc := h.js.Conn()
	changed := nc.StatusChanged(nats.DISCONNECTED, nats.RECONNECTING, nats.CLOSED)
	defer nc.RemoveStatusListener(changed) // closes changed
	go func() {
		if s, ok := <-changed; ok {
			lost(fmt.Errorf("%w: connection %s", ErrNotConnected, s))
		}
	}()
	if s := nc.Status(); s != nats.CONNECTED {
		lost(fmt.Errorf("%w: connection %s", ErrNotConnected, s))
	}

	rq := &request{es: es}
	for i := range es {
		if ctx.Err() != nil {
			break // what is left is failed with the cause
		}
		if es[i].ev == nil {
			continue
		}
		rq.wg.Add(1)
		err := h.pub.Publish(ctx, es[i].ev, func(a pipeline.Ack) {
			rq.mu.Lock()
			es[i].settled, es[i].dup, es[i].err = true, a.Duplicate, a.Err
			rq.mu.Unlock()
			rq.wg.Done()
		})
		if err == nil {
			continue
		}
		rq.wg.Done()
		rq.mu.Lock()
		if tooLarge := (*pipeline.TooLargeError)(nil); errors.As(err, &tooLarge) {
			es[i].ev, es[i].reason = nil, tooLarge
		} else if ctx.Err() == nil {
			es[i].settled, es[i].err = true, err
		} // else unsettled: failed with the cause
		rq.mu.Unlock()
	}
	ls := newLetters(h.js, 0)
	for i := range es {
		if es[i].reason == nil {
			continue
		}
		reason := fmt.Errorf("%s: %w", label(i), es[i].reason)
		h.metrics.Published.WithLabelValues("rejected").Inc()
		h.log.Warn().Err(reason).Msg("rejected event")
		if ctx.Err() != nil {
			continue // not connected or out of time: failed with the cause
		}
		rq.wg.Add(1)
		ls.send(ctx, es[i].raw, reason, func(err error) {
			if err == nil {
				h.metrics.DeadLettered.WithLabelValues("ingest").Inc()
			} else {
				h.log.Error().Err(err).Msg("dead-letter rejected event")
			}
			rq.mu.Lock()
			es[i].settled, es[i].err = true, err
			rq.mu.Unlock()
			rq.wg.Done()
		})
	}
	waited := make(chan struct{})
	go func() { rq.wg.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-ctx.Done():
	}
	return rq.answer(context.Cause(ctx))
}

// answer describes what was stored; cause is why the wait ended early, if
// it did.
func (rq *request) answer(cause error) (answer, bool) {
	rq.mu.Lock()
	defer rq.mu.Unlock()
	var a answer
	for i, e := range rq.es {
		if e.reason != nil {
			a.Rejected = append(a.Rejected, rejected{Index: i, Error: e.reason.Error()})
		}
		err := e.err
		if !e.settled {
			err = cause
			if err == nil {
				err = errors.New("not stored") // cannot happen: the wait ended early
			}
		}
		switch {
		case err != nil && e.reason != nil:
			a.Failed = append(a.Failed, rejected{Index: i, Error: "rejected, and its dead letter was not stored: " + err.Error()})
		case err != nil:
			a.Failed = append(a.Failed, rejected{Index: i, Error: err.Error()})
		case e.reason == nil:
			a.Accepted++
			if e.dup {
				a.Duplicates++
			}
		}
	}
	if len(a.Failed) > 0 {
		a.Error = fmt.Sprintf("%d of %d events not stored; first: event %d: %s", len(a.Failed), len(rq.es), a.Failed[0].Index, a.Failed[0].Error)
		return a, false
	}
	return a, true
}

// readBody authenticates the request and reads the body within the limit.
func (h *Handler) readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, int64(h.cfg.MaxBody)))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			h.fail(w, http.StatusRequestEntityTooLarge, fmt.Errorf("body larger than %d bytes", tooBig.Limit))
		} else {
			h.fail(w, http.StatusBadRequest, fmt.Errorf("read body: %w", err))
		}
		return nil, false
	}
	if err := h.authenticate(r, body); err != nil {
		h.fail(w, http.StatusUnauthorized, err)
		return nil, false
	}
	return body, true
}

// authenticate checks every configured credential: the bearer token or
// basic auth, and the X-Signature (base64 HMAC-SHA256 of the body, as
// Stalwart signs its webhooks).
func (h *Handler) authenticate(r *http.Request, body []byte) error {
	c := h.cfg
	if c.Token != "" || c.User != "" {
		ok := false
		if c.Token != "" {
			ok = equal(r.Header.Get("Authorization"), "Bearer "+c.Token)
		}
		if !ok && c.User != "" {
			u, p, has := r.BasicAuth()
			ok = has && equal(u, c.User) && equal(p, c.Password)
		}
		if !ok {
			return errors.New("missing or wrong credentials")
		}
	}
	if c.SignatureKey != "" {
		got, err := base64.StdEncoding.DecodeString(r.Header.Get("X-Signature"))
		mac := hmac.New(sha256.New, []byte(c.SignatureKey))
		mac.Write(body)
		if err != nil || !hmac.Equal(got, mac.Sum(nil)) {
			return errors.New("missing or wrong X-Signature")
		}
	}
	return nil
}

func equal(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }

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
