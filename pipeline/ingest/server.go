package ingest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mailtel/mailtel/pipeline/config"
)

// ReadHeaderTimeout bounds the reading of a request's headers; the
// configured read timeout bounds headers and body together.
const ReadHeaderTimeout = 10 * time.Second

// MaxHeaderBytes bounds the headers of one request: they are read before
// the request is authenticated.
const MaxHeaderBytes = 64 << 10

// ShutdownTimeout bounds how long Serve waits, once its context ends, for
// the requests in progress to be answered.
const ShutdownTimeout = 30 * time.Second

// Timeouts of a zero [publisher] section (see config.Publisher).
const (
	DefaultReadTimeout  = 30 * time.Second
	DefaultWriteTimeout = 2 * time.Minute
	DefaultIdleTimeout  = 60 * time.Second
)

// NewServer returns the HTTP server of the ingest endpoints with the
// timeouts of cfg: read-timeout for a request's headers and body,
// write-timeout from the end of its headers to the end of its answer,
// idle-timeout for a keep-alive connection between requests, and
// ReadHeaderTimeout. A connection that sends its body too slowly, or
// stays idle, is closed when its timeout passes. Zero values take the
// defaults.
func NewServer(h http.Handler, cfg config.Publisher) *http.Server {
	read, write, idle := timeouts(cfg)
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: min(ReadHeaderTimeout, read),
		ReadTimeout:       read,
		WriteTimeout:      write,
		IdleTimeout:       idle,
		MaxHeaderBytes:    MaxHeaderBytes,
	}
}

func timeouts(cfg config.Publisher) (read, write, idle time.Duration) {
	read, write, idle = cfg.ReadTimeout.D(), cfg.WriteTimeout.D(), cfg.IdleTimeout.D()
	if read <= 0 {
		read = DefaultReadTimeout
	}
	if write <= 0 {
		write = DefaultWriteTimeout
	}
	if idle <= 0 {
		idle = DefaultIdleTimeout
	}
	return read, write, idle
}

// Serve serves the ingest endpoints of h on ln (see NewServer) until ctx
// ends, then stops taking requests and waits up to ShutdownTimeout for
// those in progress to be answered. It returns nil after such a shutdown.
func (h *Handler) Serve(ctx context.Context, ln net.Listener) error {
	srv := NewServer(h, h.cfg)
	failed, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		select {
		case <-ctx.Done():
		case <-failed:
			return
		}
		sctx, cancel := context.WithTimeout(context.Background(), ShutdownTimeout)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		close(failed)
		srv.Close()
		return fmt.Errorf("serve ingest: %w", err)
	}
	<-stopped
	return nil
}

// budget is the cap on request bytes in flight: a request reserves what
// its body may hold before it is read, and gives it back when it ends.
type budget struct {
	limit int64
	used  atomic.Int64
	gauge prometheus.Gauge // used, for the metrics
}

// acquire reserves n bytes, or reports that they would take the total
// over the limit.
func (b *budget) acquire(n int64) bool {
	for {
		used := b.used.Load()
		if used+n > b.limit {
			return false
		}
		if b.used.CompareAndSwap(used, used+n) {
			b.gauge.Add(float64(n))
			return true
		}
	}
}

func (b *budget) release(n int64) {
	if n != 0 {
		b.used.Add(-n)
		b.gauge.Sub(float64(n))
	}
}
