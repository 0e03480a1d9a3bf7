package pipeline_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mailtel/mailtel/pipeline"
	"github.com/mailtel/mailtel/pipeline/config"
	"github.com/mailtel/mailtel/pipeline/pipelinetest"
)

// startEmbedded starts the embedded server of cfg on a random loopback
// port and stops it when the test ends.
func startEmbedded(t *testing.T, cfg config.NATS) *pipeline.Embedded {
	t.Helper()
	cfg.Listen = "127.0.0.1:0"
	cfg.StoreDir = t.TempDir()
	srv, err := pipeline.StartEmbedded(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	return srv
}

// useJetStream creates a stream and lists the streams through nc, as any
// client of the server can if it gets in.
func useJetStream(t *testing.T, nc *nats.Conn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "AUTHTEST", Subjects: []string{"authtest.>"}}); err != nil {
		t.Fatalf("create stream: %v", err)
	}
	if _, err := js.Publish(ctx, "authtest.one", []byte("x")); err != nil {
		t.Fatalf("publish: %v", err)
	}
	names := js.StreamNames(ctx)
	var got []string
	for n := range names.Name() {
		got = append(got, n)
	}
	if names.Err() != nil || len(got) == 0 {
		t.Fatalf("list streams: %v %v", got, names.Err())
	}
}

func TestEmbeddedServerRequiresTheConfiguredCredentials(t *testing.T) {
	for _, tc := range []struct {
		name  string
		cfg   config.NATS
		right nats.Option
		wrong nats.Option
	}{
		{"token", config.NATS{Token: "s3cret-token"}, nats.Token("s3cret-token"), nats.Token("guess")},
		{"user and password", config.NATS{User: "mailtel", Password: "s3cret-pw"},
			nats.UserInfo("mailtel", "s3cret-pw"), nats.UserInfo("mailtel", "guess")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := startEmbedded(t, tc.cfg)
			for what, opts := range map[string][]nats.Option{"no credentials": nil, "wrong credentials": {tc.wrong}} {
				nc, err := nats.Connect(srv.URL(), append(opts, nats.MaxReconnects(0))...)
				if err == nil {
					nc.Close()
					t.Fatalf("a client with %s connected", what)
				}
				if !errors.Is(err, nats.ErrAuthorization) {
					t.Errorf("a client with %s: %v, want an authorization error", what, err)
				}
			}

			nc, err := nats.Connect(srv.URL(), tc.right)
			if err != nil {
				t.Fatalf("a client with the credentials: %v", err)
			}
			defer nc.Close()
			useJetStream(t, nc)

			// Connect, as every mailtel process does, from the same [nats].
			cfg := tc.cfg
			cfg.URL = srv.URL()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			pc, js, err := pipeline.Connect(ctx, cfg, "mailtel-test", 0)
			if err != nil {
				t.Fatalf("pipeline.Connect: %v", err)
			}
			defer pc.Close()
			if _, err := js.AccountInfo(ctx); err != nil {
				t.Errorf("JetStream through pipeline.Connect: %v", err)
			}
		})
	}
}

func TestEmbeddedServerTLS(t *testing.T) {
	certs := pipelinetest.WriteCerts(t)
	pem, err := os.ReadFile(certs.CA)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	clientCert, err := tls.LoadX509KeyPair(certs.ClientCert, certs.ClientKey)
	if err != nil {
		t.Fatal(err)
	}
	connect := func(url string, tc *tls.Config) (*nats.Conn, error) {
		opts := []nats.Option{nats.MaxReconnects(0), nats.Timeout(5 * time.Second)}
		if tc != nil {
			opts = append(opts, nats.Secure(tc))
		}
		return nats.Connect(url, opts...)
	}

	t.Run("server certificate", func(t *testing.T) {
		cfg := config.NATS{TLS: config.TLS{Cert: certs.Cert, Key: certs.Key, CA: certs.CA}}
		srv := startEmbedded(t, cfg)
		if !strings.HasPrefix(srv.URL(), "tls://127.0.0.1:") {
			t.Errorf("URL %q, want tls://127.0.0.1:port", srv.URL())
		}
		if nc, err := connect(srv.URL(), nil); err == nil {
			nc.Close()
			t.Fatal("a client that does not know the CA connected")
		}
		// A plain nats:// URL is upgraded to TLS, and still verified.
		plain := "nats://" + strings.TrimPrefix(srv.URL(), "tls://")
		if nc, err := connect(plain, nil); err == nil {
			nc.Close()
			t.Fatal("a client that does not know the CA connected over nats://")
		}
		nc, err := connect(srv.URL(), &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12})
		if err != nil {
			t.Fatalf("a client with the CA: %v", err)
		}
		defer nc.Close()
		if !nc.TLSRequired() {
			t.Error("connection without TLS")
		}
		useJetStream(t, nc)

		cfg.URL = srv.URL()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		pc, _, err := pipeline.Connect(ctx, cfg, "mailtel-test", 0)
		if err != nil {
			t.Fatalf("pipeline.Connect with [nats.tls]: %v", err)
		}
		pc.Close()
	})

	t.Run("client certificates", func(t *testing.T) {
		cfg := config.NATS{TLS: config.TLS{Cert: certs.Cert, Key: certs.Key, CA: certs.CA, Verify: true}}
		srv := startEmbedded(t, cfg)
		nc, err := connect(srv.URL(), &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12})
		if err == nil {
			// The handshake may complete on the client's side before the
			// server refuses it: the connection must not be usable.
			err = nc.Flush()
			nc.Close()
		}
		if err == nil {
			t.Fatal("a client without a certificate got in")
		}
		nc, err = connect(srv.URL(), &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{clientCert}, MinVersion: tls.VersionTLS12})
		if err != nil {
			t.Fatalf("a client with a certificate of the CA: %v", err)
		}
		defer nc.Close()
		useJetStream(t, nc)

		// The processes present [nats.tls] cert.
		cfg.URL = srv.URL()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		pc, _, err := pipeline.Connect(ctx, cfg, "mailtel-test", 0)
		if err != nil {
			t.Fatalf("pipeline.Connect with [nats.tls] verify: %v", err)
		}
		pc.Close()
	})
}

func TestStartEmbeddedRefusesAnOpenListenWithoutAuth(t *testing.T) {
	srv, err := pipeline.StartEmbedded(config.NATS{Listen: "192.0.2.1:0", StoreDir: t.TempDir()}) // TEST-NET-1: never bound
	if err == nil {
		srv.Close()
		t.Fatal("started on 192.0.2.1 (beyond loopback) without authentication")
	}
	if !strings.Contains(err.Error(), "nats.listen") {
		t.Errorf("error %q does not name nats.listen", err)
	}
	srv, err = pipeline.StartEmbedded(config.NATS{Listen: "127.0.0.1:0", StoreDir: t.TempDir(), Credentials: "x.creds"})
	if err == nil {
		srv.Close()
		t.Fatal("started with a .creds file it cannot check")
	}
	if !strings.Contains(err.Error(), "nats.credentials") {
		t.Errorf("error %q does not name nats.credentials", err)
	}
}

func TestConnectErrorsHideThePassword(t *testing.T) {
	srv := startEmbedded(t, config.NATS{User: "mailtel", Password: "right-pw"})
	hostport := strings.TrimPrefix(srv.URL(), "nats://")
	for _, tc := range []struct {
		name, url string
		wait      time.Duration
		want      string
	}{
		{"wrong password", "nats://mailtel:s3cret-pw@" + hostport, 10 * time.Second, "connect to nats nats://mailtel:xxxxx@" + hostport},
		{"no server", "nats://mailtel:s3cret-pw@127.0.0.1:1", time.Second, "connect to nats nats://mailtel:xxxxx@127.0.0.1:1"},
		{"bad url", "nats://mailtel:s3cret-pw@bad host:4222,nats://n2:4222", time.Second, "server 1 of the list is not a valid URL"},
		{"slash in the password", "nats://n1:4222,nats://mailtel:s3cret/pw@127.0.0.1:1", time.Second, "server 2 of the list is not a valid URL: a bad port"},
		{"token in the url", "nats://s3cret-pw@" + hostport, 10 * time.Second, "connect to nats nats://xxxxx@" + hostport},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), tc.wait)
			defer cancel()
			nc, _, err := pipeline.Connect(ctx, config.NATS{URL: tc.url}, "mailtel-test", 0)
			if err == nil {
				nc.Close()
				t.Fatal("connected")
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("error shows the password: %v", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q lacks %q", err, tc.want)
			}
		})
	}
}

func TestServerURL(t *testing.T) {
	tlsCfg := config.TLS{Cert: "c.pem", Key: "c.key"}
	for _, tc := range []struct {
		cfg  config.NATS
		want string
	}{
		{config.NATS{Listen: "127.0.0.1:4222"}, "nats://127.0.0.1:4222"},
		{config.NATS{Listen: "0.0.0.0:4222", Token: "t"}, "nats://127.0.0.1:4222"},
		{config.NATS{Listen: ":4222", Token: "t"}, "nats://127.0.0.1:4222"},
		{config.NATS{Listen: "[::]:4222", Token: "t"}, "nats://[::1]:4222"},
		{config.NATS{Listen: "localhost:4222", TLS: tlsCfg}, "tls://localhost:4222"},
		{config.NATS{Listen: "10.0.0.5:4222", Token: "t", TLS: tlsCfg}, "tls://10.0.0.5:4222"},
		{config.NATS{URL: "nats://a:b@n1:4222,nats://n2:4222", Listen: "0.0.0.0:4222", TLS: tlsCfg}, "nats://a:b@n1:4222,nats://n2:4222"},
	} {
		if got := pipeline.ServerURL(tc.cfg); got != tc.want {
			t.Errorf("ServerURL(%+v) = %q, want %q", tc.cfg, got, tc.want)
		}
	}
}
