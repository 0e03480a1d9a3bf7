package pipelinetest

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mailtel/mailtel/pipeline"
	"github.com/mailtel/mailtel/pipeline/config"
)

// ClusterName is the NATS cluster name of StartCluster's servers.
const ClusterName = "mailtel-test"

// Cluster is an in-process JetStream cluster on 127.0.0.1: n servers routed
// to each other, each with its own store directory. Client and route ports
// are fixed when the cluster starts, so a restarted server comes back on
// the same addresses and URLs stays valid.
//
// Stop, Restart and LeaderOf are safe for concurrent use.
type Cluster struct {
	// URLs is the comma-separated list of client URLs, for config.NATS.URL.
	URLs string
	// NATS is a client configuration pointing at every server.
	NATS config.NATS

	mu      sync.Mutex
	servers []*server.Server
	opts    []*server.Options // as given to NewServer; cloned for restarts
	running []bool
}

// StartCluster starts n JetStream servers on loopback, routed into one
// cluster, storing under t.TempDir(). It returns once a meta leader is
// elected and sees all n peers, so streams with n replicas can be created
// at once. Every server is shut down when the test ends.
//
// Ports are chosen by binding :0 and closing; if another process takes one
// in between, the start is retried with new ports.
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	if n < 1 {
		t.Fatalf("start cluster: want at least 1 server, not %d", n)
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		c, err := startCluster(t, n)
		if err == nil {
			t.Cleanup(c.shutdown)
			return c
		}
		lastErr = err
	}
	t.Fatalf("start %d-server cluster: %v", n, lastErr)
	return nil
}

func startCluster(t testing.TB, n int) (*Cluster, error) {
	ports, err := freePorts(2 * n)
	if err != nil {
		return nil, err
	}
	clientPorts, routePorts := ports[:n], ports[n:]
	routes := make([]string, n)
	urls := make([]string, n)
	for i := range n {
		routes[i] = fmt.Sprintf("nats-route://127.0.0.1:%d", routePorts[i])
		urls[i] = fmt.Sprintf("nats://127.0.0.1:%d", clientPorts[i])
	}
	c := &Cluster{
		URLs:    strings.Join(urls, ","),
		servers: make([]*server.Server, n),
		opts:    make([]*server.Options, n),
		running: make([]bool, n),
	}
	c.NATS = config.NATS{URL: c.URLs, Name: ClusterName}
	for i := range n {
		c.opts[i] = &server.Options{
			ServerName: fmt.Sprintf("n%d", i+1),
			Host:       "127.0.0.1",
			Port:       clientPorts[i],
			JetStream:  true,
			StoreDir:   t.TempDir(),
			Cluster: server.ClusterOpts{
				Name: ClusterName,
				Host: "127.0.0.1",
				Port: routePorts[i],
			},
			Routes: server.RoutesFromStr(strings.Join(routes, ",")),
			NoSigs: true,
			NoLog:  true,
		}
	}
	for i := range n {
		if err := c.start(i); err != nil {
			c.shutdown()
			return nil, err
		}
	}
	if err := c.waitMeta(n, 20*time.Second); err != nil {
		c.shutdown()
		return nil, err
	}
	return c, nil
}

// freePorts returns n distinct loopback TCP ports that were free a moment
// ago.
func freePorts(n int) ([]int, error) {
	lns := make([]net.Listener, 0, n)
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("pick a free port: %w", err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// start starts server i from a clone of its options. Callers hold no lock.
func (c *Cluster) start(i int) error {
	c.mu.Lock()
	opts := c.opts[i].Clone()
	c.mu.Unlock()
	srv, err := server.NewServer(opts)
	if err != nil {
		return fmt.Errorf("new server %s: %w", opts.ServerName, err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		return fmt.Errorf("server %s: not ready on port %d after 10s (port taken?)", opts.ServerName, opts.Port)
	}
	c.mu.Lock()
	c.servers[i], c.running[i] = srv, true
	c.mu.Unlock()
	return nil
}

// waitMeta polls until one running server is the JetStream meta leader and
// sees want peers.
func (c *Cluster) waitMeta(want int, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		leader, peers := "", 0
		for _, s := range c.Servers() {
			if s != nil && s.JetStreamIsLeader() {
				leader, peers = s.Name(), len(s.JetStreamClusterPeers())
			}
		}
		if leader != "" && peers >= want {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no JetStream meta leader with %d peers after %v (leader %q sees %d)", want, d, leader, peers)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// Servers returns the servers, nil for those stopped. Index i is server
// "n<i+1>".
func (c *Cluster) Servers() []*server.Server {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]*server.Server, len(c.servers))
	for i, s := range c.servers {
		if c.running[i] {
			out[i] = s
		}
	}
	return out
}

// Stop shuts server i down and waits until it has stopped. Its store is
// kept for Restart. Stopping a stopped server does nothing.
func (c *Cluster) Stop(i int) {
	c.mu.Lock()
	srv, running := c.servers[i], c.running[i]
	c.running[i] = false
	c.mu.Unlock()
	if running {
		srv.Shutdown()
		srv.WaitForShutdown()
	}
}

// Restart starts the stopped server i again on its ports and store, and
// waits until the meta leader sees every server again.
func (c *Cluster) Restart(t testing.TB, i int) {
	t.Helper()
	c.mu.Lock()
	running := c.running[i]
	c.mu.Unlock()
	if running {
		t.Fatalf("restart server %d: it is running", i)
	}
	if err := c.start(i); err != nil {
		t.Fatalf("restart server %d: %v", i, err)
	}
	if err := c.waitMeta(len(c.opts), 20*time.Second); err != nil {
		t.Fatalf("restart server %d: %v", i, err)
	}
}

// LeaderOf returns the index of the running server that leads the
// stream's Raft group (in the default account), or -1 if none does now
// (during an election, or for a stream that does not exist).
func (c *Cluster) LeaderOf(stream string) int {
	for i, s := range c.Servers() {
		if s != nil && s.JetStreamIsStreamLeader(server.DEFAULT_GLOBAL_ACCOUNT, stream) {
			return i
		}
	}
	return -1
}

// WaitLeaderOf polls LeaderOf until the stream has a leader, or fails the
// test after d.
func (c *Cluster) WaitLeaderOf(t testing.TB, stream string, d time.Duration) int {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		if i := c.LeaderOf(stream); i >= 0 {
			return i
		}
		if time.Now().After(deadline) {
			t.Fatalf("stream %s has no leader after %v", stream, d)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// Connect connects a client to the cluster with pipeline.Connect (server
// list, reconnecting forever) and closes it when the test ends.
func (c *Cluster) Connect(t testing.TB, name string) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	nc, js, err := pipeline.Connect(ctx, c.NATS, name, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc, js
}

func (c *Cluster) shutdown() {
	for i := range c.servers {
		c.mu.Lock()
		srv := c.servers[i]
		c.mu.Unlock()
		if srv != nil {
			c.Stop(i)
		}
	}
}
