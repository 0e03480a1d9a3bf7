package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mailtel/mailtel/pipeline"
	"github.com/mailtel/mailtel/pipeline/app"
	"github.com/mailtel/mailtel/pipeline/config"
	"github.com/mailtel/mailtel/pipeline/dlqtool"
)

const dlqUsage = `usage: sinks dlq COMMAND [flags]

Commands:
  list      list dead letters: sequence, time, stage, event, reason
  show      print one dead letter: its headers and its event as JSON
  redrive   send a sink's dead letters back to the sink

Dead letters are on dlq.<stage>.<category>.<event> in the DLQ stream, with
the reason in the Mailtel-Reason header. Only sink dead letters
(dlq.sink.<name>.>) can be re-driven: router and ingest dead letters hold
input that is not an event; fix the sender and publish it again.

Run "sinks dlq COMMAND --help" for the flags of a command.

Example:
  sinks dlq list --config mailtel.toml --sink siem
  sinks dlq show --config mailtel.toml 42
  sinks dlq redrive --config mailtel.toml --sink siem --dry-run
`

// runDLQ lists, shows and re-drives dead letters. Help requested with
// --help is printed and is not an error.
func runDLQ(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, dlqUsage)
		return errors.New("dlq: a command is required: list, show or redrive")
	}
	cmd, args := args[0], args[1:]
	var err error
	switch cmd {
	case "list":
		err = dlqList(ctx, args, stdout, stderr)
	case "show":
		err = dlqShow(ctx, args, stdout, stderr)
	case "redrive":
		err = dlqRedrive(ctx, args, stdout, stderr)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, dlqUsage)
		return nil
	default:
		fmt.Fprint(stderr, dlqUsage)
		return fmt.Errorf("dlq: unknown command %q (want list, show or redrive)", cmd)
	}
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	return err
}

// dlqFlags are the flags every dlq command takes.
type dlqFlags struct {
	app.Flags
	timeout time.Duration
}

func (f *dlqFlags) register(fs *flag.FlagSet) {
	f.Register(fs)
	fs.DurationVar(&f.timeout, "timeout", 10*time.Second, "give up connecting to NATS after this `duration`")
}

// connect loads the configuration and connects to NATS. The caller closes
// the connection with the returned func.
func (f *dlqFlags) connect(ctx context.Context) (*config.Config, jetstream.JetStream, func(), error) {
	if f.timeout <= 0 {
		return nil, nil, nil, fmt.Errorf("--timeout %s: must be positive", f.timeout)
	}
	cfg, err := f.Load()
	if err != nil {
		return nil, nil, nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	nc, js, err := pipeline.Connect(cctx, cfg.NATS, "mailtel-dlq", 0)
	if err != nil {
		return nil, nil, nil, err
	}
	return cfg, js, nc.Close, nil
}

// parseArgs parses flags that may come before or after the positional
// arguments, and returns the positional ones.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

func dlqList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("sinks dlq list", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f dlqFlags
	f.register(fs)
	var filter dlqtool.Filter
	fs.StringVar(&filter.Sink, "sink", "", "only the dead letters of the sink `name` (dlq.sink.<name>.>)")
	fs.StringVar(&filter.Stage, "stage", "", "only the dead letters of the `stage`: ingest, router, sink or sink.<name>")
	fs.IntVar(&filter.Max, "max", 0, "list at most `n` dead letters, oldest first (0: all)")
	asJSON := fs.Bool("json", false, "print one JSON object per dead letter")
	fs.Usage = app.Usage(fs, "usage: sinks dlq list [--sink NAME | --stage STAGE] [--max N] [--json]\n\nLists dead letters, oldest first: the DLQ sequence (for show), when the stage gave\nup, the stage, the event's type and id, the source sequence and the reason.",
		"  sinks dlq list --config mailtel.toml --sink siem\n  sinks dlq list --nats nats://127.0.0.1:4222 --stage router --json | jq .reason")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("dlq list: unexpected argument %q (filter with --sink or --stage)", pos[0])
	}
	subject, err := filter.Subject()
	if err != nil {
		return fmt.Errorf("dlq list: %w", err)
	}
	cfg, js, closeConn, err := f.connect(ctx)
	if err != nil {
		return err
	}
	defer closeConn()
	letters, err := dlqtool.List(ctx, js, cfg.Streams.DLQ, filter)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		for _, l := range letters {
			if err := enc.Encode(l); err != nil {
				return fmt.Errorf("dlq list: write: %w", err)
			}
		}
		return nil
	}
	if len(letters) == 0 {
		fmt.Fprintf(stdout, "no dead letters on %s in stream %s\n", subject, cfg.Streams.DLQ)
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tFAILED-AT\tSTAGE\tTYPE\tEVENT-ID\tSOURCE-SEQ\tREASON")
	for _, l := range letters {
		id := l.EventID
		if id == "" {
			id = "-"
		}
		failed := "-"
		if !l.FailedAt.IsZero() {
			failed = l.FailedAt.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%d\t%s\n", l.Seq, failed, l.Stage, l.Type, id, l.SourceSeq, oneLine(l.Reason, 160))
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("dlq list: write: %w", err)
	}
	fmt.Fprintf(stdout, "%d dead letters on %s\n", len(letters), subject)
	return nil
}

// oneLine puts a reason on one line and cuts it to at most n runes.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

func dlqShow(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("sinks dlq show", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f dlqFlags
	f.register(fs)
	fs.Usage = app.Usage(fs, "usage: sinks dlq show [flags] SEQ\n\nPrints the dead letter stored at sequence SEQ of the DLQ stream (see \"sinks dlq list\")\nas JSON: its headers and its event, decoded; or, when the payload is not an\nevent, the reason it cannot be decoded and the payload in base64.",
		"  sinks dlq show --config mailtel.toml 42\n  sinks dlq show --nats nats://127.0.0.1:4222 42 | jq .event.data")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return fmt.Errorf("dlq show: want one dead letter sequence number (see \"sinks dlq list\"), got %d arguments", len(pos))
	}
	seq, err := strconv.ParseUint(pos[0], 10, 64)
	if err != nil || seq == 0 {
		return fmt.Errorf("dlq show: %q is not a sequence number (a positive integer from \"sinks dlq list\")", pos[0])
	}
	cfg, js, closeConn, err := f.connect(ctx)
	if err != nil {
		return err
	}
	defer closeConn()
	d, err := dlqtool.Show(ctx, js, cfg.Streams.DLQ, seq)
	if err != nil {
		return err
	}
	out, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return fmt.Errorf("dlq show: encode: %w", err)
	}
	out = append(out, '\n')
	if _, err := stdout.Write(out); err != nil {
		return fmt.Errorf("dlq show: write: %w", err)
	}
	return nil
}

func dlqRedrive(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("sinks dlq redrive", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f dlqFlags
	f.register(fs)
	sink := fs.String("sink", "", "re-drive the dead letters of the sink `name` (required)")
	dry := fs.Bool("dry-run", false, "list what would be re-driven; change nothing")
	maxN := fs.Int("max", 0, "re-drive at most `n` dead letters, oldest first (0: all)")
	fs.Usage = app.Usage(fs, "usage: sinks dlq redrive --sink NAME [--dry-run] [--max N]\n\nPublishes the dead letters of a sink (dlq.sink.<name>.>) back to routed.<name>.<type>,\noldest first, and deletes each from the DLQ stream once JetStream stored it again,\nso running redrive twice sends nothing twice. Run it once the sink's destination\nworks again; events that fail again become new dead letters. Router and ingest dead\nletters cannot be re-driven: their payload is not an event.",
		"  sinks dlq redrive --config mailtel.toml --sink siem --dry-run\n  sinks dlq redrive --config mailtel.toml --sink siem --max 100")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("dlq redrive: unexpected argument %q (name the sink with --sink)", pos[0])
	}
	if *sink == "" {
		return errors.New("dlq redrive: --sink NAME is required; only a sink's dead letters (dlq.sink.<name>.>) can be re-driven, " +
			"router and ingest dead letters hold input that is not an event")
	}
	if *maxN < 0 {
		return fmt.Errorf("dlq redrive: --max %d: must not be negative", *maxN)
	}
	if _, err := (dlqtool.Filter{Sink: *sink}).Subject(); err != nil {
		return fmt.Errorf("dlq redrive: %w", err)
	}
	cfg, js, closeConn, err := f.connect(ctx)
	if err != nil {
		return err
	}
	defer closeConn()
	routed := cfg.Streams.RoutedStream(*sink)
	if _, err := js.Consumer(ctx, routed, pipeline.SinkConsumerName(*sink)); errors.Is(err, jetstream.ErrConsumerNotFound) {
		fmt.Fprintf(stderr, "warning: sink %s has no consumer on %s yet; re-driven events wait there until the sink runs\n", *sink, routed)
	}
	outcomes, err := dlqtool.Redrive(ctx, js, cfg.Streams.DLQ, *sink, dlqtool.RedriveOptions{DryRun: *dry, Max: *maxN, RoutedStream: routed})
	verb := "redriven"
	if *dry {
		verb = "would redrive"
	}
	sent, skipped := 0, 0
	for _, o := range outcomes {
		if o.Skipped != "" {
			skipped++
			fmt.Fprintf(stdout, "skipped %d: %s\n", o.Letter.Seq, o.Skipped)
			continue
		}
		sent++
		fmt.Fprintf(stdout, "%s %d -> %s (event %s)\n", verb, o.Letter.Seq, o.Target, o.Letter.EventID)
	}
	if err != nil {
		return err
	}
	if len(outcomes) == 0 {
		fmt.Fprintf(stdout, "no dead letters of sink %s (dlq.sink.%s.>)\n", *sink, *sink)
		if *sink == "router" || *sink == "ingest" {
			fmt.Fprintf(stdout, "note: the %s stage's dead letters (dlq.%s.>) cannot be re-driven: their payload is not an event\n", *sink, *sink)
		}
	}
	if *dry {
		fmt.Fprintf(stdout, "dry run: would redrive %d, skip %d; nothing changed\n", sent, skipped)
		return nil
	}
	fmt.Fprintf(stdout, "redriven %d, skipped %d\n", sent, skipped)
	return nil
}
