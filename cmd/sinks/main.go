// Command sinks runs mailtel's sinks: each configured tracer, webhook and
// the metrics sink reads its routed.<sink>.> subjects from a durable
// consumer shared by every instance of that sink, and acks an event only
// after writing it.
//
//	sinks [run] --config mailtel.toml [--sink NAME ...] [--instance ID]
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/mailtel/mailtel/pipeline/app"
	"github.com/mailtel/mailtel/pipeline/sinks"
)

func main() {
	app.TuneGC()
	app.Main("sinks", func(ctx context.Context) error { return run(ctx, os.Args[1:], os.Stdout, os.Stderr) })
}

const usage = `usage: sinks [command] [flags]

Commands:
  run      run the configured sinks (the default)
  replay   re-deliver a sink's history through its writer
  tail     print decoded events of subjects live (wildcards allowed)
  dlq      list, show and re-drive dead letters

Run "sinks COMMAND --help" for the flags of a command, "sinks --version" for the
version.
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd, args := app.Command(args, "run")
	switch cmd {
	case "run":
		return runSinks(ctx, args, stdout, stderr)
	case "replay":
		return runReplay(ctx, args, stdout, stderr)
	case "tail":
		return runTail(ctx, args, stdout, stderr)
	case "dlq":
		return runDLQ(ctx, args, stdout, stderr)
	case "help":
		fmt.Fprint(stdout, usage)
		return nil
	case "version":
		fmt.Fprintln(stdout, app.Version("sinks"))
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", cmd)
}

// names is a repeatable --sink flag.
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

func runSinks(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("sinks run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f app.Flags
	f.Register(fs)
	var only names
	fs.Var(&only, "sink", "run only this sink `name` (repeatable; default: every configured sink)")
	instance := fs.String("instance", "", "pin this process's log files to instance `id` (<prefix>.<id>.<date>), waiting for a predecessor that holds it; default: the first free instance slot")
	httpAddr := fs.String("http", "", "`address` of /healthz, /readyz, /metrics (overrides [sinks] http; when its port is taken, a free port of the same host, logged)")
	watch := fs.Bool("watch", false, "reload the configuration when its file changes (SIGHUP always reloads)")
	fs.Usage = app.Usage(fs, "usage: sinks [run] [--config FILE] [--sink NAME ...] [--instance ID]\n\n"+
		"Runs the configured sinks. Instances of one sink share its durable consumer and\n"+
		"split the work; run the same command again to write faster. Each log sink takes\n"+
		"the first free instance slot of its files (<prefix>.<date>, then <prefix>.2.<date>,\n"+
		"...) unless --instance pins it. The metrics sink runs in one process only.\n"+
		"SIGHUP (or, with --watch, saving the file) reloads the sinks: changed ones restart\n"+
		"between batches, added ones start, removed ones stop; an invalid file is refused\n"+
		"and the running configuration stays.",
		"  sinks --config mailtel.toml\n  sinks --config mailtel.toml --sink siem        # the same command again: one more instance\n"+
			"  sinks --config mailtel.toml --sink log --instance b")
	if err := fs.Parse(args); err != nil {
		return err
	}
	reloads := app.ListenReloads(f.Config, *watch)
	defer reloads.Close()
	cfg, err := f.Load()
	if err != nil {
		return err
	}
	if *httpAddr != "" {
		cfg.Sinks.HTTP = *httpAddr
	}
	p, err := app.Start(ctx, cfg, app.Options{Name: "sinks", HTTP: cfg.Sinks.HTTP})
	if err != nil {
		return err
	}
	defer p.Close()
	set, err := sinks.Start(ctx, p, only, sinks.Options{Instance: *instance, Stdout: stdout})
	if err != nil {
		return err
	}
	go p.Reload(ctx, reloads, app.Reloader{Load: f.Load, Apply: set.Apply})
	err = set.Wait()
	p.Log.Info().Msg("sinks stopped")
	return err
}
