package main

import (
	"context"
	"flag"
	"io"

	"github.com/mailtel/mailtel/pipeline"
	"github.com/mailtel/mailtel/pipeline/app"
	"github.com/mailtel/mailtel/pipeline/config"
)

func runRouter(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("router run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f app.Flags
	f.Register(fs)
	workers := fs.Int("workers", 0, "router `workers` in this process (overrides [router] workers)")
	httpAddr := fs.String("http", "", "`address` of /healthz, /readyz, /metrics (overrides [router] http)")
	watch := fs.Bool("watch", false, "reload the configuration when its file changes (SIGHUP always reloads)")
	fs.Usage = app.Usage(fs, "usage: router [run] [--config FILE] [--workers N] [--nats URLS]\n\nRoutes events from EVENTS to the ROUTED subjects of the sinks that want them.\nWith no NATS URL configured, starts an embedded NATS server on [nats] listen.\nStart more router processes (or workers) to route faster: they share one durable consumer.\nSIGHUP (or, with --watch, saving the file) reloads the levels and the sinks' rules;\nan invalid file is refused and the running configuration stays.",
		"  router --config mailtel.toml --workers 4\n  router --config mailtel.toml --nats nats://n1:4222,nats://n2:4222\n  router --config mailtel.toml --watch")
	if err := fs.Parse(args); err != nil {
		return err
	}
	reloads := app.ListenReloads(f.Config, *watch)
	defer reloads.Close()
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
	p.Log.Info().Int("workers", cfg.Router.Workers).Str("http", p.HTTPAddr).Bool("watch", *watch).Msg("router running")
	router := pipeline.NewRouter(p.JS, table, pipeline.RouterOptionsFrom(cfg), p.Log, p.Metrics, p.Health)
	go p.Reload(ctx, reloads, app.Reloader{Load: f.Load, Apply: func(ctx context.Context, c *config.Config) (string, error) {
		// A sink added by the reload gets its stream before the first copy.
		if err := pipeline.EnsureStreams(ctx, p.JS, c); err != nil {
			return "", err
		}
		return router.SetTable(pipeline.NewTable(c.SinkSpecs(), c.Levels))
	}})
	err = router.Run(ctx)
	p.Log.Info().Msg("router stopped")
	return err
}
