package tracer

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// ErrLocked is wrapped by the error of a Write (or Written) that gave up
// waiting for the lock on the log file it would write: another process, or
// another Sink, holds it.
var ErrLocked = errors.New("log file is locked by another writer")

const (
	dirPerm  = 0o750
	filePerm = 0o640
)

// logFile is one open file of a log tracer, exclusively locked (flock) for
// its lifetime, with, for the text format, its id sidecar, and the index of
// every event id the file holds.
//
// Durability: write returns nil only once the batch is on disk (fsync).
//
// The ids. Every line of a json log carries its event id. Stalwart's text
// lines carry none, so the text format keeps them in a hidden sidecar
// ".<name>.ids" next to the file (hidden so that globs such as "mailtel.*"
// in fail2ban or log shippers do not pick it up): a batch is written to the
// log and synced, then its ids, one quoted id per line, and a commit line
// "@<size of the log after the batch>" are appended to the sidecar and
// synced. At open, ids count only when a commit follows them, the sidecar
// is cut after its last commit, and the log is cut back to the size that
// commit records: bytes beyond it were written by a batch that never
// committed, so never acknowledged, and will be redelivered. The "id
// source" of a file is where its ids are: the log (json) or the id sidecar
// (text).
//
// The id index. Every id of the file has an entry in an idIndex: the most
// recent in memory, the rest in sorted runs in unlinked scratch files, so
// that the memory a file costs is bounded (about 42 MB) whatever its size.
// A lookup (see has) finds the entries of the id's hash and checks each
// against the id source, so the sink recognises every id the file ever
// held and never skips an event it did not write. The entries are kept on
// disk too, in the hidden id index sidecar ".<name>.idh" (see idhPath), so
// that opening a file of gigabytes reads 8 bytes per id, not the whole
// log. The id source is the truth and the sidecar a cache of it: a batch
// goes to the sidecar after it is durable in the id source, without an
// fsync of its own, under a checksum; at open the sidecar is read up to its
// last intact commit, checked against the id source, and extended from the
// id source's tail; a sidecar that is missing (a file written by an older
// version), damaged or does not match is rebuilt from the id source, once.
//
// A failed write (a full disk: ENOSPC, EDQUOT, EIO, a short write) is cut
// off at once: the file (and sidecar) go back to the end of the last good
// batch, so no partial line stays, and the error is retryable. When the
// cut fails too, the file stays dirty and the next write or close cuts it
// first, so a retried batch is never written twice. Either way, what lies
// beyond the last good batch (json) or commit (text) is never taken for
// written. A failed write of the id index sidecar does not fail the batch
// (it is durable in the id source, and the table has its ids): the sidecar
// is cut back to its last commit and caught up from the id source later.
//
// After each batch, at most once per indexEvery, an entry "<time> <offset
// of the batch>" goes to the file's time index sidecar (see indexPath),
// which Written uses to start its search near the time it asks about.
//
// The file belongs to the sink: nothing else may append to it. A logFile
// is not safe for concurrent use.
type logFile struct {
	path      string
	text      bool
	f         *os.File
	ids       *os.File  // the text format's id sidecar, or nil
	idx       *os.File  // the time index sidecar (see indexPath), or nil
	idxEnd    int64     // size of idx after its last entry
	committed int64     // size of f after the last complete batch
	idsEnd    int64     // size of ids after the last commit line
	dirty     bool      // a write failed since the last complete batch
	indexed   time.Time // when the last time index entry was appended
	scratch   []byte    // sidecar record or index entry being built

	ix        idIndex  // every id of the file
	idh       *os.File // the id index sidecar, or nil when it cannot be used
	idhEnd    int64    // size of idh after its last commit
	covered   int64    // the end of the id source idh's last commit covers
	idhLag    bool     // idh misses the ids of [covered, srcEnd()): catch up
	idhRetry  time.Time
	idhBuf    []byte  // entries not yet committed to idh
	lastEntry uint64  // the last entry read from idh at open, 0 if none
	offs      []int64 // source offsets of the ids of the batch being written
	rbuf      []byte  // blocks read to check ids
	quoted    []byte  // an id as the text sidecar quotes it
}

// openLogFile opens (creating if needed) and locks the log file at path,
// repairs its tail and loads the ids it holds. With text, it also opens the
// text format's id sidecar. It opens the file's time index for the sink
// with prefix. A lock held by another open file gives an error wrapping
// ErrLocked at once.
func openLogFile(path string, text bool, prefix string) (_ *logFile, err error) {
	if err := os.MkdirAll(filepath.Dir(path), dirPerm); err != nil {
		return nil, fmt.Errorf("create log directory: %w", err)
	}
	// Read-write so that the ids can be read through the locked descriptor.
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_RDWR, filePerm)
	if err != nil {
		return nil, fmt.Errorf("open log file: %w", err)
	}
	lf := &logFile{path: path, text: text, f: f, ix: idIndex{dir: filepath.Dir(path)}}
	defer func() {
		if err != nil {
			lf.closeFiles()
		}
	}()
	if err := flock(f); err != nil {
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("lock %s: %w", path, ErrLocked)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	format := "json"
	if text {
		format = "text"
	}
	lf.openIndex(indexHeader(format, prefix))
	if text {
		ids, err := os.OpenFile(sidecarPath(path), os.O_APPEND|os.O_CREATE|os.O_RDWR, filePerm)
		if err != nil {
			return nil, fmt.Errorf("open id sidecar: %w", err)
		}
		lf.ids = ids
	}
	lf.openIDH()
	if err := syncDir(filepath.Dir(path)); err != nil {
		return nil, err
	}
	if text {
		err = lf.loadText()
	} else {
		err = lf.loadJSON()
	}
	if err != nil {
		return nil, err
	}
	lf.commitIDH(lf.srcEnd())
	if lf.idh != nil && !lf.idhLag {
		// What the open added (all of a file from an older version) is not
		// read again after a crash.
		lf.idh.Sync()
	}
	return lf, nil
}

// lockSlotFile opens (creating if needed) and locks the instance lock file
// at path (see Sink.slotLockPath). A lock held by another open file gives
// an error wrapping ErrLocked at once.
func lockSlotFile(path string) (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(path), dirPerm); err != nil {
		return nil, fmt.Errorf("create log directory: %w", err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, filePerm)
	if err != nil {
		return nil, fmt.Errorf("open instance lock: %w", err)
	}
	if err := flock(f); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("lock %s: %w", path, ErrLocked)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return f, nil
}

// sidecarPath is the hidden id sidecar of a text log file.
func sidecarPath(path string) string {
	return filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".ids")
}

// src is the id source: the log (json) or its id sidecar (text).
func (lf *logFile) src() *os.File {
	if lf.text {
		return lf.ids
	}
	return lf.f
}

// srcEnd is the end of the id source after the last complete batch.
func (lf *logFile) srcEnd() int64 {
	if lf.text {
		return lf.idsEnd
	}
	return lf.committed
}

// loadJSON loads the ids of a json log: those of the id index sidecar, then
// those of the lines it does not cover, and cuts a torn last line off.
func (lf *logFile) loadJSON() error {
	size, err := fileSize(lf.f)
	if err != nil {
		return fmt.Errorf("stat %s: %w", lf.path, err)
	}
	lf.committed = size // the end of what blockHas reads
	if lf.covered > size || !lf.lineStart(lf.covered) || !lf.lastEntryMatches() {
		// The log is not the one the sidecar indexes (cut, replaced).
		lf.resetIDH()
	}
	end, err := scanJSON(lf.f, lf.covered, size, lf.loadEntry, lf.flushIDHAt)
	if err != nil {
		return fmt.Errorf("read %s: %w", lf.path, err)
	}
	if end < size {
		// A torn last line: the batch it belongs to never returned.
		if err := lf.f.Truncate(end); err != nil {
			return fmt.Errorf("cut torn line off %s: %w", lf.path, err)
		}
	}
	lf.committed = end
	return nil
}

// lineStart reports whether off starts a line of the id source.
func (lf *logFile) lineStart(off int64) bool {
	if off == 0 {
		return true
	}
	var b [1]byte
	_, err := lf.src().ReadAt(b[:], off-1)
	return err == nil && b[0] == '\n'
}

// loadText loads the committed ids of a text log's id sidecar: those of
// the id index sidecar, then those of the commits it does not cover; it
// cuts both files back to the last commit.
func (lf *logFile) loadText() error {
	path := lf.ids.Name()
	idsSize, err := fileSize(lf.ids)
	if err != nil {
		return fmt.Errorf("stat %s: %w", path, err)
	}
	logEnd := int64(-1) // the log size the last commit records
	if lf.covered > 0 {
		n, ok := commitBefore(lf.ids, lf.covered, idsSize)
		if ok {
			logEnd = n
		}
	}
	lf.idsEnd = idsSize // the end of what blockHas reads
	if (lf.covered > 0 && logEnd < 0) || !lf.lastEntryMatches() {
		// The sidecar is not the one the index covers (cut, replaced).
		lf.resetIDH()
		logEnd = -1
	}
	idsEnd, last, err := scanIDs(lf.ids, lf.covered, idsSize, lf.loadEntry, lf.flushIDHAt)
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	if last >= 0 {
		logEnd = last
	}
	size, err := fileSize(lf.f)
	if err != nil {
		return fmt.Errorf("stat %s: %w", lf.path, err)
	}
	if logEnd < 0 {
		// No commit: a new sidecar, or one whose creation never completed,
		// so no batch was written yet. Keep the log as it is.
		logEnd, idsEnd = size, 0
	}
	if size > logEnd {
		if err := lf.f.Truncate(logEnd); err != nil {
			return fmt.Errorf("cut uncommitted batch off %s: %w", lf.path, err)
		}
		size = logEnd
	}
	if idsSize > idsEnd {
		if err := lf.ids.Truncate(idsEnd); err != nil {
			return fmt.Errorf("cut uncommitted ids off %s: %w", path, err)
		}
	}
	lf.committed, lf.idsEnd = size, idsEnd
	if idsEnd == 0 {
		// Record where the log stood before mailtel's first batch.
		if _, err := lf.appendIDs(nil, size); err != nil {
			return err
		}
	}
	return nil
}

// commitBefore returns the log size the commit line that ends at end (a
// line end of the text id sidecar f, of size size) records; ok false if no
// commit line ends there.
func commitBefore(f *os.File, end, size int64) (int64, bool) {
	if end > size || end < 3 {
		return 0, false
	}
	lo := max(0, end-32) // "@" and 19 digits fit
	b := make([]byte, end-lo)
	if _, err := f.ReadAt(b, lo); err != nil {
		return 0, false
	}
	if b[len(b)-1] != '\n' {
		return 0, false
	}
	i := bytes.LastIndexByte(b[:len(b)-1], '\n')
	if i < 0 && lo > 0 {
		return 0, false
	}
	line := b[i+1 : len(b)-1]
	if !isCommit(line) {
		return 0, false
	}
	n, _ := strconv.ParseInt(string(line[1:]), 10, 64)
	return n, true
}

// loadEntry adds an id read at open to the table and the id index sidecar.
func (lf *logFile) loadEntry(h uint64, off int64) {
	if e, ok := idEntry(h, off); ok {
		lf.ix.insert(e)
		lf.queueEntry(e)
	}
}

// has reports whether the file holds id, of hash h (see idHash): a
// complete line (json) or a committed id (text). A read error is returned:
// the caller must not guess.
func (lf *logFile) has(id string, h uint64) (bool, error) {
	if id == "" || lf.ix.len() == 0 {
		return false, nil
	}
	if lf.text {
		lf.quoted = lf.quoted[:0]
		return lf.ix.find(hash32(h), func(block uint32) (bool, error) {
			if len(lf.quoted) == 0 {
				lf.quoted = append(strconv.AppendQuote(lf.quoted, id), '\n')
			}
			return lf.blockHas(block, len(lf.quoted), func(line []byte) bool {
				return bytes.HasPrefix(line, lf.quoted)
			})
		})
	}
	return lf.ix.find(hash32(h), func(block uint32) (bool, error) {
		return lf.blockHas(block, len(jsonIDPrefix)+6*len(id)+2, func(line []byte) bool {
			return jsonLineHasID(line, id)
		})
	})
}

// jsonLineHasID reports whether a json log line (or its start) carries id.
func jsonLineHasID(line []byte, id string) bool {
	quoted, escaped, ok := jsonID(line)
	if !ok {
		return false
	}
	if !escaped {
		return string(quoted[1:len(quoted)-1]) == id
	}
	s, ok := decodeJSONID(quoted)
	return ok && s == id
}

// blockHas reports whether match accepts one of the lines of the id source
// that start in block and before srcEnd; match sees each line's start, at
// least span bytes of it where the file has them.
func (lf *logFile) blockHas(block uint32, span int, match func(line []byte) bool) (bool, error) {
	start := int64(block) << blockShift
	end := lf.srcEnd()
	if start >= end {
		return false, nil
	}
	lo := max(0, start-1) // the byte before tells whether start starts a line
	hi := min(end, start+blockSize+int64(span)+1)
	n := int(hi - lo)
	if cap(lf.rbuf) < n {
		lf.rbuf = make([]byte, n)
	}
	buf := lf.rbuf[:n]
	if m, err := lf.src().ReadAt(buf, lo); err != nil && !errors.Is(err, io.EOF) {
		return false, fmt.Errorf("read %s: %w", lf.src().Name(), err)
	} else {
		buf = buf[:m]
	}
	q := int(start - lo) // 0 or 1
	if lo > 0 || q > 0 {
		k := bytes.IndexByte(buf[q-1:], '\n')
		if k < 0 {
			return false, nil
		}
		q += k
	}
	limit := min(len(buf), int(start-lo)+blockSize, int(end-lo))
	for q < limit {
		if match(buf[q:]) {
			return true, nil
		}
		k := bytes.IndexByte(buf[q:], '\n')
		if k < 0 {
			break
		}
		q += k + 1
	}
	return false, nil
}

// write appends one formatted batch (and for text the ids it holds) and
// syncs before returning nil; then it indexes the batch's ids, of hashes
// hashes, whose lines start at the offsets starts of data. A failed write is cut off at once if it
// can be (else before the next write or at close), so that no partial
// line stays and a search by another instance finds no line of it.
func (lf *logFile) write(data []byte, ids []string, hashes []uint64, starts []int) error {
	if lf.dirty {
		if err := lf.repair(); err != nil {
			return err
		}
	}
	start := lf.srcEnd()
	lf.dirty = true
	if err := lf.append(data, ids); err != nil {
		if rerr := lf.repair(); rerr != nil {
			// The next write or close cuts it.
			return errors.Join(err, rerr)
		}
		return err
	}
	lf.dirty = false
	if !lf.text {
		base := lf.committed - int64(len(data))
		lf.offs = lf.offs[:0]
		for _, s := range starts {
			lf.offs = append(lf.offs, base+int64(s))
		}
	}
	for i := range ids {
		if e, ok := idEntry(hashes[i], lf.offs[i]); ok {
			lf.ix.insert(e)
			lf.queueEntry(e)
		}
	}
	lf.flushIDH(lf.srcEnd())
	lf.index(start)
	return nil
}

func (lf *logFile) append(data []byte, ids []string) error {
	if err := writeAll(lf.f, data); err != nil {
		return err
	}
	if err := lf.f.Sync(); err != nil {
		return err // *PathError: "sync <path>: ..."
	}
	// The size, not committed + len(data): a file cut by someone else
	// (copytruncate) is written from its new end.
	size, err := fileSize(lf.f)
	if err != nil {
		return fmt.Errorf("stat %s: %w", lf.path, err)
	}
	if lf.text {
		offs, err := lf.appendIDs(ids, size)
		if err != nil {
			return err
		}
		lf.offs = offs
	}
	lf.committed = size
	return nil
}

// writeAll writes b to f (opened for appending) and reports a short write
// as an error that names the file.
func writeAll(f *os.File, b []byte) error {
	n, err := f.Write(b)
	if err == nil && n < len(b) {
		err = &fs.PathError{Op: "write", Path: f.Name(), Err: io.ErrShortWrite}
	}
	return err // *PathError: "write <path>: no space left on device"
}

// appendIDs appends ids and the commit line "@<logSize>" to the text id
// sidecar and syncs it. It returns the offsets of the ids' lines.
func (lf *logFile) appendIDs(ids []string, logSize int64) ([]int64, error) {
	b := lf.scratch[:0]
	offs := lf.offs[:0]
	for _, id := range ids {
		offs = append(offs, lf.idsEnd+int64(len(b)))
		b = strconv.AppendQuote(b, id)
		b = append(b, '\n')
	}
	b = append(b, '@')
	b = strconv.AppendInt(b, logSize, 10)
	b = append(b, '\n')
	lf.scratch, lf.offs = b, offs
	if err := writeAll(lf.ids, b); err != nil {
		return nil, err
	}
	if err := lf.ids.Sync(); err != nil {
		return nil, err
	}
	lf.idsEnd += int64(len(b))
	return offs, nil
}

// repair cuts the file and sidecar back to the end of the last complete
// batch. A file that became shorter (cut by someone else) is left alone.
func (lf *logFile) repair() error {
	if err := cutTo(lf.f, &lf.committed); err != nil {
		return fmt.Errorf("cut failed batch off %s: %w", lf.path, err)
	}
	if lf.ids != nil {
		if err := cutTo(lf.ids, &lf.idsEnd); err != nil {
			return fmt.Errorf("cut failed batch off %s: %w", lf.ids.Name(), err)
		}
	}
	lf.dirty = false
	return nil
}

func cutTo(f *os.File, end *int64) error {
	size, err := fileSize(f)
	if err != nil {
		return err
	}
	if size <= *end {
		*end = size
		return nil
	}
	if err := f.Truncate(*end); err != nil {
		return err
	}
	return f.Sync()
}

// close repairs a dirty file and closes it, releasing the lock.
func (lf *logFile) close() error {
	var err error
	if lf.dirty {
		err = lf.repair()
	}
	if lf.idh != nil && !lf.idhLag {
		lf.idh.Sync() // saves rebuilding after a power loss; not needed for correctness
	}
	return errors.Join(err, lf.closeFiles())
}

func (lf *logFile) closeFiles() error {
	var errs []error
	for _, f := range []*os.File{lf.idx, lf.idh, lf.ids} {
		if f != nil {
			if err := f.Close(); err != nil {
				errs = append(errs, fmt.Errorf("close %s: %w", f.Name(), err))
			}
		}
	}
	if err := lf.f.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close %s: %w", lf.path, err))
	}
	lf.ix.close()
	return errors.Join(errs...)
}

func fileSize(f *os.File) (int64, error) {
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	return st.Size(), nil
}

// flock takes an exclusive, non-blocking lock on f; it is released when f
// is closed.
func flock(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var lockErr error
	if err := rc.Control(func(fd uintptr) {
		lockErr = syscall.Flock(int(fd), syscall.LOCK_EX|syscall.LOCK_NB)
	}); err != nil {
		return err
	}
	return lockErr
}

// syncDir makes the creation of files in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open log directory: %w", err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sync log directory %s: %w", dir, err)
	}
	return nil
}
