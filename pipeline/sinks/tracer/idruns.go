package tracer

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"sync/atomic"
	"time"
)

// An idIndex is the id index of one log file (see logFile): the entries
// (see idEntry) of its most recent ids in memory, the others in sorted runs
// on disk, so that what an open file costs in memory is bounded however
// many ids it holds.
//
//   - live is the idTable new entries go to. Once it holds liveMax entries
//     it is sealed: it stays in memory, searched (held), while a background
//     job sorts its entries into a run; then its memory is reused for the
//     next live table.
//   - A run is an immutable array of entries sorted by hash, in an
//     unlinked scratch file in the log's directory (nothing is left behind
//     by a crash, and the disk space is freed when the file is closed;
//     the id index sidecar, not the runs, is what an open reads), with the
//     hash of the first entry of each page of runPage entries in memory. A
//     lookup reads one page (4 KiB) per run, from the page cache while the
//     file is in use.
//   - A second background job merges two neighbouring runs whenever the
//     newer is at least half the size of the older, so that a file of n
//     ids has O(log n) runs, each entry is rewritten O(log n) times, and
//     no merge holds up a write. The runs of a file sealed for good (the
//     previous period's) are merged into one.
//
// A job reads only what no one modifies (a held table, run files) and
// writes a new file; the index adopts its result at its next insert or
// find, on the caller's goroutine. A job that fails (a full disk) leaves
// its inputs as they were, still searched, and is tried again after
// runRetryEvery. Every entry stays searchable at every moment: whether the
// sink recognises an id never depends on the disk, only the memory the
// index takes does.
//
// An idIndex is not safe for concurrent use.
type idIndex struct {
	dir    string     // where the scratch files of runs go
	live   idTable    // capped at liveSlots() slots
	held   []*idTable // sealed tables not yet in a run, oldest first
	runs   []*idRun   // oldest first
	freeze *idJob     // sorting held[0] into a run, or nil
	merge  *idJob     // merging two runs, or nil
	retry  time.Time  // no job starts before this after one failed
	spare  []uint64   // the slots of a table now in a run, for the next live table
	page   []byte     // a page of a run being searched
	final  bool       // sealed for good: no more inserts (see seal)
	plan   bool       // something changed since poll last looked for work
}

var (
	// liveMax is how many entries the live table holds before it is
	// sealed and sorted into a run: 2 Mi entries, a table of 21 MB (two
	// while one is being sorted). At 10,000 events/s it fills in 3.5
	// minutes, so the ids a redelivery or a resent batch asks about are
	// nearly always found in memory. A variable for the tests.
	liveMax = 1 << 21
	// runPage is the number of entries of a run read at once by a lookup
	// (4 KiB), and the spacing of the hashes kept in memory: 4 bytes per
	// 512 ids.
	runPage = 512
	// runRetryEvery spaces the attempts at a job that failed.
	runRetryEvery = 30 * time.Second
	// runWriteBack is how many bytes a job writes to a run before it
	// waits for them to reach the disk. Left to the kernel, a merge of
	// the later runs (hundreds of MB at tens of millions of ids) sits
	// dirty and is written back in one burst up to 30 s later, on the
	// disk the log file's fsyncs and the NATS server's store share. In
	// steps of 8 MiB a job is paced by the disk and holds at most a step
	// dirty. (In a 30-minute soak with it, the machine's dirty memory
	// stayed at 0.3-0.4 GB, nearly all the NATS store's, and the disk was
	// never 30% busy; whether an unpaced burst ever slowed a write was not
	// measured.)
	runWriteBack int64 = 8 << 20
)

// liveSlots is the size of a live table that holds liveMax entries.
func liveSlots() int { return int(float64(liveMax)/maxLoad) + 1 }

// insert adds an entry (see idTable.insert).
func (x *idIndex) insert(e uint64) {
	x.poll()
	if x.live.n >= liveMax {
		x.seal()
	}
	x.live.limit = liveSlots()
	x.live.insert(e)
}

// reserve makes room for n more entries in the live table, as far as it
// goes.
func (x *idIndex) reserve(n int) {
	x.live.limit = liveSlots()
	x.live.reserve(min(n, liveMax-x.live.n))
}

// sealForGood seals the index of a file that will not be written again
// (the previous period's), so that its ids cost no memory once in runs.
func (x *idIndex) sealForGood() {
	x.final, x.spare, x.plan = true, nil, true // its runs are merged into one even when nothing is live
	x.seal()
	x.poll()
}

// seal hands the live table, if it holds anything, to a run, and starts
// a new one.
func (x *idIndex) seal() {
	if x.live.n == 0 {
		return
	}
	t := x.live
	x.held = append(x.held, &t)
	x.live, x.plan = idTable{}, true
	if x.spare != nil && !x.final {
		clear(x.spare)
		x.live.slots, x.spare = x.spare, nil
	}
	// A second table waits while the first is sorted (opening a large
	// file inserts faster than runs are written): wait for that, so that
	// memory stays bounded. After a failure the tables stay in memory.
	if len(x.held) > 1 && x.freeze != nil {
		<-x.freeze.done
	}
	x.poll()
}

// find calls check with the block of every entry of hash h32, in memory
// and in the runs, until check returns true or an error.
func (x *idIndex) find(h32 uint32, check func(block uint32) (bool, error)) (bool, error) {
	x.poll()
	if ok, err := x.live.find(h32, check); ok || err != nil {
		return ok, err
	}
	for _, t := range x.held {
		if ok, err := t.find(h32, check); ok || err != nil {
			return ok, err
		}
	}
	for _, r := range x.runs {
		ok, err := r.find(h32, &x.page, check)
		if ok || err != nil {
			return ok, err
		}
	}
	return false, nil
}

// len returns the number of entries.
func (x *idIndex) len() int {
	n := x.live.n
	for _, t := range x.held {
		n += t.n
	}
	for _, r := range x.runs {
		n += r.n
	}
	return n
}

// bytes returns the memory the index holds.
func (x *idIndex) bytes() int {
	n := x.live.bytes() + 8*cap(x.spare)
	for _, t := range x.held {
		n += t.bytes()
	}
	for _, r := range x.runs {
		n += 4 * len(r.fences)
	}
	return n
}

// poll adopts the result of a job that has finished and starts the jobs
// there is work for. It is cheap when there is nothing to do: it runs on
// every lookup.
func (x *idIndex) poll() {
	if j := x.freeze; j != nil && j.finished.Load() {
		x.freeze, x.plan = nil, true
		if j.err != nil {
			x.retry = time.Now().Add(runRetryEvery)
		} else {
			x.runs = append(x.runs, j.out)
			if !x.final {
				x.spare = x.held[0].slots
			}
			x.held[0] = nil // not kept alive by the slice's array
			x.held = x.held[1:]
		}
	}
	if j := x.merge; j != nil && j.finished.Load() {
		x.merge, x.plan = nil, true
		if j.err != nil {
			x.retry = time.Now().Add(runRetryEvery)
		} else {
			i := slices.Index(x.runs, j.in[0])
			x.runs = slices.Replace(x.runs, i, i+2, j.out)
			j.in[0].close()
			j.in[1].close()
		}
	}
	if !x.plan || (!x.retry.IsZero() && time.Now().Before(x.retry)) {
		return
	}
	x.plan = false
	if x.freeze == nil && len(x.held) > 0 {
		t := x.held[0]
		x.freeze = startJob(nil, func(j *idJob) (*idRun, error) { return freezeTable(x.dir, t, &j.stop) })
	}
	if x.merge != nil {
		return
	}
	// The newest pair of neighbours in which the newer run is at least
	// half the older one. Once none is, each run is more than twice the
	// next: there are at most log2(n) of them. An index sealed for good
	// gets no more runs: it is merged into one, so that each lookup reads
	// one page.
	for i := len(x.runs) - 2; i >= 0; i-- {
		if a, b := x.runs[i], x.runs[i+1]; 2*b.n >= a.n || x.final {
			x.merge = startJob([]*idRun{a, b}, func(j *idJob) (*idRun, error) { return mergeRuns(x.dir, a, b, &j.stop) })
			return
		}
	}
}

// close stops the jobs, waits for them and frees the runs' files and the
// memory.
func (x *idIndex) close() {
	for _, j := range []*idJob{x.freeze, x.merge} {
		if j != nil {
			j.stop.Store(true)
			<-j.done
			if j.out != nil {
				j.out.close()
			}
		}
	}
	for _, r := range x.runs {
		r.close()
	}
	*x = idIndex{dir: x.dir}
}

// An idJob builds one run in a goroutine of its own.
type idJob struct {
	in       []*idRun // the runs a merge replaces
	out      *idRun
	err      error
	stop     atomic.Bool // asks the job to give up
	finished atomic.Bool // out and err are set
	done     chan struct{}
}

func startJob(in []*idRun, build func(*idJob) (*idRun, error)) *idJob {
	j := &idJob{in: in, done: make(chan struct{})}
	go func() {
		defer close(j.done)
		j.out, j.err = build(j)
		j.finished.Store(true)
	}()
	return j
}

// errStopped is what a job that was asked to stop returns.
var errStopped = errors.New("stopped")

// An idRun is entries sorted by hash in an unlinked scratch file.
type idRun struct {
	f      *os.File
	n      int      // entries
	fences []uint32 // the hash of the first entry of each page of runPage
}

// find calls check with the block of every entry of hash h32, reading the
// pages that may hold them into *page, until check returns true or an
// error.
func (r *idRun) find(h32 uint32, page *[]byte, check func(block uint32) (bool, error)) (bool, error) {
	// The first page whose first hash is h32 or more; the entries of h32
	// may begin at the end of the page before it.
	p := sort.Search(len(r.fences), func(i int) bool { return r.fences[i] >= h32 })
	if p > 0 {
		p--
	}
	for ; p < len(r.fences) && r.fences[p] <= h32; p++ {
		lo, hi := p*runPage, min((p+1)*runPage, r.n)
		if cap(*page) < 8*runPage {
			*page = make([]byte, 8*runPage)
		}
		buf := (*page)[:8*(hi-lo)]
		if _, err := r.f.ReadAt(buf, int64(8*lo)); err != nil {
			return false, fmt.Errorf("read id index run: %w", err)
		}
		for i := 0; i < len(buf); i += 8 {
			e := binary.LittleEndian.Uint64(buf[i:])
			switch h := entryHash(e); {
			case h < h32:
				continue
			case h > h32:
				return false, nil
			}
			if ok, err := check(entryBlock(e)); ok || err != nil {
				return ok, err
			}
		}
	}
	return false, nil
}

func (r *idRun) close() { r.f.Close() }

// runWriter writes entries in order to a new run.
type runWriter struct {
	r *idRun
	w *bufio.Writer
	b [8]byte
}

// pacedFile writes to a run's file and waits for every runWriteBack bytes
// to reach the disk (see runWriteBack).
type pacedFile struct {
	f             *os.File
	written, sent int64
}

func (p *pacedFile) Write(b []byte) (int, error) {
	n, err := p.f.Write(b)
	p.written += int64(n)
	if err == nil && p.written-p.sent >= runWriteBack {
		if err = writeBack(p.f, p.sent, p.written-p.sent); err != nil {
			err = fmt.Errorf("write back: %w", err)
		}
		p.sent = p.written
	}
	return n, err
}

// newRunWriter creates a run's scratch file in dir and unlinks it.
func newRunWriter(dir string) (*runWriter, error) {
	f, err := os.CreateTemp(dir, ".idrun-*")
	if err != nil {
		return nil, fmt.Errorf("create id index run: %w", err)
	}
	if err := os.Remove(f.Name()); err != nil {
		f.Close()
		return nil, fmt.Errorf("unlink id index run: %w", err)
	}
	return &runWriter{r: &idRun{f: f}, w: bufio.NewWriterSize(&pacedFile{f: f}, 1<<20)}, nil
}

func (w *runWriter) add(e uint64) error {
	if w.r.n%runPage == 0 {
		w.r.fences = append(w.r.fences, entryHash(e))
	}
	w.r.n++
	binary.LittleEndian.PutUint64(w.b[:], e)
	_, err := w.w.Write(w.b[:])
	return err
}

// finish flushes the run and returns it, or closes its file on err.
func (w *runWriter) finish(err error) (*idRun, error) {
	if err == nil {
		err = w.w.Flush()
	}
	if err != nil {
		w.r.close()
		return nil, fmt.Errorf("write id index run: %w", err)
	}
	return w.r, nil
}

// freezeTable writes the entries of t, sorted, to a new run in dir.
func freezeTable(dir string, t *idTable, stop *atomic.Bool) (*idRun, error) {
	entries := make([]uint64, 0, t.n)
	for _, e := range t.slots {
		if e != 0 {
			entries = append(entries, e)
		}
	}
	slices.Sort(entries)
	w, err := newRunWriter(dir)
	if err != nil {
		return nil, err
	}
	for i, e := range entries {
		if i%(64<<10) == 0 && stop.Load() {
			return w.finish(errStopped)
		}
		if err := w.add(e); err != nil {
			return w.finish(err)
		}
	}
	return w.finish(nil)
}

// mergeRuns writes the entries of a and b, merged in order, to a new run
// in dir.
func mergeRuns(dir string, a, b *idRun, stop *atomic.Bool) (*idRun, error) {
	w, err := newRunWriter(dir)
	if err != nil {
		return nil, err
	}
	ra, rb := newRunReader(a), newRunReader(b)
	for i := 0; ra.ok || rb.ok; i++ {
		if i%(64<<10) == 0 && stop.Load() {
			return w.finish(errStopped)
		}
		var e uint64
		if !rb.ok || (ra.ok && ra.e <= rb.e) {
			e = ra.e
			ra.next()
		} else {
			e = rb.e
			rb.next()
		}
		if err := w.add(e); err != nil {
			return w.finish(err)
		}
	}
	if err := errors.Join(ra.err, rb.err); err != nil {
		return w.finish(fmt.Errorf("read id index run: %w", err))
	}
	return w.finish(nil)
}

// runReader reads the entries of a run in order: e is the current one
// while ok.
type runReader struct {
	br  *bufio.Reader
	e   uint64
	ok  bool
	err error
	b   [8]byte
}

func newRunReader(r *idRun) *runReader {
	rr := &runReader{br: bufio.NewReaderSize(io.NewSectionReader(r.f, 0, int64(8*r.n)), 1<<20)}
	rr.next()
	return rr
}

func (rr *runReader) next() {
	if _, err := io.ReadFull(rr.br, rr.b[:]); err != nil {
		rr.ok = false
		if !errors.Is(err, io.EOF) {
			rr.err = err
		}
		return
	}
	rr.e, rr.ok = binary.LittleEndian.Uint64(rr.b[:]), true
}
