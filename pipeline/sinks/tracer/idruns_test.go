package tracer

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// smallRuns makes the live table hold max entries and runs read pages of
// page entries, and jobs write back every 4 KiB, until the test ends.
func smallRuns(t *testing.T, max, page int) {
	t.Helper()
	oldMax, oldPage, oldRetry, oldBack := liveMax, runPage, runRetryEvery, runWriteBack
	liveMax, runPage, runWriteBack = max, page, 4096
	t.Cleanup(func() { liveMax, runPage, runRetryEvery, runWriteBack = oldMax, oldPage, oldRetry, oldBack })
}

// TestPacedFile: a run's file is written back in steps of runWriteBack as
// it is written, and holds what was written.
func TestPacedFile(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "paced")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	old := runWriteBack
	runWriteBack = 64 << 10
	t.Cleanup(func() { runWriteBack = old })
	p := &pacedFile{f: f}
	want := make([]byte, 0, 1<<20)
	for i := 0; len(want) < 1<<20; i++ {
		b := []byte(fmt.Sprintf("chunk %d of a run\n", i))
		want = append(want, b...)
		if _, err := p.Write(b); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
		if p.written-p.sent >= runWriteBack {
			t.Fatalf("after write %d: %d bytes not written back, more than %d", i, p.written-p.sent, runWriteBack)
		}
	}
	if p.sent < int64(len(want))-runWriteBack || p.sent == 0 {
		t.Errorf("written back %d of %d bytes", p.sent, len(want))
	}
	got, err := os.ReadFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Errorf("the file holds %d bytes that differ from the %d written", len(got), len(want))
	}
}

// settle waits until the index has no job running and nothing held that
// could be in a run.
func (x *idIndex) settle(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		x.poll()
		if x.freeze == nil && x.merge == nil && (len(x.held) == 0 || time.Now().Before(x.retry)) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("index jobs still running after 30s: %d held, %d runs", len(x.held), len(x.runs))
		}
		time.Sleep(time.Millisecond)
	}
}

// entryOf is the entry of the i-th test id: its hash, and block i.
func entryOf(i int) uint64 {
	e, _ := idEntry(idHash(fmt.Sprint("id-", i)), int64(i)<<blockShift)
	return e
}

// found reports whether x has the i-th test id, checking blocks as the
// file would.
func found(t *testing.T, x *idIndex, i int) bool {
	t.Helper()
	ok, err := x.find(entryHash(entryOf(i)), func(b uint32) (bool, error) { return b == uint32(i), nil })
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

// TestIDIndexRuns: an index that holds 1,000 entries in memory keeps
// 100,000 in runs on disk, finds every one of them at every moment, while
// tables are sorted and runs merged in the background, and nothing else.
func TestIDIndexRuns(t *testing.T) {
	smallRuns(t, 1000, 16)
	x := &idIndex{dir: t.TempDir()}
	defer x.close()
	const n = 100_000
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range n {
		x.insert(entryOf(i))
		// Ids inserted so far, the last ones included, are found whatever
		// the jobs are doing.
		if i%97 == 0 {
			for _, j := range []int{i, i / 2, rng.IntN(i + 1)} {
				if !found(t, x, j) {
					t.Fatalf("after %d inserts (%d held, %d runs, jobs %v %v), id %d is not found", i+1, len(x.held), len(x.runs), x.freeze != nil, x.merge != nil, j)
				}
			}
		}
	}
	x.settle(t)
	if x.len() != n {
		t.Errorf("len %d, want %d", x.len(), n)
	}
	t.Logf("%d ids: %d in memory, %d runs, %d bytes of memory", n, x.live.n, len(x.runs), x.bytes())
	if len(x.runs) > 12 {
		t.Errorf("%d runs for %d ids in tables of 1,000: want O(log n)", len(x.runs), n)
	}
	if x.live.n > 1000 || len(x.held) > 0 {
		t.Errorf("%d entries live and %d tables held, want at most 1,000 and none", x.live.n, len(x.held))
	}
	if max := 2*8*liveSlots() + 4*(n/16+len(x.runs)); x.bytes() > max {
		t.Errorf("index of %d ids holds %d bytes of memory, want at most %d", n, x.bytes(), max)
	}
	for i := range n {
		if !found(t, x, i) {
			t.Fatalf("id %d not found", i)
		}
	}
	for _, id := range []string{"absent", "id-100000", "id--1"} {
		ok, err := x.find(hash32(idHash(id)), func(uint32) (bool, error) { return true, nil })
		if err != nil || ok {
			t.Errorf("find(%q) = %v, %v; want false (no entry of its hash)", id, ok, err)
		}
	}
	// Entries of one hash in memory and in several runs are all checked.
	e := func(block int64) uint64 { e, _ := idEntry(7<<40, block<<blockShift); return e }
	for _, b := range []int64{1, 2, 3} {
		x.insert(e(b))
		for range 1000 { // push it into a run of its own
			x.insert(entryOf(n + rng.IntN(1<<20)))
		}
		x.settle(t)
	}
	x.insert(e(4))
	var checked []uint32
	ok, err := x.find(entryHash(e(1)), func(b uint32) (bool, error) { checked = append(checked, b); return b == 9, nil })
	if err != nil || ok || len(checked) != 4 {
		t.Errorf("find of a hash with 4 entries checked blocks %v (%v, %v), want all 4 and false", checked, ok, err)
	}
}

// TestIDIndexRunFailure: when no run can be written, the tables stay in
// memory, searched, and go to runs once the disk is back.
func TestIDIndexRunFailure(t *testing.T) {
	smallRuns(t, 100, 8)
	runRetryEvery = 10 * time.Millisecond
	dir := filepath.Join(t.TempDir(), "gone")
	x := &idIndex{dir: dir}
	defer x.close()
	for i := range 1000 {
		x.insert(entryOf(i))
	}
	x.settle(t)
	if len(x.runs) != 0 || len(x.held) == 0 {
		t.Fatalf("%d runs and %d tables held in a directory that does not exist: want none and some", len(x.runs), len(x.held))
	}
	for i := range 1000 {
		if !found(t, x, i) {
			t.Fatalf("id %d not found while runs cannot be written", i)
		}
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * runRetryEvery)
	for len(x.held) > 0 {
		x.settle(t)
	}
	if len(x.runs) == 0 || x.len() != 1000 {
		t.Errorf("after the disk came back: %d runs, %d ids; want runs and 1000", len(x.runs), x.len())
	}
	for i := range 1000 {
		if !found(t, x, i) {
			t.Fatalf("id %d not found once in runs", i)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 0 {
		t.Errorf("runs left %d files in the log directory, want none (unlinked)", len(entries))
	}
}

// TestLogSinkWithRuns: a log sink whose index keeps only 500 ids in memory
// writes each event once across batches, restarts, replays and an hourly
// rotation, and its previous file's ids cost no memory.
func TestLogSinkWithRuns(t *testing.T) {
	smallRuns(t, 500, 16)
	for _, format := range []string{"json", "text"} {
		t.Run(format, func(t *testing.T) {
			dir := t.TempDir()
			now := t0
			cfg := logCfg(dir, format, "hourly")
			s := newSink(t, cfg, Options{Now: func() time.Time { return now }})
			first := idsN("a", 5000)
			for rest := first; len(rest) > 0; rest = rest[500:] {
				write(t, s, evs(rest[:500]...))
			}
			s.file.ix.settle(t)
			if len(s.file.ix.runs) == 0 || s.file.ix.live.n > 500 {
				t.Fatalf("%d runs, %d ids in memory: want runs and at most 500", len(s.file.ix.runs), s.file.ix.live.n)
			}
			// Everything again, in other batches: all skipped.
			for rest := first; len(rest) > 0; rest = rest[1000:] {
				write(t, s, evs(rest[:1000]...))
			}
			if got := s.Skipped(); got != 5000 {
				t.Errorf("replay of 5000 written events skipped %d", got)
			}
			closeSink(t, s)

			// After a restart, the index is rebuilt into runs from the
			// sidecar; the next hour's file starts; the old one is sealed.
			now = t0.Add(time.Hour)
			s = newSink(t, cfg, Options{Now: func() time.Time { return now }})
			write(t, s, evs(slices.Concat(first[:2000], idsN("b", 3000))...))
			if got := s.Skipped(); got != 2000 {
				t.Errorf("after restart and rotation: skipped %d, want 2000", got)
			}
			s.prev.ix.settle(t)
			if s.prev.ix.live.n != 0 || len(s.prev.ix.held) != 0 || s.prev.ix.spare != nil || len(s.prev.ix.runs) != 1 {
				t.Errorf("previous file's index holds %d ids and %d tables in memory (spare %d slots) and %d runs, want none and one run",
					s.prev.ix.live.n, len(s.prev.ix.held), len(s.prev.ix.spare), len(s.prev.ix.runs))
			}
			write(t, s, evs(slices.Concat(first[3000:], idsN("b", 3000))...))
			if got := s.Skipped(); got != 2000+5000 {
				t.Errorf("replay over both files: skipped %d, want %d", got, 7000)
			}
			closeSink(t, s)
			onceEach(t, filepath.Join(dir, s.fileName(t0)), first)
			onceEach(t, filepath.Join(dir, s.fileName(now)), idsN("b", 3000))
		})
	}
}
