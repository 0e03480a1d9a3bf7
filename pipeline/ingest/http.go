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
	"time"

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
// It answers 200 only after JetStream acknowledged every accepted event of
// the request, with {"accepted":N,"duplicates":N,"rejected":[{"index":i,
// "error":"..."}]}; events of a batch that cannot be parsed are rejected
// one by one (and dead-lettered) without failing the others. A body that
// is not what the endpoint takes gets 400 (413 when too large) with
// {"error":"..."}; failed authentication 401; a failure to store 503, so
// the sender retries (retries are deduplicated by event id).
type Handler struct {
	pub     *pipeline.Publisher
	js      jetstream.JetStream
	cfg     config.Publisher
	log     zerolog.Logger
	metrics *obs.Metrics
	limits  Limits
	mux     *http.ServeMux
}

// NewHandler returns the ingest handler. Authentication is required when
// cfg sets a token, a user/password or a signature key.
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
	Error      string     `json:"error,omitempty"`
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
	evs := make([]schema.Event, 0, len(batch.Events))
	var rej []rejected
	for i, raw := range batch.Events {
		var ev schema.Event
		err := schema.FromStalwart(raw, &ev)
		if err == nil {
			err = h.limits.Check(&ev)
		}
		if err != nil {
			rej = append(rej, rejected{Index: i, Error: err.Error()})
			h.reject(r.Context(), raw, fmt.Errorf("stalwart event %d: %w", i, err))
			continue
		}
		evs = append(evs, ev)
	}
	h.publish(w, r, evs, rej)
}

func (h *Handler) dovecot(w http.ResponseWriter, r *http.Request) {
	body, ok := h.readBody(w, r)
	if !ok {
		return
	}
	var ev schema.Event
	err := schema.FromDovecot(body, &ev)
	if err == nil {
		err = h.limits.Check(&ev)
	}
	if err != nil {
		h.reject(r.Context(), body, fmt.Errorf("dovecot event: %w", err))
		h.fail(w, http.StatusBadRequest, fmt.Errorf("parse dovecot event: %w", err))
		return
	}
	h.publish(w, r, []schema.Event{ev}, nil)
}

func (h *Handler) publish(w http.ResponseWriter, r *http.Request, evs []schema.Event, rej []rejected) {
	h.metrics.Received.WithLabelValues("ingest").Add(float64(len(evs) + len(rej)))
	ctx, cancel := context.WithTimeout(r.Context(), 60*time.Second)
	defer cancel()
	acks, err := h.pub.PublishAll(ctx, evs)
	if err != nil {
		h.fail(w, http.StatusServiceUnavailable, err)
		return
	}
	var a answer
	a.Rejected = rej
	for _, ack := range acks {
		if ack.Err != nil {
			h.fail(w, http.StatusServiceUnavailable, ack.Err)
			return
		}
		if ack.Duplicate {
			a.Duplicates++
		}
		a.Accepted++
	}
	writeJSON(w, http.StatusOK, a)
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

func (h *Handler) reject(ctx context.Context, data []byte, reason error) {
	h.metrics.Published.WithLabelValues("rejected").Inc()
	h.log.Warn().Err(reason).Msg("rejected event")
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := deadLetter(dctx, h.js, data, reason); err != nil {
		h.log.Error().Err(err).Msg("dead-letter rejected event")
	} else {
		h.metrics.DeadLettered.WithLabelValues("ingest").Inc()
	}
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
