// Command router runs mailtel's routers: workers bound to one durable
// consumer on EVENTS that copy each event to the ROUTED subjects of the
// sinks that want it. With no NATS URL configured it starts an embedded
// NATS server with JetStream first.
//
//	router [run] --config mailtel.toml [--workers N] [--nats URLS]
//	router up [--config mailtel.toml] [--rate 200]   everything in one process
//	router status [--config mailtel.toml] [--watch [2s]] [--json]
//	router validate --config mailtel.toml
//	router config [--config mailtel.toml] [--nats URLS] [--json]
//	router catalog [--json] [--config mailtel.toml]
package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/mailtel/mailtel/pipeline/app"
)

func main() {
	app.TuneGC()
	app.Main("router", func(ctx context.Context) error { return run(ctx, os.Args[1:], os.Stdout, os.Stderr) })
}

const usage = `usage: router [command] [flags]

Commands:
  run        route events from EVENTS to the sinks' subjects (the default)
  up         run the whole pipeline in one process: embedded NATS, router,
             sinks and a synthetic publisher (a demo, or a single machine)
  replay     run history from EVENTS through the rules of a configuration
  status     which sink is behind, by how much, how fast, how many dead
             letters: streams, consumers and sinks in one screen (--watch)
  validate   check a configuration file and print every error
  config     print the effective configuration: defaults filled in, secrets
             redacted (--json)
  catalog    list every event type: id, source, native name, level, description

Run "router COMMAND --help" for the flags of a command, "router --version" for the
version.
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd, args := app.Command(args, "run")
	switch cmd {
	case "run":
		return runRouter(ctx, args, stderr)
	case "up":
		return runUp(ctx, args, stdout, stderr)
	case "replay":
		return runReplay(ctx, args, stdout, stderr)
	case "status":
		return runStatus(ctx, args, stdout, stderr)
	case "validate":
		return runValidate(args, stdout, stderr)
	case "config":
		return runConfig(args, stdout, stderr)
	case "catalog":
		return runCatalog(args, stdout, stderr)
	case "help":
		fmt.Fprint(stdout, usage)
		return nil
	case "version":
		fmt.Fprintln(stdout, app.Version("router"))
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", cmd)
}
