package sinks_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/mailtel/mailtel/pipeline/pipelinetest"
	"github.com/mailtel/mailtel/pipeline/sinktest"
	"github.com/mailtel/mailtel/pipeline/synth"
)

var fullFor = flag.Duration("disk-full", time.Minute, "how long TestLogSinkDiskFull's filesystem stays full")

// mountTmpfs mounts a tmpfs of size bytes on a new directory and unmounts
// it when the test ends; it skips the test where mounting is not
// permitted.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN): %v: %s", err, bytes.TrimSpace(out))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// fill writes a file into dir until the filesystem is full.
func fill(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("fill %s: %v", dir, err)
			}
			return path
		}
	}
}

// TestLogSinkDiskFull runs a JSON log sink with the default settings on a
// small tmpfs that is full for -disk-full (a minute) while events arrive,
// then has room: every event is written once, no line is partial, nothing
// is dead-lettered, and while the disk is full the sink is degraded.
func TestLogSinkDiskFull(t *testing.T) {
	dir := mountTmpfs(t, "16m")
	env := pipelinetest.Start(t)
	tp := startPipeline(t, env, `
[tracer.log]
type = "log"
level = "trace"
path = "`+dir+`"
format = "json"
`)
	tp.StartSinks()
	p := tp.P

	// Let the sink open its files, then fill the disk.
	g := synth.New(synth.Options{Seed: 3, Start: time.Now().Add(-time.Hour)})
	tp.Publish(g, 100)
	pipelinetest.WaitFor(t, 20*time.Second, "the first events written", func() bool { return countLines(dir) > 0 })
	filler := fill(t, dir)
	full := time.Now()
	tp.Publish(g, 12000)
	pipelinetest.WaitFor(t, 30*time.Second, "the sink pauses on the full disk", func() bool {
		return p.Health.Degraded() != nil
	})
	t.Logf("disk full: %v", p.Health.Degraded())
	time.Sleep(*fullFor - time.Since(full))
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	freed := time.Now()
	// Lines are counted while the sink writes; they are checked whole
	// only once it has acked everything.
	pipelinetest.WaitFor(t, 3*time.Minute, "every event written once there is room", func() bool {
		return tp.SinkIdle("log") && countLines(dir) >= tp.Routed("log")
	})
	pipelinetest.WaitFor(t, 10*time.Second, "the sink is no longer degraded", func() bool { return p.Health.Degraded() == nil })
	ids := logIDs(t, dir)
	seen := map[string]int{}
	for _, id := range ids {
		seen[id]++
	}
	for id, c := range seen {
		if c > 1 {
			t.Errorf("event %s written %d times", id, c)
		}
	}
	if len(seen) != tp.Routed("log") {
		t.Errorf("%d events written, %d routed", len(seen), tp.Routed("log"))
	}
	if dead := sinktest.DeadLetters(t, p.JS, tp.Cfg.Streams.DLQ, "log"); len(dead) > 0 {
		t.Errorf("%d dead letters, want none; first: %s", len(dead), dead[0].Reason)
	}
	t.Logf("%d events written once; the disk was full for %s; written %s after it had room",
		len(seen), freed.Sub(full).Round(time.Second), time.Since(freed).Round(time.Second))
}

// countLines counts the newlines of the log files in dir, which the sink
// may be writing.
func countLines(dir string) int {
	files, _ := filepath.Glob(filepath.Join(dir, "mailtel.*"))
	n := 0
	for _, name := range files {
		data, _ := os.ReadFile(name)
		n += bytes.Count(data, []byte{'\n'})
	}
	return n
}

// logIDs returns the ids of the JSON lines of the log files in dir (its
// index files are hidden, .mailtel.*), and
// fails the test on a line that is not a whole JSON object.
func logIDs(t *testing.T, dir string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "mailtel.*"))
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if len(data) > 0 && data[len(data)-1] != '\n' {
			t.Errorf("%s ends in a partial line", name)
		}
		sc := bufio.NewScanner(bytes.NewReader(data))
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var line struct {
				ID string `json:"id"`
			}
			if err := json.Unmarshal(sc.Bytes(), &line); err != nil || line.ID == "" {
				t.Errorf("%s: not a whole event line: %.80q", name, sc.Bytes())
				continue
			}
			ids = append(ids, line.ID)
		}
	}
	return ids
}
