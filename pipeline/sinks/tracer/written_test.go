package tracer

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailtel/mailtel/schema"
)

// idsN returns n ids long enough that 200,000 of them fill more than
// oldTailWindow of a text sidecar.
// oldTailWindow is how much of the end of a file older versions read at
// open to remember the ids written.
const oldTailWindow = 4 << 20

func idsN(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-event-with-a-long-enough-id-%07d", prefix, i)
	}
	return out
}

// bigDir returns a new directory for tests that write tens of megabytes:
// on tmpfs (/dev/shm) when there is one, because on a shared disk the
// fsync of every batch makes them take seconds to minutes, and what they
// test is the search, not the disk; else t.TempDir().
func bigDir(t testing.TB) string {
	t.Helper()
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		if dir, err := os.MkdirTemp("/dev/shm", "mailtel-tracer-test-*"); err == nil {
			t.Cleanup(func() { os.RemoveAll(dir) })
			return dir
		}
	}
	return t.TempDir()
}

// writeMany writes n events with ids from idsN(prefix, n) in batches of
// 1000.
func writeMany(t testing.TB, s *Sink, prefix string, n int) {
	t.Helper()
	all := idsN(prefix, n)
	for len(all) > 0 {
		k := min(1000, len(all))
		if err := s.Write(context.Background(), evs(all[:k]...)); err != nil {
			t.Fatal(err)
		}
		all = all[k:]
	}
}

func writtenOf(t *testing.T, s *Sink, ids []string, since time.Time) map[string]bool {
	t.Helper()
	got, err := s.Written(context.Background(), evs(ids...), since)
	if err != nil {
		t.Fatalf("Written: %v", err)
	}
	return got
}

// checkWritten fails unless got reports every id of yes and none of no.
func checkWritten(t *testing.T, got map[string]bool, yes, no []string) {
	t.Helper()
	var missed, wrong []string
	for _, id := range yes {
		if !got[id] {
			missed = append(missed, id)
		}
	}
	for _, id := range no {
		if got[id] {
			wrong = append(wrong, id)
		}
	}
	if len(missed) > 0 {
		t.Errorf("%d of %d written events not reported written, e.g. %s", len(missed), len(yes), missed[0])
	}
	if len(wrong) > 0 {
		t.Errorf("%d of %d events never written reported written, e.g. %s", len(wrong), len(no), wrong[0])
	}
}

// TestWrittenBeyondMemory writes a batch A, then 200,000 other events
// (more than the tail older versions remembered): Written finds A, within
// the process and in a new one, and reports no event that was never
// written; a Write of A skips it.
func TestWrittenBeyondMemory(t *testing.T) {
	for _, format := range []string{"json", "text"} {
		t.Run(format, func(t *testing.T) {
			dir := bigDir(t)
			cfg := logCfg(dir, format, "daily")
			opts := Options{Now: func() time.Time { return t0 }}
			since := time.Now()
			s := newSink(t, cfg, opts)
			a := idsN("a", 50)
			write(t, s, evs(a...))
			writeMany(t, s, "other", 200_000)
			never := idsN("never", 50)

			searched := filepath.Join(dir, "mail.2025-11-27")
			if format == "text" {
				searched = sidecarPath(searched)
			}
			if st, err := os.Stat(searched); err != nil || st.Size() <= oldTailWindow {
				t.Fatalf("%s: %v, size %d: want more than %d", searched, err, st.Size(), oldTailWindow)
			}
			began := time.Now()
			checkWritten(t, writtenOf(t, s, append(a, never...), since), a, never)
			t.Logf("Written of %d events in %s: %s", len(a)+len(never), format, time.Since(began).Round(time.Millisecond))

			closeSink(t, s)
			s = newSink(t, cfg, opts) // a new process
			checkWritten(t, writtenOf(t, s, append(a, never...), since), a, never)
			recent := idsN("other", 200_000)[199_990:]
			checkWritten(t, writtenOf(t, s, recent, since), recent, nil)
			write(t, s, evs(a...))
			if got := s.Skipped(); got != uint64(len(a)) {
				t.Errorf("a new process skipped %d of the %d events of A", got, len(a))
			}
		})
	}
}

// TestWrittenSince: a since before A's write finds A; a since after it
// need not (the file, last modified before since, is not searched) and
// does not fail.
func TestWrittenSince(t *testing.T) {
	dir := t.TempDir()
	cfg := logCfg(dir, "json", "never")
	before := time.Now()
	w := newSink(t, cfg, Options{Instance: "w"})
	write(t, w, evs("a1", "a2"))
	r := newSink(t, cfg, Options{Instance: "r"}) // does not remember A
	checkWritten(t, writtenOf(t, r, []string{"a1", "a2", "x"}, before), []string{"a1", "a2"}, []string{"x"})
	later := writtenOf(t, r, []string{"a1", "a2", "x"}, time.Now().Add(time.Hour))
	checkWritten(t, later, nil, []string{"x"})
	t.Logf("since an hour after A: reported %v", later)
}

// TestWrittenOtherInstance: events written by instance b are found by
// instance a, in b's open file and after b closed it; the files of a sink
// whose prefix extends this one's are not searched.
func TestWrittenOtherInstance(t *testing.T) {
	for _, format := range []string{"json", "text"} {
		t.Run(format, func(t *testing.T) {
			dir := t.TempDir()
			cfg := logCfg(dir, format, "daily")
			now := func() time.Time { return t0 }
			since := time.Now()
			sa := newSink(t, cfg, Options{Instance: "a", Now: now})
			sb := newSink(t, cfg, Options{Instance: "b", Now: now})
			other := logCfg(dir, format, "daily")
			other.Prefix = "mail.sec" // its files read like instance "sec" of "mail"
			sec := newSink(t, other, Options{Now: now})

			write(t, sa, evs("by-a"))
			write(t, sb, evs("b1", "b2"))
			write(t, sec, evs("by-sec"))
			ask := []string{"by-a", "b1", "b2", "b3", "by-sec"}
			checkWritten(t, writtenOf(t, sa, ask, since), []string{"by-a", "b1", "b2"}, []string{"b3", "by-sec"})

			write(t, sb, evs("b3"))
			closeSink(t, sb)
			checkWritten(t, writtenOf(t, sa, ask, since), []string{"by-a", "b1", "b2", "b3"}, []string{"by-sec"})
		})
	}
}

// TestWrittenAcrossRotation finds an event in the previous period's file.
func TestWrittenAcrossRotation(t *testing.T) {
	for _, format := range []string{"json", "text"} {
		t.Run(format, func(t *testing.T) {
			dir := t.TempDir()
			clk := &clock{t: time.Date(2025, 11, 27, 23, 59, 59, 0, time.UTC)}
			since := time.Now()
			s := newSink(t, logCfg(dir, format, "daily"), Options{Now: clk.now})
			write(t, s, evs("old"))
			clk.set(time.Date(2025, 11, 28, 0, 0, 1, 0, time.UTC))
			write(t, s, evs("new"))
			r := newSink(t, logCfg(dir, format, "daily"), Options{Instance: "r", Now: clk.now})
			checkWritten(t, writtenOf(t, r, []string{"old", "new", "none"}, since), []string{"old", "new"}, []string{"none"})
		})
	}
}

// TestWrittenIgnoresUnfinished: what a crash or a failed write left that
// is not (or will not stay) written is never reported: a torn json line,
// text ids without a commit, lines of a failed batch beyond the committed
// size of this sink's own file.
func TestWrittenIgnoresUnfinished(t *testing.T) {
	jsonLine := func(id string) []byte {
		b, err := newJSONFormatter().appendEvent(nil, ev(id))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	t.Run("json torn line", func(t *testing.T) {
		dir := t.TempDir()
		cfg := logCfg(dir, "json", "never")
		since := time.Now()
		b := newSink(t, cfg, Options{Instance: "b"})
		write(t, b, evs("e"))
		closeSink(t, b)
		// A crash mid-write: a complete line (written: it stays) and a
		// torn one (cut at the next open).
		torn := jsonLine("torn")
		appendFile(t, filepath.Join(dir, "mail.b"), append(jsonLine("whole"), torn[:len(torn)-1]...))
		a := newSink(t, cfg, Options{Instance: "a"})
		checkWritten(t, writtenOf(t, a, []string{"e", "whole", "torn"}, since), []string{"e", "whole"}, []string{"torn"})
	})
	t.Run("text uncommitted ids", func(t *testing.T) {
		dir := t.TempDir()
		cfg := logCfg(dir, "text", "never")
		since := time.Now()
		b := newSink(t, cfg, Options{Instance: "b"})
		write(t, b, evs("e"))
		closeSink(t, b)
		// A crash between the log's sync and the sidecar's commit.
		appendFile(t, filepath.Join(dir, "mail.b"), []byte("line u1\nline u2\n"))
		appendFile(t, filepath.Join(dir, ".mail.b.ids"), []byte("\"u1\"\n\"u2\"\n@9"))
		a := newSink(t, cfg, Options{Instance: "a"})
		checkWritten(t, writtenOf(t, a, []string{"e", "u1", "u2"}, since), []string{"e"}, []string{"u1", "u2"})
	})
	t.Run("json failed batch in own file", func(t *testing.T) {
		dir := t.TempDir()
		since := time.Now()
		s := newSink(t, logCfg(dir, "json", "never"), Options{})
		write(t, s, evs("e"))
		// A batch whose write failed after its lines reached the file (a
		// failed sync) and could not be cut off yet.
		appendFile(t, filepath.Join(dir, "mail"), jsonLine("failed"))
		s.file.dirty = true
		checkWritten(t, writtenOf(t, s, []string{"e", "failed"}, since), []string{"e"}, []string{"failed"})
		write(t, s, evs("f")) // repairs first
		checkWritten(t, writtenOf(t, s, []string{"e", "failed", "f"}, since), []string{"e", "f"}, []string{"failed"})
	})
}

// TestWrittenDamagedIndex: whatever happened to another instance's index,
// its events are found and no other is reported.
func TestWrittenDamagedIndex(t *testing.T) {
	tests := []struct {
		name   string
		damage func(t *testing.T, idx string)
	}{
		{"missing", func(t *testing.T, idx string) {
			if err := os.Remove(idx); err != nil {
				t.Fatal(err)
			}
		}},
		{"empty", func(t *testing.T, idx string) { writeFile(t, idx, "") }},
		{"garbage", func(t *testing.T, idx string) { writeFile(t, idx, "\x00\x01zz 12\n\xff\n") }},
		{"torn header", func(t *testing.T, idx string) { writeFile(t, idx, indexMagic[:5]) }},
		{"garbage entries", func(t *testing.T, idx string) {
			appendFile(t, idx, []byte("x y\n-5 -5\n1 2 3\n\n12"))
		}},
		{"entry beyond the end", func(t *testing.T, idx string) {
			appendFile(t, idx, []byte("1 999999999\n"))
		}},
		{"entry mid-line", func(t *testing.T, idx string) {
			appendFile(t, idx, []byte("1 5\n"))
		}},
		{"entries only", func(t *testing.T, idx string) {
			writeFile(t, idx, "1 0\n2 5\n")
		}},
	}
	for _, format := range []string{"json", "text"} {
		for _, tc := range tests {
			t.Run(format+"/"+tc.name, func(t *testing.T) {
				dir := t.TempDir()
				cfg := logCfg(dir, format, "never")
				since := time.Now()
				b := newSink(t, cfg, Options{Instance: "b"})
				write(t, b, evs("e1", "e2"))
				write(t, b, evs("e3"))
				closeSink(t, b)
				tc.damage(t, filepath.Join(dir, ".mail.b.idx"))
				a := newSink(t, cfg, Options{Instance: "a"})
				checkWritten(t, writtenOf(t, a, []string{"e1", "e2", "e3", "x"}, since), []string{"e1", "e2", "e3"}, []string{"x"})

				// The owner repairs the index at its next open.
				b = newSink(t, cfg, Options{Instance: "b"})
				write(t, b, evs("e4"))
				checkWritten(t, writtenOf(t, a, []string{"e1", "e4", "x"}, since), []string{"e1", "e4"}, []string{"x"})
			})
		}
	}
}

func writeFile(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o640); err != nil {
		t.Fatal(err)
	}
}

// TestIndexStart checks where a search starts for a cutoff of 2500 ms.
func TestIndexStart(t *testing.T) {
	head := indexHeader("json", "mail")
	tests := []struct {
		name  string
		index string // "" : no index file
		size  int64
		want  int64
	}{
		{"no index", "", 1000, 0},
		{"header only", head, 1000, 0},
		{"bad header", "mailtel-tracer-index 9 json \"mail\"\n1000 0\n2000 100\n", 1000, 0},
		{"all before", head + "1000 0\n2000 100\n", 1000, 100},
		{"straddling", head + "1000 0\n2000 100\n3000 200\n4000 300\n", 1000, 100},
		{"all after", head + "3000 200\n4000 300\n", 1000, 0},
		{"garbage skipped", head + "1000 0\nxx\n2000 100\n1 2 3\n3000 200\n", 1000, 100},
		{"torn last entry ignored", head + "1000 0\n2000 100\n2400 15", 1000, 100},
		{"torn entry glued to the next", head + "1000 0\n2000 100\n20" + "3000 200\n", 1000, 100},
		{"file cut and rewritten", head + "1000 0\n2000 500\n3000 50\n", 1000, 50},
		{"offset beyond size", head + "1000 0\n2000 5000\n", 1000, 0},
	}
	cutoff := time.UnixMilli(2500)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), ".mail.idx")
			if tc.index != "" {
				writeFile(t, path, tc.index)
			}
			got, err := indexStart(path, cutoff, tc.size)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("start %d, want %d", got, tc.want)
			}
		})
	}
}

// TestOpenIndex: a new file gets an index with its header; a torn last
// entry is closed so that the next entry reads; a header for another
// format or prefix is replaced.
func TestOpenIndex(t *testing.T) {
	tests := []struct {
		name, before string
		keep         string // what must remain of before
	}{
		{"new", "", ""},
		{"torn entry", indexHeader("json", "mail") + "1 0\n12", "1 0\n12\n"},
		{"other format", indexHeader("text", "mail") + "1 0\n", ""},
		{"other prefix", indexHeader("json", "mailx") + "1 0\n", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if tc.before != "" {
				writeFile(t, filepath.Join(dir, ".mail.idx"), tc.before)
			}
			s := newSink(t, logCfg(dir, "json", "never"), Options{})
			write(t, s, evs("a"))
			b, err := os.ReadFile(filepath.Join(dir, ".mail.idx"))
			if err != nil {
				t.Fatal(err)
			}
			rest, ok := strings.CutPrefix(string(b), indexHeader("json", "mail")+tc.keep)
			if !ok {
				t.Fatalf("index %q: want the header, then %q, then one entry", b, tc.keep)
			}
			if _, off, ok := parseIndexEntry([]byte(strings.TrimSuffix(rest, "\n"))); !ok || off != 0 || !strings.HasSuffix(rest, "\n") {
				t.Errorf("entry %q: want \"<ms> 0\\n\"", rest)
			}
		})
	}
}

func TestWrittenEdges(t *testing.T) {
	t.Run("stdout has nothing to check", func(t *testing.T) {
		s := newSink(t, &Config{Type: "stdout"}, Options{Stdout: new(strings.Builder)})
		write(t, s, evs("a"))
		got, err := s.Written(context.Background(), evs("a"), time.Time{})
		if got != nil || err != nil {
			t.Errorf("Written = %v, %v; want nil, nil", got, err)
		}
	})
	t.Run("empty id never reported", func(t *testing.T) {
		s := newSink(t, logCfg(t.TempDir(), "json", "never"), Options{})
		write(t, s, []*schema.Event{ev(""), ev("a")})
		checkWritten(t, writtenOf(t, s, []string{"", "a"}, time.Time{}), []string{"a"}, []string{""})
	})
	t.Run("escaped ids", func(t *testing.T) {
		dir := t.TempDir()
		odd := []string{`quo"te`, "back\\slash", "new\nline", "tab\tx", "ünï", "\x01ctl"}
		b := newSink(t, logCfg(dir, "json", "never"), Options{Instance: "b"})
		write(t, b, evs(odd...))
		a := newSink(t, logCfg(dir, "json", "never"), Options{Instance: "a"})
		checkWritten(t, writtenOf(t, a, append(odd, "quo", "back"), time.Time{}), odd, []string{"quo", "back"})
	})
	t.Run("invalid UTF-8 id not mistaken", func(t *testing.T) {
		// zerolog writes both as "bad\ufffd": neither can be told apart.
		dir := t.TempDir()
		b := newSink(t, logCfg(dir, "json", "never"), Options{Instance: "b"})
		write(t, b, evs("bad\xff"))
		a := newSink(t, logCfg(dir, "json", "never"), Options{Instance: "a"})
		checkWritten(t, writtenOf(t, a, []string{"bad\ufffd", "bad\xfe"}, time.Time{}), nil, []string{"bad\ufffd", "bad\xfe"})
	})
	t.Run("closed", func(t *testing.T) {
		s := newSink(t, logCfg(t.TempDir(), "json", "never"), Options{})
		closeSink(t, s)
		if _, err := s.Written(context.Background(), evs("a"), time.Time{}); !errors.Is(err, ErrClosed) {
			t.Errorf("Written after Close: %v, want ErrClosed", err)
		}
	})
	t.Run("context ended", func(t *testing.T) {
		dir := t.TempDir()
		b := newSink(t, logCfg(dir, "json", "never"), Options{Instance: "b"})
		writeMany(t, b, "x", 100)
		a := newSink(t, logCfg(dir, "json", "never"), Options{Instance: "a"})
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := a.Written(ctx, evs("never"), time.Time{}); !errors.Is(err, context.Canceled) {
			t.Errorf("Written with an ended context: %v, want context.Canceled", err)
		}
	})
}

// BenchmarkWrittenScan searches a 50 MB json log of another instance for
// 500 ids, half of them written early in the file and half never written,
// so that the whole file is read.
func BenchmarkWrittenScan(b *testing.B) {
	dir := bigDir(b)
	cfg := logCfg(dir, "json", "never")
	since := time.Now()
	w, err := New("t", cfg, Options{Instance: "w"})
	if err != nil {
		b.Fatal(err)
	}
	var size int64
	for n := 0; size < 50<<20; n++ {
		writeMany(b, w, fmt.Sprintf("w%d", n), 10_000)
		st, err := os.Stat(filepath.Join(dir, "mail.w"))
		if err != nil {
			b.Fatal(err)
		}
		size = st.Size()
	}
	if err := w.Close(context.Background()); err != nil {
		b.Fatal(err)
	}
	r, err := New("t", cfg, Options{Instance: "r"})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close(context.Background())
	ask := evs(append(idsN("w0", 250), idsN("never", 250)...)...)
	b.SetBytes(size)
	b.ResetTimer()
	for b.Loop() {
		got, err := r.Written(context.Background(), ask, since)
		if err != nil {
			b.Fatal(err)
		}
		if len(got) != 250 {
			b.Fatalf("found %d, want 250", len(got))
		}
	}
}
