package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mailtel/mailtel/pipeline/pipelinetest"
)

var rssFull = flag.Bool("rss.full", false, "TestIngestRSS: also the many-small-events bodies (slow on a loaded machine)")

// IngestRSSBound is the peak RSS `publisher ingest` stays under with the
// default [publisher] settings (max-body 8 MiB, max-in-flight-bytes
// 64 MiB), whatever its senders do: IngestMemoryBase +
// IngestMemoryPerByte x max-in-flight-bytes (its soft memory limit), plus
// 48 MiB for what the Go runtime does not count against the limit (the
// program's text) and for the collector running behind.
const IngestRSSBound = IngestMemoryBase + IngestMemoryPerByte*(64<<20) + 48<<20

// TestIngestRSS runs the real publisher binary against an embedded NATS
// server and posts 64 authenticated bodies of 8 MiB (max-body) at once,
// retrying each on 503 until it is stored: bodies holding one huge string
// (the worst case of the old code: 3.7 GiB) and, with -rss.full, bodies of
// many small events. It samples the publisher's RSS from /proc and checks
// that its peak (VmHWM) stays under IngestRSSBound, and that every request
// is answered as it should be.
func TestIngestRSS(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the publisher binary with 512 MiB of requests")
	}
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc/<pid>/status")
	}
	env := pipelinetest.Start(t)
	dir := t.TempDir()
	bin := filepath.Join(dir, "publisher")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	cfgPath := filepath.Join(dir, "mailtel.toml")
	os.WriteFile(cfgPath, []byte("[publisher]\nlisten = \"127.0.0.1:0\"\ntoken = \"t0ken\"\n[logging]\nformat = \"json\"\n"), 0o644)
	cmd := exec.Command(bin, "ingest", "--config", cfgPath, "--nats", env.NATS.URL, "--http", "")
	// The process's own GC settings; a GC trace for the live heap.
	cmd.Env = append(os.Environ(), "GOMEMLIMIT=", "GOGC=", "GODEBUG=gctrace=1")
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	}()
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sent := false
		for sc.Scan() {
			var line struct{ Listen, Level, Message string }
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Listen != "" && !sent {
				addr <- line.Listen
				sent = true
			} else if line.Level == "error" {
				t.Logf("publisher: %s", sc.Bytes())
			} else if bytes.HasPrefix(sc.Bytes(), []byte("gc ")) {
				gcTrace(sc.Text())
			}
		}
	}()
	var url string
	select {
	case a := <-addr:
		url = "http://" + a
	case <-time.After(30 * time.Second):
		t.Fatal("the publisher did not start listening within 30s")
	}

	pid := cmd.Process.Pid
	idle := procStatus(t, pid, "VmRSS")
	var peak int64
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			if rss := procStatus(t, pid, "VmRSS"); rss > peak {
				peak = rss
			}
			select {
			case <-stopSampling:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()

	const maxBody = 8 << 20
	type kind struct {
		name string
		size int64
		body func(i int) io.Reader
		// check says what is wrong with the 200 answer to request i.
		check func(i int, a answerJSON) string
	}
	// One huge string: a prefix naming the request, 8 MiB of "x", the end.
	huge := bytes.Repeat([]byte("x"), maxBody)
	singleString := kind{"single string", maxBody, func(i int) io.Reader {
		head := fmt.Sprintf(`{"events":[{"id":"big-%02d","createdAt":"2025-11-27T14:59:28Z","type":"auth.failed","data":{"accountName":"mallory","payload":"`, i)
		tail := `"}}]}`
		return io.MultiReader(strings.NewReader(head), bytes.NewReader(huge[:maxBody-len(head)-len(tail)]), strings.NewReader(tail))
	}, func(i int, a answerJSON) string {
		if a.Accepted != 0 || len(a.Rejected) != 1 || !strings.Contains(a.Rejected[0].Error, "more than the limit of 65536") {
			return "want the event rejected over max-string"
		}
		return ""
	}}
	kinds := []kind{singleString}
	if *rssFull {
		// Every request of these kinds sends the same events, so JetStream
		// stores them once, but the publisher does all the work.
		batch := func(name string, size int, event func(n int) string) kind {
			var b bytes.Buffer
			b.WriteString(`{"events":[`)
			n := 0
			for {
				ev := event(n)
				if b.Len()+len(ev)+3 > size {
					break
				}
				if n > 0 {
					b.WriteByte(',')
				}
				b.WriteString(ev)
				n++
			}
			b.WriteString(`]}`)
			return kind{fmt.Sprintf("%s (%d events)", name, n), int64(b.Len()), func(int) io.Reader { return bytes.NewReader(b.Bytes()) },
				func(i int, a answerJSON) string {
					if a.Accepted != n || len(a.Rejected) != 0 {
						return fmt.Sprintf("want %d events accepted", n)
					}
					return ""
				}}
		}
		event := func(id, data string) string {
			return `{"id":"` + id + `","createdAt":"2025-11-27T14:59:28Z","type":"auth.failed","data":{` + data + `}}`
		}
		// Events of about 1 KiB.
		kinds = append(kinds, batch("8 MiB bodies of small events", maxBody, func(n int) string {
			return event(fmt.Sprintf("small-%06d", n), fmt.Sprintf(`"accountName":"mallory%d","remoteIp":"192.0.2.%d","details":"%s"`, n, n%250, strings.Repeat("y", 900)))
		}))
		// Events of 64 lists of 512 small numbers: within the limits, and
		// 64 bytes in memory for each 2 bytes of JSON once decoded.
		list := "[" + strings.Repeat("7,", 511) + "7]"
		var fields []string
		for f := 0; f < 64; f++ {
			fields = append(fields, fmt.Sprintf(`"f%02d":%s`, f, list))
		}
		kinds = append(kinds, batch("1 MiB bodies of events of many tiny values", 1<<20, func(n int) string {
			return event(fmt.Sprintf("tiny-%06d", n), strings.Join(fields, ","))
		}))
		// Events of 12 strings of invalid UTF-8, each of which decodes to
		// U+FFFD three times its size, just within max-string.
		bad := strings.Repeat("\xff", 65536/3)
		fields = fields[:0]
		for f := 0; f < 12; f++ {
			fields = append(fields, fmt.Sprintf(`"s%02d":"%s"`, f, bad))
		}
		kinds = append(kinds, batch("2 MiB bodies of events of invalid UTF-8", 2<<20, func(n int) string {
			return event(fmt.Sprintf("utf8-%06d", n), strings.Join(fields, ","))
		}))
	} else {
		t.Log("the bodies of many small events, of many tiny values and of invalid UTF-8 run with -rss.full")
	}

	client := &http.Client{Timeout: 5 * time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	for _, k := range kinds {
		began := time.Now()
		var mu sync.Mutex
		busy, busyEvents, cut := 0, 0, 0
		var wg sync.WaitGroup
		for i := 0; i < 64; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for attempt := 0; ; attempt++ {
					req, _ := http.NewRequest("POST", url+"/v1/ingest/stalwart", k.body(i))
					req.ContentLength = k.size
					req.Header.Set("Content-Type", "application/json")
					req.Header.Set("Authorization", "Bearer t0ken")
					resp, err := client.Do(req)
					if err != nil && (errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET)) && attempt < 1000 {
						// Refused before the body was read, and the
						// connection closed while the client still wrote
						// it, before it read the answer: a retry too.
						mu.Lock()
						cut++
						mu.Unlock()
						time.Sleep(time.Duration(900+(i*37+attempt*11)%200) * time.Millisecond)
						continue
					}
					if err != nil {
						t.Errorf("%s #%d: %v", k.name, i, err)
						return
					}
					var a answerJSON
					json.NewDecoder(resp.Body).Decode(&a)
					resp.Body.Close()
					if resp.StatusCode == http.StatusServiceUnavailable {
						// Refused before the body was read ("busy: ..."), or
						// an event found no memory to be decoded in.
						if resp.Header.Get("Retry-After") != "1" {
							t.Errorf("503 without Retry-After: 1: %s", a.Error)
						}
						mu.Lock()
						if strings.HasPrefix(a.Error, "busy") {
							busy++
						} else {
							busyEvents++
						}
						mu.Unlock()
						time.Sleep(time.Duration(900+(i*37+attempt*11)%200) * time.Millisecond)
						continue
					}
					if resp.StatusCode != http.StatusOK {
						t.Errorf("%s #%d: %d %s", k.name, i, resp.StatusCode, a.Error)
					} else if msg := k.check(i, a); msg != "" {
						t.Errorf("%s #%d: %s: %+v", k.name, i, msg, a)
					}
					return
				}
			}()
		}
		wg.Wait()
		t.Logf("%s: 64 requests stored in %v, refused as busy %d times before their body was read (%d more cut while sending it), %d times after; RSS now %.0f MiB",
			k.name, time.Since(began).Round(10*time.Millisecond), busy, cut, busyEvents, float64(procStatus(t, pid, "VmRSS"))/(1<<20))
		if busy+cut == 0 {
			t.Errorf("%s: no request was refused as busy: max-in-flight-bytes is not capping", k.name)
		}
	}
	close(stopSampling)
	<-sampled
	hwm := procStatus(t, pid, "VmHWM")
	gcMu.Lock()
	t.Logf("publisher GC: %d cycles, live heap at most %d MB, heap goal at most %d MB", gcCycles, gcMaxLive, gcMaxGoal)
	gcMu.Unlock()
	t.Logf("publisher RSS: idle %.0f MiB, peak sampled %.0f MiB, VmHWM %.0f MiB; bound %.0f MiB",
		float64(idle)/(1<<20), float64(peak)/(1<<20), float64(hwm)/(1<<20), float64(IngestRSSBound)/(1<<20))
	if hwm > IngestRSSBound {
		t.Errorf("peak RSS %.0f MiB, over the bound of %.0f MiB", float64(hwm)/(1<<20), float64(IngestRSSBound)/(1<<20))
	}
}

type answerJSON struct {
	Accepted, Duplicates int
	Rejected             []struct {
		Index int
		Error string
	}
	Error string
}

// procStatus returns a "kB" field of /proc/<pid>/status, in bytes.
func procStatus(t *testing.T, pid int, field string) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0 // exited: the caller finds out otherwise
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	t.Errorf("no %s in /proc/%d/status", field, pid)
	return 0
}

var (
	gcMu                           sync.Mutex
	gcCycles, gcMaxLive, gcMaxGoal int
)

func gcTrace(line string) {
	var live, goal int
	f := strings.Fields(line)
	for i, w := range f {
		if w == "MB," && i > 0 {
			parts := strings.Split(f[i-1], "->")
			if len(parts) == 3 {
				live, _ = strconv.Atoi(parts[2])
			}
		}
		if w == "goal," && i > 1 {
			goal, _ = strconv.Atoi(f[i-2])
		}
	}
	gcMu.Lock()
	gcCycles++
	gcMaxLive = max(gcMaxLive, live)
	gcMaxGoal = max(gcMaxGoal, goal)
	gcMu.Unlock()
}
