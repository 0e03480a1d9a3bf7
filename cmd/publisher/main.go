// Command publisher puts mail-server events on the EVENTS stream.
//
//	publisher file PATH|-                  lines in any ingest format (detected per line)
//	publisher ingest [--listen ADDR]       POST /v1/ingest/<format> for every ingest format
//	publisher gen --count N --rate R --seed S   synthetic mail traffic
//
// Every event is acknowledged to its sender only after JetStream stored it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"runtime/debug"
	"strings"
	"time"

	"github.com/mailtel/mailtel/pipeline"
	"github.com/mailtel/mailtel/pipeline/app"
	"github.com/mailtel/mailtel/pipeline/config"
	"github.com/mailtel/mailtel/pipeline/ingest"
	"github.com/mailtel/mailtel/pipeline/ingest/format"
	_ "github.com/mailtel/mailtel/pipeline/ingest/formats" // the formats publisher takes
	"github.com/mailtel/mailtel/pipeline/synth"
)

func main() {
	app.TuneGC()
	app.Main("publisher", func(ctx context.Context) error { return run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr) })
}

const usage = `usage: publisher COMMAND [flags]

Commands:
  file PATH|-   publish events, one a line, in any ingest format (listed by file --help)
  ingest        serve POST /v1/ingest/<format> for every ingest format (stalwart, dovecot, ...)
  gen           publish synthetic mail traffic

Run "publisher COMMAND --help" for the flags of a command, "publisher --version"
for the version.
`

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	cmd, args := app.Command(args, "")
	switch cmd {
	case "":
		fmt.Fprint(stderr, usage)
		return errors.New("no command")
	case "file":
		return runFile(ctx, args, stdin, stdout, stderr)
	case "ingest":
		return runIngest(ctx, args, stderr)
	case "gen":
		return runGen(ctx, args, stdout, stderr)
	case "help":
		fmt.Fprint(stdout, usage)
		return nil
	case "version":
		fmt.Fprintln(stdout, app.Version("publisher"))
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", cmd)
}

func start(ctx context.Context, f *app.Flags, httpAddr string) (*app.Process, *pipeline.Publisher, error) {
	cfg, err := f.Load()
	if err != nil {
		return nil, nil, err
	}
	p, err := app.Start(ctx, cfg, app.Options{Name: "publisher", HTTP: httpAddr, MaxPending: cfg.Publisher.MaxInFlight * 2})
	if err != nil {
		return nil, nil, err
	}
	return p, pipeline.NewPublisher(p.JS, cfg.Levels, cfg.Publisher.MaxInFlight, p.Metrics), nil
}

func runFile(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("publisher file", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f app.Flags
	f.Register(fs)
	fs.Usage = app.Usage(fs, "usage: publisher file [--config FILE] PATH|-\n\nPublishes every line of PATH (or stdin for -): one event in any of these formats,\ndetected per line:\n"+formatList()+"\nBad lines (unparsable, over the limits, or larger than the NATS server's max payload)\nare reported with their line number and dead-lettered; the rest go on.\nExits 0 once every event is acknowledged by JetStream, 1 if any line failed.",
		"  publisher file events.jsonl\n  tail -F /var/log/dovecot-events.jsonl | publisher file -")
	paths, err := app.ParseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(paths) != 1 {
		fs.Usage()
		return errors.New("file: want exactly one PATH or -")
	}
	var in io.Reader = stdin
	if path := paths[0]; path != "-" {
		fh, err := os.Open(path)
		if err != nil {
			return fmt.Errorf("open events file: %w", err)
		}
		defer fh.Close()
		in = fh
	}
	p, pub, err := start(ctx, &f, "")
	if err != nil {
		return err
	}
	defer p.Close()
	began := time.Now()
	counts, err := ingest.FileLimits(ctx, in, pub, p.JS, ingest.LimitsFrom(p.Config.Publisher), func(r ingest.Rejection) {
		fmt.Fprintf(stderr, "line %d: %v\n", r.Line, r.Err)
	})
	pub.Close(context.Background())
	fmt.Fprintf(stdout, "published %d, duplicate %d, rejected %d, failed %d, dead-lettered %d in %s\n",
		counts.Published, counts.Duplicate, counts.Rejected, counts.Failed, counts.DeadLettered, time.Since(began).Round(time.Millisecond))
	if err != nil {
		return err
	}
	if counts.Rejected+counts.Failed > 0 {
		err := fmt.Errorf("%d lines were not published", counts.Rejected+counts.Failed)
		if lost := counts.Rejected - counts.DeadLettered; lost > 0 {
			err = fmt.Errorf("%w; %d rejected lines could not be dead-lettered either", err, lost)
		}
		return err
	}
	return nil
}

func runIngest(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("publisher ingest", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f app.Flags
	f.Register(fs)
	listen := fs.String("listen", "", "`address` to serve on (overrides [publisher] listen, default 127.0.0.1:8025)")
	httpAddr := fs.String("http", "127.0.0.1:9103", "`address` of /healthz, /readyz, /metrics")
	watch := fs.Bool("watch", false, "reload the credentials when the configuration file changes (SIGHUP always reloads)")
	fs.Usage = app.Usage(fs, "usage: publisher ingest [--config FILE] [--listen ADDR]\n\nServes POST /v1/ingest/<format>, with Content-Type: application/json, for these formats:\n"+formatList()+"\nAnswers 200 only after JetStream stored every event and every dead letter; 4xx with a\nJSON reason for bad input; 503 when something could not be stored (NATS down), or,\nwith Retry-After, when max-in-flight-bytes of requests are in flight.\nAuthentication ([publisher] token, user/password, signature-key) is checked before a\nbody is read, and required when listening beyond loopback. SIGHUP (or, with --watch,\nsaving the file) reloads them: rotate a token without dropping a request.",
		"  publisher ingest --listen 0.0.0.0:8025 --config mailtel.toml\n  # Stalwart: [webhook.mailtel] url = \"http://mailtel:8025/v1/ingest/stalwart\"")
	if err := fs.Parse(args); err != nil {
		return err
	}
	reloads := app.ListenReloads(f.Config, *watch)
	defer reloads.Close()
	// --listen is validated with the file: beyond loopback, only with
	// authentication.
	load := func() (*config.Config, error) {
		return config.LoadWith(f.Config, func(c *config.Config) {
			f.Apply(c)
			if *listen != "" {
				c.Publisher.Listen = *listen
			}
		})
	}
	cfg, err := load()
	if err != nil {
		return err
	}
	limitMemory(cfg.Publisher)
	p, err := app.Start(ctx, cfg, app.Options{Name: "publisher", HTTP: *httpAddr, MaxPending: cfg.Publisher.MaxInFlight * 2})
	if err != nil {
		return err
	}
	defer p.Close()
	pub := pipeline.NewPublisher(p.JS, cfg.Levels, cfg.Publisher.MaxInFlight, p.Metrics)
	defer pub.Close(context.Background())
	ln, err := net.Listen("tcp", cfg.Publisher.Listen)
	if err != nil {
		return fmt.Errorf("listen for ingest on %s: %w", cfg.Publisher.Listen, err)
	}
	h := ingest.NewHandler(pub, p.JS, cfg.Publisher, p.Log, p.Metrics)
	p.Log.Info().Str("listen", ln.Addr().String()).Strs("formats", format.Names()).Msg("ingest listening: POST " + ingest.PathPrefix + "<format>")
	go p.Reload(ctx, reloads, app.Reloader{Load: load, Apply: func(_ context.Context, c *config.Config) (string, error) {
		if h.SetCredentials(c.Publisher) {
			return "ingest credentials", nil
		}
		return "", nil
	}})
	return h.Serve(ctx, ln)
}

// formatList lists the registered ingest formats, a line each.
func formatList() string {
	var b strings.Builder
	for _, f := range format.All() {
		fmt.Fprintf(&b, "  %-10s %s\n", f.Name, f.Doc)
	}
	return b.String()
}

// limitMemory sets the soft memory limit of the ingest process, unless
// GOMEMLIMIT is set: IngestMemoryBase + IngestMemoryPerByte bytes for each
// byte of max-in-flight-bytes. The GC target of the processes (see
// app.TuneGC) lets the heap grow to five times what is live; the limit
// makes the collector work harder instead once requests hold that much.
func limitMemory(p config.Publisher) {
	if os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	inFlight := int64(p.MaxInFlightBytes)
	if inFlight <= 0 {
		inFlight = ingest.DefaultMaxInFlightBytes
	}
	debug.SetMemoryLimit(IngestMemoryBase + IngestMemoryPerByte*inFlight)
}

// The soft memory limit of `publisher ingest` (see limitMemory).
const (
	IngestMemoryBase    = 64 << 20
	IngestMemoryPerByte = 3
)

func runGen(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("publisher gen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f app.Flags
	f.Register(fs)
	count := fs.Int64("count", 1000, "events to publish (0 = until interrupted)")
	rate := fs.Float64("rate", 0, "events per `second` (0 = as fast as JetStream takes them)")
	seed := fs.Uint64("seed", 1, "random `seed`: the same seed gives the same events (and ids)")
	fs.Usage = app.Usage(fs, "usage: publisher gen [--count N] [--rate R] [--seed S]\n\nPublishes realistic synthetic mail traffic: SMTP sessions, deliveries, IMAP,\nauthentication successes and failures, Dovecot events.",
		"  publisher gen --count 100000 --seed 7\n  publisher gen --count 0 --rate 500")
	if err := fs.Parse(args); err != nil {
		return err
	}
	p, pub, err := start(ctx, &f, "")
	if err != nil {
		return err
	}
	defer p.Close()
	began := time.Now()
	counts, err := ingest.Generate(ctx, pub, synth.New(synth.Options{Seed: *seed}), *count, *rate, func(c ingest.Counts) {
		fmt.Fprintf(stderr, "published %d, duplicate %d, failed %d\n", c.Published, c.Duplicate, c.Failed)
	})
	pub.Close(context.Background())
	fmt.Fprintf(stdout, "published %d, duplicate %d, failed %d in %s\n", counts.Published, counts.Duplicate, counts.Failed, time.Since(began).Round(time.Millisecond))
	return err
}
