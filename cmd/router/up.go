package main

import (
	"context"
	_ "embed"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/mailtel/mailtel/pipeline"
	"github.com/mailtel/mailtel/pipeline/app"
	"github.com/mailtel/mailtel/pipeline/config"
	"github.com/mailtel/mailtel/pipeline/ingest"
	"github.com/mailtel/mailtel/pipeline/sink"
	"github.com/mailtel/mailtel/pipeline/sinks"
	"github.com/mailtel/mailtel/pipeline/synth"
)

// demoConfig is the repository's mailtel.toml (a test keeps the two
// equal), for a router binary run where there is none.
//
//go:embed demo.toml
var demoConfig []byte

// shippedConfig is the configuration file `router up` uses without
// --config when the working directory has it.
const shippedConfig = "mailtel.toml"

func runUp(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("router up", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f app.Flags
	f.Register(fs)
	rate := fs.Float64("rate", 200, "synthetic events per `second` (0 = no synthetic traffic)")
	count := fs.Int64("count", 0, "stop the synthetic publisher after this many events (0 = never)")
	seed := fs.Uint64("seed", uint64(time.Now().UnixNano()), "`seed` of the synthetic traffic")
	fs.Usage = app.Usage(fs, "usage: router up [--config FILE] [--rate R] [--count N]\n\nRuns the whole pipeline in one process: an embedded NATS server with JetStream\n(unless [nats] url is set), the router, every configured sink and a synthetic\npublisher. Without --config it reads ./mailtel.toml, or where there is none\na built-in copy of the repository's: JSON lines to ./data/logs/mailtel.<date>,\nStalwart-format security lines to ./data/logs/security.<date>, Prometheus\nmetrics on 127.0.0.1:9100/metrics. Stop it with Ctrl-C.",
		"  router up\n  router up --config mailtel.toml --rate 1000")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var cfg *config.Config
	var err error
	if f.Config == "" {
		if _, serr := os.Stat(shippedConfig); serr == nil {
			f.Config = shippedConfig
		}
	}
	if f.Config == "" {
		cfg, err = config.ParseWith(demoConfig, f.Apply)
		fmt.Fprintln(stdout, "configuration: the built-in copy of mailtel.toml")
	} else {
		cfg, err = f.Load()
		fmt.Fprintf(stdout, "configuration: %s\n", f.Config)
	}
	if err != nil {
		return err
	}
	p, err := app.Start(ctx, cfg, app.Options{Name: "up", Embedded: true, HTTP: cfg.Router.HTTP, MaxPending: 8192})
	if err != nil {
		return err
	}
	defer p.Close()

	for _, s := range cfg.SinkSpecs() {
		if d, ok := s.Config.(sink.Describer); ok {
			fmt.Fprintf(stdout, "sink %-10s %s\n", s.Name, d.Describe())
		} else {
			fmt.Fprintf(stdout, "sink %-10s (%s)\n", s.Name, s.Kind)
		}
	}
	fmt.Fprintf(stdout, "health and pipeline metrics on http://%s/readyz and /metrics; Ctrl-C stops\n", p.HTTPAddr)

	var wg sync.WaitGroup
	errs := make(chan error, 3)
	goRun := func(name string, f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(); err != nil && !errors.Is(err, context.Canceled) {
				errs <- fmt.Errorf("%s: %w", name, err)
			}
		}()
	}
	table := pipeline.NewTable(cfg.SinkSpecs(), cfg.Levels)
	goRun("router", func() error {
		return pipeline.NewRouter(p.JS, table, pipeline.RouterOptionsFrom(cfg), p.Log, p.Metrics, p.Health).Run(ctx)
	})
	goRun("sinks", func() error { return sinks.Run(ctx, p, nil, sinks.Options{Stdout: stdout}) })
	if *rate > 0 {
		pub := pipeline.NewPublisher(p.JS, cfg.Levels, cfg.Publisher.MaxInFlight, p.Metrics)
		goRun("publisher", func() error {
			defer pub.Close(context.Background())
			c, err := ingest.Generate(ctx, pub, synth.New(synth.Options{Seed: *seed}), *count, *rate, nil)
			p.Log.Info().Int64("published", c.Published).Msg("synthetic publisher done")
			return err
		})
	}
	var fanOut []string
	for _, s := range cfg.SinkSpecs() {
		if s.ServerFanOut {
			fanOut = append(fanOut, s.Name)
		}
	}
	sort.Strings(fanOut)
	go reportProgress(ctx, p, fanOut, stdout)
	wg.Wait()
	close(errs)
	return <-errs
}

// reportProgress prints what went through the pipeline every few seconds.
func reportProgress(ctx context.Context, p *app.Process, fanOut []string, out io.Writer) {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		published := counterSum(p, "mailtel_published_total")
		routed := counterSum(p, "mailtel_routed_total")
		written := counterSum(p, "mailtel_written_total")
		line := fmt.Sprintf("%s published %.0f, routed %.0f copies, written %.0f", time.Now().Format(time.TimeOnly), published, routed, written)
		switch {
		case len(fanOut) > 0:
			// The server's copies for these sinks are not the router's.
			line += " (routed: by the router; the NATS server copies every event for " + strings.Join(fanOut, ", ") + ")"
		case written > routed:
			// Copies routed before this start (a backlog in ./data) are
			// written now; the counters start at zero with the process.
			line += fmt.Sprintf(" (%.0f of them routed before this start)", written-routed)
		}
		fmt.Fprintln(out, line)
	}
}

func counterSum(p *app.Process, name string) float64 {
	mfs, err := p.Metrics.Registry.Gather()
	if err != nil {
		return 0
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}
