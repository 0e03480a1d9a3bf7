package main

import (
	"flag"
	"fmt"
	"io"

	"github.com/mailtel/mailtel/pipeline/app"
	"github.com/mailtel/mailtel/pipeline/config"
)

// runValidate checks a configuration file: every error goes to stderr and
// makes it fail; warnings go to stderr prefixed "warning:" and do not; the
// summary of a valid file goes to stdout.
func runValidate(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("router validate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "configuration `file` to check (required)")
	fs.Usage = app.Usage(fs, "usage: router validate --config FILE\n\nChecks the file and prints every error with its key path; exits non-zero if there is any.\nWarnings (an event id the catalog does not have, say) go to stderr too, prefixed\n\"warning:\"; a file with only warnings is valid.",
		"  router validate --config mailtel.toml")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *cfgPath == "" {
		return fmt.Errorf("validate: --config is required")
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return fmt.Errorf("%s is not valid", *cfgPath)
	}
	for _, w := range cfg.Warnings {
		fmt.Fprintln(stderr, "warning:", w)
	}
	fmt.Fprintf(stdout, "%s is valid: %d sinks (", *cfgPath, len(cfg.SinkSpecs()))
	for i, s := range cfg.SinkSpecs() {
		if i > 0 {
			fmt.Fprint(stdout, ", ")
		}
		fmt.Fprintf(stdout, "%s:%s", s.Name, s.Kind)
		if s.ServerFanOut {
			fmt.Fprint(stdout, " fed by the server")
		}
	}
	fmt.Fprintf(stdout, "), %d level overrides\n", len(cfg.Tracing.Overrides))
	return nil
}
