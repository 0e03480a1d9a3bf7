// Package sinks builds the configured sinks and runs them.
package sinks

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/mailtel/mailtel/pipeline"
	"github.com/mailtel/mailtel/pipeline/app"
	"github.com/mailtel/mailtel/pipeline/config"
	"github.com/mailtel/mailtel/pipeline/sinks/metrics"
	"github.com/mailtel/mailtel/pipeline/sinks/tracer"
	"github.com/mailtel/mailtel/pipeline/sinks/webhook"
)

// Options are what sinks need beyond their configuration.
type Options struct {
	// Instance names this sink process among the instances of the same
	// sinks; log files carry it so instances never share a file.
	Instance string
	// Stdout is where console and stdout tracers write (default os.Stdout).
	Stdout io.Writer
	// Registry receives the metrics sink's event metrics.
	Registry *prometheus.Registry
	// LockWait is how long Run waits for a log file that another process
	// has locked (0: DefaultLockWait).
	LockWait time.Duration
}

// DefaultLockWait is how long Run waits, by default, for a log file that
// another process has locked before it gives up with tracer.ErrLocked. A
// sinks process that was killed keeps the locks of its files until it is
// gone, some tens of milliseconds after SIGKILL (longer when the kill
// lands in an fsync on a busy disk), and a supervisor may start its
// successor sooner: without the wait the successor exited, and with no
// sinks process left the pipeline stopped writing. A second live instance
// without its own instance name still fails, once the wait is over.
const DefaultLockWait = 15 * time.Second

// Build creates the sink described by spec.
func Build(spec config.SinkSpec, o Options) (pipeline.Sink, error) {
	switch spec.Kind {
	case config.KindLog, config.KindConsole, config.KindStdout:
		out := o.Stdout
		if out == nil {
			out = os.Stdout
		}
		return tracer.New(spec.Name, spec.Tracer, tracer.Options{Instance: o.Instance, Stdout: out})
	case config.KindWebhook:
		return webhook.New(spec.Name, spec.Webhook, webhook.Options{})
	case config.KindMetrics:
		return metrics.New(spec.Name, spec.Metrics, o.Registry)
	}
	return nil, fmt.Errorf("sink %s: unknown kind %q", spec.Name, spec.Kind)
}

// buildWaiting is Build, retried while the sink's log file is locked by
// another process, for up to o.LockWait (see DefaultLockWait) or until ctx
// ends.
func buildWaiting(ctx context.Context, spec config.SinkSpec, o Options, log zerolog.Logger) (pipeline.Sink, error) {
	wait := o.LockWait
	if wait <= 0 {
		wait = DefaultLockWait
	}
	deadline := time.Now().Add(wait)
	for logged := false; ; logged = true {
		s, err := Build(spec, o)
		if err == nil || !errors.Is(err, tracer.ErrLocked) || !time.Now().Before(deadline) {
			return s, err
		}
		if !logged {
			log.Warn().Err(err).Str("sink", spec.Name).Dur("wait", wait).
				Msg("log file locked: waiting for the process that holds it to exit (a killed sinks process holds it until it is gone)")
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Select returns the specs named in names (every spec when names is
// empty), or an error naming the unknown ones.
func Select(specs []config.SinkSpec, names []string) ([]config.SinkSpec, error) {
	if len(names) == 0 {
		return specs, nil
	}
	by := map[string]config.SinkSpec{}
	for _, s := range specs {
		by[s.Name] = s
	}
	var out []config.SinkSpec
	var unknown []string
	for _, n := range names {
		s, ok := by[n]
		if !ok {
			unknown = append(unknown, n)
			continue
		}
		out = append(out, s)
	}
	if len(unknown) > 0 {
		known := make([]string, 0, len(by))
		for n := range by {
			known = append(known, n)
		}
		sort.Strings(known)
		return nil, fmt.Errorf("no sink named %s in the configuration (configured: %s)", strings.Join(unknown, ", "), strings.Join(known, ", "))
	}
	return out, nil
}

// Run builds the selected sinks and runs each from its durable consumer
// until ctx ends; it then finishes the batches in flight and closes the
// sinks. When the metrics sink runs, its /metrics endpoint is served on
// [metrics.prometheus] listen.
func Run(ctx context.Context, p *app.Process, names []string, o Options) error {
	specs, err := Select(p.Config.SinkSpecs(), names)
	if err != nil {
		return err
	}
	if len(specs) == 0 {
		return fmt.Errorf("no sinks configured: add a [tracer.<id>], [webhook.<id>] or [metrics.prometheus] section")
	}
	if o.Registry == nil {
		o.Registry = p.Metrics.Registry
	}
	built := make([]pipeline.Sink, 0, len(specs))
	defer func() {
		for _, s := range built {
			if err := s.Close(context.Background()); err != nil {
				p.Log.Error().Err(err).Msg("close sink")
			}
		}
	}()
	// Not ready until built: building may wait for a locked log file.
	for _, spec := range specs {
		p.Health.Set("sink:"+spec.Name, fmt.Errorf("starting"))
	}
	for _, spec := range specs {
		s, err := buildWaiting(ctx, spec, o, p.Log)
		if err != nil {
			if ctx.Err() != nil {
				return nil // stopped while waiting for a lock
			}
			return err
		}
		built = append(built, s)
		if spec.Kind == config.KindMetrics {
			addr, err := metrics.Serve(ctx, &spec.Metrics.Prometheus, o.Registry)
			if err != nil {
				return err
			}
			p.Log.Info().Str("listen", addr).Msg("serving event metrics on /metrics")
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(specs))
	for i, spec := range specs {
		r := pipeline.NewSinkRunner(p.JS, spec.Name, built[i], pipeline.SinkOptionsFor(p.Config, spec), p.Log, p.Metrics, p.Health)
		p.Log.Info().Str("sink", spec.Name).Str("kind", spec.Kind).Msg("sink running")
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := r.Run(ctx); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}
