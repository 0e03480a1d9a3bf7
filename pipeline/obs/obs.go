// Package obs is mailtel's self-observability: the Prometheus metrics of
// each process's own work, the /healthz and /readyz endpoints, and the
// process logger.
package obs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"
)

// Metrics are the counters every stage updates. Label values are bounded:
// stage names and configured sink names only.
type Metrics struct {
	Registry     *prometheus.Registry
	Received     *prometheus.CounterVec // stage
	Published    *prometheus.CounterVec // result: stored, duplicate, rejected, failed
	Routed       *prometheus.CounterVec // sink
	Written      *prometheus.CounterVec // sink
	Retried      *prometheus.CounterVec // stage
	Redelivered  *prometheus.CounterVec // stage
	DeadLettered *prometheus.CounterVec // stage
	Duplicates   *prometheus.CounterVec // sink: redelivered events found already written
	Filtered     *prometheus.CounterVec // sink: events of a server fan-out its rules reject
	UnknownTypes prometheus.Counter
	Lag          *prometheus.GaugeVec   // stream, consumer
	SinkUp       *prometheus.GaugeVec   // sink: 1 while its destination takes writes
	SinkHeld     *prometheus.GaugeVec   // sink: messages taken from JetStream, not yet acked or given back
	Reloads      *prometheus.CounterVec // result: success, failure
	ReloadOK     prometheus.Gauge       // 1 when the last reload succeeded (or none was asked for)
}

// NewMetrics registers the pipeline metrics, plus Go runtime and process
// collectors, in a new registry.
func NewMetrics() *Metrics {
	r := prometheus.NewRegistry()
	r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	cv := func(name, help string, labels ...string) *prometheus.CounterVec {
		c := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "mailtel", Name: name, Help: help}, labels)
		r.MustRegister(c)
		return c
	}
	m := &Metrics{
		Registry:     r,
		Received:     cv("received_total", "Events received by a stage.", "stage"),
		Published:    cv("published_total", "Events offered to the EVENTS stream, by result.", "result"),
		Routed:       cv("routed_total", "Event copies stored for a sink by the router.", "sink"),
		Written:      cv("written_total", "Events written by a sink.", "sink"),
		Retried:      cv("retried_total", "Retried writes or publishes.", "stage"),
		Redelivered:  cv("redelivered_total", "Messages JetStream delivered more than once to a stage.", "stage"),
		DeadLettered: cv("dead_lettered_total", "Messages stored in the DLQ stream by a stage.", "stage"),
		Duplicates:   cv("duplicates_skipped_total", "Redelivered events a sink had already written, acked without writing them again.", "sink"),
		Filtered:     cv("filtered_total", "Events the server copied to a sink (server fan-out) that the sink's rules reject, acked without writing them.", "sink"),
		UnknownTypes: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "mailtel", Name: "unknown_types_total", Help: "Events whose type is not in the catalog."}),
		Lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "mailtel", Name: "consumer_lag",
			Help: "Messages of the stream not yet delivered to the consumer."}, []string{"stream", "consumer"}),
	}
	m.SinkUp = prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "mailtel", Name: "sink_up",
		Help: "1 while the sink's destination takes writes, 0 while the sink is paused and probing a failing destination."}, []string{"sink"})
	m.SinkHeld = prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "mailtel", Name: "sink_held",
		Help: "Messages the sink process has taken from JetStream and not yet acked or given back: at most one batch while its destination is down."}, []string{"sink"})
	m.Reloads = cv("config_reloads_total", "Configuration reloads (SIGHUP, or --watch seeing the file change), by result.", "result")
	m.Reloads.WithLabelValues("success")
	m.Reloads.WithLabelValues("failure")
	m.ReloadOK = prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "mailtel", Name: "config_last_reload_successful",
		Help: "0 while the configuration file holds a change the process refused (it runs the previous configuration), else 1."})
	m.ReloadOK.Set(1)
	r.MustRegister(m.UnknownTypes, m.Lag, m.SinkUp, m.SinkHeld, m.ReloadOK)
	return m
}

// Health tracks readiness: a process is ready when every named check has
// been marked ready (connected, consumer bound, ...). A ready process may
// be degraded: a sink whose destination fails keeps its backlog in
// JetStream and is still doing its job, so it stays ready (a readiness
// probe that failed would take its metrics out of service discovery just
// when they matter) and /readyz names it as degraded.
type Health struct {
	mu       sync.Mutex
	checks   map[string]error
	degraded map[string]error
}

// NewHealth returns a Health whose named checks start not ready.
func NewHealth(names ...string) *Health {
	h := &Health{checks: map[string]error{}, degraded: map[string]error{}}
	for _, n := range names {
		h.checks[n] = errors.New("starting")
	}
	return h
}

// Set records the state of one check (nil = ready).
func (h *Health) Set(name string, err error) {
	h.mu.Lock()
	h.checks[name] = err
	h.mu.Unlock()
}

// Remove forgets a check (a sink removed by a configuration reload).
func (h *Health) Remove(name string) {
	h.mu.Lock()
	delete(h.checks, name)
	delete(h.degraded, name)
	h.mu.Unlock()
}

// Degrade marks a check degraded for reason (nil clears it).
func (h *Health) Degrade(name string, reason error) {
	h.mu.Lock()
	if reason == nil {
		delete(h.degraded, name)
	} else {
		h.degraded[name] = reason
	}
	h.mu.Unlock()
}

// Degraded returns nil when no check is degraded, or an error naming those
// that are, sorted.
func (h *Health) Degraded() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return joinChecks(h.degraded)
}

func joinChecks(checks map[string]error) error {
	var bad []string
	for n, err := range checks {
		if err != nil {
			bad = append(bad, n+": "+err.Error())
		}
	}
	if len(bad) == 0 {
		return nil
	}
	sort.Strings(bad)
	return errors.New(strings.Join(bad, "; "))
}

// Ready returns nil when every check is ready, or an error naming those
// that are not.
func (h *Health) Ready() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return joinChecks(h.checks)
}

// Handler serves /metrics, /healthz (the process is alive) and /readyz
// (200 only when Ready; "ready, degraded: ..." when a check is degraded).
func Handler(m *Metrics, h *Health) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := h.Ready(); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		if err := h.Degraded(); err != nil {
			io.WriteString(w, "ready, degraded: "+err.Error()+"\n")
			return
		}
		io.WriteString(w, "ready\n")
	})
	return mux
}

// Serve serves Handler on addr until ctx ends. An empty addr serves
// nothing. It returns once the listener is bound, with the bound address,
// and logs that address at info level.
//
// When addr's port is taken by another process ("address already in
// use": typically another instance of the same command on this machine),
// Serve listens on a free port of the same host instead, and says so in
// the log, so that identical commands can run side by side and share the
// work. Any other listen error (a bad address, a host that is not local,
// a privileged port) is returned.
func Serve(ctx context.Context, addr string, m *Metrics, h *Health, log zerolog.Logger) (string, error) {
	if addr == "" {
		return "", nil
	}
	ln, err := net.Listen("tcp", addr)
	taken := false
	if AddrInUse(err) {
		host, _, serr := net.SplitHostPort(addr)
		if serr == nil {
			taken = true
			ln, err = net.Listen("tcp", net.JoinHostPort(host, "0"))
		}
	}
	if err != nil {
		return "", fmt.Errorf("listen for health and metrics on %s: %w", addr, err)
	}
	bound := ln.Addr().String()
	if taken {
		log.Info().Msgf("health and metrics on %s (%s is taken by another process)", bound, addr)
	} else {
		log.Info().Msgf("health and metrics on %s", bound)
	}
	srv := &http.Server{Handler: Handler(m, h), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error().Err(err).Msg("health and metrics server stopped")
		}
	}()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	return bound, nil
}

// AddrInUse reports whether err is a listen error saying that the address
// is already in use (EADDRINUSE).
func AddrInUse(err error) bool {
	return err != nil && errors.Is(err, syscall.EADDRINUSE)
}

// IsTerminal reports whether w is a terminal (a character device).
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// NewLogger returns the process logger: JSON lines or a human console
// format on stderr, at the given level.
func NewLogger(level, format, process string) zerolog.Logger {
	var w io.Writer = os.Stderr
	if format != "json" {
		// Colours only for a person at a terminal: a file, a pipe or a
		// journal gets plain text.
		w = zerolog.ConsoleWriter{Out: os.Stderr, TimeFormat: time.TimeOnly, NoColor: !IsTerminal(os.Stderr)}
	}
	lv, err := zerolog.ParseLevel(level)
	if err != nil || level == "" {
		lv = zerolog.InfoLevel
	}
	return zerolog.New(w).Level(lv).With().Timestamp().Str("process", process).Logger()
}
