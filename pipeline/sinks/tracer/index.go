package tracer

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// The index sidecar of a log file, ".<name>.idx" (hidden like the text
// format's ".<name>.ids"), lets Written start its search of the file near
// the time it is asked about instead of at the beginning. It holds a
// header line naming the format and the prefix of the sink that writes
// the file, then entries "<unix ms> <offset>\n": the batch that starts at
// offset (in the log for json, in the id sidecar for text) was on disk at
// that time, so every batch before it was on disk earlier.
//
// The index is a hint, never a source of ids: entries are appended without
// fsync, at most one per indexEvery, and one that is lost, torn or garbled
// only makes a search start earlier (see indexStart). The header is synced
// when the index is created, so that Written can tell this sink's files
// from those of a sink whose prefix extends this one's ("mail" and
// "mail.sec" in one directory).
const (
	indexMagic = "mailtel-tracer-index 1"
	// indexEvery spaces the entries: a search starts at most this much
	// (plus clockSlack) before the time asked about, and the index of a
	// busy day stays around 2 MB.
	indexEvery = time.Second
)

// indexPath is the hidden index sidecar of a log file.
func indexPath(path string) string {
	return filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".idx")
}

// indexHeader is the first line of the index of a file written in format
// ("json" or "text") by a sink with prefix.
func indexHeader(format, prefix string) string {
	return indexMagic + " " + format + " " + strconv.Quote(prefix) + "\n"
}

// parseIndexHeader reads the format and prefix out of an index's first
// line (without its newline).
func parseIndexHeader(line []byte) (format, prefix string, ok bool) {
	rest, found := bytes.CutPrefix(line, []byte(indexMagic+" "))
	if !found {
		return "", "", false
	}
	f, q, found := bytes.Cut(rest, []byte(" "))
	if !found || (string(f) != "json" && string(f) != "text") {
		return "", "", false
	}
	p, err := strconv.Unquote(string(q))
	if err != nil {
		return "", "", false
	}
	return string(f), p, true
}

// openIndex opens (creating if needed) the time index of the log file and
// makes it start with header: an index with another header (none, a torn
// one, another format) is emptied and given this one, and synced. A torn
// last entry is closed with a newline so that the next entry is not glued
// to it. The caller holds the log file's lock, so nothing else writes the
// index. The index is a hint: when it cannot be opened or written (a full
// disk) the file goes without (lf.idx nil), and searches of it start at
// its beginning.
func (lf *logFile) openIndex(header string) {
	f, err := os.OpenFile(indexPath(lf.path), os.O_APPEND|os.O_CREATE|os.O_RDWR, filePerm)
	if err != nil {
		return
	}
	lf.idx = f
	if err := lf.fixIndex(header); err != nil {
		lf.idx.Close()
		lf.idx = nil
	}
}

func (lf *logFile) fixIndex(header string) error {
	f := lf.idx
	size, err := fileSize(f)
	if err != nil {
		return err
	}
	head := make([]byte, len(header))
	n, err := f.ReadAt(head, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	if n < len(head) || string(head) != header {
		if err := f.Truncate(0); err != nil {
			return err
		}
		if err := writeAll(f, []byte(header)); err != nil {
			f.Truncate(0) // a torn header reads as none
			return err
		}
		lf.idxEnd = int64(len(header))
		return f.Sync()
	}
	last := make([]byte, 1)
	if _, err := f.ReadAt(last, size-1); err != nil {
		return err
	}
	lf.idxEnd = size
	if last[0] != '\n' {
		if err := writeAll(f, []byte("\n")); err != nil {
			f.Truncate(size)
			return err
		}
		lf.idxEnd++
	}
	return nil
}

// index records that the batch starting at off is on disk, if the last
// entry is older than indexEvery. Errors are not the batch's: a failed
// entry is cut off (it would only make searches start earlier) and the
// next batch tries again; an index that cannot be cut is dropped for the
// rest of this file's life.
func (lf *logFile) index(off int64) {
	if lf.idx == nil {
		return
	}
	now := time.Now()
	if !lf.indexed.IsZero() && now.Sub(lf.indexed) < indexEvery && now.After(lf.indexed) {
		return
	}
	b := strconv.AppendInt(lf.scratch[:0], now.UnixMilli(), 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, off, 10)
	b = append(b, '\n')
	lf.scratch = b
	if err := writeAll(lf.idx, b); err != nil {
		if cutTo(lf.idx, &lf.idxEnd) != nil {
			lf.idx.Close()
			lf.idx = nil
		}
		return
	}
	lf.idxEnd += int64(len(b))
	lf.indexed = now
}

// indexStart returns where a search of a file for the batches on disk at
// or after cutoff may start: the offset of the entry before the first
// entry at or after cutoff, lowered to any smaller offset that follows
// (the file was cut back and rewritten), or 0 when the index is missing,
// has no valid header or no such entry. Entries that do not parse
// are skipped (a lost entry makes the start earlier, never later); a torn
// entry glued to the next one reads as a time far in the future, which
// also makes the start earlier. The result is at most size; the caller
// checks that it is a line start.
func indexStart(path string, cutoff time.Time, size int64) (int64, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("open index: %w", err)
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 64<<10)
	if head, err := br.ReadSlice('\n'); err != nil {
		return 0, nil
	} else if _, _, ok := parseIndexHeader(head[:len(head)-1]); !ok {
		return 0, nil // not an index this package wrote
	}
	limit := cutoff.UnixMilli()
	start, after := int64(0), false // after: an entry at or after cutoff was met
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			// io.EOF: the end, or a torn last entry, which is ignored; a
			// line longer than the buffer is garbage.
			if errors.Is(err, bufio.ErrBufferFull) {
				if _, err := br.ReadBytes('\n'); err == nil {
					continue
				}
			}
			break
		}
		t, off, ok := parseIndexEntry(line[:len(line)-1])
		if !ok {
			continue
		}
		if off > size {
			// The file is shorter than the index says: it was cut or
			// replaced, so the index cannot be trusted.
			return 0, nil
		}
		switch {
		case after:
			start = min(start, off)
		case t >= limit:
			after = true
			start = min(start, off)
		default:
			start = off
		}
	}
	return start, nil
}

// parseIndexEntry parses "<unix ms> <offset>".
func parseIndexEntry(line []byte) (ms, off int64, ok bool) {
	a, b, found := bytes.Cut(line, []byte(" "))
	if !found {
		return 0, 0, false
	}
	ms, err1 := strconv.ParseInt(string(a), 10, 64)
	off, err2 := strconv.ParseInt(string(b), 10, 64)
	if err1 != nil || err2 != nil || off < 0 {
		return 0, 0, false
	}
	return ms, off, true
}

// readIndexHeader returns the format and prefix the index of the log file
// at path names, ok false if it has none (missing, torn or garbled).
func readIndexHeader(path string) (format, prefix string, ok bool) {
	f, err := os.Open(indexPath(path))
	if err != nil {
		return "", "", false
	}
	defer f.Close()
	head := make([]byte, 4096)
	n, _ := io.ReadFull(f, head)
	line, _, found := bytes.Cut(head[:n], []byte("\n"))
	if !found {
		return "", "", false
	}
	return parseIndexHeader(line)
}
