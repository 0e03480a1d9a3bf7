package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mailtel/mailtel/pipeline"
	"github.com/mailtel/mailtel/pipeline/app"
	"github.com/mailtel/mailtel/pipeline/config"
	"github.com/mailtel/mailtel/pipeline/obs"
	"github.com/mailtel/mailtel/pipeline/replay"
	"github.com/mailtel/mailtel/pipeline/sinks"
)

const replaySynopsis = `usage: router replay --config NEW.toml (--since DURATION|TIME | --from-seq N)
                     [--until DURATION|TIME | --to-seq N] [--sink NAME ...] [--dry-run]

Runs history from EVENTS through the routing rules of a configuration (levels,
allowlists, blocklists) and writes what they select straight to that
configuration's sinks, in stream order: try new rules on last night's events,
or fill a new webhook. It reads through an ephemeral ordered consumer and
publishes nothing: the live routers and sinks are not affected. DURATION is
before now (30m, 2h, 7d); TIME is RFC 3339. Without --until or --to-seq the
replay ends at the last event stored when it starts.

--sink limits the replay to some sinks (e.g. only the new webhook). The metrics
sink is never replayed (its counters live in the process that serves them). Log
tracers write <prefix>.<instance>.<date> files, instance "replay" by default.
--dry-run writes nothing and prints, per sink and event type, how many events
the rules select, counted by the same code that selects them in a real run.

Failed writes are retried with backoff like the live sinks; a sink that still
fails stops the replay with the --from-seq to resume from. Events a sink
rejects for good are listed and counted as failed, and the replay goes on.
Progress goes to stderr: one updating line on a terminal, else a line a second.`

const replayExample = `  router replay --config new.toml --since 12h --dry-run
  router replay --config new.toml --since 2026-11-21T00:00:00Z --until 2026-11-21T06:00:00Z --sink siem
  router replay --config new.toml --from-seq 1 --to-seq 100000 --nats nats://n1:4222`

// runReplay is `router replay`.
func runReplay(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("router replay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f app.Flags
	f.Register(fs)
	since := fs.String("since", "", "start at this `time`: a duration before now (2h, 7d) or RFC 3339")
	until := fs.String("until", "", "end at this `time` (a duration before now or RFC 3339; default: the last event at start)")
	fromSeq := fs.Uint64("from-seq", 0, "start at this EVENTS `sequence`")
	toSeq := fs.Uint64("to-seq", 0, "end at this EVENTS `sequence`")
	dryRun := fs.Bool("dry-run", false, "write nothing; print how many events of which types each sink would get")
	var only names
	fs.Var(&only, "sink", "replay only into this sink `name` (repeatable; default: every sink of the configuration)")
	instance := fs.String("instance", "replay", "instance `name` in the log tracers' file names")
	batch := fs.Int("batch", 0, "events per write (default [sinks] batch)")
	fs.Usage = app.Usage(fs, replaySynopsis, replayExample)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("router replay: unexpected argument %q (see --help)", fs.Arg(0))
	}
	if f.Config == "" {
		return errors.New("router replay: --config is required: the configuration whose rules and sinks the history runs through")
	}
	rng, err := replay.ParseRange(*since, *until, *fromSeq, *toSeq, time.Now())
	if err != nil {
		return fmt.Errorf("router replay: %w", err)
	}
	cfg, err := f.Load()
	if err != nil {
		return err
	}
	specs, err := replaySpecs(cfg, only, stderr)
	if err != nil {
		return fmt.Errorf("router replay: %w", err)
	}

	outs := make([]replay.Output, 0, len(specs))
	counters := make([]*replay.Counter, 0, len(specs))
	defer func() {
		for _, o := range outs {
			o.Sink.Close(context.Background())
		}
	}()
	for _, spec := range specs {
		if *dryRun {
			c := replay.NewCounter()
			counters = append(counters, c)
			outs = append(outs, replay.Output{Name: spec.Name, Sink: c, Retry: pipeline.RetryPolicy(cfg, spec)})
			continue
		}
		s, err := sinks.Build(spec, sinks.Options{Instance: *instance, Stdout: stdout, Log: replay.Logger(stderr)})
		if err != nil {
			return fmt.Errorf("router replay: %w", err)
		}
		outs = append(outs, replay.Output{Name: spec.Name, Sink: s, Retry: pipeline.RetryPolicy(cfg, spec)})
	}

	nc, js, err := connect(ctx, cfg)
	if err != nil {
		return err
	}
	defer nc.Close()
	r, err := replay.Open(ctx, js, replay.ReadOptions{Stream: cfg.Streams.Events, Subjects: []string{pipeline.EventsPrefix + ">"}, Range: rng})
	if err != nil {
		return fmt.Errorf("router replay: %w", err)
	}
	defer r.Close()

	o := replayOptions(cfg, *batch, stderr, *dryRun)
	// Every sink of the configuration is in the table, so that the rules
	// are those of the router; outputs not replayed are left out by Routes.
	table := pipeline.NewTable(cfg.SinkSpecs(), cfg.Levels)
	counts, err := replay.Run(ctx, r, outs, replay.Routes(table, outs), o)
	if *dryRun {
		writeSelection(stdout, counts, counters)
	} else {
		for _, oc := range counts.Outputs {
			fmt.Fprintf(stdout, "sink %s: written %d, skipped %d, failed %d\n", oc.Name, oc.Written, oc.Skipped, oc.Failed)
		}
	}
	fmt.Fprintf(stdout, "read %d events: %d selected by no sink, %d skipped (not events)\n", counts.Read, counts.Unselected, counts.Malformed)
	if err != nil {
		if counts.Resume > 0 {
			return fmt.Errorf("router replay: %w; resume with --from-seq %d", err, counts.Resume)
		}
		return fmt.Errorf("router replay: %w", err)
	}
	if _, _, failed := counts.Totals(); failed > 0 {
		return errors.New("router replay: some events were rejected for good (listed above)")
	}
	return nil
}

// replaySpecs returns the sinks to replay into: those named (every one
// when none is), without the metrics sink.
func replaySpecs(cfg *config.Config, only []string, stderr io.Writer) ([]config.SinkSpec, error) {
	specs, err := sinks.Select(cfg.SinkSpecs(), only)
	if err != nil {
		return nil, err
	}
	var out []config.SinkSpec
	for _, s := range specs {
		if s.Factory.NoReplay == "" {
			out = append(out, s)
			continue
		}
		if len(only) > 0 {
			return nil, fmt.Errorf("sink %s is the %s sink: %s", s.Name, s.Kind, s.Factory.NoReplay)
		}
		fmt.Fprintf(stderr, "not replaying into sink %s, the %s sink: %s\n", s.Name, s.Kind, s.Factory.NoReplay)
	}
	if len(out) == 0 {
		return nil, errors.New("no sink to replay into: the configuration has no [tracer.<id>] or [webhook.<id>]")
	}
	return out, nil
}

// writeSelection prints the dry run's table: sink, type, count, and a total
// row per sink.
func writeSelection(w io.Writer, counts replay.Counts, counters []*replay.Counter) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SINK\tTYPE\tCOUNT")
	for i, c := range counters {
		name := counts.Outputs[i].Name
		byType := c.Counts()
		types := make([]string, 0, len(byType))
		for t := range byType {
			types = append(types, t)
		}
		sort.Strings(types)
		for _, t := range types {
			fmt.Fprintf(tw, "%s\t%s\t%d\n", name, t, byType[t])
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\n", name, "total", counts.Outputs[i].Selected)
	}
	tw.Flush()
}

// names is a repeatable, comma-separated --sink flag.
type names []string

func (n *names) String() string { return strings.Join(*n, ",") }
func (n *names) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*n = append(*n, s)
		}
	}
	return nil
}

// connect connects to NATS without touching the streams: a replay reads
// EVENTS as it is, and must not reconfigure the streams after the new
// configuration's [streams].
func connect(ctx context.Context, cfg *config.Config) (*nats.Conn, jetstream.JetStream, error) {
	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	return pipeline.Connect(cctx, cfg.NATS, "mailtel-router-replay", 0)
}

// replayOptions are the retry rules of the live sinks and the reporting
// on stderr, progress lines starting with label.
func replayOptions(cfg *config.Config, batch int, stderr io.Writer, dryRun bool) replay.Options {
	o := replay.Options{Batch: cfg.Sinks.Batch, Retrying: replay.LogRetries(stderr)}
	if batch > 0 {
		o.Batch = batch
	}
	o.Failed = func(out string, ids []string, err error) {
		fmt.Fprintf(stderr, "sink %s rejected %d events (first %s): %v\n", out, len(ids), ids[0], err)
	}
	o.Malformed = func(m replay.Message, err error) {
		fmt.Fprintf(stderr, "skipping message %d on %s: %v\n", m.Seq, m.Subject, err)
	}
	if dryRun {
		o.Progress = replay.NewPrinter(stderr, obs.IsTerminal(stderr), "dry run").DryRun().Update
	} else {
		o.Progress = replay.NewPrinter(stderr, obs.IsTerminal(stderr), "replay").Update
	}
	return o
}
