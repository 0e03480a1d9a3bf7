package secretstest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"flag"
	"fmt"
	"hash/fnv"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mailtel/mailtel/pipeline/pipelinetest"
)

// buildBinaries returns the directory of the router, sinks and publisher
// executables (see pipelinetest.Binaries).
func buildBinaries(t *testing.T) string { return pipelinetest.Binaries(t) }

func TestMain(m *testing.M) {
	code := m.Run()
	pipelinetest.RemoveBinaries()
	os.Exit(code)
}

// secret is one secret value and where the configuration holds it.
type secret struct {
	name  string // "publisher.token", "webhook.bad.url query"
	value string
}

// pair is a user name and the secret that goes with it, which HTTP basic
// auth sends as base64("user:secret").
type pair struct {
	user   string
	secret string // value
}

// secretSet is every secret of a test run.
type secretSet struct {
	list  []secret
	pairs []pair
}

// add returns a new secret value for name: "SECRET-<slug>-<4 hex>", made
// of characters that need no escaping in TOML, URLs and JSON.
func (s *secretSet) add(name, slug string) string {
	h := fnv.New32a()
	h.Write([]byte(name))
	v := fmt.Sprintf("SECRET-%s-%04x", slug, h.Sum32()&0xffff)
	for _, o := range s.list {
		if o.value == v {
			panic("two secrets with value " + v)
		}
	}
	s.list = append(s.list, secret{name: name, value: v})
	return v
}

func (s *secretSet) pair(user, value string) { s.pairs = append(s.pairs, pair{user, value}) }

// needle is one string that must not appear in an output.
type needle struct {
	what string // the secret's name and the encoding
	text []byte
	fold bool // compare case-insensitively (text is lower case)
	// fallback needles are looked for only in lines where no other was
	// found; they come last.
	fallback bool
}

// needles returns what the search looks for: each secret as is (in any
// case), in standard and URL base64 (with and without padding) and in hex;
// each user:secret pair in base64 (the basic auth header); and the prefix
// every secret starts with, so that a secret cut short is found too.
func (s *secretSet) needles() []needle {
	var out []needle
	b64 := func(what, v string) {
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding} {
			e := strings.TrimRight(enc.EncodeToString([]byte(v)), "=")
			out = append(out, needle{what: what, text: []byte(e)})
		}
	}
	for _, sec := range s.list {
		out = append(out, needle{what: sec.name, text: []byte(strings.ToLower(sec.value)), fold: true})
		b64(sec.name+" in base64", sec.value)
		out = append(out, needle{what: sec.name + " in hex", text: []byte(hex.EncodeToString([]byte(sec.value))), fold: true})
	}
	for _, p := range s.pairs {
		b64(fmt.Sprintf("basic auth pair %s:%s in base64", p.user, p.secret), p.user+":"+p.secret)
	}
	out = append(out, needle{what: "the start of some secret (SECRET-)", text: []byte("SECRET-"), fallback: true})
	return out
}

// output is what one channel produced: a process's stderr, a command's
// stdout, a scraped endpoint, a stream message.
type output struct {
	channel string
	data    []byte
}

// outputs collects every output of a run; safe for concurrent use.
type outputs struct {
	mu   sync.Mutex
	list []output
	seen map[[32]byte]bool // channel + data, so repeated scrapes are kept once
}

func (o *outputs) add(channel string, data []byte) {
	if len(data) == 0 {
		return
	}
	h := sha256.New()
	h.Write([]byte(channel))
	h.Write([]byte{0})
	h.Write(data)
	var key [32]byte
	copy(key[:], h.Sum(nil))
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.seen == nil {
		o.seen = map[[32]byte]bool{}
	}
	if o.seen[key] {
		return
	}
	o.seen[key] = true
	o.list = append(o.list, output{channel: channel, data: bytes.Clone(data)})
}

func (o *outputs) all() []output {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]output(nil), o.list...)
}

// find returns the outputs whose channel has the given prefix and whose
// data contains s.
func (o *outputs) find(prefix, s string) []string {
	var out []string
	for _, x := range o.all() {
		if strings.HasPrefix(x.channel, prefix) && bytes.Contains(x.data, []byte(s)) {
			out = append(out, x.channel)
		}
	}
	return out
}

// finding is a needle found in an output.
type finding struct {
	channel string
	line    int
	what    string
	excerpt string
}

// search returns every needle found in outs, line by line. A line is
// searched for the prefix every secret starts with only when no secret was
// found in it whole.
func search(outs []output, needles []needle) []finding {
	var found []finding
	seen := map[string]bool{}
	var uniq []needle
	for _, n := range needles {
		if !seen[string(n.text)] {
			seen[string(n.text)] = true
			uniq = append(uniq, n)
		}
	}
	for _, o := range outs {
		for i, line := range bytes.Split(o.data, []byte("\n")) {
			var lower []byte
			whole := false
			for _, n := range uniq {
				if n.fallback && whole {
					continue
				}
				hay := line
				if n.fold {
					if lower == nil {
						lower = bytes.ToLower(line)
					}
					hay = lower
				}
				if at := bytes.Index(hay, n.text); at >= 0 {
					whole = true
					found = append(found, finding{channel: o.channel, line: i + 1, what: n.what, excerpt: excerpt(line, at, len(n.text))})
				}
			}
		}
	}
	return found
}

// report summarises findings: per channel (stream messages grouped by
// stream), each secret found with the number of lines and the first line,
// and one excerpt.
func report(found []finding) string {
	type group struct {
		channel string
		secrets map[string][]int // what -> lines
		first   finding
		n       int
	}
	groups := map[string]*group{}
	var order []string
	for _, f := range found {
		ch := f.channel
		if i := strings.Index(ch, " seq "); i >= 0 {
			ch = ch[:i]
		}
		g := groups[ch]
		if g == nil {
			g = &group{channel: ch, secrets: map[string][]int{}, first: f}
			groups[ch] = g
			order = append(order, ch)
		}
		g.n++
		g.secrets[f.what] = append(g.secrets[f.what], f.line)
	}
	sort.Strings(order)
	var b strings.Builder
	for _, ch := range order {
		g := groups[ch]
		fmt.Fprintf(&b, "  %s: %d findings\n", ch, g.n)
		whats := make([]string, 0, len(g.secrets))
		for w := range g.secrets {
			whats = append(whats, w)
		}
		sort.Strings(whats)
		for _, w := range whats {
			lines := g.secrets[w]
			fmt.Fprintf(&b, "      %s: %d lines, first line %d\n", w, len(lines), lines[0])
		}
		fmt.Fprintf(&b, "      e.g. %s, line %d: %s\n", g.first.channel, g.first.line, g.first.excerpt)
	}
	return b.String()
}

// excerpt returns the part of line around [at, at+n), on one line.
func excerpt(line []byte, at, n int) string {
	from, to := max(0, at-120), min(len(line), at+n+120)
	s := string(line[from:to])
	if from > 0 {
		s = "…" + s
	}
	if to < len(line) {
		s += "…"
	}
	return strings.ReplaceAll(strings.ReplaceAll(s, "\r", `\r`), "\t", " ")
}

// proc is one run of one binary.
type proc struct {
	name   string // channel name: "sinks (json)"
	cmd    *exec.Cmd
	stdout pipelinetest.SyncBuffer
	stderr pipelinetest.SyncBuffer
	done   chan struct{}
	err    error // set before done is closed

	stopOnce sync.Once
}

// harness runs the binaries of one test and collects their outputs.
type harness struct {
	t   *testing.T
	bin string
	dir string
	env []string // added to every process's environment
	out outputs

	mu    sync.Mutex
	procs []*proc
}

var flagKeep = flag.Bool("secrets.keep", false, "keep the work directory (configuration files, logs, stream stores)")

func newHarness(t *testing.T) *harness {
	dir := t.TempDir()
	if *flagKeep {
		var err error
		if dir, err = os.MkdirTemp("", "mailtel-secretstest-*"); err != nil {
			t.Fatal(err)
		}
		t.Logf("keeping the work directory %s", dir)
	}
	h := &harness{t: t, bin: buildBinaries(t), dir: dir}
	t.Cleanup(h.killAll)
	return h
}

// start starts exe (router, sinks or publisher) with args; its output is
// recorded under name when it stops. It is safe for concurrent use.
func (h *harness) start(name, exe string, args ...string) *proc {
	h.t.Helper()
	p := &proc{name: name, done: make(chan struct{})}
	p.cmd = exec.Command(filepath.Join(h.bin, exe), args...)
	p.cmd.Env = append(os.Environ(), h.env...)
	p.cmd.Dir = h.dir
	p.cmd.Stdout = &p.stdout
	p.cmd.Stderr = &p.stderr
	if err := p.cmd.Start(); err != nil {
		h.t.Errorf("start %s: %v", name, err) // not Fatal: start runs on other goroutines too
		p.err = err
		close(p.done)
		return p
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	h.mu.Lock()
	h.procs = append(h.procs, p)
	h.mu.Unlock()
	return p
}

// stop asks p to stop (SIGINT, then SIGKILL after grace), waits for it and
// records its output. It is idempotent.
func (h *harness) stop(p *proc, grace time.Duration) {
	p.stopOnce.Do(func() {
		select {
		case <-p.done:
		default:
			p.cmd.Process.Signal(syscall.SIGINT)
			select {
			case <-p.done:
			case <-time.After(grace):
				p.cmd.Process.Kill()
				<-p.done
			}
		}
		h.out.add(p.name+" stdout", []byte(p.stdout.String()))
		h.out.add(p.name+" stderr", []byte(p.stderr.String()))
		if *flagKeep {
			name := strings.NewReplacer("/", "_", " ", "_").Replace(p.name)
			os.MkdirAll(filepath.Join(h.dir, "out"), 0o700)
			os.WriteFile(filepath.Join(h.dir, "out", name+".stdout"), []byte(p.stdout.String()), 0o600)
			os.WriteFile(filepath.Join(h.dir, "out", name+".stderr"), []byte(p.stderr.String()), 0o600)
		}
	})
}

// exited reports whether p has exited.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// run runs exe until it exits, or for at most d (then it is interrupted),
// and returns its stdout and stderr.
func (h *harness) run(name string, d time.Duration, exe string, args ...string) (stdout, stderr string) {
	p := h.start(name, exe, args...)
	select {
	case <-p.done:
	case <-time.After(d):
	}
	h.stop(p, 5*time.Second)
	return p.stdout.String(), p.stderr.String()
}

func (h *harness) killAll() {
	h.mu.Lock()
	procs := append([]*proc(nil), h.procs...)
	h.mu.Unlock()
	for _, p := range procs {
		if !p.exited() {
			p.cmd.Process.Kill()
			<-p.done
		}
	}
}

// write writes a file under the work directory and returns its path.
func (h *harness) write(name, content string) string {
	h.t.Helper()
	path := filepath.Join(h.dir, name)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		h.t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		h.t.Fatal(err)
	}
	return path
}

// recordFiles records every file under dir.
func (h *harness) recordFiles(dir string) {
	filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		if data, err := os.ReadFile(path); err == nil {
			rel, _ := filepath.Rel(h.dir, path)
			h.out.add("file "+rel, data)
		}
		return nil
	})
}

// get fetches url (with an Authorization header when auth is set) and
// records the answer; it returns the status and body.
func (h *harness) get(url, auth string) (int, string, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	resp, err := http.DefaultClient.Do(req.WithContext(ctx))
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	h.out.add("GET "+url, append([]byte(fmt.Sprintf("%d %s\n", resp.StatusCode, headerLines(resp.Header))), body...))
	return resp.StatusCode, string(body), nil
}

// headerLines renders h as "Key: value" lines, sorted.
func headerLines(h http.Header) string {
	var lines []string
	for k, vs := range h {
		for _, v := range vs {
			lines = append(lines, k+": "+v)
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// waitFor polls cond every 100ms until it holds or d passes.
func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// parallel runs the fns, at most n at a time, and waits for them.
func parallel(n int, fns ...func()) {
	sem := make(chan struct{}, n)
	var wg sync.WaitGroup
	for _, fn := range fns {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			fn()
		}()
	}
	wg.Wait()
}
