package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/mailtel/mailtel/pipeline"
	"github.com/mailtel/mailtel/pipeline/benchkit"
	"github.com/mailtel/mailtel/pipeline/config"
	"github.com/mailtel/mailtel/pipeline/obs"
)

// routerSample is what a router reports at one moment. Figures a router
// cannot give are NaN (CPU, memory and allocations of an in-process
// router).
type routerSample struct {
	CPU        time.Duration // user+system since start; -1 when unknown
	RSS, HWM   int64         // bytes; -1 when unknown
	Mallocs    float64       // heap objects allocated since start
	AllocBytes float64       // heap bytes allocated since start
	Received   float64       // EVENTS messages received
	Routed     float64       // copies stored in ROUTED
	Heap       int64         // Go heap in use (go_memstats_heap_inuse_bytes); -1 when unknown
	GCCPU      time.Duration // GC CPU since start (gctrace, soak only); -1 when unknown
}

// router is a running router: a separate process or goroutines here.
type router interface {
	sample(ctx context.Context) (routerSample, error)
	// stop stops the router and waits for it (bounded). It is idempotent.
	stop()
	// describe says what the router is, with the end of its log if any.
	describe() string
}

// startRouter starts the router of cfg (written at cfgPath) as -router says.
// With gctrace a router process runs with GODEBUG=gctrace=1, so that its
// samples have its GC CPU time.
func (b *bench) startRouter(ctx context.Context, cfg *config.Config, cfgPath, dir string, gctrace bool) (router, error) {
	if b.o.router == "inproc" {
		return startInprocRouter(ctx, cfg, b.log)
	}
	return startProcRouter(ctx, b.routerBin, cfgPath, b.url, dir, gctrace)
}

// procRouter is the real router binary, `router run`, in its own process.
type procRouter struct {
	cmd     *exec.Cmd
	addr    string // its /metrics and /readyz
	logPath string
	exited  chan struct{}
	waitErr error

	gcMu    sync.Mutex
	gctrace *benchkit.GCTrace // of its log; nil without GODEBUG=gctrace=1
}

func startProcRouter(ctx context.Context, bin, cfgPath, natsURL, dir string, gctrace bool) (*procRouter, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	r := &procRouter{addr: addr, logPath: filepath.Join(dir, "router.log"), exited: make(chan struct{})}
	logf, err := os.Create(r.logPath)
	if err != nil {
		return nil, fmt.Errorf("create router log: %w", err)
	}
	defer logf.Close() // the child has its own descriptor
	r.cmd = exec.Command(bin, "run", "--config", cfgPath, "--nats", natsURL, "--http", addr)
	r.cmd.Stdout, r.cmd.Stderr = logf, logf
	if gctrace {
		// The runtime prints one line per GC cycle to stderr, with its CPU
		// time: the router's /metrics has no GC CPU series.
		r.cmd.Env = append(os.Environ(), "GODEBUG=gctrace=1")
		r.gctrace = &benchkit.GCTrace{Path: r.logPath}
	}
	setDeathSignal(r.cmd) // the router dies with this process, even on SIGKILL
	if err := r.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start router %s: %w", bin, err)
	}
	go func() { r.waitErr = r.cmd.Wait(); close(r.exited) }()

	// Ready: connected and its consumer bound.
	deadline := time.Now().Add(30 * time.Second)
	client := &http.Client{Timeout: time.Second}
	for {
		resp, err := client.Get("http://" + addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return r, nil
			}
		}
		select {
		case <-r.exited:
			return nil, fmt.Errorf("router exited before it was ready: %v; %s", r.waitErr, r.describe())
		case <-ctx.Done():
			r.stop()
			return nil, fmt.Errorf("wait for the router: %w", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			r.stop()
			return nil, fmt.Errorf("router not ready on %s after 30s; %s", addr, r.describe())
		}
	}
}

func (r *procRouter) sample(ctx context.Context) (routerSample, error) {
	p, err := benchkit.ReadProc(r.cmd.Process.Pid)
	if err != nil {
		return routerSample{}, err
	}
	ss, err := benchkit.Scrape(ctx, "http://"+r.addr+"/metrics", 5*time.Second)
	if err != nil {
		return routerSample{}, fmt.Errorf("router metrics: %w", err)
	}
	s := routerSample{CPU: p.CPU, RSS: p.RSS, HWM: p.HWM, Mallocs: math.NaN(), AllocBytes: math.NaN(), Heap: -1, GCCPU: -1}
	if v, ok := ss.Sum("go_memstats_heap_inuse_bytes"); ok {
		s.Heap = int64(v)
	}
	if r.gctrace != nil {
		r.gcMu.Lock()
		gc, _, err := r.gctrace.Read()
		r.gcMu.Unlock()
		if err == nil {
			s.GCCPU = gc
		}
	}
	if v, ok := ss.Sum("go_memstats_mallocs_total"); ok {
		s.Mallocs = v
	}
	if v, ok := ss.Sum("go_memstats_alloc_bytes_total"); ok {
		s.AllocBytes = v
	}
	s.Received, _ = ss.Sum("mailtel_received_total", `stage="router"`)
	s.Routed, _ = ss.Sum("mailtel_routed_total")
	return s, nil
}

func (r *procRouter) stop() { stopChild(r.cmd, r.exited, 10*time.Second) }

// stopChild stops a child process that has not exited yet: SIGTERM, then
// SIGKILL after grace; it returns once exited is closed.
func stopChild(cmd *exec.Cmd, exited <-chan struct{}, grace time.Duration) {
	select {
	case <-exited:
		return
	default:
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(grace):
		cmd.Process.Kill()
		<-exited
	}
}

func (r *procRouter) describe() string {
	data, err := os.ReadFile(r.logPath)
	if err != nil || len(data) == 0 {
		return fmt.Sprintf("router pid %d (no log output)", r.cmd.Process.Pid)
	}
	if r.gctrace != nil { // leave out the runtime's lines
		var keep []byte
		for _, l := range bytes.SplitAfter(data, []byte("\n")) {
			if _, ok := benchkit.ParseGCTraceCPU(string(bytes.TrimSpace(l))); !ok {
				keep = append(keep, l...)
			}
		}
		data = keep
	}
	if len(data) > 2000 {
		data = data[len(data)-2000:]
	}
	return fmt.Sprintf("router pid %d, end of its log:\n%s", r.cmd.Process.Pid, data)
}

// inprocRouter is pipeline.Router in this process, on its own connection,
// set up as `router run` sets it up.
type inprocRouter struct {
	nc      *nats.Conn
	metrics *obs.Metrics
	cancel  context.CancelFunc
	done    chan error
	stopped bool
}

func startInprocRouter(ctx context.Context, cfg *config.Config, log zerolog.Logger) (*inprocRouter, error) {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	nc, js, err := pipeline.Connect(cctx, cfg.NATS, "mailtel-router", 8192) // as cmd/router
	if err != nil {
		return nil, err
	}
	r := &inprocRouter{nc: nc, metrics: obs.NewMetrics(), done: make(chan error, 1)}
	health := obs.NewHealth("consumer")
	rt := pipeline.NewRouter(js, pipeline.NewTable(cfg.SinkSpecs(), cfg.Levels), pipeline.RouterOptionsFrom(cfg),
		log.With().Str("component", "router").Logger(), r.metrics, health)
	rctx, rcancel := context.WithCancel(context.Background())
	r.cancel = rcancel
	go func() { r.done <- rt.Run(rctx) }()
	deadline := time.Now().Add(30 * time.Second)
	for health.Ready() != nil {
		select {
		case err := <-r.done:
			nc.Close()
			return nil, fmt.Errorf("router stopped before it was ready: %v", err)
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			r.stop()
			return nil, errors.New("router not ready after 30s")
		}
	}
	return r, nil
}

func (r *inprocRouter) sample(context.Context) (routerSample, error) {
	ss, err := benchkit.Gather(r.metrics.Registry)
	if err != nil {
		return routerSample{}, err
	}
	s := routerSample{CPU: -1, RSS: -1, HWM: -1, Mallocs: math.NaN(), AllocBytes: math.NaN(), Heap: -1, GCCPU: -1}
	s.Received, _ = ss.Sum("mailtel_received_total", `stage="router"`)
	s.Routed, _ = ss.Sum("mailtel_routed_total")
	return s, nil
}

func (r *inprocRouter) stop() {
	if r.stopped {
		return
	}
	r.stopped = true
	r.cancel()
	select {
	case <-r.done:
	case <-time.After(10 * time.Second):
	}
	r.nc.Close()
}

func (r *inprocRouter) describe() string { return "router in this process" }
