package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/mailtel/mailtel/pipeline/benchkit"
)

// What -nats-server takes.
const (
	serverEmbedded = "embedded" // in this process, as `router up` runs it
	serverProcess  = "process"  // nats-server in a process of its own, as a deployment runs it
)

// natsProcess is a nats-server in a process of its own, built from the
// nats-server module mailtel requires, with JetStream on file storage
// under the bench's directory and GODEBUG=gctrace=1, so that a soak reads
// its RSS and CPU from /proc and its GC CPU and live heap from its log.
// Its monitoring and pprof ports are open on 127.0.0.1 and printed, so
// that whoever watches a soak can read the server's streams and heap.
type natsProcess struct {
	cmd     *exec.Cmd
	url     string
	monURL  string // its monitoring endpoint: /varz, /jsz?streams=true
	profURL string // its pprof endpoint: /debug/pprof/heap
	logPath string
	exited  chan struct{}
	waitErr error

	gcMu    sync.Mutex
	gctrace *benchkit.GCTrace
}

// startNATSProcess builds and starts the server, with env added to its
// environment, and waits until it takes connections.
func (b *bench) startNATSProcess(ctx context.Context, env []string) (*natsProcess, error) {
	bin := filepath.Join(b.dir, "nats-server")
	if err := b.goBuild(ctx, bin, "github.com/nats-io/nats-server/v2"); err != nil {
		return nil, err
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	monAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	profAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	_, port, _ := net.SplitHostPort(addr)
	_, monPort, _ := net.SplitHostPort(monAddr)
	_, profPort, _ := net.SplitHostPort(profAddr)
	p := &natsProcess{url: "nats://" + addr, monURL: "http://" + monAddr, profURL: "http://" + profAddr,
		logPath: filepath.Join(b.dir, "nats-server.log"), exited: make(chan struct{})}
	p.gctrace = &benchkit.GCTrace{Path: p.logPath}
	logf, err := os.Create(p.logPath)
	if err != nil {
		return nil, fmt.Errorf("create nats-server log: %w", err)
	}
	defer logf.Close() // the child has its own descriptor
	p.cmd = exec.Command(bin, "-a", "127.0.0.1", "-p", port, "-js", "-sd", filepath.Join(b.dir, "nats"), "-n", "mailtel-bench",
		"-m", monPort, "--profile", profPort)
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	p.cmd.Env = append(append(os.Environ(), env...), "GODEBUG=gctrace=1")
	setDeathSignal(p.cmd) // the server dies with this process, even on SIGKILL
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	go func() { p.waitErr = p.cmd.Wait(); close(p.exited) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		nc, err := nats.Connect(p.url, nats.Timeout(time.Second))
		if err == nil {
			nc.Close()
			b.progress("nats-server: %s, monitoring %s/jsz?streams=true, profiling %s/debug/pprof/heap", p.url, p.monURL, p.profURL)
			return p, nil
		}
		select {
		case <-p.exited:
			return nil, fmt.Errorf("nats-server exited before it took connections: %v (log %s)", p.waitErr, p.logPath)
		case <-ctx.Done():
			p.stop()
			return nil, fmt.Errorf("wait for nats-server: %w", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.stop()
			return nil, fmt.Errorf("nats-server not taking connections on %s after 30s: %v (log %s)", addr, err, p.logPath)
		}
	}
}

// sample reads the server process: RSS and CPU from /proc, GC CPU and the
// live heap of its last GC cycle from its gctrace lines.
func (p *natsProcess) sample(at time.Duration) (benchkit.ProcSample, error) {
	pr, err := benchkit.ReadProc(p.cmd.Process.Pid)
	if err != nil {
		return benchkit.ProcSample{}, fmt.Errorf("nats-server: %w", err)
	}
	s := benchkit.ProcSample{At: at, RSS: pr.RSS, Heap: -1, CPU: pr.CPU, GCCPU: -1}
	p.gcMu.Lock()
	defer p.gcMu.Unlock()
	if gc, _, err := p.gctrace.Read(); err == nil {
		s.GCCPU = gc
		if live := p.gctrace.Live(); live >= 0 {
			s.Heap = live
		}
	}
	return s, nil
}

// stop stops the server and waits for it (bounded). It is idempotent.
func (p *natsProcess) stop() { stopChild(p.cmd, p.exited, 15*time.Second) }
