package crashtest

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mailtel/mailtel/pipeline"
	"github.com/mailtel/mailtel/pipeline/config"
	"github.com/mailtel/mailtel/pipeline/pipelinetest"
)

var (
	flagNATSServer = flag.String("crash.nats-server", "", "run the JetStream server as a separate process: `path` of a nats-server executable, "+
		`or "build" to build the module's nats-server dependency (default: a server embedded in the test process)`)
	flagStress = flag.Bool("crash.stress", false, "run two busy-loop processes beside the test for its whole duration (CPU contention)")
)

// natsServer is the JetStream server of one crash run, embedded in the
// test process or a nats-server process of its own, with a client of the
// test's.
type natsServer struct {
	url string
	js  jetstream.JetStream

	embedded *pipeline.Embedded // embedded form
	// process form
	cmd     *exec.Cmd
	logPath string
	monitor string // monitoring address (host:port)
	done    chan struct{}
	waitErr error
}

// startServer starts the server -crash.nats-server asks for, storing under
// dir/nats (process form) or a test temp dir (embedded), and connects to it.
// The server is stopped when the test ends.
func startServer(t *testing.T, dir string) *natsServer {
	t.Helper()
	if *flagNATSServer == "" {
		env := pipelinetest.Start(t)
		return &natsServer{url: env.NATS.URL, js: env.JS, embedded: env.Server}
	}
	exe := *flagNATSServer
	if exe == "build" {
		exe = buildNATSServer(t)
	}
	s := &natsServer{logPath: filepath.Join(dir, "logs", "nats-server.log"), done: make(chan struct{})}
	if err := os.MkdirAll(filepath.Dir(s.logPath), 0o750); err != nil {
		t.Fatal(err)
	}
	addr, mon := pipelinetest.FreeAddr(t), pipelinetest.FreeAddr(t)
	host, port, _ := strings.Cut(addr, ":")
	_, monPort, _ := strings.Cut(mon, ":")
	s.url, s.monitor = "nats://"+addr, mon
	logf, err := os.Create(s.logPath)
	if err != nil {
		t.Fatal(err)
	}
	s.cmd = exec.Command(exe, "-a", host, "-p", port, "-m", monPort, "-n", "mailtel-crash", "-js", "-sd", filepath.Join(dir, "nats"))
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	s.cmd.Env = append(os.Environ(), "GOTRACEBACK=all")
	setDeathSignal(s.cmd)
	if err := s.cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("start %s: %v", exe, err)
	}
	go func() {
		s.waitErr = s.cmd.Wait()
		logf.Close()
		close(s.done)
	}()
	t.Cleanup(func() {
		select {
		case <-s.done:
			return
		default:
		}
		s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.done:
		case <-time.After(15 * time.Second):
			s.cmd.Process.Kill()
			<-s.done
		}
	})
	t.Logf("nats-server process pid %d on %s (monitoring %s), log %s", s.cmd.Process.Pid, s.url, s.monitor, s.logPath)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	nc, js, err := pipeline.Connect(ctx, config.NATS{URL: s.url}, "mailtel-crashtest", 0)
	if err != nil {
		t.Fatalf("connect to the nats-server process: %v; log:\n%s", err, tail(s.logPath, 30))
	}
	t.Cleanup(nc.Close)
	s.js = js
	// JetStream may need a moment after the client port opens.
	for {
		if _, err := js.AccountInfo(ctx); err == nil {
			break
		} else if ctx.Err() != nil {
			t.Fatalf("nats-server process: JetStream not ready: %v; log:\n%s", err, tail(s.logPath, 30))
		}
		time.Sleep(100 * time.Millisecond)
	}
	return s
}

func (s *natsServer) running() bool {
	if s.embedded != nil {
		return true
	}
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

// describe names the server form for the test log.
func (s *natsServer) describe() string {
	if s.embedded != nil {
		return "embedded nats-server"
	}
	return fmt.Sprintf("nats-server process pid %d", s.cmd.Process.Pid)
}

// connections returns one line per client connection the server has:
// its name, pending bytes, messages in and out, subscriptions, idle time.
func (s *natsServer) connections() (string, error) {
	var cz *server.Connz
	if s.embedded != nil {
		var err error
		if cz, err = s.embedded.Server().Connz(&server.ConnzOptions{}); err != nil {
			return "", err
		}
	} else {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+s.monitor+"/connz", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		cz = new(server.Connz)
		if err := json.NewDecoder(resp.Body).Decode(cz); err != nil {
			return "", fmt.Errorf("decode /connz: %w", err)
		}
	}
	var b strings.Builder
	for _, c := range cz.Conns {
		fmt.Fprintf(&b, "  cid %-4d %-22s %-21s pending %7d B  in %8d msgs  out %8d msgs  subs %3d  idle %-8s rtt %s\n",
			c.Cid, c.Name, fmt.Sprintf("%s:%d", c.IP, c.Port), c.Pending, c.InMsgs, c.OutMsgs, c.NumSubs, c.Idle, c.RTT)
	}
	return b.String(), nil
}

// goroutines returns the server's goroutines: for the embedded form those
// of the whole test process (aggregated by stack, as pprof prints them);
// for the process form it sends SIGQUIT, which makes nats-server print
// them and exit, and returns them summarised.
func (s *natsServer) goroutines() (string, error) {
	if s.embedded != nil {
		var b strings.Builder
		if err := pprof.Lookup("goroutine").WriteTo(&b, 1); err != nil {
			return "", err
		}
		return b.String(), nil
	}
	if !s.running() {
		return "", fmt.Errorf("nats-server process already exited: %v", s.waitErr)
	}
	size := fileSize(s.logPath)
	s.cmd.Process.Signal(syscall.SIGQUIT)
	select {
	case <-s.done:
	case <-time.After(15 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
	}
	dump, err := readFrom(s.logPath, size)
	if err != nil {
		return "", err
	}
	return summarizeGoroutines(dump), nil
}

// nats-server built from the module, once per test binary run.
var natsBuild struct {
	once sync.Once
	path string
	err  error
}

// buildNATSServer builds github.com/nats-io/nats-server/v2 at the version
// go.mod requires into the binaries directory (the Go build cache makes
// this quick after the first time).
func buildNATSServer(t *testing.T) string {
	t.Helper()
	bin := buildBinaries(t)
	natsBuild.once.Do(func() {
		goTool, err := exec.LookPath("go")
		if err != nil {
			goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
		}
		natsBuild.path = filepath.Join(bin, "nats-server")
		cmd := exec.Command(goTool, "build", "-o", natsBuild.path, "github.com/nats-io/nats-server/v2")
		cmd.Dir = filepath.Join("..", "..")
		if out, err := cmd.CombinedOutput(); err != nil {
			natsBuild.err = fmt.Errorf("go build nats-server: %w\n%s", err, out)
		}
	})
	if natsBuild.err != nil {
		t.Fatal(natsBuild.err)
	}
	return natsBuild.path
}

// startStress starts, with -crash.stress, two busy-loop processes that
// run until the test ends.
func startStress(t *testing.T) {
	t.Helper()
	if !*flagStress {
		return
	}
	for range 2 {
		cmd := exec.Command("sh", "-c", "while :; do :; done")
		setDeathSignal(cmd)
		if err := cmd.Start(); err != nil {
			t.Fatalf("start busy loop: %v", err)
		}
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		t.Cleanup(func() { cmd.Process.Kill(); <-done })
		t.Logf("stress: busy loop pid %d", cmd.Process.Pid)
	}
}

func fileSize(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.Size()
}

// readFrom returns the contents of the file at path from offset on.
func readFrom(path string, offset int64) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return "", err
	}
	data, err := io.ReadAll(f)
	return string(data), err
}
