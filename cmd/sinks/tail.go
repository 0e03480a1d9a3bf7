package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/mailtel/mailtel/catalog"
	"github.com/mailtel/mailtel/pipeline/app"
	"github.com/mailtel/mailtel/pipeline/replay"
	"github.com/mailtel/mailtel/pipeline/sinks/tracer"
)

const tailSynopsis = `usage: sinks tail SUBJECT... [--since DURATION|TIME] [--until DURATION|TIME]
                  [--level LEVEL] [--where KEY=VALUE]... [--json] [--config FILE]

Prints the events stored on the subjects, decoded, as they arrive, until
Ctrl-C. Subjects take NATS wildcards, '*' one token and '>' the rest, so
quote them for the shell: 'events.auth.>' (every authentication event),
'events.*.error', 'routed.siem.>' (what the router sent to sink siem),
'dlq.>' (dead letters). All subjects must be in one stream (events., routed.
or dlq.). By default only new events are shown; --since starts earlier (a
duration before now, or RFC 3339). With --until the tail ends by itself at
the end of that range (the last event stored by then, or the last one stored
when the tail started, if the stream has nothing newer) and prints on stderr
how many events it read, showed and filtered out; --until 0s means now.
--where KEY=VALUE shows only events whose field KEY (or the envelope's id,
type, level, host, source or time) has that value, as the JSON output prints
it (IPs, numbers, durations in milliseconds); '*' and '?' in VALUE are
wildcards, KEY!=VALUE negates, and several --where must all match. The
output is Stalwart's log line, or JSON lines with --json; an event sent to
several sinks shows once. The stream is read through an ephemeral ordered
consumer, so tailing never disturbs the pipeline.`

const tailExample = `  sinks tail 'events.auth.>'
  sinks tail 'events.*.error' 'events.smtp.>' --since 10m --level warn
  sinks tail 'routed.siem.>' --json --config mailtel.toml
  sinks tail 'events.auth.failed' --since 7d --until 0s --where remoteIp=203.0.113.7
  sinks tail 'events.auth.>' --where 'accountName=*@example.com' --where type!=auth.success`

// runTail is `sinks tail`.
func runTail(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("sinks tail", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f app.Flags
	f.Register(fs)
	since := fs.String("since", "", "start at this `time`: a duration before now (10m, 2h) or RFC 3339 (default: new events only)")
	level := fs.String("level", "", "show only events of this `level` or above (trace, debug, info, warn, error)")
	until := fs.String("until", "", "end at this `time` (a duration before now, 0s for now, or RFC 3339) and print counts, instead of following")
	var where whereFlag
	fs.Var(&where, "where", "show only events where `KEY=VALUE` (or KEY!=VALUE; '*' and '?' are wildcards); repeat to require several")
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
	o := replay.TailOptions{Streams: cfg.Streams, Subjects: subjects, Where: where}
	now := time.Now()
	if *since != "" {
		if o.Since, err = replay.ParseTime(*since, now); err != nil {
			return fmt.Errorf("sinks tail: --since: %w", err)
		}
	}
	if *until != "" {
		if o.Until, err = replay.ParseTime(*until, now); err != nil {
			return fmt.Errorf("sinks tail: --until: %w", err)
		}
		if !o.Since.IsZero() && o.Until.Before(o.Since) {
			return fmt.Errorf("sinks tail: --until %s is before --since %s", *until, *since)
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
	out, err := tracer.New("tail", &tracer.Config{Type: tracer.TypeStdout, Format: format}, tracer.Options{Stdout: stdout})
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
	var counts replay.TailCounts
	o.Counts = &counts
	if err := replay.Tail(ctx, js, o); err != nil {
		return err
	}
	if !o.Until.IsZero() && ctx.Err() == nil {
		fmt.Fprintf(stderr, "sinks tail: read %d, shown %d, filtered out %d", counts.Read, counts.Shown, counts.Filtered)
		if counts.Malformed > 0 {
			fmt.Fprintf(stderr, ", malformed %d", counts.Malformed)
		}
		fmt.Fprintln(stderr)
	}
	return nil
}

// whereFlag collects the --where conditions.
type whereFlag []replay.Where

func (w *whereFlag) String() string {
	if w == nil {
		return ""
	}
	s := make([]string, len(*w))
	for i, c := range *w {
		s[i] = c.String()
	}
	return strings.Join(s, " ")
}

func (w *whereFlag) Set(s string) error {
	c, err := replay.ParseWhere(s)
	if err != nil {
		return err
	}
	*w = append(*w, c)
	return nil
}
