package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mailtel/mailtel/pipeline/pipelinetest"
)

// freePorts returns n loopback ports that were free a moment ago.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

// writeNodes writes three node files like deploy/nats/n*.conf, on free
// ports, and returns their directory. edit may change each file's text.
func writeNodes(t *testing.T, edit func(i int, conf string) string) string {
	t.Helper()
	dir := t.TempDir()
	p := freePorts(t, 6)
	routes := fmt.Sprintf("nats-route://127.0.0.1:%d, nats-route://127.0.0.1:%d, nats-route://127.0.0.1:%d", p[3], p[4], p[5])
	for i := range 3 {
		conf := fmt.Sprintf("server_name: n%d\nlisten: 127.0.0.1:%d\njetstream { store_dir: %q }\ncluster { name: test, listen: 127.0.0.1:%d, routes: [%s] }\n",
			i+1, p[i], filepath.Join(dir, "ignored"), p[3+i], routes)
		if edit != nil {
			conf = edit(i, conf)
		}
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("n%d.conf", i+1)), []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestClusterRunsAndStops(t *testing.T) {
	confDir, store := writeNodes(t, nil), t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr pipelinetest.SyncBuffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"--config-dir", confDir, "--dir", store}, &stdout, &stderr) }()

	// Wait for the ready line, then use the printed URL list.
	re := regexp.MustCompile(`connect with: --nats (\S+)`)
	deadline := time.Now().Add(20 * time.Second)
	var urls string
	for urls == "" {
		if m := re.FindStringSubmatch(stdout.String()); m != nil {
			urls = m[1]
			break
		}
		select {
		case err := <-done:
			t.Fatalf("run returned early: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no ready line after 20s; stdout:\n%s", stdout.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := strings.Count(urls, ","); n != 2 {
		t.Fatalf("want three URLs, got %q", urls)
	}
	for _, name := range []string{"n1", "n2", "n3"} {
		if !strings.Contains(stdout.String(), "store "+filepath.Join(store, name)) {
			t.Errorf("node %s does not store under --dir; stdout:\n%s", name, stdout.String())
		}
	}

	// The nodes form one JetStream cluster: a 3-replica stream works.
	nc, err := nats.Connect(urls)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	sctx, scancel := context.WithTimeout(ctx, 15*time.Second)
	defer scancel()
	s, err := js.CreateStream(sctx, jetstream.StreamConfig{Name: "R3", Subjects: []string{"r3.>"}, Replicas: 3})
	if err != nil {
		t.Fatalf("create 3-replica stream: %v", err)
	}
	if _, err := js.Publish(sctx, "r3.x", []byte("hello")); err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(sctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 1 || info.Cluster == nil || len(info.Cluster.Replicas) != 2 {
		t.Errorf("stream state %+v cluster %+v: want 1 message on a leader and 2 replicas", info.State, info.Cluster)
	}
	if _, err := os.Stat(filepath.Join(store, "n1", "jetstream")); err != nil {
		t.Errorf("node n1 has no store under --dir: %v", err)
	}

	nc.Close()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run after cancel: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("run did not return within 15s of cancel")
	}
	if !strings.Contains(stdout.String(), "stopping") {
		t.Errorf("no stopping line; stdout:\n%s", stdout.String())
	}
}

func TestClusterBadInput(t *testing.T) {
	tests := []struct {
		name string
		args func(t *testing.T) []string
		want string
	}{
		{"unknown flag", func(*testing.T) []string { return []string{"--nope"} }, "flag provided but not defined"},
		{"stray argument", func(*testing.T) []string { return []string{"extra"} }, `unexpected argument "extra"`},
		{"no files", func(t *testing.T) []string { return []string{"--config-dir", t.TempDir()} }, "no node configuration n*.conf"},
		{"duplicate names", func(t *testing.T) []string {
			return []string{"--config-dir", writeNodes(t, func(i int, c string) string {
				return strings.Replace(c, fmt.Sprintf("server_name: n%d", i+1), "server_name: same", 1)
			})}
		}, `server_name "same" is also used by`},
		{"no jetstream, no cluster", func(t *testing.T) []string {
			return []string{"--config-dir", writeNodes(t, func(i int, c string) string {
				if i == 1 {
					return fmt.Sprintf("server_name: n%d\nlisten: 127.0.0.1:-1\n", i+1)
				}
				return c
			})}
		}, "n2.conf: jetstream is not enabled"},
		{"syntax error", func(t *testing.T) []string {
			return []string{"--config-dir", writeNodes(t, func(i int, c string) string { return c + "cluster {\n" })}
		}, "load "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr pipelinetest.SyncBuffer
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err := run(ctx, tt.args(t), &stdout, &stderr)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("run: %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestHelpHasExample(t *testing.T) {
	var stdout, stderr pipelinetest.SyncBuffer
	err := run(context.Background(), []string{"--help"}, &stdout, &stderr)
	if !errors.Is(err, flag.ErrHelp) || !strings.Contains(stderr.String(), "Example:") || !strings.Contains(stderr.String(), "--config-dir") {
		t.Fatalf("--help: %v\n%s", err, stderr.String())
	}
}
