package tracer

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mailtel/mailtel/schema"
)

// replayOf writes ids, in batches of 1000, as `sinks replay` does: through
// a new sink of instance "replay". It returns how many events the sink
// wrote and skipped.
func replayOf(t *testing.T, dir, format string, ids []string) (written, skipped int) {
	t.Helper()
	s := newSink(t, logCfg(dir, format, "daily"), Options{Instance: "replay", Now: func() time.Time { return t0 }})
	for rest := ids; len(rest) > 0; {
		k := min(1000, len(rest))
		write(t, s, evs(rest[:k]...))
		rest = rest[k:]
	}
	if got, want := s.file.ix.bytes(), 16*s.file.ix.len(); got > want {
		t.Errorf("index of %d ids holds %d bytes, more than 16 per id", s.file.ix.len(), got)
	}
	closeSink(t, s)
	skipped = int(s.Skipped())
	return len(ids) - skipped, skipped
}

// onceEach fails unless the log at path holds each of want exactly once
// and nothing else.
func onceEach(t *testing.T, path string, want []string) {
	t.Helper()
	n := map[string]int{}
	for _, id := range ids(t, path) {
		n[id]++
	}
	dups := 0
	for _, c := range n {
		if c > 1 {
			dups += c - 1
		}
	}
	missing := 0
	for _, id := range want {
		if n[id] == 0 {
			missing++
		}
	}
	if dups > 0 || missing > 0 || len(n) != len(want) {
		t.Errorf("%s: %d duplicate lines, %d events missing, %d distinct ids, want %d", filepath.Base(path), dups, missing, len(n), len(want))
	}
}

// TestReplayTwiceLargeFile writes a log of more than 8 MiB with the sink,
// replays the same events into the replay file, damages the replay file's
// id index as a crash, an older version or an operator would, and replays
// again: the second replay writes nothing and skips every event.
func TestReplayTwiceLargeFile(t *testing.T) {
	const n = 70_000 // json: 18 MB, text: 9 MB
	all := idsN("ev", n)
	extra := idsN("late", 300) // appended to the log behind the index's back
	tests := []struct {
		name   string
		damage func(t *testing.T, dir, format, log string) (more []string)
	}{
		{"intact", nil},
		{"no id index (file of an older version)", func(t *testing.T, _, _, log string) []string {
			if err := os.Remove(idhPath(log)); err != nil {
				t.Fatal(err)
			}
			return nil
		}},
		{"id index lost its last half (crash before the index write)", func(t *testing.T, _, _, log string) []string {
			truncateBy(t, idhPath(log), -1)
			return nil
		}},
		{"id index torn mid-entry", func(t *testing.T, _, _, log string) []string {
			truncateBy(t, idhPath(log), 13)
			return nil
		}},
		{"id index garbled in the middle", func(t *testing.T, _, _, log string) []string {
			f, err := os.OpenFile(idhPath(log), os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			st, _ := f.Stat()
			if _, err := f.WriteAt([]byte(strings.Repeat("\xa5", 100)), st.Size()/2); err != nil {
				t.Fatal(err)
			}
			return nil
		}},
		{"one entry's hash flipped (bit rot)", func(t *testing.T, _, _, log string) []string {
			f, err := os.OpenFile(idhPath(log), os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			st, _ := f.Stat()
			for off := idhHeaderSize + (st.Size()-idhHeaderSize)/16*8; ; off += 8 {
				var w [8]byte
				if _, err := f.ReadAt(w[:], off); err != nil {
					t.Fatal(err)
				}
				if binary.LittleEndian.Uint64(w[:])>>32 != 0 { // an entry
					w[6] ^= 0x10
					if _, err := f.WriteAt(w[:], off); err != nil {
						t.Fatal(err)
					}
					return nil
				}
			}
		}},
		{"id index of another file", func(t *testing.T, dir, format, log string) []string {
			o := newSink(t, logCfg(dir, format, "never"), Options{Instance: "other"})
			write(t, o, evs(idsN("zz", 5000)...))
			closeSink(t, o)
			b, err := os.ReadFile(idhPath(filepath.Join(dir, "mail.other")))
			if err != nil {
				t.Fatal(err)
			}
			writeFile(t, idhPath(log), string(b))
			return nil
		}},
		{"log lines written, index not (crash between them)", func(t *testing.T, _, format, log string) []string {
			appendUnindexed(t, format, log, extra)
			return extra
		}},
		{"log lines written, index removed", func(t *testing.T, _, format, log string) []string {
			appendUnindexed(t, format, log, extra)
			if err := os.Remove(idhPath(log)); err != nil {
				t.Fatal(err)
			}
			return extra
		}},
	}
	for _, format := range []string{"json", "text"} {
		dir := bigDir(t)
		// The live sink writes the events; its file is the big one.
		live := newSink(t, logCfg(dir, format, "daily"), Options{Now: func() time.Time { return t0 }})
		for rest := all; len(rest) > 0; rest = rest[1000:] {
			write(t, live, evs(rest[:1000]...))
		}
		closeSink(t, live)
		livePath := filepath.Join(dir, "mail.2025-11-27")
		if st, err := os.Stat(livePath); err != nil || st.Size() <= 8<<20 {
			t.Fatalf("%s log: %v, want more than 8 MiB", format, err)
		}
		t.Run(format+"/live sink restarted", func(t *testing.T) {
			s := newSink(t, logCfg(dir, format, "daily"), Options{Now: func() time.Time { return t0 }})
			for rest := all; len(rest) > 0; rest = rest[1000:] {
				write(t, s, evs(rest[:1000]...))
			}
			if got := s.Skipped(); got != n {
				t.Errorf("skipped %d, want %d", got, n)
			}
			closeSink(t, s)
			onceEach(t, livePath, all)
		})
		// The first replay writes every event to the replay file; each case
		// starts from a copy of it.
		first := filepath.Join(dir, "first")
		if written, skipped := replayOf(t, first, format, all); written != n || skipped != 0 {
			t.Fatalf("first replay: written %d, skipped %d; want %d, 0", written, skipped, n)
		}
		for _, tc := range tests {
			t.Run(format+"/"+tc.name, func(t *testing.T) {
				rdir := filepath.Join(dir, strings.NewReplacer(" ", "-", "(", "", ")", "", "'", "").Replace(tc.name))
				copyDir(t, first, rdir)
				log := filepath.Join(rdir, "mail.replay.2025-11-27")
				want := all
				if tc.damage != nil {
					want = append(want, tc.damage(t, rdir, format, log)...)
				}
				before := fileSizeOf(t, log)
				written, skipped := replayOf(t, rdir, format, want)
				if written != 0 || skipped != len(want) {
					t.Errorf("second replay: written %d, skipped %d; want 0, %d", written, skipped, len(want))
				}
				if after := fileSizeOf(t, log); after != before {
					t.Errorf("second replay changed the log from %d to %d bytes", before, after)
				}
				onceEach(t, log, want)
				// The open repaired the index: a third replay skips all too.
				if written, _ = replayOf(t, rdir, format, want); written != 0 {
					t.Errorf("third replay wrote %d", written)
				}
			})
		}
	}
}

// copyDir copies the files of dir src to a new dir dst.
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	if err := os.MkdirAll(dst, 0o750); err != nil {
		t.Fatal(err)
	}
	es, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range es {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(dst, e.Name()), string(b))
	}
}

func fileSizeOf(t *testing.T, path string) int64 {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

// truncateBy cuts n bytes off the end of the file at path; -1 cuts half.
func truncateBy(t *testing.T, path string, n int64) {
	t.Helper()
	size := fileSizeOf(t, path)
	if n < 0 {
		n = size / 2
	}
	if err := os.Truncate(path, size-n); err != nil {
		t.Fatal(err)
	}
}

// appendUnindexed appends the events of ids to the log as the sink would,
// but leaves the id index alone, as a crash right after the log write
// (json) or the id sidecar's commit (text) would.
func appendUnindexed(t *testing.T, format, log string, ids []string) {
	t.Helper()
	var lines, quoted []byte
	for _, id := range ids {
		var err error
		if format == "json" {
			lines, err = newJSONFormatter().appendEvent(lines, ev(id))
		} else {
			lines, err = textFormatter{}.appendEvent(lines, ev(id))
			quoted = append(fmt.Appendf(quoted, "%q", id), '\n')
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	appendFile(t, log, lines)
	if format == "text" {
		appendFile(t, sidecarPath(log), fmt.Appendf(quoted, "@%d\n", fileSizeOf(t, log)))
	}
}

// TestDedupeAcrossRotationInProcess: a sink whose period changes while it
// runs skips the events of the previous period's file, and a sink started
// in the new period too; the file of two periods ago is no longer held.
func TestDedupeAcrossRotationInProcess(t *testing.T) {
	for _, format := range []string{"json", "text"} {
		t.Run(format, func(t *testing.T) {
			dir := t.TempDir()
			clk := &clock{t: time.Date(2025, 11, 27, 22, 59, 0, 0, time.UTC)}
			cfg := logCfg(dir, format, "hourly")
			s := newSink(t, cfg, Options{Now: clk.now})
			write(t, s, evs("a", "b"))
			clk.set(clk.now().Add(2 * time.Minute)) // 23:01
			write(t, s, evs("a", "b", "c"))
			if got := s.Skipped(); got != 2 {
				t.Errorf("after rotation: skipped %d, want 2", got)
			}
			clk.set(clk.now().Add(time.Hour)) // 00:01: the 22h file is two periods ago
			write(t, s, evs("c", "d"))
			if got := s.Skipped(); got != 3 {
				t.Errorf("after the second rotation: skipped %d, want 3", got)
			}
			if s.prev == nil || !strings.HasSuffix(s.prev.path, "T23") {
				t.Errorf("previous file %v, want the 23h one", s.prev)
			}
			closeSink(t, s)
			for name, want := range map[string][]string{
				"mail.2025-11-27T22": {"a", "b"}, "mail.2025-11-27T23": {"c"}, "mail.2025-11-28T00": {"d"},
			} {
				onceEach(t, filepath.Join(dir, name), want)
			}
		})
	}
}

func TestIDTable(t *testing.T) {
	var tab idTable
	const n = 50_000
	for i := range n {
		e, ok := idEntry(idHash(fmt.Sprint(i)), int64(i)*blockSize)
		if !ok {
			t.Fatal("idEntry")
		}
		tab.insert(e)
	}
	if tab.len() != n {
		t.Fatalf("len %d, want %d", tab.len(), n)
	}
	if per := float64(tab.bytes()) / n; per > 16 {
		t.Errorf("%.1f bytes per id, want at most 16", per)
	}
	tests := []struct {
		name  string
		id    string
		block uint32
		want  bool
	}{
		{"first", "0", 0, true},
		{"last", fmt.Sprint(n - 1), n - 1, true},
		{"middle", "31337", 31337, true},
		{"absent", "x", 0, false},
		{"absent too", fmt.Sprint(n), 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var blocks []uint32
			got, err := tab.find(hash32(idHash(tc.id)), func(b uint32) (bool, error) {
				blocks = append(blocks, b)
				return b == tc.block, nil
			})
			if err != nil || got != tc.want {
				t.Errorf("find = %v, %v; want %v (blocks checked %v)", got, err, tc.want, blocks)
			}
			if len(blocks) > 2 {
				t.Errorf("%d entries of the same 32-bit hash: %v", len(blocks), blocks)
			}
		})
	}
	t.Run("same hash, checked against the file", func(t *testing.T) {
		var tab idTable
		e1, _ := idEntry(1<<40, 0)
		e2, _ := idEntry(1<<40, 5*blockSize)
		tab.insert(e1)
		tab.insert(e2)
		var checked []uint32
		got, _ := tab.find(entryHash(e1), func(b uint32) (bool, error) {
			checked = append(checked, b)
			return b == 5, nil
		})
		if !got || len(checked) != 2 {
			t.Errorf("find = %v after checking %v, want true after both", got, checked)
		}
	})
	t.Run("beyond maxSourceSize", func(t *testing.T) {
		if _, ok := idEntry(1, maxSourceSize); ok {
			t.Error("an offset of 1 TiB got an entry")
		}
	})
}

// TestHasChecksTheFile: ids whose entries collide with a written id's are
// not taken for written; escaped and odd ids are found.
func TestHasChecksTheFile(t *testing.T) {
	odd := []string{`quo"te`, "back\\slash", "new\nline", "tab\tx", "ünï", "\x01ctl", strings.Repeat("long", 300)}
	for _, format := range []string{"json", "text"} {
		t.Run(format, func(t *testing.T) {
			dir := t.TempDir()
			s := newSink(t, logCfg(dir, format, "never"), Options{})
			write(t, s, evs(append(idsN("x", 2000), odd...)...))
			// An entry for "forged" pointing at a written line: its hash
			// matches, the line does not.
			e, _ := idEntry(idHash("forged"), 0)
			s.file.ix.insert(e)
			for _, id := range append([]string{"forged", "x", "quo"}, odd...) {
				want := id != "forged" && id != "x" && id != "quo"
				if got, err := s.file.has(id, idHash(id)); err != nil || got != want {
					t.Errorf("has(%q) = %v, %v; want %v", id, got, err, want)
				}
			}
			write(t, s, evs("forged"))
			if got := s.Skipped(); got != 0 {
				t.Errorf("skipped %d, want 0", got)
			}
			closeSink(t, s)
			s = newSink(t, logCfg(dir, format, "never"), Options{})
			write(t, s, evs(append(odd, "forged")...))
			if got, want := s.Skipped(), uint64(len(odd)+1); got != want {
				t.Errorf("after restart: skipped %d, want %d", got, want)
			}
		})
	}
}

// TestOpenIndexMemory writes 200,000 events and reopens the file: the
// index costs at most 16 bytes per id and the open reads the sidecar, not
// the log.
func TestOpenIndexMemory(t *testing.T) {
	dir := bigDir(t)
	cfg := logCfg(dir, "json", "never")
	s := newSink(t, cfg, Options{})
	writeMany(t, s, "m", 200_000)
	closeSink(t, s)
	for _, tc := range []struct {
		name   string
		before func()
	}{
		{"with id index", func() {}},
		{"rebuilt from the log", func() { os.Remove(idhPath(filepath.Join(dir, "mail"))) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.before()
			began := time.Now()
			s := newSink(t, cfg, Options{})
			took := time.Since(began)
			tab := &s.file.ix
			per := float64(tab.bytes()) / float64(tab.len())
			t.Logf("open: %s; %d ids, %.1f bytes per id", took.Round(time.Millisecond), tab.len(), per)
			if tab.len() != 200_000 || per > 16 {
				t.Errorf("%d ids in %d bytes: want 200000 in at most 16 bytes each", tab.len(), tab.bytes())
			}
			closeSink(t, s)
		})
	}
}

// BenchmarkOpen opens a 50 MB json log with its id index (sidecar) and
// without (an older version's file, whose ids are read from the log).
func BenchmarkOpen(b *testing.B) {
	dir := bigDir(b)
	cfg := logCfg(dir, "json", "never")
	s, err := New("t", cfg, Options{})
	if err != nil {
		b.Fatal(err)
	}
	for n := 0; s.file.committed < 50<<20; n++ {
		writeMany(b, s, fmt.Sprintf("o%d", n), 10_000)
	}
	size, ids := s.file.committed, s.file.ix.len()
	s.Close(context.Background())
	for _, tc := range []struct {
		name   string
		remove bool
	}{{"sidecar", false}, {"rebuild", true}} {
		b.Run(tc.name, func(b *testing.B) {
			b.SetBytes(size)
			for b.Loop() {
				if tc.remove {
					os.Remove(idhPath(filepath.Join(dir, "mail")))
				}
				s, err := New("t", cfg, Options{})
				if err != nil {
					b.Fatal(err)
				}
				if s.file.ix.len() != ids {
					b.Fatalf("%d ids, want %d", s.file.ix.len(), ids)
				}
				s.Close(context.Background())
			}
		})
	}
}

// BenchmarkWriteLogJSONSkip replays batches of 500 events already written:
// each is found in the index and checked against the file.
func BenchmarkWriteLogJSONSkip(b *testing.B) {
	s, err := New("t", logCfg(b.TempDir(), "json", "never"), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close(context.Background())
	batches := make([][]*schema.Event, 100)
	for i := range batches {
		batches[i] = evs(idsN(fmt.Sprint(i), 500)...)
		if err := s.Write(context.Background(), batches[i]); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if err := s.Write(context.Background(), batches[i%len(batches)]); err != nil {
			b.Fatal(err)
		}
	}
	if s.Skipped() != uint64(b.N*500) {
		b.Fatalf("skipped %d of %d", s.Skipped(), b.N*500)
	}
	b.ReportMetric(float64(b.N*500)/b.Elapsed().Seconds(), "events/s")
}

// TestHugeFile measures a json log of MAILTEL_TRACER_HUGE_GIB GiB (skipped
// when unset) written by an older version (no sidecar), in
// MAILTEL_TRACER_HUGE_DIR (default a temporary directory): the first open,
// which builds the id index from the log, a second open, which reads the
// sidecar, the memory of the index, and a replay of ids of the file.
//
//	MAILTEL_TRACER_HUGE_GIB=2 go test ./pipeline/sinks/tracer -run TestHugeFile -v -timeout 30m
func TestHugeFile(t *testing.T) {
	gib, _ := strconv.ParseFloat(os.Getenv("MAILTEL_TRACER_HUGE_GIB"), 64)
	if gib <= 0 {
		t.Skip("set MAILTEL_TRACER_HUGE_GIB to the size of log to measure")
	}
	dir := os.Getenv("MAILTEL_TRACER_HUGE_DIR")
	if dir == "" {
		dir = t.TempDir()
	} else {
		dir = filepath.Join(dir, "mailtel-huge")
		os.RemoveAll(dir)
		os.MkdirAll(dir, 0o750)
		t.Cleanup(func() { os.RemoveAll(dir) })
	}
	path := filepath.Join(dir, "mail")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	fm := newJSONFormatter()
	bw := bufio.NewWriterSize(f, 4<<20)
	var buf []byte
	n := 0
	for size := int64(0); size < int64(gib*(1<<30)); n++ {
		buf, _ = fm.appendEvent(buf[:0], ev(fmt.Sprintf("huge-event-with-a-long-enough-id-%09d", n)))
		bw.Write(buf)
		size += int64(len(buf))
	}
	if err := bw.Flush(); err != nil {
		t.Fatal(err)
	}
	f.Sync()
	f.Close()
	st, _ := os.Stat(path)
	t.Logf("wrote %d events, %.2f GiB, in %s", n, float64(st.Size())/(1<<30), time.Since(began).Round(time.Millisecond))

	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	cfg := logCfg(dir, "json", "never")
	for _, step := range []string{"first open: index built from the log", "second open: index read from the sidecar",
		"open after losing the last half of the sidecar"} {
		if strings.HasPrefix(step, "open after") {
			truncateBy(t, idhPath(path), -1)
		}
		h0 := heap()
		began := time.Now()
		s := newSink(t, cfg, Options{})
		took := time.Since(began)
		h1 := heap()
		tab := &s.file.ix
		t.Logf("%s: %s; %d ids; table %.1f MB (%.1f bytes per id); heap +%.1f MB; sidecar %.1f MB",
			step, took.Round(time.Millisecond), tab.len(), float64(tab.bytes())/1e6, float64(tab.bytes())/float64(tab.len()),
			float64(h1-h0)/1e6, float64(fileSizeOf(t, idhPath(path)))/1e6)
		if tab.len() != n {
			t.Errorf("%d ids indexed, want %d", tab.len(), n)
		}
		if strings.HasPrefix(step, "second") {
			// A replay of 100,000 events of the file, spread over it, and
			// 1,000 new ones.
			var replay []string
			for i := range 100_000 {
				replay = append(replay, fmt.Sprintf("huge-event-with-a-long-enough-id-%09d", i*(n/100_000)))
			}
			began := time.Now()
			for rest := replay; len(rest) > 0; rest = rest[1000:] {
				write(t, s, evs(rest[:1000]...))
			}
			t.Logf("replay of 100,000 written events: skipped %d in %s", s.Skipped(), time.Since(began).Round(time.Millisecond))
			if s.Skipped() != 100_000 {
				t.Errorf("skipped %d, want 100000", s.Skipped())
			}
			began = time.Now()
			write(t, s, evs(idsN("new", 1000)...))
			t.Logf("1,000 new events: %s", time.Since(began).Round(time.Millisecond))
			n += 1000
		}
		closeSink(t, s)
	}
}
