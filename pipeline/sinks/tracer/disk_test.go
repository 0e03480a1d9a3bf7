package tracer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mailtel/mailtel/pipeline/sink"
	"github.com/rs/zerolog"
)

// mountTmpfs mounts a tmpfs of size bytes for the test, or skips it where
// mounting is not permitted.
func mountTmpfs(t *testing.T, size int) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "small")
	if err := os.Mkdir(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+strconv.Itoa(size)); err != nil {
		t.Skipf("cannot mount a %d-byte tmpfs to fill (%v): this test needs root or CAP_SYS_ADMIN", size, err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// ballast fills a filesystem and gives room back on request.
type ballast struct {
	t *testing.T
	f *os.File
}

const page = 4096

// fill writes the ballast until the filesystem is full.
func (b *ballast) fill() {
	b.t.Helper()
	chunk := make([]byte, page)
	for {
		if _, err := b.f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				b.t.Fatal(err)
			}
			break
		}
	}
	// A short write may have left a partial page: make it whole again.
	size := fileSizeOf(b.t, b.f.Name())
	if err := b.f.Truncate(size / page * page); err != nil {
		b.t.Fatal(err)
	}
}

// free gives n pages of the ballast back.
func (b *ballast) free(n int) {
	b.t.Helper()
	size := fileSizeOf(b.t, b.f.Name())
	if err := b.f.Truncate(max(0, size-int64(n*page))); err != nil {
		b.t.Fatal(err)
	}
}

func newBallast(t *testing.T, dir string) *ballast {
	f, err := os.OpenFile(filepath.Join(dir, "ballast"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return &ballast{t: t, f: f}
}

// checkFiles fails unless the log at path holds exactly want, in complete
// lines, and its sidecars are whole: the id sidecar (text) ends with the
// commit of the log's size, the id index holds whole words, the time index
// whole lines.
func checkFiles(t *testing.T, path, format string, want []string) {
	t.Helper()
	if got := ids(t, path); !slices.Equal(got, want) {
		t.Fatalf("%s holds %d events, want %d (torn or duplicate lines?)", path, len(got), len(want))
	}
	if format == "text" {
		b, err := os.ReadFile(sidecarPath(path))
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
		last := lines[len(lines)-1]
		if !strings.HasSuffix(string(b), "\n") || last != fmt.Sprintf("@%d", fileSizeOf(t, path)) {
			t.Fatalf("id sidecar ends with %q, want the commit of the log's %d bytes", last, fileSizeOf(t, path))
		}
	}
	if size := fileSizeOf(t, idhPath(path)); size < idhHeaderSize || (size-idhHeaderSize)%8 != 0 {
		t.Fatalf("id index of %d bytes: a torn word", size)
	}
	if b, err := os.ReadFile(indexPath(path)); err != nil || (len(b) > 0 && b[len(b)-1] != '\n') {
		t.Fatalf("time index: %v, ends in a torn line: %q", err, b)
	}
}

// TestFullDisk writes to a log on a 256 KiB tmpfs that a ballast file
// fills: a write that does not fit fails with a retryable error that says
// the disk is full, leaves no partial line in any file, and the same
// batch, written again once there is room, is written exactly once.
func TestFullDisk(t *testing.T) {
	for _, format := range []string{"json", "text"} {
		t.Run(format+"/one batch", func(t *testing.T) {
			dir := mountTmpfs(t, 256<<10)
			logs := filepath.Join(dir, "logs")
			path := filepath.Join(logs, "mail")
			s := newSink(t, logCfg(logs, format, "never"), Options{})
			a, b := idsN("a", 20), idsN("b", 200) // b: some 50 KB of json
			write(t, s, evs(a...))
			bl := newBallast(t, dir)
			bl.fill()
			bl.free(1) // room for part of the batch
			before := fileSizeOf(t, path)

			err := s.Write(context.Background(), evs(b...))
			if err == nil {
				t.Fatal("a write to a full disk succeeded")
			}
			if sink.IsPermanent(err) || !errors.Is(err, syscall.ENOSPC) {
				t.Errorf("err = %v: want a retryable error wrapping ENOSPC", err)
			}
			if msg := err.Error(); !strings.Contains(msg, "write "+logs+"/") || !strings.HasSuffix(msg, ": no space left on device") {
				t.Errorf("error %q does not say which write failed and why", msg)
			}
			t.Logf("error: %v", err)
			if after := fileSizeOf(t, path); after != before {
				t.Errorf("log of %d bytes after the failed write, want %d", after, before)
			}
			checkFiles(t, path, format, a)

			err = s.Write(context.Background(), evs(b...)) // still full
			if err == nil || !errors.Is(err, syscall.ENOSPC) {
				t.Errorf("second write to the full disk: %v", err)
			}
			checkFiles(t, path, format, a)

			bl.free(1 << 20)
			write(t, s, evs(b...))
			checkFiles(t, path, format, append(a, b...))
			closeSink(t, s)

			s = newSink(t, logCfg(logs, format, "never"), Options{})
			write(t, s, evs(append(a, b...)...))
			if got := s.Skipped(); got != uint64(len(a)+len(b)) {
				t.Errorf("after restart: skipped %d of %d", got, len(a)+len(b))
			}
		})
		t.Run(format+"/start on a full disk", func(t *testing.T) {
			dir := mountTmpfs(t, 256<<10)
			logs := filepath.Join(dir, "logs")
			path := filepath.Join(logs, "mail")
			if err := os.MkdirAll(logs, 0o750); err != nil {
				t.Fatal(err)
			}
			// A log of an older version, or one Stalwart wrote: no sidecar.
			appendUnindexedNew(t, format, path, idsN("old", 10))
			bl := newBallast(t, dir)
			bl.fill()
			var logs2 bytes.Buffer
			s := newSink(t, logCfg(logs, format, "never"), Options{Log: zerolog.New(&logs2)})
			err := s.Write(context.Background(), evs("a"))
			if format == "text" {
				// The id sidecar's first commit does not fit: nothing can be
				// written yet.
				if err == nil || sink.IsPermanent(err) || !errors.Is(err, syscall.ENOSPC) {
					t.Errorf("write on a full disk: %v, want a retryable ENOSPC", err)
				}
				if !strings.Contains(logs2.String(), "cannot open the log file yet") {
					t.Errorf("New did not log why it could not open the file: %q", logs2.String())
				}
			} else if err != nil && (sink.IsPermanent(err) || !errors.Is(err, syscall.ENOSPC)) {
				t.Errorf("write on a full disk: %v, want nil (it fit) or a retryable ENOSPC", err)
			}
			bl.free(1 << 20)
			old3 := idsN("old", 10)[3]
			write(t, s, evs("a", old3))
			s.file.idhRetry = time.Time{}
			write(t, s, evs("b"))
			if s.file.idh == nil || s.file.idhLag || s.file.covered != s.file.srcEnd() {
				t.Errorf("id index covers %d of %d bytes (lagging %v)", s.file.covered, s.file.srcEnd(), s.file.idhLag)
			}
			// Stalwart's text lines carry no id: the sink cannot know them.
			want, known := append(idsN("old", 10), "a", "b"), 12
			if format == "text" {
				want, known = append(idsN("old", 10), "a", old3, "b"), 3
			}
			checkFiles(t, path, format, want)
			closeSink(t, s)
			s = newSink(t, logCfg(logs, format, "never"), Options{})
			write(t, s, evs("a", "b", old3, "c"))
			if got, want := s.Skipped(), min(known, 3); got != uint64(want) {
				t.Errorf("after restart: skipped %d, want %d", got, want)
			}
		})
		t.Run(format+"/failures anywhere", func(t *testing.T) {
			// With 0 to 3 free pages a batch fails in the log, the id
			// sidecar, the id index or the time index, or fits; a failed
			// batch is retried with one page more each time.
			dir := mountTmpfs(t, 256<<10)
			logs := filepath.Join(dir, "logs")
			path := filepath.Join(logs, "mail")
			s := newSink(t, logCfg(logs, format, "never"), Options{})
			bl := newBallast(t, dir)
			var written []string
			failures, lags := 0, 0
			sites := map[string]int{} // what failed

			for i := range 60 {
				batch := idsN(fmt.Sprintf("s%02d", i), 12)
				bl.fill()
				bl.free(i % 4)
				for attempt := 1; ; attempt++ {
					err := s.Write(context.Background(), evs(batch...))
					if err == nil {
						break
					}
					failures++
					msg := err.Error()
					sites[strings.ReplaceAll(msg[:strings.LastIndex(msg, ":")], logs+"/", "")]++
					if sink.IsPermanent(err) || !strings.Contains(err.Error(), "no space left on device") {
						t.Fatalf("batch %d: %v: want a retryable full-disk error", i, err)
					}
					checkFiles(t, path, format, written)
					if attempt > 40 {
						t.Fatalf("batch %d still fails: %v", i, err)
					}
					bl.free(1)
				}
				if s.file.idhLag || s.file.idh == nil {
					lags++ // the id index write failed; the batch did not
				}
				written = append(written, batch...)
				checkFiles(t, path, format, written)
			}
			if failures == 0 {
				t.Error("no write failed: the test did not fill the disk")
			}
			t.Logf("%d failed writes retried: %v; id index behind after %d batches", failures, sites, lags)
			// With room again, the id index catches up at the next write.
			bl.free(1 << 20)
			s.file.idhRetry = time.Time{}
			last := idsN("last", 5)
			write(t, s, evs(last...))
			written = append(written, last...)
			if s.file.idh == nil || s.file.idhLag || s.file.covered != s.file.srcEnd() {
				t.Errorf("id index covers %d of %d bytes after the catch-up (lagging %v)", s.file.covered, s.file.srcEnd(), s.file.idhLag)
			}
			closeSink(t, s)
			s = newSink(t, logCfg(logs, format, "never"), Options{})
			write(t, s, evs(written...))
			if got := s.Skipped(); got != uint64(len(written)) {
				t.Errorf("after restart: skipped %d of %d", got, len(written))
			}
			checkFiles(t, path, format, written)
		})
	}
}

// appendUnindexedNew creates the log at path holding ids, as an older
// version (json) or Stalwart (text, without ids) wrote it.
func appendUnindexedNew(t *testing.T, format, path string, ids []string) {
	t.Helper()
	var b []byte
	for _, id := range ids {
		if format == "json" {
			b, _ = newJSONFormatter().appendEvent(b, ev(id))
		} else {
			b, _ = textFormatter{}.appendEvent(b, ev(id))
		}
	}
	writeFile(t, path, string(b))
}

// holdLock locks the log file at path as another process would.
func holdLock(t *testing.T, path string) *os.File {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR|os.O_APPEND, 0o640)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// TestLockWait starts a sink on a file another process holds the lock on
// and releases it after a second: New succeeds, Write waits for the lock
// (logging it once, then every lockLogEvery) and writes.
func TestLockWait(t *testing.T) {
	tests := []struct {
		name      string
		logEvery  time.Duration
		shortCtx  bool // a Write with a shorter deadline fails first
		wantStill bool // "still waiting" lines
	}{
		{"waits and logs once", 10 * time.Second, false, false},
		{"a write whose deadline ends first fails, the next waits", 10 * time.Second, true, false},
		{"logs again while it waits", 300 * time.Millisecond, false, true},
	}
	for _, format := range []string{"json", "text"} {
		for i, tc := range tests {
			if format == "text" && i > 0 {
				break // the wait does not depend on the format
			}
			t.Run(format+"/"+tc.name, func(t *testing.T) {
				defer func(d time.Duration) { lockLogEvery = d }(lockLogEvery)
				lockLogEvery = tc.logEvery
				dir := t.TempDir()
				path := filepath.Join(dir, "mail.2025-11-27")
				holder := holdLock(t, path)
				var logs bytes.Buffer
				began := time.Now()
				release := time.AfterFunc(time.Second, func() { holder.Close() })
				defer release.Stop()
				s := newSink(t, logCfg(dir, format, "daily"), Options{Now: func() time.Time { return t0 }, Log: zerolog.New(&logs)})
				if s.file != nil {
					t.Fatal("New opened a file another holds the lock on")
				}
				if tc.shortCtx {
					ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
					err := s.Write(ctx, evs("a"))
					cancel()
					if !errors.Is(err, ErrLocked) || sink.IsPermanent(err) {
						t.Errorf("write with a short deadline: %v, want a retryable ErrLocked", err)
					}
				}
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				if err := s.Write(ctx, evs("a", "b")); err != nil {
					t.Fatalf("write once the lock is released: %v", err)
				}
				if waited := time.Since(began); waited < 900*time.Millisecond {
					t.Errorf("wrote after %s, before the lock was released", waited)
				}
				closeSink(t, s)
				if got := ids(t, path); !slices.Equal(got, []string{"a", "b"}) {
					t.Errorf("file holds %v", got)
				}
				out := logs.String()
				if n := strings.Count(out, "waiting for it to release the lock"); n != 1 {
					t.Errorf("logged the wait %d times, want once:\n%s", n, out)
				}
				if n := strings.Count(out, "still waiting"); (n > 0) != tc.wantStill {
					t.Errorf("logged %d \"still waiting\" lines, want some: %v:\n%s", n, tc.wantStill, out)
				}
				if !strings.Contains(out, "got the lock") || !strings.Contains(out, path) {
					t.Errorf("no line names the file and the end of the wait:\n%s", out)
				}
			})
		}
	}
}
