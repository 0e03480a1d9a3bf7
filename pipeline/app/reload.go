package app

import (
	"bytes"
	"context"
	"crypto/sha256"
	"os"
	"os/signal"
	"reflect"
	"strings"
	"syscall"
	"time"

	"github.com/mailtel/mailtel/pipeline/config"
)

// WatchInterval is how often --watch reads the configuration file. The
// file is read, not watched with inotify: an editor that saves by rename,
// and a Kubernetes ConfigMap updated by swapping a symlink, both show up
// as new content at the same path.
const WatchInterval = 2 * time.Second

// Reloads are the requests to reload a running process's configuration:
// SIGHUP, and with watch, new content in the configuration file.
type Reloads struct {
	c    chan string // the reason of each request
	stop func()
}

// ListenReloads starts listening for reload requests. Call it before the
// configuration is loaded, so that a SIGHUP that arrives while the
// process starts is a reload and not the end of the process (SIGHUP's
// default action), and so that an edit made meanwhile is not missed.
// Close stops it.
func ListenReloads(path string, watch bool) *Reloads {
	r := &Reloads{c: make(chan string, 1)}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	done := make(chan struct{})
	r.stop = func() { signal.Stop(hup); close(done) }
	go func() {
		var poll <-chan time.Time
		var last [sha256.Size]byte
		if watch && path != "" {
			last = fileSum(path)
			t := time.NewTicker(WatchInterval)
			defer t.Stop()
			poll = t.C
		}
		for {
			select {
			case <-done:
				return
			case <-hup:
				r.request("SIGHUP")
			case <-poll:
				// A file caught half written is read again at the next
				// tick, and then reloaded if it changed since this one.
				if sum := fileSum(path); sum != last {
					last = sum
					r.request("file changed")
				}
			}
		}
	}()
	return r
}

// request queues a reload; one already waiting covers this one too.
func (r *Reloads) request(why string) {
	select {
	case r.c <- why:
	default:
	}
}

// Close stops listening; SIGHUP has its default action again.
func (r *Reloads) Close() { r.stop() }

// fileSum is the SHA-256 of the file's content; that of no content when
// it cannot be read (the reload then says why).
func fileSum(path string) [sha256.Size]byte {
	b, err := os.ReadFile(path)
	if err != nil {
		return sha256.Sum256(nil)
	}
	return sha256.Sum256(bytes.TrimSpace(b))
}

// reloadTimeout bounds what a reload asks of NATS (the streams of added
// sinks): with NATS unreachable the reload fails, and the next one is not
// held up behind it.
const reloadTimeout = 30 * time.Second

// Reloader is what a process does on a reload request.
type Reloader struct {
	// Load reads and validates the configuration as the process did at
	// start, command-line overrides included.
	Load func() (*config.Config, error)
	// Apply makes the running process follow c, and says what changed
	// ("" for nothing). When it fails, the process must still be running
	// as before (or as much of it as it says in the error).
	Apply func(ctx context.Context, c *config.Config) (string, error)
}

// Reload serves reload requests until ctx ends: each one loads the file
// and, if it is valid, applies it; an invalid file leaves the running
// configuration as it is and says why. What a process can only take at
// start (see KeepUnreloadable) keeps its running value, with a warning.
// Every request is logged and counted in
// mailtel_config_reloads_total{result="success"|"failure"}.
func (p *Process) Reload(ctx context.Context, rs *Reloads, r Reloader) {
	for {
		select {
		case <-ctx.Done():
			return
		case why := <-rs.c:
			p.reload(ctx, why, r)
		}
	}
}

func (p *Process) reload(ctx context.Context, why string, r Reloader) {
	fail := func(err error, msg string) {
		p.Metrics.Reloads.WithLabelValues("failure").Inc()
		p.Metrics.ReloadOK.Set(0)
		p.Log.Error().Err(err).Str("trigger", why).Str("config", p.Config.Path).Msg(msg)
	}
	c, err := r.Load()
	if err != nil {
		fail(err, "configuration reload refused: the running configuration stays")
		return
	}
	if reflect.DeepEqual(c.NATS, p.natsAsLoaded) {
		c.NATS = p.Config.NATS // the embedded server's URL, say
	}
	kept := KeepUnreloadable(p.Config, c)
	// Validated again as it will run: credentials from the file with the
	// running listener, say.
	if err := c.Validate(); err != nil {
		fail(err, "configuration reload refused: the running configuration stays")
		return
	}
	for _, w := range c.Warnings {
		p.Log.Warn().Msg("configuration: " + w)
	}
	if len(kept) > 0 {
		p.Log.Warn().Strs("sections", kept).Msg("configuration reload: these changed and take effect only after a restart; their running values stay")
	}
	actx, cancel := context.WithTimeout(ctx, reloadTimeout)
	defer cancel()
	changed, err := r.Apply(actx, c)
	if err != nil {
		fail(err, "configuration reload failed")
		return
	}
	p.Config = c
	p.Metrics.Reloads.WithLabelValues("success").Inc()
	p.Metrics.ReloadOK.Set(1)
	if changed == "" {
		changed = "nothing this process runs"
	}
	p.Log.Info().Str("trigger", why).Str("config", c.Path).Str("changed", changed).Msg("configuration reloaded")
}

// KeepUnreloadable copies into next the settings a running process cannot
// change (the NATS connection or embedded server, the streams, logging,
// the routers' consumer and workers, the sinks' pull batch, ack wait and
// health address, the ingest listener and its limits), and returns the
// names of those that differed. What reloads: the level overrides, every
// sink section (rules, destinations, headers, retry; sinks added and
// removed), [sinks] discard-after and max-backoff, and the ingest
// credentials.
func KeepUnreloadable(running, next *config.Config) []string {
	var kept []string
	keep := func(name string, run, nxt any) {
		if !reflect.DeepEqual(reflect.ValueOf(run).Elem().Interface(), reflect.ValueOf(nxt).Elem().Interface()) {
			kept = append(kept, name)
			reflect.ValueOf(nxt).Elem().Set(reflect.ValueOf(run).Elem())
		}
	}
	keep("[nats]", &running.NATS, &next.NATS)
	keep("[streams]", &running.Streams, &next.Streams)
	keep("[logging]", &running.Logging, &next.Logging)
	keep("[router]", &running.Router, &next.Router)
	keep("[sinks] batch", &running.Sinks.Batch, &next.Sinks.Batch)
	keep("[sinks] ack-wait", &running.Sinks.AckWait, &next.Sinks.AckWait)
	keep("[sinks] http", &running.Sinks.HTTP, &next.Sinks.HTTP)
	// Of [publisher], the credentials reload; the rest is the listener.
	runPub, nextPub := running.Publisher, next.Publisher
	runPub.Token, runPub.User, runPub.Password, runPub.SignatureKey = "", "", "", ""
	nextPub.Token, nextPub.User, nextPub.Password, nextPub.SignatureKey = "", "", "", ""
	if !reflect.DeepEqual(runPub, nextPub) {
		kept = append(kept, "[publisher] (but its credentials)")
		cred := next.Publisher
		next.Publisher = running.Publisher
		next.Publisher.Token, next.Publisher.User, next.Publisher.Password, next.Publisher.SignatureKey =
			cred.Token, cred.User, cred.Password, cred.SignatureKey
	}
	return kept
}

// Changes describes what differs between two lists of names: "added a, b;
// removed c; changed d", or "" when nothing does.
func Changes(added, removed, changed []string) string {
	var parts []string
	for _, p := range []struct {
		verb  string
		names []string
	}{{"added", added}, {"removed", removed}, {"changed", changed}} {
		if len(p.names) > 0 {
			parts = append(parts, p.verb+" "+strings.Join(p.names, ", "))
		}
	}
	return strings.Join(parts, "; ")
}
