package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"

	"github.com/mailtel/mailtel/catalog"
	"github.com/mailtel/mailtel/pipeline/app"
	"github.com/mailtel/mailtel/pipeline/config"
)

type catalogEntry struct {
	ID          string          `json:"id"`
	Source      string          `json:"source"`
	Native      string          `json:"native"`
	Level       catalog.Level   `json:"level"`
	Default     catalog.Level   `json:"default_level"`
	Description string          `json:"description"`
	Section     string          `json:"section,omitempty"`
	Fields      []catalog.Field `json:"fields,omitempty"`
}

func runCatalog(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("router catalog", flag.ContinueOnError)
	fs.SetOutput(stderr)
	asJSON := fs.Bool("json", false, "print JSON (one array) instead of tab-separated lines")
	cfgPath := fs.String("config", "", "configuration `file` whose [tracing.level] overrides apply")
	fs.Usage = app.Usage(fs, "usage: router catalog [--json] [--config FILE]\n\nPrints every event type, one per line, tab-separated:\nid, source, native name, effective level, description.",
		"  router catalog | grep '^auth\\.'\n  router catalog --config mailtel.toml --json")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return err
	}
	all := catalog.All()
	if *asJSON {
		out := make([]catalogEntry, len(all))
		for i := range all {
			t := &all[i]
			out[i] = catalogEntry{ID: t.ID, Source: t.Source.String(), Native: t.Native, Level: cfg.Levels.OfType(t),
				Default: t.Level, Description: t.Description, Section: t.Section, Fields: t.Fields}
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	for i := range all {
		t := &all[i]
		if _, err := fmt.Fprintf(stdout, "%s\t%s\t%s\t%s\t%s\n", t.ID, t.Source, t.Native, cfg.Levels.OfType(t), t.Description); err != nil {
			return err
		}
	}
	return nil
}
