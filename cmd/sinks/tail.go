package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/mailtel/mailtel/catalog"
	"github.com/mailtel/mailtel/pipeline/app"
	"github.com/mailtel/mailtel/pipeline/config"
	"github.com/mailtel/mailtel/pipeline/replay"
	"github.com/mailtel/mailtel/pipeline/sinks/tracer"
)

const tailSynopsis = `usage: sinks tail SUBJECT... [--since DURATION|TIME] [--level LEVEL] [--json] [--config FILE]

Prints the events stored on the subjects, decoded, as they arrive, until
Ctrl-C. Subjects take NATS wildcards, '*' one token and '>' the rest, so
quote them for the shell: 'events.auth.>' (every authentication event),
'events.*.error', 'routed.siem.>' (what the router sent to sink siem),
'dlq.>' (dead letters). All subjects must be in one stream (events., routed.
or dlq.). By default only new events are shown; --since starts earlier (a
duration before now, or RFC 3339). The output is Stalwart's log line, or JSON
lines with --json; an event sent to several sinks shows once. The stream is
read through an ephemeral ordered consumer, so tailing never disturbs the
pipeline.`

const tailExample = `  sinks tail 'events.auth.>'
  sinks tail 'events.*.error' 'events.smtp.>' --since 10m --level warn
  sinks tail 'routed.siem.>' --json --config mailtel.toml`

// runTail is `sinks tail`.
func runTail(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("sinks tail", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f app.Flags
	f.Register(fs)
	since := fs.String("since", "", "start at this `time`: a duration before now (10m, 2h) or RFC 3339 (default: new events only)")
	level := fs.String("level", "", "show only events of this `level` or above (trace, debug, info, warn, error)")
	asJSON := fs.Bool("json", false, "print JSON lines instead of Stalwart's log lines")
	fs.Usage = app.Usage(fs, tailSynopsis, tailExample)
	subjects, err := app.ParseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(subjects) == 0 {
		fs.Usage()
		return fmt.Errorf("sinks tail: give at least one subject, e.g. 'events.auth.>'")
	}
	cfg, err := f.Load()
	if err != nil {
		return err
	}
	if _, err := replay.StreamOf(subjects, cfg.Streams); err != nil {
		return fmt.Errorf("sinks tail: %w", err)
	}
	o := replay.TailOptions{Streams: cfg.Streams, Subjects: subjects}
	if *since != "" {
		if o.Since, err = replay.ParseTime(*since, time.Now()); err != nil {
			return fmt.Errorf("sinks tail: --since: %w", err)
		}
	}
	if *level != "" {
		if o.MinLevel, err = catalog.ParseLevel(*level); err != nil {
			return fmt.Errorf("sinks tail: --level: %w", err)
		}
		o.ByLevel = true
	}
	format := "text"
	if *asJSON {
		format = "json"
	}
	out, err := tracer.New("tail", &config.Tracer{Type: config.KindStdout, Format: format}, tracer.Options{Stdout: stdout})
	if err != nil {
		return err
	}
	defer out.Close(context.Background())
	o.Out = out
	o.Malformed = func(m replay.Message, err error) {
		fmt.Fprintf(stderr, "skipping message %d on %s: %v\n", m.Seq, m.Subject, err)
	}

	nc, js, err := connect(ctx, cfg, "mailtel-sinks-tail")
	if err != nil {
		return err
	}
	defer nc.Close()
	return replay.Tail(ctx, js, o)
}
