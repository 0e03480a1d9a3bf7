package app_test

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mailtel/mailtel/pipeline"
	"github.com/mailtel/mailtel/pipeline/app"
	"github.com/mailtel/mailtel/pipeline/config"
	"github.com/mailtel/mailtel/pipeline/pipelinetest"
)

// parse is config.Parse of doc with the store under t.TempDir(), or fails
// the test.
func parse(t *testing.T, doc string) *config.Config {
	t.Helper()
	c, err := config.Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	c.NATS.StoreDir = t.TempDir()
	return c
}

func start(t *testing.T, c *config.Config, o app.Options) *app.Process {
	t.Helper()
	if o.LogOutput == nil {
		o.LogOutput = io.Discard
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := app.Start(ctx, c, o)
	if err != nil {
		t.Fatalf("start %s: %v", o.Name, err)
	}
	t.Cleanup(p.Close)
	return p
}

// The router starts the embedded server with [nats] token; it and the
// other processes connect with it; a client without it gets nothing.
func TestEmbeddedServerWithAuthEndToEnd(t *testing.T) {
	certs := pipelinetest.WriteCerts(t)
	for _, tc := range []struct {
		name string
		nats string
		opt  nats.Option // what a raw client needs on top of the CA
	}{
		{"token", "token = \"s3cret-token\"\n", nats.Token("s3cret-token")},
		{"user and password", "user = \"mailtel\"\npassword = \"s3cret-pw\"\n", nats.UserInfo("mailtel", "s3cret-pw")},
		{"client certificates", "[nats.tls]\ncert = \"" + certs.Cert + "\"\nkey = \"" + certs.Key + "\"\nca = \"" + certs.CA + "\"\nverify = true\n",
			nats.ClientCert(certs.ClientCert, certs.ClientKey)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := parse(t, "[nats]\nlisten = \"127.0.0.1:0\"\n"+tc.nats)
			router := start(t, c, app.Options{Name: "router", Embedded: true})
			url := router.Embedded.URL()

			// Another process of the same file finds the server on listen.
			c2 := parse(t, "[nats]\nlisten = \""+strings.SplitN(url, "://", 2)[1]+"\"\n"+tc.nats)
			sinks := start(t, c2, app.Options{Name: "sinks"})
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if _, err := sinks.JS.Stream(ctx, c.Streams.Events); err != nil {
				t.Errorf("the second process reads stream %s: %v", c.Streams.Events, err)
			}

			tlsOpts := []nats.Option{nats.MaxReconnects(0)}
			if strings.HasPrefix(url, "tls://") {
				tlsOpts = append(tlsOpts, nats.RootCAs(certs.CA))
			}
			nc, err := nats.Connect(url, tlsOpts...)
			if err == nil {
				err = nc.Flush()
				nc.Close()
			}
			if err == nil {
				t.Fatal("a client without credentials got in")
			}
			if tc.name != "client certificates" && !errors.Is(err, nats.ErrAuthorization) {
				t.Errorf("a client without credentials: %v, want an authorization error", err)
			}

			nc, err = nats.Connect(url, append(tlsOpts, tc.opt)...)
			if err != nil {
				t.Fatalf("a client with credentials: %v", err)
			}
			defer nc.Close()
			js, err := jetstream.New(nc)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := js.Stream(ctx, c.Streams.Events); err != nil {
				t.Errorf("stream %s: %v", c.Streams.Events, err)
			}
		})
	}
}

func TestStartRefusesAnOpenEmbeddedServer(t *testing.T) {
	c := config.Default()
	c.NATS.Listen = "192.0.2.1:0" // TEST-NET-1: never bound, even if the check failed
	c.NATS.StoreDir = t.TempDir()
	p, err := app.Start(context.Background(), c, app.Options{Name: "router", Embedded: true})
	if err == nil {
		p.Close()
		t.Fatal("started an embedded server beyond loopback without authentication")
	}
	if !strings.Contains(err.Error(), "nats.listen") {
		t.Errorf("error %q does not name nats.listen", err)
	}
}

// The log lines that carry the server URL never carry its password: the
// connection, and a reconnection after the server closed the connection.
func TestLogsHideTheNATSPassword(t *testing.T) {
	srv, err := pipeline.StartEmbedded(config.NATS{Listen: "127.0.0.1:0", StoreDir: t.TempDir(), User: "mailtel", Password: "s3cret-pw"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	hostport := strings.TrimPrefix(srv.URL(), "nats://")

	c := parse(t, "[logging]\nlevel = \"debug\"\n[nats]\nurl = \"nats://mailtel:s3cret-pw@"+hostport+"\"\n")
	var log pipelinetest.SyncBuffer
	p := start(t, c, app.Options{Name: "sinks", LogOutput: &log})
	id, err := p.Conn.GetClientID()
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Server().DisconnectClientByID(id); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(log.String(), "reconnected to NATS") {
		if time.Now().After(deadline) {
			t.Fatalf("no reconnection logged:\n%s", log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	out := log.String()
	if strings.Contains(out, "s3cret") {
		t.Errorf("the log shows the password:\n%s", out)
	}
	want := "nats://mailtel:xxxxx@" + hostport
	for _, msg := range []string{"\"connected\"", "reconnected to NATS"} {
		found := false
		for _, line := range strings.Split(out, "\n") {
			if strings.Contains(line, msg) && strings.Contains(line, want) {
				found = true
			}
		}
		if !found {
			t.Errorf("no %s line with url %s:\n%s", msg, want, out)
		}
	}
}

// TestNoServerSaysWhatToDo: a process started with nothing listening at
// [nats] says within seconds what it waits for and what to do, and its
// error says it again.
func TestNoServerSaysWhatToDo(t *testing.T) {
	c := parse(t, "[nats]\nlisten = \"127.0.0.1:1\"\n") // nothing listens on port 1
	var log pipelinetest.SyncBuffer
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Second) // the hint is due after 2s
	defer cancel()
	start := time.Now()
	_, err := app.Start(ctx, c, app.Options{Name: "sinks", LogOutput: &log})
	if err == nil || !strings.Contains(err.Error(), "start `router` first") {
		t.Fatalf("err = %v, want the hint", err)
	}
	if !strings.Contains(log.String(), "waiting for NATS: start `router` first") {
		t.Errorf("no hint in the log within %s: %q", time.Since(start).Round(time.Millisecond), log.String())
	}
}

// TestSecondRouterJoinsTheEmbeddedServer: a second router of the same
// configuration on the same machine finds [nats] listen taken by the first
// router's embedded server and connects to it rather than start a server
// of its own (which could use neither the port nor the store), and serves
// health and metrics on a free port since the first has [router] http.
func TestSecondRouterJoinsTheEmbeddedServer(t *testing.T) {
	free := func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		return ln.Addr().String()
	}
	doc := "[nats]\nlisten = \"" + free() + "\"\n[router]\nhttp = \"" + free() + "\"\n"
	store := t.TempDir()
	c1, c2 := parse(t, doc), parse(t, doc)
	c1.NATS.StoreDir, c2.NATS.StoreDir = store, store
	// Both run until the test ends: start's context ends when it returns,
	// and with it the health server whose port the second must find taken.
	running, stop := context.WithCancel(context.Background())
	t.Cleanup(stop)
	run := func(c *config.Config, o app.Options) *app.Process {
		t.Helper()
		if o.LogOutput == nil {
			o.LogOutput = io.Discard
		}
		p, err := app.Start(running, c, o)
		if err != nil {
			t.Fatalf("start %s: %v", o.Name, err)
		}
		t.Cleanup(p.Close)
		return p
	}
	first := run(c1, app.Options{Name: "router", Embedded: true, HTTP: c1.Router.HTTP})
	if first.Embedded == nil {
		t.Fatal("the first router started no embedded server")
	}
	var log pipelinetest.SyncBuffer
	second := run(c2, app.Options{Name: "router", Embedded: true, HTTP: c2.Router.HTTP, LogOutput: &log})
	if second.Embedded != nil {
		t.Error("the second router started an embedded server too")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := second.JS.Stream(ctx, c2.Streams.Events); err != nil {
		t.Errorf("the second router reads stream %s: %v", c2.Streams.Events, err)
	}
	if first.HTTPAddr == second.HTTPAddr {
		t.Errorf("both serve health and metrics on %s", first.HTTPAddr)
	}
	out := log.String()
	for _, want := range []string{"connecting to it instead of starting one", "is taken by another process"} {
		if !strings.Contains(out, want) {
			t.Errorf("the second router does not log %q:\n%s", want, out)
		}
	}
}
