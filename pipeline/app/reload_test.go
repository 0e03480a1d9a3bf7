package app

import (
	"os"
	"path/filepath"
	"reflect"
	"syscall"
	"testing"
	"time"

	"github.com/mailtel/mailtel/pipeline/config"
	"github.com/mailtel/mailtel/pipeline/sinks/tracer"
)

// TestKeepUnreloadable: what a running process cannot change keeps its
// running value and is named; the sinks, levels and ingest credentials
// are taken from the new file.
func TestKeepUnreloadable(t *testing.T) {
	parse := func(doc string) *config.Config {
		t.Helper()
		c, err := config.Parse([]byte(doc))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	running := parse(`
[nats]
listen = "127.0.0.1:4222"
[router]
workers = 2
[sinks]
batch = 500
max-backoff = "30s"
[publisher]
listen = "127.0.0.1:8025"
token = "old"
[tracer.log]
type = "log"
level = "info"
path = "logs"
`)
	next := parse(`
[nats]
listen = "127.0.0.1:5222"
[router]
workers = 4
[sinks]
batch = 100
max-backoff = "5s"
[publisher]
listen = "127.0.0.1:9025"
token = "new"
[tracing.level]
"auth.success" = "warn"
[tracer.log]
type = "log"
level = "trace"
path = "logs"
`)
	kept := KeepUnreloadable(running, next)
	want := []string{"[nats]", "[router]", "[sinks] batch", "[publisher] (but its credentials)"}
	if !reflect.DeepEqual(kept, want) {
		t.Errorf("kept %q, want %q", kept, want)
	}
	if next.NATS.Listen != "127.0.0.1:4222" || next.Router.Workers != 2 || next.Sinks.Batch != 500 || next.Publisher.Listen != "127.0.0.1:8025" {
		t.Errorf("unreloadable settings not kept: nats %s, workers %d, batch %d, ingest %s", next.NATS.Listen, next.Router.Workers, next.Sinks.Batch, next.Publisher.Listen)
	}
	if next.Sinks.MaxBackoff.D() != 5*time.Second || next.Publisher.Token != "new" || next.Sink("log").Config.(*tracer.Config).Level != "trace" {
		t.Errorf("reloadable settings not taken: max-backoff %s, token %q, level %s", next.Sinks.MaxBackoff.D(), next.Publisher.Token, next.Sink("log").Config.(*tracer.Config).Level)
	}
	if kept := KeepUnreloadable(running, parse(`
[nats]
listen = "127.0.0.1:4222"
[router]
workers = 2
[publisher]
listen = "127.0.0.1:8025"
`)); len(kept) != 0 {
		t.Errorf("kept %q of a file that changes none of them", kept)
	}
}

// TestListenReloads: SIGHUP is a reload request, not the end of the
// process, and with watch so is new content in the file; requests that
// arrive while one waits are one.
func TestListenReloads(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mailtel.toml")
	if err := os.WriteFile(path, []byte("[router]\nworkers = 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	rs := ListenReloads(path, true)
	defer rs.Close()
	next := func(d time.Duration) string {
		select {
		case why := <-rs.c:
			return why
		case <-time.After(d):
			return ""
		}
	}
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	if why := next(2 * time.Second); why != "SIGHUP" {
		t.Fatalf("after SIGHUP: %q", why)
	}
	if why := next(WatchInterval + time.Second); why != "" {
		t.Errorf("an unchanged file, a second SIGHUP while the first waited: %q, want nothing more", why)
	}
	if err := os.WriteFile(path, []byte("[router]\nworkers = 2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if why := next(2*WatchInterval + time.Second); why != "file changed" {
		t.Errorf("after an edit: %q, want \"file changed\"", why)
	}
}
