package tracer

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// ErrLocked is returned (wrapped) by New and Write when another process,
// or another Sink, holds the lock on the log file the sink would write.
var ErrLocked = errors.New("log file is locked by another writer")

const (
	dirPerm  = 0o750
	filePerm = 0o640
	// tailBytes is how much of the end of a log file (json) or id sidecar
	// (text) is read at open to reload the ids already written. It covers
	// several thousand events: more than a sink can have written and not
	// yet had acknowledged.
	tailBytes = 4 << 20
)

// logFile is one open file of a log tracer, exclusively locked (flock) for
// its lifetime, with, for the text format, its id sidecar.
//
// Durability: write returns nil only once the batch is on disk (fsync).
// Exactly-once across crashes:
//   - json: every line carries its event id. At open, a torn last line is
//     cut off and the ids of the complete lines at the end of the file are
//     loaded, so a batch that was written but not acknowledged is skipped
//     when it is redelivered.
//   - text: Stalwart's lines carry no id, so the ids go to a hidden sidecar
//     ".<name>.ids" next to the file (hidden so that globs such as
//     "mailtel.*" in fail2ban or log shippers do not pick it up). A batch is
//     written to the log and synced, then its ids, one quoted id per line,
//     and a commit line "@<size of the log after the batch>" are appended to
//     the sidecar and synced. At open, ids count only when a commit follows
//     them, the sidecar is cut after its last commit, and the log is cut
//     back to the size that commit records: bytes beyond it were written by
//     a batch that never committed, so never acknowledged, and will be
//     redelivered.
//
// Within a process, a failed write is cut off at once: the file (and
// sidecar) go back to the end of the last good batch. When that fails too,
// the file stays dirty and the next write or close cuts it first, so a
// retried batch is never written twice. Either way, what lies beyond the
// last good batch (json) or commit (text) is never taken for written by
// Written in this process.
//
// After each batch, at most once per indexEvery, an entry "<time> <offset
// of the batch>" goes to the file's index sidecar (see indexPath), which
// Written uses to start its search near the time it asks about.
//
// The file belongs to the sink: nothing else may append to it. A logFile
// is not safe for concurrent use.
type logFile struct {
	path      string
	f         *os.File
	ids       *os.File  // the text format's id sidecar, or nil
	idx       *os.File  // the index sidecar (see indexPath), or nil once it failed
	committed int64     // size of f after the last complete batch
	idsEnd    int64     // size of ids after the last commit line
	dirty     bool      // a write failed since the last complete batch
	indexed   time.Time // when the last index entry was appended
	scratch   []byte    // sidecar record or index entry being built
}

// openLogFile opens (creating if needed) and locks the log file at path,
// repairs its tail and reports every id it already holds to seen, oldest
// first. With sidecar, it also opens the text format's id sidecar. It
// opens the file's index (see indexPath) for the sink with prefix.
func openLogFile(path string, sidecar bool, prefix string, seen func(id string)) (_ *logFile, err error) {
	if err := os.MkdirAll(filepath.Dir(path), dirPerm); err != nil {
		return nil, fmt.Errorf("create log directory: %w", err)
	}
	// Read-write so that the tail can be read through the locked descriptor.
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_RDWR, filePerm)
	if err != nil {
		return nil, fmt.Errorf("open log file: %w", err)
	}
	lf := &logFile{path: path, f: f}
	defer func() {
		if err != nil {
			lf.closeFiles()
		}
	}()
	if err := flock(f); err != nil {
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("lock %s: %w: another sinks process writes this file; give each instance its own instance name (sinks --instance)", path, ErrLocked)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	format := "json"
	if sidecar {
		format = "text"
	}
	if err := lf.openIndex(indexHeader(format, prefix)); err != nil {
		return nil, err
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		return nil, err
	}
	if sidecar {
		err = lf.openSidecar(seen)
	} else {
		err = lf.loadJSON(seen)
	}
	if err != nil {
		return nil, err
	}
	return lf, nil
}

// sidecarPath is the hidden id sidecar of a text log file.
func sidecarPath(path string) string {
	return filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".ids")
}

// loadJSON cuts a torn last line off a json log and loads the ids of the
// complete lines at its end.
func (lf *logFile) loadJSON(seen func(string)) error {
	tail, start, size, err := readTail(lf.f)
	if err != nil {
		return fmt.Errorf("read %s: %w", lf.path, err)
	}
	end := bytes.LastIndexByte(tail, '\n') + 1 // complete lines are tail[:end]
	if start+int64(end) < size && (end > 0 || start == 0) {
		if err := lf.f.Truncate(start + int64(end)); err != nil {
			return fmt.Errorf("cut torn line off %s: %w", lf.path, err)
		}
		size = start + int64(end)
	}
	lf.committed = size
	lines := tail[:end]
	if start > 0 { // the first line is partial
		lines = lines[bytes.IndexByte(lines, '\n')+1:]
	}
	for len(lines) > 0 {
		i := bytes.IndexByte(lines, '\n')
		line := lines[:i]
		lines = lines[i+1:]
		if id, ok := jsonLineIDString(line); ok && id != "" {
			seen(id)
		}
	}
	return nil
}

// jsonLineIDString returns the id of a complete json log line (without its
// newline), ok false if the line is not an event line or its id is
// ambiguous (see decodeJSONID).
func jsonLineIDString(line []byte) (string, bool) {
	if len(line) == 0 || line[len(line)-1] != '}' {
		return "", false
	}
	quoted, escaped, ok := jsonID(line)
	switch {
	case !ok:
		return "", false
	case escaped:
		return decodeJSONID(quoted)
	}
	return string(quoted[1 : len(quoted)-1]), true
}

// openSidecar opens the id sidecar of a text log, loads its committed ids
// and cuts both files back to the last commit.
func (lf *logFile) openSidecar(seen func(string)) error {
	path := sidecarPath(lf.path)
	ids, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_RDWR, filePerm)
	if err != nil {
		return fmt.Errorf("open id sidecar: %w", err)
	}
	lf.ids = ids
	tail, start, _, err := readTail(ids)
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	logEnd, idsEnd := int64(-1), int64(0) // after the last commit line
	var pending []string
	off := 0
	if start > 0 { // skip the partial first line
		off = bytes.IndexByte(tail, '\n') + 1
	}
	for off < len(tail) {
		i := bytes.IndexByte(tail[off:], '\n')
		if i < 0 {
			break // torn last line
		}
		line := tail[off : off+i]
		off += i + 1
		switch {
		case len(line) > 1 && line[0] == '@':
			n, err := strconv.ParseInt(string(line[1:]), 10, 64)
			if err != nil || n < 0 {
				continue
			}
			for _, id := range pending {
				seen(id)
			}
			pending = pending[:0]
			logEnd, idsEnd = n, start+int64(off)
		case len(line) > 1 && line[0] == '"':
			if id, err := strconv.Unquote(string(line)); err == nil && id != "" {
				pending = append(pending, id)
			}
		}
	}
	st, err := lf.f.Stat()
	if err != nil {
		return fmt.Errorf("stat %s: %w", lf.path, err)
	}
	size := st.Size()
	if logEnd < 0 {
		// No commit: a new sidecar, or one whose creation never completed,
		// so no batch was written yet. Keep the log as it is.
		logEnd = size
		if err := ids.Truncate(0); err != nil {
			return fmt.Errorf("reset %s: %w", path, err)
		}
		idsEnd = 0
	}
	if size > logEnd {
		if err := lf.f.Truncate(logEnd); err != nil {
			return fmt.Errorf("cut uncommitted batch off %s: %w", lf.path, err)
		}
		size = logEnd
	}
	if err := ids.Truncate(idsEnd); err != nil {
		return fmt.Errorf("cut uncommitted ids off %s: %w", path, err)
	}
	lf.committed, lf.idsEnd = size, idsEnd
	if idsEnd == 0 {
		// Record where the log stood before mailtel's first batch.
		if err := lf.appendIDs(nil, size); err != nil {
			return err
		}
		return syncDir(filepath.Dir(path))
	}
	return nil
}

// write appends one formatted batch (and for text the ids it holds) and
// syncs before returning nil; then it indexes the batch. A failed write is
// cut off at once if it can be (else before the next write or at close),
// so that a search by another instance finds no line of it.
func (lf *logFile) write(data []byte, ids []string) error {
	if lf.dirty {
		if err := lf.repair(); err != nil {
			return err
		}
	}
	start := lf.committed
	if lf.ids != nil {
		start = lf.idsEnd
	}
	lf.dirty = true
	if err := lf.append(data, ids); err != nil {
		lf.repair() // best effort: the next write or close repairs if this fails
		return err
	}
	lf.dirty = false
	lf.index(start)
	return nil
}

func (lf *logFile) append(data []byte, ids []string) error {
	if _, err := lf.f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", lf.path, err)
	}
	if err := lf.f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", lf.path, err)
	}
	st, err := lf.f.Stat()
	if err != nil {
		return fmt.Errorf("stat %s: %w", lf.path, err)
	}
	if lf.ids != nil {
		if err := lf.appendIDs(ids, st.Size()); err != nil {
			return err
		}
	}
	lf.committed = st.Size()
	return nil
}

// appendIDs appends ids and the commit line "@<logSize>" to the sidecar
// and syncs it.
func (lf *logFile) appendIDs(ids []string, logSize int64) error {
	b := lf.scratch[:0]
	for _, id := range ids {
		b = strconv.AppendQuote(b, id)
		b = append(b, '\n')
	}
	b = append(b, '@')
	b = strconv.AppendInt(b, logSize, 10)
	b = append(b, '\n')
	lf.scratch = b
	if _, err := lf.ids.Write(b); err != nil {
		return fmt.Errorf("write %s: %w", lf.ids.Name(), err)
	}
	if err := lf.ids.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", lf.ids.Name(), err)
	}
	lf.idsEnd += int64(len(b))
	return nil
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
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if st.Size() <= *end {
		*end = st.Size()
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
	return errors.Join(err, lf.closeFiles())
}

func (lf *logFile) closeFiles() error {
	var errs []error
	if lf.idx != nil {
		if err := lf.idx.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close %s: %w", lf.idx.Name(), err))
		}
	}
	if lf.ids != nil {
		if err := lf.ids.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close %s: %w", lf.ids.Name(), err))
		}
	}
	if err := lf.f.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close %s: %w", lf.path, err))
	}
	return errors.Join(errs...)
}

// readTail returns the last tailBytes of f, the offset they start at and
// the size of f.
func readTail(f *os.File) (tail []byte, start, size int64, err error) {
	st, err := f.Stat()
	if err != nil {
		return nil, 0, 0, err
	}
	size = st.Size()
	start = max(0, size-tailBytes)
	tail = make([]byte, size-start)
	if _, err := f.ReadAt(tail, start); err != nil && !errors.Is(err, io.EOF) {
		return nil, 0, 0, err
	}
	return tail, start, size, nil
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
