package main

import (
	"context"
	"flag"
	"io"

	"github.com/mailtel/mailtel/pipeline"
	"github.com/mailtel/mailtel/pipeline/app"
)

func runRouter(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("router run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f app.Flags
	f.Register(fs)
	workers := fs.Int("workers", 0, "router `workers` in this process (overrides [router] workers)")
	httpAddr := fs.String("http", "", "`address` of /healthz, /readyz, /metrics (overrides [router] http)")
	fs.Usage = app.Usage(fs, "usage: router [run] [--config FILE] [--workers N] [--nats URLS]\n\nRoutes events from EVENTS to the ROUTED subjects of the sinks that want them.\nWith no NATS URL configured, starts an embedded NATS server on [nats] listen.\nStart more router processes (or workers) to route faster: they share one durable consumer.",
		"  router --config mailtel.toml --workers 4\n  router --config mailtel.toml --nats nats://n1:4222,nats://n2:4222")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := f.Load()
	if err != nil {
		return err
	}
	if *workers > 0 {
		cfg.Router.Workers = *workers
	}
	if *httpAddr != "" {
		cfg.Router.HTTP = *httpAddr
	}
	p, err := app.Start(ctx, cfg, app.Options{Name: "router", Embedded: true, HTTP: cfg.Router.HTTP, MaxPending: 8192})
	if err != nil {
		return err
	}
	defer p.Close()
	table := pipeline.NewTable(cfg.SinkSpecs(), cfg.Levels)
	for _, s := range table.Specs() {
		p.Log.Info().Str("sink", s.Name).Str("kind", s.Kind).Msg("routing to sink")
	}
	p.Log.Info().Int("workers", cfg.Router.Workers).Str("http", p.HTTPAddr).Msg("router running")
	err = pipeline.NewRouter(p.JS, table, pipeline.RouterOptionsFrom(cfg), p.Log, p.Metrics, p.Health).Run(ctx)
	p.Log.Info().Msg("router stopped")
	return err
}
