// Command cluster runs a 3-node NATS JetStream cluster in one process, from
// the nats-server configuration files deploy/nats/n1.conf, n2.conf and
// n3.conf (loopback, clients on 14222-14224), so that mailtel's cluster mode
// can be tried on one machine with nothing but Go:
//
//	cluster [--config-dir deploy/nats] [--dir ./data/cluster] [--log]
//
// It prints the client URLs once the nodes have elected a JetStream meta
// leader, and runs until interrupted.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/mailtel/mailtel/pipeline/app"
)

func main() {
	app.Main("cluster", func(ctx context.Context) error { return run(ctx, os.Args[1:], os.Stdout, os.Stderr) })
}

// readyTimeout bounds how long the nodes may take to start and elect a
// JetStream meta leader.
const readyTimeout = 30 * time.Second

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("cluster", flag.ContinueOnError)
	fs.SetOutput(stderr)
	confDir := fs.String("config-dir", filepath.Join("deploy", "nats"), "`directory` of the node configurations n*.conf")
	dir := fs.String("dir", filepath.Join("data", "cluster"), "store `directory`: node NAME stores under DIR/NAME (empty: the files' jetstream.store_dir)")
	showLog := fs.Bool("log", false, "print the servers' own logs to stderr")
	fs.Usage = app.Usage(fs, "usage: cluster [--config-dir DIR] [--dir DIR] [--log]\n\nRuns a 3-node NATS JetStream cluster in this process from DIR/n*.conf\n(deploy/nats: loopback, clients on 14222, 14223, 14224), prints the client URLs\nonce a JetStream meta leader is elected, and runs until Ctrl-C. Then point the\nmailtel processes at it with --nats and a configuration with [streams] replicas = 3.",
		"  cluster --dir ./data/cluster\n  router --config deploy/mailtel.cluster.toml --nats nats://127.0.0.1:14222,nats://127.0.0.1:14223,nats://127.0.0.1:14224")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	opts, err := loadNodes(*confDir, *dir)
	if err != nil {
		return err
	}
	servers, err := startNodes(opts, *showLog)
	defer func() {
		for _, s := range servers {
			s.Shutdown()
		}
		for _, s := range servers {
			s.WaitForShutdown()
		}
	}()
	if err != nil {
		return err
	}
	urls := make([]string, len(servers))
	for i, s := range servers {
		urls[i] = s.ClientURL()
		fmt.Fprintf(stdout, "node %-4s clients %s  routes %s  store %s\n", s.Name(), s.ClientURL(), s.ClusterAddr(), opts[i].StoreDir)
	}
	leader, err := waitMetaLeader(ctx, servers, readyTimeout)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "JetStream cluster ready (meta leader %s); Ctrl-C stops\n", leader)
	fmt.Fprintf(stdout, "connect with: --nats %s\n", strings.Join(urls, ","))
	<-ctx.Done()
	fmt.Fprintln(stdout, "stopping")
	return nil
}

// loadNodes parses every n*.conf of confDir, in name order. When storeRoot
// is not empty, each node stores under storeRoot/<server_name>. It checks
// that the nodes form one JetStream cluster.
func loadNodes(confDir, storeRoot string) ([]*server.Options, error) {
	paths, err := filepath.Glob(filepath.Join(confDir, "n*.conf"))
	if err != nil {
		return nil, fmt.Errorf("list node configurations: %w", err)
	}
	sort.Strings(paths)
	if len(paths) == 0 {
		return nil, fmt.Errorf("no node configuration n*.conf in %s (run from the repository root, or give --config-dir)", confDir)
	}
	var errs []error
	var all []*server.Options
	names := map[string]string{}
	for _, p := range paths {
		o, err := server.ProcessConfigFile(p)
		if err != nil {
			errs = append(errs, fmt.Errorf("load %s: %w", p, err))
			continue
		}
		switch {
		case o.ServerName == "":
			errs = append(errs, fmt.Errorf("%s: server_name is required (JetStream clustering needs unique names)", p))
		case names[o.ServerName] != "":
			errs = append(errs, fmt.Errorf("%s: server_name %q is also used by %s", p, o.ServerName, names[o.ServerName]))
		default:
			names[o.ServerName] = p
		}
		if !o.JetStream {
			errs = append(errs, fmt.Errorf("%s: jetstream is not enabled", p))
		}
		if o.Cluster.Name == "" || o.Cluster.Port == 0 || len(o.Routes) == 0 {
			errs = append(errs, fmt.Errorf("%s: cluster {name, listen, routes} is required", p))
		}
		if len(all) > 0 && o.Cluster.Name != all[0].Cluster.Name {
			errs = append(errs, fmt.Errorf("%s: cluster name %q differs from %q", p, o.Cluster.Name, all[0].Cluster.Name))
		}
		if storeRoot != "" && o.ServerName != "" {
			o.StoreDir = filepath.Join(storeRoot, o.ServerName)
		}
		// This process owns the signals and the lifecycle.
		o.NoSigs = true
		all = append(all, o)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return all, nil
}

// startNodes starts a server per options and waits until each accepts
// clients. It returns the servers started so far even on error, for the
// caller to shut down.
func startNodes(opts []*server.Options, showLog bool) ([]*server.Server, error) {
	var started []*server.Server
	for _, o := range opts {
		o.NoLog = !showLog
		s, err := server.NewServer(o)
		if err != nil {
			return started, fmt.Errorf("start node %s: %w", o.ServerName, err)
		}
		if showLog {
			s.ConfigureLogger()
		}
		go s.Start()
		started = append(started, s)
		if !s.ReadyForConnections(10 * time.Second) {
			return started, fmt.Errorf("node %s: not accepting clients on %s:%d after 10s (port in use? run with --log)", o.ServerName, o.Host, o.Port)
		}
	}
	return started, nil
}

// waitMetaLeader polls until a node is the JetStream meta leader and sees
// every node as a peer, and returns the leader's name.
func waitMetaLeader(ctx context.Context, servers []*server.Server, d time.Duration) (string, error) {
	deadline := time.Now().Add(d)
	for {
		for _, s := range servers {
			if s.JetStreamIsLeader() && len(s.JetStreamClusterPeers()) == len(servers) {
				return s.Name(), nil
			}
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("no JetStream meta leader seeing all %d nodes after %v (are the routes right? run with --log)", len(servers), d)
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("wait for a JetStream meta leader: %w", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}
