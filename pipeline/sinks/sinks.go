// Package sinks builds the configured sinks and runs them.
package sinks

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/mailtel/mailtel/pipeline"
	"github.com/mailtel/mailtel/pipeline/app"
	"github.com/mailtel/mailtel/pipeline/config"
	"github.com/mailtel/mailtel/pipeline/delivery"
	"github.com/mailtel/mailtel/pipeline/sink"
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

// Build creates the sink described by spec, with the factory of its kind.
func Build(spec config.SinkSpec, o Options) (sink.Sink, error) {
	if spec.Factory == nil || spec.Config == nil {
		return nil, fmt.Errorf("sink %s: no kind or configuration", spec.Name)
	}
	out := o.Stdout
	if out == nil {
		out = os.Stdout
	}
	reg := o.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	return spec.Factory.New(spec.Config, sink.Settings{Name: spec.Name, Instance: o.Instance, AnySlot: o.AnySlot,
		Stdout: out, Registry: reg, Log: o.Log})
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

// Run builds the selected sinks and runs them until ctx ends: Start, then
// Wait.
func Run(ctx context.Context, p *app.Process, names []string, o Options) error {
	s, err := Start(ctx, p, names, o)
	if err != nil {
		return err
	}
	return s.Wait()
}

// Set is the sinks a process runs, each from its durable consumer. Apply
// changes them to those of a new configuration.
type Set struct {
	ctx   context.Context
	p     *app.Process
	names []string // the --sink selection; empty for every configured sink
	o     Options

	mu      sync.Mutex // serialises Apply
	running map[string]*running
	wg      sync.WaitGroup
	errs    chan error // what the runners failed with
}

// running is one sink at work.
type running struct {
	spec   config.SinkSpec
	retry  delivery.Policy
	routes *pipeline.Table // its routing rule, for a sink the server feeds
	sink   sink.Sink
	cancel context.CancelFunc
	done   chan struct{} // closed when its runner has returned
}

// Start builds the selected sinks and starts each from its durable
// consumer. They run until ctx ends; Wait waits for them to finish the
// batches in flight and closes them. When the metrics sink runs, its
// /metrics endpoint is served on [metrics.prometheus] listen; a second
// process running the metrics sink fails, since that address is taken.
// Without o.Instance, each log sink takes the first free instance slot of
// its files (o.AnySlot).
func Start(ctx context.Context, p *app.Process, names []string, o Options) (*Set, error) {
	specs, err := selectSpecs(p.Config, names)
	if err != nil {
		return nil, err
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
	s := &Set{ctx: ctx, p: p, names: names, o: o, running: map[string]*running{}, errs: make(chan error, 64)}
	for _, spec := range specs {
		if err := s.start(p.Config, spec); err != nil {
			s.stopAll()
			return nil, err
		}
	}
	return s, nil
}

// selectSpecs returns the sinks of c this process runs.
func selectSpecs(c *config.Config, names []string) ([]config.SinkSpec, error) {
	specs, err := Select(c.SinkSpecs(), names)
	if err != nil {
		return nil, err
	}
	if len(specs) == 0 {
		return nil, fmt.Errorf("no sinks configured: add a [tracer.<id>], [webhook.<id>] or [metrics.prometheus] section")
	}
	return specs, nil
}

// start builds the sink of spec and starts its runner.
func (s *Set) start(c *config.Config, spec config.SinkSpec) error {
	built, err := Build(spec, s.o)
	if err != nil {
		return err
	}
	r := &running{spec: spec, retry: pipeline.RetryPolicy(c, spec), sink: built, done: make(chan struct{})}
	if spec.ServerFanOut {
		r.routes = pipeline.NewTable([]config.SinkSpec{spec}, c.Levels)
	}
	if st, ok := built.(sink.Starter); ok {
		if err := st.Start(s.ctx); err != nil {
			built.Close(context.Background())
			return err
		}
	}
	s.p.Health.Set("sink:"+spec.Name, fmt.Errorf("starting"))
	ctx, cancel := context.WithCancel(s.ctx)
	r.cancel = cancel
	runner := pipeline.NewSinkRunner(s.p.JS, spec.Name, built, pipeline.SinkOptionsFor(c, spec), s.p.Log, s.p.Metrics, s.p.Health)
	s.p.Log.Info().Str("sink", spec.Name).Str("kind", spec.Kind).Msg("sink running")
	s.running[spec.Name] = r
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(r.done)
		if err := runner.Run(ctx); err != nil {
			s.errs <- err
		}
	}()
	return nil
}

// halt stops one sink: its runner finishes the batch in flight and gives
// back what it fetched beyond it, then the sink is closed (a log sink
// releases its files and their lock).
func (s *Set) halt(r *running) {
	r.cancel()
	<-r.done
	if err := r.sink.Close(context.Background()); err != nil {
		s.p.Log.Error().Err(err).Str("sink", r.spec.Name).Msg("close sink")
	}
	delete(s.running, r.spec.Name)
}

func (s *Set) stopAll() {
	for _, r := range s.running {
		s.halt(r)
	}
}

// Wait waits until ctx has ended and every sink has stopped and been
// closed, and returns the first error a sink's runner failed with.
func (s *Set) Wait() error {
	<-s.ctx.Done()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopAll()
	s.wg.Wait()
	close(s.errs)
	return <-s.errs
}

// Apply makes the set run the sinks of c, as a configuration reload: a
// sink whose section, retry policy or (for a sink the server feeds)
// routing rule changed is stopped and started anew, an added sink is
// started, a removed one stopped. A sink is stopped as at shutdown (the
// batch in flight is written and acked, what was fetched beyond it is
// given back to JetStream and delivered to the new one), and closed
// before the new one is built, so a log sink keeps its instance slot.
// Sinks that did not change go on undisturbed. It returns what changed.
// When c selects no sink, or names one it lacks, nothing changes; when a
// changed sink cannot be built, its previous configuration is started
// again and the error returned.
func (s *Set) Apply(ctx context.Context, c *config.Config) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctx.Err() != nil {
		return "", s.ctx.Err()
	}
	specs, err := selectSpecs(c, s.names)
	if err != nil {
		return "", err
	}
	// An added sink's stream, created here as at start, whether or not
	// the router has reloaded yet.
	if err := pipeline.EnsureStreams(ctx, s.p.JS, c); err != nil {
		return "", err
	}
	want := map[string]bool{}
	var added, removed, changed []string
	var errs []error
	for _, spec := range specs {
		want[spec.Name] = true
		r, ok := s.running[spec.Name]
		if !ok {
			if err := s.start(c, spec); err != nil {
				errs = append(errs, err)
				continue
			}
			added = append(added, spec.Name)
			continue
		}
		if sameSink(r, c, spec) {
			r.spec = spec
			continue
		}
		s.halt(r)
		if err := s.start(c, spec); err != nil {
			s.p.Log.Error().Err(err).Str("sink", spec.Name).Msg("reloaded sink could not start; starting it with its previous configuration")
			if err2 := s.start(s.p.Config, r.spec); err2 != nil {
				err = fmt.Errorf("%w; with its previous configuration: %v", err, err2)
			}
			errs = append(errs, err)
			continue
		}
		changed = append(changed, spec.Name)
	}
	for name, r := range s.running {
		if !want[name] {
			s.halt(r)
			s.p.Health.Remove("sink:" + name)
			removed = append(removed, name)
		}
	}
	sort.Strings(removed)
	return app.Changes(added, removed, changed), errors.Join(errs...)
}

// sameSink reports whether spec under c runs as r does. The routing rules
// (level, events, disabled-events) of a sink the router feeds are the
// router's business: a reload that changes only them leaves the sink
// running undisturbed. For a sink the server feeds, they are its own
// (r.routes).
func sameSink(r *running, c *config.Config, spec config.SinkSpec) bool {
	if !reflect.DeepEqual(buildOf(r.spec), buildOf(spec)) || r.retry != pipeline.RetryPolicy(c, spec) {
		return false
	}
	if spec.ServerFanOut {
		return r.routes.Diff(pipeline.NewTable([]config.SinkSpec{spec}, c.Levels)) == ""
	}
	return true
}

// buildOf is spec without its routing rules: what Build makes a sink of.
// The rule's keys (sink.RuleKeys) are zeroed in a copy of its config.
func buildOf(spec config.SinkSpec) config.SinkSpec {
	spec.Level, spec.Include, spec.Exclude = 0, nil, nil
	if spec.Config == nil {
		return spec
	}
	v := reflect.New(reflect.TypeOf(spec.Config).Elem())
	v.Elem().Set(reflect.ValueOf(spec.Config).Elem())
	zeroKeys(v.Elem(), sink.RuleKeys)
	spec.Config = v.Interface().(sink.Config)
	return spec
}

// zeroKeys zeroes the fields of struct v whose toml key is in keys.
func zeroKeys(v reflect.Value, keys []string) {
	for i := 0; i < v.NumField(); i++ {
		f := v.Type().Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		switch {
		case name == "" && f.Anonymous && f.Type.Kind() == reflect.Struct:
			zeroKeys(v.Field(i), keys)
		case slices.Contains(keys, name):
			v.Field(i).SetZero()
		}
	}
}
