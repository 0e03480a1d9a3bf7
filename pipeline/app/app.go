// Package app is what every mailtel process does at start: read the
// configuration, set up logging, serve health and metrics, start the
// embedded NATS server when asked, connect, and create the streams.
package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/mailtel/mailtel/pipeline"
	"github.com/mailtel/mailtel/pipeline/config"
	"github.com/mailtel/mailtel/pipeline/config/value"
	"github.com/mailtel/mailtel/pipeline/obs"
)

// Flags are the flags every process takes.
type Flags struct {
	Config   string
	NATS     string
	LogLevel string
}

// Register adds --config, --nats and --log-level to fs.
func (f *Flags) Register(fs *flag.FlagSet) {
	fs.StringVar(&f.Config, "config", "", "configuration `file` (TOML); empty uses the defaults")
	fs.StringVar(&f.NATS, "nats", "", "NATS server `urls`, comma-separated (overrides [nats] url)")
	fs.StringVar(&f.LogLevel, "log-level", "", "process log `level` (overrides [logging] level)")
}

// Load reads the configuration, applies the flags and validates the
// result (so that --nats decides whether the [nats] settings are those of
// the embedded server or of a client).
func (f *Flags) Load() (*config.Config, error) {
	return config.LoadWith(f.Config, f.Apply)
}

// Apply sets what the flags override in c.
func (f *Flags) Apply(c *config.Config) {
	if f.NATS != "" {
		c.NATS.URL = f.NATS
	}
	if f.LogLevel != "" {
		c.Logging.Level = f.LogLevel
	}
}

// Options say what a process needs at start.
type Options struct {
	// Name is the process name, used in logs and the NATS connection name.
	Name string
	// Embedded starts the embedded NATS server when the configuration has
	// no NATS URL, unless another process (another router) listens on
	// [nats] listen already: then the process connects to that server.
	Embedded bool
	// HTTP is the address of /healthz, /readyz and /metrics ("" for none).
	HTTP string
	// MaxPending is the async publish window of the JetStream context.
	MaxPending int
	// LogOutput, when set, receives the process log (as JSON lines)
	// instead of stderr.
	LogOutput io.Writer
}

// Process is a started mailtel process.
type Process struct {
	Config   *config.Config
	Log      zerolog.Logger
	Metrics  *obs.Metrics
	Health   *obs.Health
	Conn     *nats.Conn
	JS       jetstream.JetStream
	Embedded *pipeline.Embedded
	// HTTPAddr is where health and metrics are served.
	HTTPAddr string
	// natsAsLoaded is [nats] as the file gave it: Start sets the
	// embedded server's URL in Config.NATS.
	natsAsLoaded config.NATS
}

// connectWait is how long Start waits for a NATS server to answer.
const connectWait = 30 * time.Second

// Start brings a process up. Close undoes it.
func Start(ctx context.Context, c *config.Config, o Options) (*Process, error) {
	p := &Process{Config: c, Log: obs.NewLogger(c.Logging.Level, c.Logging.Format, o.Name),
		Metrics: obs.NewMetrics(), Health: obs.NewHealth("nats"), natsAsLoaded: c.NATS}
	if o.LogOutput != nil {
		p.Log = p.Log.Output(o.LogOutput)
	}
	for _, w := range c.Warnings {
		p.Log.Warn().Msg("configuration: " + w)
	}
	var err error
	if p.HTTPAddr, err = obs.Serve(ctx, o.HTTP, p.Metrics, p.Health, p.Log); err != nil {
		return nil, err
	}
	if o.Embedded && c.NATS.URL == "" && listenTaken(c.NATS.Listen) {
		// Another process on this machine (the first router) already
		// hosts the embedded server: a second server could not use the
		// port, nor the store directory. Connect to it like the sinks do.
		p.Log.Info().Str("listen", c.NATS.Listen).
			Msg("[nats] listen is taken, most likely by the embedded NATS server of another router on this machine: connecting to it instead of starting one")
	} else if o.Embedded && c.NATS.URL == "" {
		if p.Embedded, err = pipeline.StartEmbedded(c.NATS); err != nil {
			return nil, err
		}
		if os.Getenv("GOGC") == "" {
			debug.SetGCPercent(EmbeddedGCPercent)
		}
		p.Log.Info().Str("url", p.Embedded.URL()).Str("store", c.NATS.StoreDir).Msg("embedded NATS server with JetStream started")
		c.NATS.URL = p.Embedded.URL()
	}
	// A process may start just before the router that hosts the embedded
	// server: wait for it, but say within seconds what is being waited for.
	cctx, cancel := context.WithTimeout(ctx, connectWait)
	defer cancel()
	waiting := time.AfterFunc(2*time.Second, func() {
		p.Log.Warn().Str("url", value.RedactURL(pipeline.ServerURL(c.NATS))).Str("gives_up_in", (connectWait - 2*time.Second).String()).
			Msg("waiting for NATS: " + pipeline.NoServerHint(c.NATS))
	})
	p.Conn, p.JS, err = pipeline.Connect(cctx, c.NATS, "mailtel-"+o.Name, o.MaxPending)
	waiting.Stop()
	if err != nil {
		p.Close()
		return nil, err
	}
	p.Conn.SetDisconnectErrHandler(func(nc *nats.Conn, err error) {
		p.Health.Set("nats", errors.New("disconnected"))
		if !nc.IsDraining() && !nc.IsClosed() {
			p.Log.Warn().Err(err).Msg("disconnected from NATS")
		}
	})
	p.Conn.SetReconnectHandler(func(nc *nats.Conn) {
		p.Health.Set("nats", nil)
		p.Log.Info().Str("url", value.RedactURL(nc.ConnectedUrl())).Msg("reconnected to NATS")
	})
	if err := pipeline.EnsureStreams(cctx, p.JS, c); err != nil {
		p.Close()
		return nil, err
	}
	p.Health.Set("nats", nil)
	p.Log.Debug().Str("url", value.RedactURL(p.Conn.ConnectedUrl())).Msg("connected")
	return p, nil
}

// listenTaken reports whether another process listens on addr.
func listenTaken(addr string) bool {
	ln, err := net.Listen("tcp", addr)
	if err == nil {
		ln.Close()
	}
	return obs.AddrInUse(err)
}

// Close drains the connection and stops the embedded server. It is
// idempotent.
func (p *Process) Close() {
	if p.Conn != nil {
		p.Conn.Drain()
		for i := 0; i < 100 && !p.Conn.IsClosed(); i++ {
			time.Sleep(20 * time.Millisecond)
		}
		p.Conn.Close()
		p.Conn = nil
	}
	if p.Embedded != nil {
		p.Embedded.Close()
		p.Embedded = nil
	}
}

// Usage returns a flag.FlagSet Usage func printing a synopsis, the flags
// and an example.
func Usage(fs *flag.FlagSet, synopsis, example string) func() {
	return func() {
		out := fs.Output()
		fmt.Fprintf(out, "%s\n\nFlags:\n", synopsis)
		fs.PrintDefaults()
		if example != "" {
			fmt.Fprintf(out, "\nExample:\n%s\n", example)
		}
	}
}

// GCPercent is the garbage collector target the mailtel processes use
// unless GOGC is set: events are short-lived, and a larger target trades
// a few tens of MiB for about 40% less router CPU per event
// (go tool task bench: 11.4 -> 6.4 µs/event, peak RSS 31 -> 48 MiB).
const GCPercent = 400

// EmbeddedGCPercent is the garbage collector target of a process that runs
// the embedded NATS server (unless GOGC is set). The server's live heap
// grows with its duplicate windows, by about 250 bytes for every message
// id the windows hold (events/s x [streams] duplicates, for EVENTS and
// again for every routed copy); GCPercent would let the heap grow to five
// times that (measured at 9,000 events/s: 3.0 GiB after 3.5 minutes with
// 400; after 2 minutes 1.7 GiB with 400, 0.8 GiB with 100).
const EmbeddedGCPercent = 100

// Main is the body of every mailtel command's main: it runs run with a
// context that ends on SIGINT or SIGTERM, prints an error as "name: error"
// and exits 1. flag.ErrHelp (the usage was printed) exits 0, and so does a
// process stopped while it was still starting (see Failure). Main is the
// only place a mailtel command exits.
func Main(name string, run func(ctx context.Context) error) {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := Failure(ctx, run(ctx))
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(1)
	}
}

// Failure returns the error a command's run returned under ctx, or nil
// when it is no failure: flag.ErrHelp, or the cancellation of ctx itself
// (SIGTERM while the process was still starting, say creating its
// consumer: it was asked to stop, and stopped).
func Failure(ctx context.Context, err error) error {
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if ctx.Err() != nil && errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// TuneGC applies GCPercent unless the GOGC environment variable is set.
func TuneGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(GCPercent)
	}
}

// ParseInterspersed parses flags that may stand before, between or after
// the positional arguments, and returns the positional arguments.
func ParseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// Command splits a command line into its command and the command's
// arguments: the first argument when it is not a flag, else def. As the
// first argument, -h, -help, --help and help ask for the usage (command
// "help"), and -version, --version and version for the version ("version").
func Command(args []string, def string) (string, []string) {
	if len(args) == 0 {
		return def, args
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		return "help", args[1:]
	case "-version", "--version", "version":
		return "version", args[1:]
	}
	if args[0] != "" && args[0][0] != '-' {
		return args[0], args[1:]
	}
	return def, args
}

// Version returns "<name> <module version> (<vcs revision>[, modified],
// <go version>)" from the binary's build information.
func Version(name string) string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return name + " (no build information)"
	}
	v := bi.Main.Version
	if v == "" {
		v = "(devel)"
	}
	var rev, modified string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				modified = ", modified"
			}
		}
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if rev == "" {
		rev = "revision unknown"
	}
	return fmt.Sprintf("%s %s (%s%s, %s)", name, v, rev, modified, bi.GoVersion)
}
