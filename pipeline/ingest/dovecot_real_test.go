package ingest_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mailtel/mailtel/pipeline/config"
	"github.com/mailtel/mailtel/pipeline/ingest"
	"github.com/mailtel/mailtel/pipeline/obs"
	"github.com/mailtel/mailtel/schema"
)

// TestRealDovecot runs a real Dovecot 2.3 (when one is installed) whose
// event_exporter (format = json, transport = http-post) posts
// auth_request_finished to the ingest handler of a [publisher] with
// user/password, served with the configured timeouts against an embedded
// NATS server, triggers authentications with `doveadm auth test`, and
// checks what Dovecot sent (Content-Type: application/json, basic auth
// from the exporter's URL), that every request was answered 200, and that
// the events are in EVENTS as auth.request-finished with Dovecot's
// fields. The ingest's idle-timeout is 1s and the test waits past it
// between two authentications: Dovecot keeps its connection alive, and
// must post again on a new one once ingest closed the idle one.
//
// Dovecot runs with no protocols (no TCP port of its own) in a directory
// of its own, and is stopped, with its children, when the test ends.
func TestRealDovecot(t *testing.T) {
	dovecot, doveadm := dovecotBinaries(t)

	const dcUser, dcPass = "alice", "alicepw"
	secret := make([]byte, 12)
	rand.Read(secret)
	cfg := config.Default().Publisher
	cfg.User, cfg.Password = "dovecot", hex.EncodeToString(secret)
	cfg.IdleTimeout = config.Duration(time.Second)

	// The ingest server of `publisher ingest`, with a recorder of what
	// Dovecot sent and what it was answered.
	env, c, pub := setup(t)
	h := ingest.NewHandler(pub, env.JS, cfg, zerolog.Nop(), obs.NewMetrics())
	rec := &recorder{next: h}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := ingest.NewServer(rec, cfg)
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	// Dovecot's processes run as its internal user, which must reach the
	// files: a directory of mode 0755 (t.TempDir's parents are 0700), with
	// a short path for its sockets.
	dir, err := os.MkdirTemp("", "mailtel-dovecot-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	internal, login := "dovecot", "dovenull"
	if os.Geteuid() != 0 {
		u, err := user.Current()
		if err != nil {
			t.Skipf("dovecot as non-root needs the user name: %v", err)
		}
		internal, login = u.Username, u.Username
	}
	users := filepath.Join(dir, "users")
	os.WriteFile(users, []byte(dcUser+":{PLAIN}"+dcPass+"\n"), 0o644)
	conf := filepath.Join(dir, "dovecot.conf")
	os.WriteFile(conf, []byte(fmt.Sprintf(`base_dir = %[1]s/run
state_dir = %[1]s/state
log_path = %[1]s/dovecot.log
protocols = none
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_failure_delay = 0
default_internal_user = %[2]s
default_login_user = %[3]s
passdb {
  driver = passwd-file
  args = scheme=PLAIN %[4]s
}
userdb {
  driver = static
  args = uid=%[2]s gid=%[2]s home=%[1]s/home/%%u
}
event_exporter mailtel {
  format = json
  format_args = time-rfc3339
  transport = http-post
  transport_args = http://%[5]s:%[6]s@%[7]s%[8]s
  transport_timeout = 5s
}
metric auth_requests {
  exporter = mailtel
  filter = event=auth_request_finished
}
`, dir, internal, login, users, cfg.User, cfg.Password, ln.Addr(), ingest.PathDovecot)), 0o644)

	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Second)
	defer cancel()
	cmd := exec.Command(dovecot, "-F", "-c", conf)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start dovecot: %v", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	// Stop dovecot, which stops its children; kill its process group if it
	// does not within 5s. Registered after the directory's cleanup, so it
	// runs before it.
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
		if t.Failed() {
			log, _ := os.ReadFile(filepath.Join(dir, "dovecot.log"))
			t.Logf("dovecot output:\n%s\ndovecot.log:\n%s", out.String(), log)
		}
	})
	for _, sock := range []string{"auth-client", "stats-writer"} {
		for {
			if _, err := os.Stat(filepath.Join(dir, "run", sock)); err == nil {
				break
			}
			select {
			case <-exited:
				t.Fatalf("dovecot exited: %s", out.String())
			case <-ctx.Done():
				t.Fatalf("dovecot made no %s socket", sock)
			case <-time.After(20 * time.Millisecond):
			}
		}
	}

	// Each from a remote IP of its own: Dovecot delays the authentications
	// from an IP after one failed (seconds, doubling).
	attempts := 0
	authTest := func(name, pass string, ok bool) {
		t.Helper()
		attempts++
		rip := fmt.Sprintf("rip=127.0.0.%d", 10+attempts)
		b, err := exec.CommandContext(ctx, doveadm, "-c", conf, "auth", "test", "-x", rip, name, pass).CombinedOutput()
		if ok != (err == nil) || !strings.Contains(string(b), map[bool]string{true: "auth succeeded", false: "auth failed"}[ok]) {
			t.Fatalf("doveadm auth test %s: %v\n%s", name, err, b)
		}
	}
	waitEvents := func(n uint64) {
		t.Helper()
		s, err := env.JS.Stream(ctx, c.Streams.Events)
		if err != nil {
			t.Fatal(err)
		}
		for {
			info, err := s.Info(ctx)
			if err == nil && info.State.Msgs >= n {
				return
			}
			select {
			case <-ctx.Done():
				t.Fatalf("EVENTS holds fewer than %d events; ingest saw %v", n, rec.all())
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	authTest(dcUser, dcPass, true)
	authTest(dcUser, "wrong", false)
	authTest("nobody", "x", false)
	waitEvents(3)
	time.Sleep(cfg.IdleTimeout.D() + time.Second) // ingest closes Dovecot's idle connection
	authTest(dcUser, dcPass, true)
	waitEvents(4)

	for deadline := time.Now().Add(5 * time.Second); len(rec.all()) < 4 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond) // the recorder notes an answer once it is written
	}
	for _, r := range rec.all() {
		if r.path != ingest.PathDovecot || r.status != http.StatusOK || r.contentType != "application/json" || r.scheme != "Basic" {
			t.Errorf("request %+v, want POST %s with Content-Type application/json and Basic auth, answered 200", r, ingest.PathDovecot)
		}
	}
	if all := rec.all(); len(all) != 4 {
		t.Errorf("ingest saw %d requests, want one per authentication, 4", len(all))
	} else {
		for _, r := range all[:3] {
			if r.remote == all[3].remote {
				t.Errorf("the request after the idle timeout came on the connection %s of an earlier one", r.remote)
			}
		}
	}

	var succeeded, failed int
	users2 := map[string]int{}
	for id, ev := range stored(t, env.JS, c) {
		if ev.Type != "auth.request-finished" || ev.Server != "dovecot" || ev.Host == "" || ev.Time.IsZero() {
			t.Errorf("event %s: type %q server %q host %q time %v", id, ev.Type, ev.Server, ev.Host, ev.Time)
		}
		for key, want := range map[string]string{"mechanism": "PLAIN", "service": "doveadm", "transport": "insecure"} {
			if v, ok := ev.Get(key); !ok || v.Str() != want {
				t.Errorf("event %s: %s = %#v, want %q", id, key, v, want)
			}
		}
		u, _ := ev.Get("user")
		users2[u.Str()]++
		if v, ok := ev.Get("success"); ok && v.Str() == "yes" {
			succeeded++
		} else {
			failed++
		}
		if v, ok := ev.Get("duration"); !ok || v.Kind() != schema.KindDuration {
			t.Errorf("event %s: duration %#v, want a duration; fields %v", id, v, fieldKeys(ev))
		}
		// doveadm's -x rip=: a string today (remote_ip is not among the
		// seed's typed keys), an IP should it become one.
		ip, _ := ev.Get("remote_ip")
		if ip.Kind() == schema.KindIP {
			ip = schema.String(ip.IP().String())
		}
		if !strings.HasPrefix(ip.Str(), "127.0.0.") {
			t.Errorf("event %s: remote_ip %#v, want doveadm's 127.0.0.x", id, ip)
		}
	}
	if succeeded != 2 || failed != 2 || users2[dcUser] != 3 || users2["nobody"] != 1 {
		t.Errorf("stored %d succeeded, %d failed, users %v; want 2, 2, %s 3 and nobody 1", succeeded, failed, users2, dcUser)
	}
}

// dovecotBinaries returns the paths of dovecot and doveadm, or skips the
// test unless they are Dovecot 2.3 (2.4 configures its exporters
// otherwise).
func dovecotBinaries(t *testing.T) (dovecot, doveadm string) {
	t.Helper()
	find := func(name string) string {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
		for _, d := range []string{"/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"} {
			if p := filepath.Join(d, name); fileExists(p) {
				return p
			}
		}
		return ""
	}
	dovecot, doveadm = find("dovecot"), find("doveadm")
	if dovecot == "" || doveadm == "" {
		t.Skip("no dovecot and doveadm installed (Debian: apt-get install dovecot-core): the real Dovecot exporter is not tested")
	}
	v, err := exec.Command(dovecot, "--version").Output()
	if err != nil || !strings.HasPrefix(string(v), "2.3.") {
		t.Skipf("dovecot --version = %q (%v): this test configures Dovecot 2.3's event_exporter", strings.TrimSpace(string(v)), err)
	}
	return dovecot, doveadm
}

func fileExists(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir()
}

func fieldKeys(ev *schema.Event) []string {
	var keys []string
	for _, f := range ev.Fields {
		keys = append(keys, f.Key)
	}
	return keys
}

// recorder records, for every request, what it came with and the status
// it was answered.
type recorder struct {
	next http.Handler
	mu   sync.Mutex
	seen []seen
}

type seen struct {
	path, contentType, scheme, remote string
	status                            int
}

func (rec *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s := seen{path: r.URL.Path, contentType: r.Header.Get("Content-Type"), remote: r.RemoteAddr}
	s.scheme, _, _ = strings.Cut(r.Header.Get("Authorization"), " ")
	sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
	rec.next.ServeHTTP(sw, r)
	s.status = sw.status
	rec.mu.Lock()
	rec.seen = append(rec.seen, s)
	rec.mu.Unlock()
}

func (rec *recorder) all() []seen {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return append([]seen(nil), rec.seen...)
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
