package main

import (
	"flag"
	"fmt"
	"io"

	"github.com/mailtel/mailtel/pipeline/app"
)

const configSynopsis = `usage: router config [--config FILE] [--nats URLS] [--json]

Prints the configuration the processes run with: the file loaded and validated
as they load it (--nats and --log-level applied), every section and key with
its effective value, defaults filled in, in the names the file uses
([tracer.<id>], [webhook.<id>], [metrics.prometheus], [nats], ...). Without
--config, the defaults. The TOML is itself a valid configuration file; --json
prints the same as one JSON object.

Secrets never appear: a password, token, signature key, auth.secret or
webhook header value shows the %{env:NAME}% or %{file:PATH}% reference the file
gave, or "<redacted>" when the file held the value itself; URLs show their
password and query values as xxxxx. Warnings go to stderr; an invalid file
prints its errors, like validate, and nothing on stdout.`

const configExample = `  router config --config mailtel.toml
  router config --config mailtel.toml --json | jq '.webhook'
  diff <(router config --config old.toml) <(router config --config new.toml)`

// runConfig is `router config`: the effective configuration on stdout.
func runConfig(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("router config", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f app.Flags
	f.Register(fs)
	asJSON := fs.Bool("json", false, "print JSON instead of TOML")
	fs.Usage = app.Usage(fs, configSynopsis, configExample)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("router config: unexpected argument %q (see --help)", fs.Arg(0))
	}
	cfg, err := f.Load()
	if err != nil {
		return err
	}
	for _, w := range cfg.Warnings {
		fmt.Fprintln(stderr, "warning:", w)
	}
	out := cfg.EffectiveTOML()
	if *asJSON {
		out = cfg.EffectiveJSON()
	}
	_, err = stdout.Write(out)
	return err
}
