package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/mailtel/mailtel/pipeline"
	"github.com/mailtel/mailtel/pipeline/app"
	"github.com/mailtel/mailtel/pipeline/obs"
	"github.com/mailtel/mailtel/pipeline/status"
)

const statusSynopsis = `usage: router status [--config FILE] [--nats URLS] [--json] [--watch [INTERVAL]]
                     [--http ADDR,...] [--sample DURATION]

Shows which sink is behind, by how much, how fast each goes and how many dead
letters each stage left, in one screen:

  sinks      state (up, paused, not running, no consumer, no stream) and why,
             messages not acked yet, events/s acked, dead letters, fed by the
             router or the server (server fan-out)
  consumers  pending, ack pending, redelivered, waiting pull requests, last
             activity and rate of the router's and every sink's consumer
  streams    messages, bytes, first and last message, and the duplicate window:
             message ids the server holds for it (messages stored within the
             window) and about how much memory they take (250 bytes each)
  dead       DLQ messages per stage: ingest, router, sink.<name>

It reads JetStream only (stream and consumer information; nothing is created or
changed), so it works against any deployment, embedded or cluster, and needs
only [nats] from the configuration: the sinks are those of the ROUTED_<name>
streams found, plus those the configuration names. It also asks the /metrics
and /readyz of [router] http and [sinks] http (or --http), when they answer,
for the sinks that are paused (mailtel_sink_up, "ready, degraded: ...").

Rates are the messages each consumer acked (every process reading it), from
two samples --sample apart (the refresh interval with --watch). --watch
refreshes until Ctrl-C: in place on a terminal, else one block per refresh,
separated by a blank line (with --json, one JSON object per line).`

const statusExample = `  router status                                  # the pipeline of router up, on this machine
  router status --config mailtel.toml --watch    # refresh every 2s, like top
  router status --nats nats://n1:4222,nats://n2:4222 --http n1:9101,n2:9102 --json | jq '.sinks[] | {name, behind}'`

// runStatus is `router status`.
func runStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("router status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f app.Flags
	f.Register(fs)
	asJSON := fs.Bool("json", false, "print the status as JSON")
	watch := watchFlag{every: 2 * time.Second}
	fs.Var(&watch, "watch", "refresh every `interval` (default 2s) until Ctrl-C")
	var endpoints names
	fs.Var(&endpoints, "http", "health and metrics `addresses` to ask, comma-separated (default [router] http and [sinks] http; none for none)")
	sample := fs.Duration("sample", time.Second, "time between the two samples the rates come from, without --watch (0: one sample, no rates)")
	fs.Usage = app.Usage(fs, statusSynopsis, statusExample)
	rest, err := parseStatusArgs(fs, args)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return fmt.Errorf("router status: unexpected argument %q (see --help)", rest[0])
	}
	if watch.on && watch.every <= 0 {
		return errors.New("router status: --watch interval must be positive")
	}
	cfg, err := f.Load()
	if err != nil {
		return err
	}
	o := status.OptionsFrom(cfg)
	if len(endpoints) > 0 {
		o.Endpoints = nil
		for _, e := range endpoints {
			if e != "none" {
				o.Endpoints = append(o.Endpoints, e)
			}
		}
	}

	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	nc, js, err := pipeline.Connect(cctx, cfg.NATS, "mailtel-router-status", 0)
	cancel()
	if err != nil {
		return fmt.Errorf("router status: %w", err)
	}
	defer nc.Close()
	g := status.NewGatherer(js, o)

	write := func(w io.Writer, st *status.Status) error {
		if *asJSON {
			enc := json.NewEncoder(w)
			if !watch.on {
				enc.SetIndent("", "  ")
			}
			return enc.Encode(st)
		}
		return status.Render(w, st)
	}

	if !watch.on {
		if *sample > 0 {
			if _, err := g.Gather(ctx); err != nil {
				return fmt.Errorf("router status: %w", err)
			}
			if !sleep(ctx, *sample) {
				return nil
			}
		}
		st, err := g.Gather(ctx)
		if err != nil {
			return fmt.Errorf("router status: %w", err)
		}
		return write(stdout, st)
	}

	// --watch: a first sample, so that the first screen has rates.
	tty := obs.IsTerminal(stdout) && !*asJSON
	if _, err := g.Gather(ctx); err != nil && ctx.Err() == nil {
		fmt.Fprintf(stderr, "router status: %v\n", err)
	}
	if !sleep(ctx, min(watch.every, time.Second)) {
		return nil
	}
	for first := true; ; first = false {
		st, err := g.Gather(ctx)
		if ctx.Err() != nil {
			return nil
		}
		var b bytes.Buffer
		switch {
		case tty:
			b.WriteString("\x1b[H\x1b[2J") // home, clear the screen
		case !first && !*asJSON:
			b.WriteString("\n")
		}
		if err != nil {
			// NATS may be reconnecting: say so, and try again.
			fmt.Fprintf(&b, "%s router status: %v\n", time.Now().Format(time.TimeOnly), err)
		} else if err := write(&b, st); err != nil {
			return err
		}
		if _, err := stdout.Write(b.Bytes()); err != nil {
			return err
		}
		if !sleep(ctx, watch.every) {
			return nil
		}
	}
}

// sleep waits d; false when ctx ended first.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// watchFlag is --watch with an optional interval: --watch, --watch=5s or
// --watch 5s (see parseStatusArgs).
type watchFlag struct {
	on    bool
	every time.Duration
}

func (w *watchFlag) IsBoolFlag() bool { return true }
func (w *watchFlag) String() string {
	if w == nil || !w.on {
		return ""
	}
	return w.every.String()
}
func (w *watchFlag) Set(v string) error {
	switch v {
	case "true":
		w.on = true
		return nil
	case "false":
		w.on = false
		return nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return fmt.Errorf("want an interval such as 2s or 500ms")
	}
	w.on, w.every = true, d
	return nil
}

// parseStatusArgs parses args, flags anywhere among them, and returns the
// other arguments. An interval right after a bare --watch ("--watch 5s")
// is the watch's interval.
func parseStatusArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	joined := make([]string, 0, len(args))
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			joined = append(joined, args[i:]...)
			break
		}
		if (a == "--watch" || a == "-watch") && i+1 < len(args) {
			if _, err := time.ParseDuration(args[i+1]); err == nil {
				a, i = a+"="+args[i+1], i+1
			}
		}
		joined = append(joined, a)
	}
	return app.ParseInterspersed(fs, joined)
}
