package metrics

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/mailtel/mailtel/pipeline/config/value"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// shutdownTimeout bounds how long Serve waits for scrapes in flight once
// its context has ended.
const shutdownTimeout = 5 * time.Second

// Serve serves the metrics of reg on http://<cfg.Listen>/metrics until ctx
// ends, and returns the address it listens on (useful when Listen has port
// 0). It does not look at cfg.Enable: the caller decides whether to serve.
//
// With cfg.Auth set, every request must authenticate, or gets 401:
// username and secret are checked as HTTP basic auth, a secret alone as an
// `Authorization: Bearer <secret>` token (the same rule as a webhook's
// auth). Credentials are compared in constant time.
//
// The error is about listening; once Serve has returned, the server runs in
// the background until ctx ends or stop is called, then stops, draining
// scrapes in flight for up to 5s. stop returns once the port is free (a
// reloaded metrics sink listens on it again).
func Serve(ctx context.Context, cfg *Prometheus, reg *prometheus.Registry) (addr string, stop func(), err error) {
	if cfg == nil || reg == nil {
		return "", nil, errors.New("serve metrics: no configuration or registry")
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return "", nil, fmt.Errorf("serve metrics on %s: %w", cfg.Listen, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", requireAuth(cfg.Auth, promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorHandling: promhttp.ContinueOnError,
	})))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln) // returns ErrServerClosed after Shutdown
	ctx, cancel := context.WithCancel(ctx)
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		defer cancel()
		if srv.Shutdown(sctx) != nil {
			srv.Close()
		}
	}()
	return ln.Addr().String(), func() { cancel(); <-stopped }, nil
}

// requireAuth wraps h so that it answers 401 unless the request carries the
// configured credentials. With no secret configured it returns h.
func requireAuth(a value.BasicAuth, h http.Handler) http.Handler {
	if a.Secret == "" && a.Username == "" {
		return h
	}
	// Comparing digests keeps the comparison constant-time whatever the
	// lengths of the strings.
	sum := func(s string) [32]byte { return sha256.Sum256([]byte(s)) }
	wantUser, wantSecret := sum(a.Username), sum(a.Secret)
	same := func(x, y [32]byte) bool { return subtle.ConstantTimeCompare(x[:], y[:]) == 1 }
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ok := false
		if a.Username != "" {
			user, secret, given := r.BasicAuth()
			ok = given && same(sum(user), wantUser) && same(sum(secret), wantSecret)
		} else if tok, found := cutPrefixFold(r.Header.Get("Authorization"), "Bearer "); found {
			ok = same(sum(tok), wantSecret)
		}
		if !ok {
			if a.Username != "" {
				w.Header().Set("WWW-Authenticate", `Basic realm="mailtel metrics"`)
			} else {
				w.Header().Set("WWW-Authenticate", `Bearer realm="mailtel metrics"`)
			}
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// cutPrefixFold is strings.CutPrefix with a case-insensitive prefix.
func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) < len(prefix) || !strings.EqualFold(s[:len(prefix)], prefix) {
		return s, false
	}
	return s[len(prefix):], true
}
