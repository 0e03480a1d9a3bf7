package pipeline

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mailtel/mailtel/pipeline/config"
	"github.com/mailtel/mailtel/pipeline/config/value"
)

// Embedded is a nats-server with JetStream running inside the process.
type Embedded struct {
	srv *server.Server
}

// StartEmbedded starts a JetStream-enabled nats-server listening on
// cfg.Listen ("host:port"; port 0 picks a free port) and storing under
// cfg.StoreDir. It takes cfg's authentication: a token, or a user and
// password, and TLS with cfg.TLS.Cert and Key (requiring client
// certificates signed by cfg.TLS.CA with cfg.TLS.Verify). It refuses what
// cfg.ValidateEmbedded refuses, such as a listen address beyond loopback
// without authentication. It returns once the server accepts connections.
func StartEmbedded(cfg config.NATS) (*Embedded, error) {
	if err := cfg.ValidateEmbedded(); err != nil {
		return nil, fmt.Errorf("start embedded nats: %w", err)
	}
	host, portStr, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("start embedded nats: nats.listen %q: %w", cfg.Listen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("start embedded nats: nats.listen %q: bad port", cfg.Listen)
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	opts := &server.Options{
		ServerName:    cfg.Name,
		Host:          host,
		Port:          port,
		JetStream:     true,
		StoreDir:      cfg.StoreDir,
		NoSigs:        true,
		NoLog:         true,
		Authorization: cfg.Token,
		Username:      cfg.User,
		Password:      cfg.Password,
	}
	if cfg.TLS.Cert != "" {
		tc, err := server.GenTLSConfig(&server.TLSConfigOpts{
			CertFile: cfg.TLS.Cert,
			KeyFile:  cfg.TLS.Key,
			CaFile:   cfg.TLS.CA,
			Verify:   cfg.TLS.Verify,
		})
		if err == nil && tc == nil {
			err = fmt.Errorf("read nats.tls.ca %s: empty", cfg.TLS.CA)
		}
		if err != nil {
			return nil, fmt.Errorf("start embedded nats: nats.tls: %w", err)
		}
		opts.TLSConfig = tc
		opts.TLS = true
		opts.TLSVerify = cfg.TLS.Verify
		opts.TLSCert, opts.TLSKey, opts.TLSCaCert = cfg.TLS.Cert, cfg.TLS.Key, cfg.TLS.CA
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("start embedded nats: %w", err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(15 * time.Second) {
		srv.Shutdown()
		return nil, fmt.Errorf("start embedded nats on %s: not ready after 15s (is the port in use?)", cfg.Listen)
	}
	return &Embedded{srv: srv}, nil
}

// URL returns the client URL of the server (tls:// when it requires TLS),
// with a loopback address in place of an unspecified listen host
// (0.0.0.0, ::) so that a process on this machine can dial it and verify
// its certificate. It carries no credentials.
func (e *Embedded) URL() string {
	u := e.srv.ClientURL()
	scheme, hostport, _ := strings.Cut(u, "://")
	return scheme + "://" + dialable(hostport)
}

// Server returns the underlying server.
func (e *Embedded) Server() *server.Server { return e.srv }

// Close shuts the server down and waits for it. It is idempotent.
func (e *Embedded) Close() {
	if e == nil || e.srv == nil {
		return
	}
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
}

// ServerURL is the URL processes connect to: cfg.URL, or the embedded
// server's address on cfg.Listen when cfg.URL is empty (tls:// when the
// server has a certificate; an unspecified host, 0.0.0.0 or ::, is dialed
// on loopback). It may carry a password: print it with value.RedactURL.
func ServerURL(cfg config.NATS) string {
	if cfg.URL != "" {
		return cfg.URL
	}
	scheme := "nats://"
	if cfg.TLS.Cert != "" {
		scheme = "tls://"
	}
	return scheme + dialable(cfg.Listen)
}

// dialable turns a listen address on every interface into its loopback
// address, which a process on this machine can dial.
func dialable(hostport string) string {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return hostport
	}
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::":
		host = "::1"
	}
	return net.JoinHostPort(host, port)
}

// Connect connects to NATS as described by cfg (server list, credentials,
// user/password, token, TLS), reconnecting forever, and returns the
// connection with a JetStream context whose async publish window is
// maxPending messages (0 means the library default).
func Connect(ctx context.Context, cfg config.NATS, name string, maxPending int) (*nats.Conn, jetstream.JetStream, error) {
	opts := []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.RetryOnFailedConnect(false),
	}
	if cfg.Credentials != "" {
		opts = append(opts, nats.UserCredentials(cfg.Credentials))
	}
	if cfg.User != "" {
		opts = append(opts, nats.UserInfo(cfg.User, cfg.Password))
	}
	if cfg.Token != "" {
		opts = append(opts, nats.Token(cfg.Token))
	}
	if cfg.TLS.CA != "" || cfg.TLS.Cert != "" {
		tc, err := tlsConfig(cfg.TLS)
		if err != nil {
			return nil, nil, fmt.Errorf("connect to nats: %w", err)
		}
		opts = append(opts, nats.Secure(tc))
	}
	url := ServerURL(cfg)
	shown := value.RedactURL(url) // url may hold a password
	if err := checkServerURLs(url); err != nil {
		return nil, nil, fmt.Errorf("connect to nats %s: %w", shown, err)
	}
	var nc *nats.Conn
	var err error
	// A process may start before the router's embedded server is up: retry
	// the first connection until ctx ends.
	for {
		nc, err = nats.Connect(url, opts...)
		if err == nil || !errors.Is(err, nats.ErrNoServers) {
			break
		}
		select {
		case <-ctx.Done():
			return nil, nil, fmt.Errorf("connect to nats %s: %w (%s)", shown, err, NoServerHint(cfg))
		case <-time.After(500 * time.Millisecond):
		}
	}
	if err != nil {
		return nil, nil, fmt.Errorf("connect to nats %s: %w", shown, err)
	}
	// A lost acknowledgement fails its future after PublishAckTimeout, so
	// that it is retried and does not hold a pending slot for ever.
	jopts := []jetstream.JetStreamOpt{jetstream.WithPublishAsyncTimeout(PublishAckTimeout)}
	if maxPending > 0 {
		jopts = append(jopts, jetstream.WithPublishAsyncMaxPending(maxPending))
	}
	js, err := jetstream.New(nc, jopts...)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("jetstream context: %w", err)
	}
	return nc, js, nil
}

// NoServerHint says what to do when nothing answers at the configured
// NATS address.
func NoServerHint(cfg config.NATS) string {
	if cfg.URL == "" {
		return "start `router` first: it hosts the embedded NATS server on [nats] listen; or set [nats] url to a running server"
	}
	return "is the NATS server at [nats] url running and reachable from here?"
}

// checkServerURLs parses each URL of a server list as nats.Connect will,
// so that a bad one is reported without the URL: url.Parse's error quotes
// it whole, password included, and its reasons may quote a piece of the
// password (value.ParseURL says what is wrong without them).
func checkServerURLs(list string) error {
	for i, s := range strings.Split(list, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if !strings.Contains(s, "://") {
			s = "nats://" + s
		}
		if _, err := value.ParseURL(s); err != nil {
			return fmt.Errorf("server %d of the list is %w", i+1, err)
		}
	}
	return nil
}

func tlsConfig(t config.TLS) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if t.CA != "" {
		pem, err := os.ReadFile(t.CA)
		if err != nil {
			return nil, fmt.Errorf("read nats.tls.ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("nats.tls.ca %s: no certificates found", t.CA)
		}
		tc.RootCAs = pool
	}
	if t.Cert != "" {
		cert, err := tls.LoadX509KeyPair(t.Cert, t.Key)
		if err != nil {
			return nil, fmt.Errorf("load nats.tls.cert/key: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// subjectToken reports whether s can be one token of a subject.
func subjectToken(s string) bool {
	return s != "" && !strings.ContainsAny(s, ".*> \t\r\n")
}
