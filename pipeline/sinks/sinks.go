// Package sinks builds the configured sinks and runs them.
package sinks

import (
	"context"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/mailtel/mailtel/pipeline"
	"github.com/mailtel/mailtel/pipeline/app"
	"github.com/mailtel/mailtel/pipeline/config"
	"github.com/mailtel/mailtel/pipeline/obs"
	"github.com/mailtel/mailtel/pipeline/sinks/metrics"
	"github.com/mailtel/mailtel/pipeline/sinks/tracer"
	"github.com/mailtel/mailtel/pipeline/sinks/webhook"
)

// Options are what sinks need beyond their configuration.
type Options struct {
	// Instance names this sink process among the instances of the same
	// sinks; log files carry it so instances never share a file. A log
	// sink given one is pinned to it (and waits for its lock, held by a
	// predecessor still exiting); see AnySlot for an empty Instance.
	Instance string
	// AnySlot, with an empty Instance, makes each log sink take the first
	// free instance slot of its files (see tracer.Options.AnySlot). Run
	// sets it when Instance is empty, so that identical sinks processes on
	// one machine all run; replays leave it unset.
	AnySlot bool
	// Stdout is where console and stdout tracers write (default os.Stdout).
	Stdout io.Writer
	// Registry receives the metrics sink's event metrics (Run: a new
	// registry, served on [metrics.prometheus] listen only).
	Registry *prometheus.Registry
	// Log receives the sinks' own messages (Run sets the process's).
	Log zerolog.Logger
}

// Build creates the sink described by spec.
func Build(spec config.SinkSpec, o Options) (pipeline.Sink, error) {
	switch spec.Kind {
	case config.KindLog, config.KindConsole, config.KindStdout:
		out := o.Stdout
		if out == nil {
			out = os.Stdout
		}
		return tracer.New(spec.Name, spec.Tracer, tracer.Options{Instance: o.Instance, AnySlot: o.AnySlot, Stdout: out, Log: o.Log})
	case config.KindWebhook:
		return webhook.New(spec.Name, spec.Webhook, webhook.Options{})
	case config.KindMetrics:
		return metrics.New(spec.Name, spec.Metrics, o.Registry)
	}
	return nil, fmt.Errorf("sink %s: unknown kind %q", spec.Name, spec.Kind)
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
// [metrics.prometheus] listen; a second process running the metrics sink
// fails, since that address is taken. Without o.Instance, each log sink
// takes the first free instance slot of its files (o.AnySlot).
func Run(ctx context.Context, p *app.Process, names []string, o Options) error {
	specs, err := Select(p.Config.SinkSpecs(), names)
	if err != nil {
		return err
	}
	if len(specs) == 0 {
		return fmt.Errorf("no sinks configured: add a [tracer.<id>], [webhook.<id>] or [metrics.prometheus] section")
	}
	if o.Registry == nil {
		// Event metrics get a registry of their own, served only on
		// [metrics.prometheus] listen; the process's /metrics has the
		// pipeline's metrics only. Each series on one endpoint, so a
		// Prometheus that scrapes both counts every event once.
		o.Registry = prometheus.NewRegistry()
	}
	o.Log = p.Log
	if o.Instance == "" {
		o.AnySlot = true
	}
	built := make([]pipeline.Sink, 0, len(specs))
	defer func() {
		for _, s := range built {
			if err := s.Close(context.Background()); err != nil {
				p.Log.Error().Err(err).Msg("close sink")
			}
		}
	}()
	for _, spec := range specs {
		s, err := Build(spec, o)
		if err != nil {
			return err
		}
		built = append(built, s)
		if spec.Kind == config.KindMetrics {
			addr, err := metrics.Serve(ctx, &spec.Metrics.Prometheus, o.Registry)
			if obs.AddrInUse(err) {
				// Unlike the process's health port, this one does not move
				// to a free port: Prometheus scrapes one configured address,
				// and a second metrics sink would count its share of the
				// events on an endpoint nobody scrapes.
				return fmt.Errorf("%w: is another process running the metrics sink %q? It runs in one process only: "+
					"Prometheus scrapes [metrics.prometheus] listen, and a second metrics sink would count its share of the events "+
					"where nothing scrapes them (run more instances of the other sinks with --sink NAME)", err, spec.Name)
			}
			if err != nil {
				return err
			}
			p.Log.Info().Str("listen", addr).Msg("serving event metrics on /metrics")
		}
		p.Health.Set("sink:"+spec.Name, fmt.Errorf("starting"))
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
