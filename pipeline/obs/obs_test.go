package obs_test

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mailtel/mailtel/pipeline/obs"
)

// syncBuffer collects a log; safe for concurrent use.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *syncBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *syncBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// get returns the status and body of http://addr/path.
func get(t *testing.T, addr, path string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + addr + path)
	if err != nil {
		t.Fatalf("GET %s%s: %v", addr, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestServeFallsBackOnATakenPort: when another process listens on the
// configured address, Serve listens on a free port of the same host, says
// so in the log, and serves there; a second identical process does the
// same on yet another port.
func TestServeFallsBackOnATakenPort(t *testing.T) {
	other, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	configured := other.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	seen := map[string]bool{configured: true}
	for i := range 2 {
		var log syncBuffer
		h := obs.NewHealth()
		addr, err := obs.Serve(ctx, configured, obs.NewMetrics(), h, zerolog.New(&log))
		if err != nil {
			t.Fatalf("serve %d on a taken port: %v", i+1, err)
		}
		host, _, _ := net.SplitHostPort(addr)
		if host != "127.0.0.1" || seen[addr] {
			t.Fatalf("serve %d listens on %s, want a new port of 127.0.0.1 (taken: %v)", i+1, addr, seen)
		}
		seen[addr] = true
		want := "health and metrics on " + addr + " (" + configured + " is taken by another process)"
		if !strings.Contains(log.String(), want) {
			t.Errorf("log does not say %q:\n%s", want, log.String())
		}
		if code, body := get(t, addr, "/healthz"); code != http.StatusOK || body != "ok\n" {
			t.Errorf("/healthz on %s: %d %q", addr, code, body)
		}
		if code, body := get(t, addr, "/readyz"); code != http.StatusOK || body != "ready\n" {
			t.Errorf("/readyz on %s: %d %q", addr, code, body)
		}
	}
}

// TestServeLogsTheAddress: on a free address Serve listens there and logs
// it, without a word about a taken port.
func TestServeLogsTheAddress(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	free := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var log syncBuffer
	addr, err := obs.Serve(ctx, free, obs.NewMetrics(), obs.NewHealth(), zerolog.New(&log))
	if err != nil {
		t.Fatal(err)
	}
	if addr != free {
		t.Errorf("listens on %s, want %s", addr, free)
	}
	if out := log.String(); !strings.Contains(out, "health and metrics on "+free) || strings.Contains(out, "taken") {
		t.Errorf("log:\n%s", out)
	}
	if code, _ := get(t, addr, "/metrics"); code != http.StatusOK {
		t.Errorf("/metrics: %d", code)
	}
}

// TestServeErrors: any listen error but a taken port is returned, naming
// the address; an empty address serves nothing.
func TestServeErrors(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, addr := range []string{"127.0.0.1:99999", "127.0.0.1", "127.0.0.1:http-nope", "[::1"} {
		t.Run(addr, func(t *testing.T) {
			var log syncBuffer
			got, err := obs.Serve(ctx, addr, obs.NewMetrics(), obs.NewHealth(), zerolog.New(&log))
			if err == nil {
				t.Fatalf("serve on %q listens on %s, want an error", addr, got)
			}
			if obs.AddrInUse(err) || !strings.Contains(err.Error(), "listen for health and metrics on "+addr) {
				t.Errorf("error %v", err)
			}
			if log.String() != "" {
				t.Errorf("logged:\n%s", log.String())
			}
		})
	}
	if addr, err := obs.Serve(ctx, "", obs.NewMetrics(), obs.NewHealth(), zerolog.Nop()); addr != "" || err != nil {
		t.Errorf("empty address: %q, %v", addr, err)
	}
}
