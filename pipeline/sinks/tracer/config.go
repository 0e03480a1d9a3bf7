package tracer

import (
	"errors"
	"fmt"
	"path/filepath"

	"github.com/mailtel/mailtel/pipeline/sink"
)

// Tracer types: the kinds this package registers in `[tracer.<id>] type`.
const (
	TypeLog     = "log"
	TypeConsole = "console"
	TypeStdout  = "stdout"
)

// Config is a Stalwart `[tracer.<id>]` logger of type log, console or
// stdout. A pasted Stalwart section decodes into it unchanged.
type Config struct {
	Type   string `toml:"type" doc:"log (rotating files), console or stdout (standard output)"`
	Enable *bool  `toml:"enable" doc:"false keeps the section in the file without running it"`
	sink.LevelRule
	Path      string `toml:"path" doc:"the directory of a log tracer's files (required for log)"`
	Prefix    string `toml:"prefix" doc:"the start of a log tracer's file names"`
	Rotate    string `toml:"rotate" doc:"when a log tracer starts a new file: daily, hourly or never (UTC)"`
	Format    string `toml:"format" doc:"json (one object per line) or text (Stalwart's own line)"`
	Ansi      bool   `toml:"ansi" doc:"colours in the text format"`
	Multiline bool   `toml:"multiline" doc:"one field per line in the text format"`
	Lossy     bool   `toml:"lossy" doc:"accepted for Stalwart compatibility; mailtel never drops"`
	// Buffered is accepted for Stalwart compatibility.
	Buffered any `toml:"buffered" doc:"accepted for Stalwart compatibility and ignored"`
	sink.Retry
}

// NewConfig returns the defaults of a tracer of type typ: level info,
// daily rotation, prefix "mailtel", format json for a log tracer and text
// (what a person reads, as Stalwart prints it) on standard output.
func NewConfig(typ string) *Config {
	c := &Config{Type: typ, LevelRule: sink.LevelRule{Level: "info"}, Rotate: "daily", Prefix: "mailtel", Format: "json"}
	if typ != TypeLog {
		c.Format = "text"
	}
	return c
}

// Enabled reports whether the tracer runs (enable is not false).
func (c *Config) Enabled() bool { return c.Enable == nil || *c.Enable }

// Defaults sets events-policy to include when events is set.
func (c *Config) Defaults() {
	if len(c.Events) > 0 && c.EventsPolicy == "" {
		c.EventsPolicy = "include"
	}
}

// Validate checks the tracer's own keys.
func (c *Config) Validate() error {
	var errs []error
	add := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
	}
	if c.Type == TypeLog && c.Path == "" {
		add("path", "required for a log tracer")
	}
	switch c.Rotate {
	case "daily", "hourly", "never":
	default:
		add("rotate", "want daily, hourly or never, not %q", c.Rotate)
	}
	switch c.Format {
	case "json", "text":
	default:
		add("format", "want json or text, not %q", c.Format)
	}
	if c.Type == TypeLog {
		if err := checkNamePart(c.Prefix); err != nil {
			add("prefix", "%v", err)
		}
	}
	return errors.Join(errs...)
}

// Describe says where a log tracer writes.
func (c *Config) Describe() string {
	if c.Type != TypeLog {
		return fmt.Sprintf("writes %s lines to standard output", c.Format)
	}
	dir, err := filepath.Abs(c.Path)
	if err != nil {
		dir = c.Path
	}
	return fmt.Sprintf("writes %s lines to %s/%s.*", c.Format, dir, c.Prefix)
}

// Redirect returns a copy of a log tracer that writes under the directory
// to.
func (c *Config) Redirect(to string) (sink.Config, error) {
	if c.Type != TypeLog {
		return nil, fmt.Errorf("--to applies to a log tracer (a directory), not to a %s tracer", c.Type)
	}
	cp := *c
	cp.Path = to
	return &cp, nil
}

func init() {
	for _, k := range []struct{ typ, doc, stalwart string }{
		{TypeLog, "rotating log files, in JSON lines or Stalwart's text format", "Stalwart's log tracer; adds json format, events and mailtel's retry keys"},
		{TypeConsole, "events on standard output, in Stalwart's text format or JSON", "Stalwart's console tracer"},
		{TypeStdout, "events on standard output (as console)", "Stalwart's stdout tracer"},
	} {
		typ := k.typ
		sink.Register(sink.Factory{
			Kind: typ, Section: "tracer", Typed: true, Doc: k.doc, Stalwart: k.stalwart,
			NewConfig: func() sink.Config { return NewConfig(typ) },
			New: func(cfg sink.Config, set sink.Settings) (sink.Sink, error) {
				return New(set.Name, cfg.(*Config), Options{Instance: set.Instance, AnySlot: set.AnySlot, Stdout: set.Stdout, Log: set.Log})
			},
		})
	}
}

// Interface guards.
var (
	_ sink.Sink           = (*Sink)(nil)
	_ sink.WrittenChecker = (*Sink)(nil)
	_ sink.Skipper        = (*Sink)(nil)
	_ sink.Describer      = (*Config)(nil)
	_ sink.Redirecter     = (*Config)(nil)
)
