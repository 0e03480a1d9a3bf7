package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mailtel/mailtel/pipeline"
	"github.com/mailtel/mailtel/pipeline/app"
	"github.com/mailtel/mailtel/pipeline/config"
	"github.com/mailtel/mailtel/pipeline/obs"
	"github.com/mailtel/mailtel/pipeline/replay"
	"github.com/mailtel/mailtel/pipeline/sink"
	"github.com/mailtel/mailtel/pipeline/sinks"
)

const replaySynopsis = `usage: sinks replay --sink NAME (--since DURATION|TIME | --from-seq N)
                    [--until DURATION|TIME | --to-seq N] [--to URL|DIR] [--config FILE]

Re-delivers a sink's history (its ROUTED subjects, routed.<NAME>.>) through the
sink's own writer, in stream order, from an ephemeral ordered consumer: the
sink's live durable consumer (sink-<NAME>) is not touched, so the running sink
goes on as before. DURATION is before now (30m, 2h, 7d); TIME is RFC 3339.
Without --until or --to-seq the replay ends at the last event stored when it
starts.

--to sends the replay elsewhere: another URL for a webhook, another directory
for a log tracer. A log tracer writes <prefix>.<instance>.<date> files
(instance "replay" by default, so a replay never competes with the live sink
for its file) and skips events it has already written there.

Failed writes are retried with backoff like the live sink; a sink that still
fails stops the replay and prints the --from-seq to resume from. Events a sink
rejects for good (HTTP 4xx) are listed, counted as failed, and the replay goes
on; nothing is dead-lettered. At the end it prints "written N, skipped N,
failed N" (skipped: already written, or not an event) and fails if any failed.
The stream of a sink the server feeds ([router] server-fan-out) holds every
event: the replay writes those the sink's rules take and counts the rest as
"rejected by its rules".
Progress goes to stderr: one updating line on a terminal, else a line a second.`

const replayExample = `  sinks replay --config mailtel.toml --sink siem --since 12h
  sinks replay --config mailtel.toml --sink siem --since 2026-11-21T00:00:00Z --until 2026-11-21T06:00:00Z --to https://new-siem.example.com/mail
  sinks replay --config mailtel.toml --sink log --from-seq 1200 --to-seq 5000 --to /tmp/replayed`

// runReplay is `sinks replay`.
func runReplay(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("sinks replay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f app.Flags
	f.Register(fs)
	var rf rangeFlags
	rf.register(fs)
	name := fs.String("sink", "", "`name` of the sink to replay (required)")
	to := fs.String("to", "", "send the replay to this webhook `URL` or log directory instead of the configured one")
	instance := fs.String("instance", "replay", "instance `name` in the log tracer's file names")
	batch := fs.Int("batch", 0, "events per write (default [sinks] batch)")
	fs.Usage = app.Usage(fs, replaySynopsis, replayExample)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("sinks replay: unexpected argument %q (see --help)", fs.Arg(0))
	}
	rng, err := rf.parse(time.Now())
	if err != nil {
		return fmt.Errorf("sinks replay: %w", err)
	}
	cfg, err := f.Load()
	if err != nil {
		return err
	}
	spec, err := replaySpec(cfg, *name, *to)
	if err != nil {
		return fmt.Errorf("sinks replay: %w", err)
	}
	sink, err := sinks.Build(spec, sinks.Options{Instance: *instance, Stdout: stdout, Log: replay.Logger(stderr)})
	if err != nil {
		return fmt.Errorf("sinks replay: %w", err)
	}
	defer sink.Close(context.Background())

	nc, js, err := connect(ctx, cfg, "mailtel-sinks-replay")
	if err != nil {
		return err
	}
	defer nc.Close()
	r, err := replay.Open(ctx, js, replay.ReadOptions{Stream: cfg.Streams.RoutedStream(spec.Name),
		Subjects: []string{pipeline.RoutedPrefix + spec.Name + ".>"}, Range: rng})
	if err != nil {
		return fmt.Errorf("sinks replay %s: %w", spec.Name, err)
	}
	defer r.Close()

	o := replayOptions(cfg, *batch, spec, stderr, "replay "+spec.Name)
	outs := []replay.Output{{Name: spec.Name, Sink: sink, Retry: pipeline.RetryPolicy(cfg, spec)}}
	sel := replay.Every(1)
	if spec.ServerFanOut {
		// The server stored every event in the sink's stream: replay only
		// those the sink's rules take, as the live sink writes them.
		sel = replay.Routes(pipeline.NewTable([]config.SinkSpec{spec}, cfg.Levels), outs)
	}
	counts, err := replay.Run(ctx, r, outs, sel, o)
	written, skipped, failed := counts.Totals()
	fmt.Fprintf(stdout, "replayed sink %s: written %d, skipped %d, failed %d", spec.Name, written, skipped, failed)
	if counts.Unselected > 0 {
		fmt.Fprintf(stdout, ", rejected by its rules %d", counts.Unselected)
	}
	fmt.Fprintln(stdout)
	return replayResult(counts, err, failed)
}

// replaySpec returns the spec of the sink to replay, pointed at --to.
func replaySpec(cfg *config.Config, name, to string) (config.SinkSpec, error) {
	if name == "" {
		return config.SinkSpec{}, fmt.Errorf("--sink is required (configured: %s)", specNames(cfg.SinkSpecs()))
	}
	sel, err := sinks.Select(cfg.SinkSpecs(), []string{name})
	if err != nil {
		return config.SinkSpec{}, err
	}
	spec := sel[0]
	if spec.Factory.NoReplay != "" {
		return spec, fmt.Errorf("sink %s is the %s sink: %s", name, spec.Kind, spec.Factory.NoReplay)
	}
	if to == "" {
		return spec, nil
	}
	r, ok := spec.Config.(sink.Redirecter)
	if !ok {
		return spec, fmt.Errorf("--to does not apply to sink %s of type %s: it has no destination to point elsewhere", name, spec.Kind)
	}
	redirected, err := r.Redirect(to)
	if err != nil {
		return spec, fmt.Errorf("--to: %w", err)
	}
	spec.Config = redirected
	return spec, nil
}

func specNames(specs []config.SinkSpec) string {
	names := make([]string, len(specs))
	for i, s := range specs {
		names[i] = s.Name
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

// rangeFlags are --since, --until, --from-seq and --to-seq.
type rangeFlags struct {
	since, until   string
	fromSeq, toSeq uint64
}

func (rf *rangeFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&rf.since, "since", "", "start at this `time`: a duration before now (2h, 7d) or RFC 3339")
	fs.StringVar(&rf.until, "until", "", "end at this `time` (a duration before now or RFC 3339; default: the last event at start)")
	fs.Uint64Var(&rf.fromSeq, "from-seq", 0, "start at this stream `sequence`")
	fs.Uint64Var(&rf.toSeq, "to-seq", 0, "end at this stream `sequence`")
}

func (rf *rangeFlags) parse(now time.Time) (replay.Range, error) {
	return replay.ParseRange(rf.since, rf.until, rf.fromSeq, rf.toSeq, now)
}

// connect connects to NATS without touching the streams: a replay or a
// tail reads them as they are.
func connect(ctx context.Context, cfg *config.Config, name string) (*nats.Conn, jetstream.JetStream, error) {
	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	return pipeline.Connect(cctx, cfg.NATS, name, 0)
}

// replayOptions are the replay's retry rules (those of the live sink) and
// its reporting on stderr.
func replayOptions(cfg *config.Config, batch int, spec config.SinkSpec, stderr io.Writer, label string) replay.Options {
	o := replay.Options{Batch: cfg.Sinks.Batch, Retrying: replay.LogRetries(stderr)}
	if batch > 0 {
		o.Batch = batch
	}
	o.Failed = func(out string, ids []string, err error) {
		shown := ids
		if len(shown) > 10 {
			shown = shown[:10]
		}
		fmt.Fprintf(stderr, "sink %s rejected %d events (%s", out, len(ids), strings.Join(shown, ", "))
		if len(shown) < len(ids) {
			fmt.Fprint(stderr, ", ...")
		}
		fmt.Fprintf(stderr, "): %v\n", err)
	}
	o.Malformed = func(m replay.Message, err error) {
		fmt.Fprintf(stderr, "skipping message %d on %s: %v\n", m.Seq, m.Subject, err)
	}
	p := replay.NewPrinter(stderr, obs.IsTerminal(stderr), label)
	o.Progress = p.Update
	return o
}

// replayResult turns the end of a replay into the command's error.
func replayResult(c replay.Counts, err error, failed uint64) error {
	if err != nil {
		if c.Resume > 0 {
			return fmt.Errorf("%w; resume with --from-seq %d", err, c.Resume)
		}
		return err
	}
	if failed > 0 {
		return errors.New("some events were rejected for good (listed above)")
	}
	return nil
}
