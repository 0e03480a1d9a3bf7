package tracer

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// The id index sidecar of a log file, ".<name>.idh" (hidden like the other
// sidecars), holds the file's id index entries (see idEntry) so that an
// open need not read the whole log. It is a 16-byte header naming the
// format, then little-endian 64-bit words:
//
//   - an entry: the 32-bit hash of an id (never 0) and the block of the id
//     source its line starts in (see idEntry);
//   - a commit, two words: the CRC-32C of the entries since the previous
//     commit and of the second word (high 32 bits 0, which tells it from
//     an entry), then the end of the id source the sidecar now covers.
//
// Entries count only when an intact commit follows them. A batch's entries
// and commit are appended once the batch is durable in the id source,
// without fsync: what a crash loses, tears or garbles is cut off at the
// next open and rebuilt from the id source after the last intact commit.
// The sidecar only ever speeds up the open; the id source is the truth.
const (
	idhHeaderJSON = "mailtel-idh 1 j\n"
	idhHeaderText = "mailtel-idh 1 t\n"
	idhHeaderSize = 16
	// idhChunk is how many entries a load or a catch-up commits at once.
	idhChunk = 64 << 10
	// idhMaxPending bounds the entries read before their commit: a batch
	// has far fewer; more is garbage.
	idhMaxPending = 1 << 20
	// idhRetryEvery spaces the attempts to catch a sidecar whose write
	// failed (a full disk) up with the id source.
	idhRetryEvery = 30 * time.Second
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// idhPath is the hidden id index sidecar of a log file.
func idhPath(path string) string {
	return filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".idh")
}

func (lf *logFile) idhHeader() string {
	if lf.text {
		return idhHeaderText
	}
	return idhHeaderJSON
}

// openIDH opens (creating if needed) the id index sidecar and loads its
// committed entries into the table; lf.covered is then the end of the id
// source they cover. A sidecar that cannot be opened or written is left
// out (lf.idh nil): every open then reads the whole id source.
func (lf *logFile) openIDH() {
	f, err := os.OpenFile(idhPath(lf.path), os.O_APPEND|os.O_CREATE|os.O_RDWR, filePerm)
	if err != nil {
		return
	}
	lf.idh = f
	size, err := fileSize(f)
	if err != nil {
		lf.dropIDH()
		return
	}
	head := make([]byte, idhHeaderSize)
	if n, _ := f.ReadAt(head, 0); n < idhHeaderSize || string(head) != lf.idhHeader() {
		lf.resetIDH()
		return
	}
	lf.idhEnd = idhHeaderSize
	// Room for the entries, but no more than the id source can hold (a
	// line has at least 4 bytes), whatever the size of a damaged sidecar.
	words := (size - idhHeaderSize) / 8
	if srcSize, err := fileSize(lf.src()); err == nil {
		words = min(words, srcSize/4)
	}
	lf.ix.reserve(int(words))
	br := bufio.NewReaderSize(io.NewSectionReader(f, idhHeaderSize, size-idhHeaderSize), 1<<20)
	var pending []uint64
	var word [8]byte
	crc := uint32(0)
	for {
		if _, err := io.ReadFull(br, word[:]); err != nil {
			break
		}
		w := binary.LittleEndian.Uint64(word[:])
		if w>>32 != 0 {
			if len(pending) >= idhMaxPending {
				break
			}
			pending = append(pending, w)
			crc = crc32.Update(crc, castagnoli, word[:])
			continue
		}
		if _, err := io.ReadFull(br, word[:]); err != nil {
			break
		}
		crc = crc32.Update(crc, castagnoli, word[:])
		end := int64(binary.LittleEndian.Uint64(word[:]))
		if uint32(w) != crc || end < lf.covered || !entriesBefore(pending, end) {
			break
		}
		for _, e := range pending {
			lf.ix.insert(e)
		}
		if len(pending) > 0 {
			lf.lastEntry = pending[len(pending)-1]
		}
		lf.idhEnd += int64(8 * (len(pending) + 2))
		lf.covered = end
		pending, crc = pending[:0], 0
	}
	if size > lf.idhEnd {
		if err := f.Truncate(lf.idhEnd); err != nil {
			lf.dropIDH()
		}
	}
}

// entriesBefore reports whether every entry's block starts before end.
func entriesBefore(entries []uint64, end int64) bool {
	for _, e := range entries {
		if int64(entryBlock(e))<<blockShift >= end {
			return false
		}
	}
	return true
}

// resetIDH forgets what the sidecar said: the table is emptied and the
// sidecar is given a fresh header, to be rebuilt from the id source. When
// the header cannot be written (a full disk), the sidecar lags and gets it
// at its catch-up.
func (lf *logFile) resetIDH() {
	lf.ix.close()
	lf.covered, lf.lastEntry, lf.idhLag = 0, 0, false
	lf.idhBuf = lf.idhBuf[:0]
	if lf.idh == nil {
		return
	}
	if err := lf.idh.Truncate(0); err != nil {
		lf.dropIDH()
		return
	}
	lf.idhEnd = 0
	if !lf.writeIDHHeader() {
		lf.idhLag, lf.idhRetry = true, time.Now().Add(idhRetryEvery)
	}
}

// writeIDHHeader writes the header of an empty sidecar.
func (lf *logFile) writeIDHHeader() bool {
	if err := writeAll(lf.idh, []byte(lf.idhHeader())); err != nil {
		if lf.idh.Truncate(0) != nil { // a torn header reads as none
			lf.dropIDH()
		}
		return false
	}
	lf.idhEnd = idhHeaderSize
	return true
}

// dropIDH stops using the sidecar for the life of this logFile.
func (lf *logFile) dropIDH() {
	if lf.idh != nil {
		lf.idh.Close()
		lf.idh = nil
	}
	lf.idhBuf = lf.idhBuf[:0]
}

// lastEntryMatches checks the sidecar against the id source: the line the
// last loaded entry points at must carry an id of its hash. A log that was
// cut, replaced or rewritten fails the check (almost always), and its
// sidecar is rebuilt.
func (lf *logFile) lastEntryMatches() bool {
	if lf.lastEntry == 0 {
		return true
	}
	h32 := entryHash(lf.lastEntry)
	ok, err := lf.blockHas(entryBlock(lf.lastEntry), 4096, func(line []byte) bool {
		var h uint64
		var ok bool
		if lf.text {
			if i := bytes.IndexByte(line, '\n'); i >= 0 {
				h, ok = textLineHash(line[:i])
			}
		} else {
			h, ok = jsonLineHash(line)
		}
		return ok && hash32(h) == h32
	})
	return ok && err == nil
}

// queueEntry adds an entry to the next commit of the sidecar.
func (lf *logFile) queueEntry(e uint64) {
	if lf.idh != nil && !lf.idhLag {
		lf.idhBuf = binary.LittleEndian.AppendUint64(lf.idhBuf, e)
	}
}

// flushIDHAt commits the queued entries if there are many: end is a line
// end (json) or commit end (text) of the id source that they all precede.
func (lf *logFile) flushIDHAt(end int64) {
	if len(lf.idhBuf) >= 8*idhChunk {
		lf.commitIDH(end)
	}
}

// flushIDH commits the queued entries of a batch that ends at end; a
// sidecar behind the id source is first caught up, at most once per
// idhRetryEvery.
func (lf *logFile) flushIDH(end int64) {
	if lf.idh == nil {
		return
	}
	if lf.idhLag {
		lf.idhBuf = lf.idhBuf[:0]
		if time.Now().Before(lf.idhRetry) {
			return
		}
		lf.catchUp()
		return
	}
	lf.commitIDH(end)
}

// commitIDH appends the queued entries and a commit covering the id source
// up to end. A failed write is cut off; the sidecar then lags (see
// flushIDH).
func (lf *logFile) commitIDH(end int64) {
	if lf.idh == nil || lf.idhLag {
		lf.idhBuf = lf.idhBuf[:0]
		return
	}
	if len(lf.idhBuf) == 0 && end == lf.covered {
		return
	}
	b := binary.LittleEndian.AppendUint64(lf.idhBuf, 0)
	b = binary.LittleEndian.AppendUint64(b, uint64(end))
	crc := crc32.Update(0, castagnoli, b[:len(b)-16])
	crc = crc32.Update(crc, castagnoli, b[len(b)-8:])
	binary.LittleEndian.PutUint64(b[len(b)-16:], uint64(crc))
	lf.idhBuf = b[:0]
	if err := writeAll(lf.idh, b); err != nil {
		lf.idhLag, lf.idhRetry = true, time.Now().Add(idhRetryEvery)
		if size, serr := fileSize(lf.idh); serr != nil || (size > lf.idhEnd && lf.idh.Truncate(lf.idhEnd) != nil) {
			lf.dropIDH() // the next open drops the torn commit
		}
		return
	}
	lf.idhEnd += int64(len(b))
	lf.covered = end
}

// catchUp appends to the sidecar the entries of the id source it does not
// cover, read from the id source (the table has them already).
func (lf *logFile) catchUp() {
	if lf.idhEnd == 0 && !lf.writeIDHHeader() {
		lf.idhRetry = time.Now().Add(idhRetryEvery)
		return
	}
	lf.idhLag = false
	add := func(h uint64, off int64) {
		if e, ok := idEntry(h, off); ok {
			lf.queueEntry(e)
		}
	}
	end := lf.srcEnd()
	var err error
	if lf.text {
		_, _, err = scanIDs(lf.ids, lf.covered, end, add, lf.flushIDHAt)
	} else {
		_, err = scanJSON(lf.f, lf.covered, end, add, lf.flushIDHAt)
	}
	if err != nil {
		lf.idhBuf = lf.idhBuf[:0]
		lf.idhLag, lf.idhRetry = true, time.Now().Add(idhRetryEvery)
		return
	}
	lf.commitIDH(end)
}

// scanJSON reads the json log f from from (a line start) to to and calls
// add with the hash and offset of the id of every complete event line, and
// boundary with the end of every complete line. It returns the end of the
// last complete line.
func scanJSON(f *os.File, from, to int64, add func(h uint64, off int64), boundary func(end int64)) (int64, error) {
	return scanLines(f, from, to, func(head []byte, off, end int64, last byte) {
		if last == '}' {
			if h, ok := jsonLineHash(head); ok {
				add(h, off)
			}
		}
		boundary(end)
	})
}

// scanIDs reads the text id sidecar f from from (0 or a commit end) to to
// and calls add with the hash and offset of every id a commit line follows,
// and boundary with the end of every commit line. It returns the end of the
// last commit line (from if none) and the log size it records (-1 if none).
func scanIDs(f *os.File, from, to int64, add func(h uint64, off int64), boundary func(end int64)) (int64, int64, error) {
	type entry struct {
		h   uint64
		off int64
	}
	var pending []entry
	idsEnd, logEnd := from, int64(-1)
	_, err := scanLines(f, from, to, func(line []byte, off, end int64, _ byte) {
		switch {
		case isCommit(line):
			for _, p := range pending {
				add(p.h, p.off)
			}
			pending = pending[:0]
			logEnd, _ = strconv.ParseInt(string(line[1:]), 10, 64)
			idsEnd = end
			boundary(end)
		default:
			if h, ok := textLineHash(line); ok {
				pending = append(pending, entry{h, off})
			}
		}
	})
	return idsEnd, logEnd, err
}

// scanLines calls fn for every complete line of f in [from, to), from being
// a line start: head is the line without its newline, or the first part of
// a line longer than the read buffer; off and end are the offsets of the
// line and of the byte after its newline; last is its last byte before the
// newline (0 for an empty line). It returns the end of the last complete
// line.
func scanLines(f *os.File, from, to int64, fn func(head []byte, off, end int64, last byte)) (int64, error) {
	if to <= from {
		return from, nil
	}
	br := bufio.NewReaderSize(io.NewSectionReader(f, from, to-from), 1<<20)
	off := from
	var long []byte
	for {
		line, err := br.ReadSlice('\n')
		n := int64(len(line))
		head := line
		if errors.Is(err, bufio.ErrBufferFull) {
			long = append(long[:0], line[:min(len(line), 64<<10)]...)
			head = long
			last := line[len(line)-1]
			for errors.Is(err, bufio.ErrBufferFull) {
				line, err = br.ReadSlice('\n')
				n += int64(len(line))
				if errors.Is(err, bufio.ErrBufferFull) && len(line) > 0 {
					last = line[len(line)-1]
				} else if err == nil && len(line) >= 2 {
					last = line[len(line)-2]
				}
			}
			if err == nil {
				fn(head, off, off+n, last)
				off += n
				continue
			}
		} else if err == nil {
			head = line[:len(line)-1]
			var last byte
			if len(head) > 0 {
				last = head[len(head)-1]
			}
			fn(head, off, off+n, last)
			off += n
			continue
		}
		if errors.Is(err, io.EOF) {
			return off, nil // what follows off is a torn line
		}
		return off, err
	}
}

// jsonLineHash returns the hash of the id a json log line starts with;
// ok false if it has none, an empty one, or one that cannot be told apart
// (see decodeJSONID).
func jsonLineHash(line []byte) (uint64, bool) {
	quoted, escaped, ok := jsonID(line)
	if !ok || len(quoted) <= 2 {
		return 0, false
	}
	if !escaped {
		return idHash(quoted[1 : len(quoted)-1]), true
	}
	s, ok := decodeJSONID(quoted)
	if !ok || s == "" {
		return 0, false
	}
	return idHash(s), true
}

// textLineHash returns the hash of the id of a text id sidecar line (a
// quoted id, without its newline).
func textLineHash(line []byte) (uint64, bool) {
	if len(line) <= 2 || line[0] != '"' || line[len(line)-1] != '"' {
		return 0, false
	}
	raw := line[1 : len(line)-1]
	if bytes.IndexByte(raw, '\\') < 0 {
		return idHash(raw), true
	}
	s, err := strconv.Unquote(string(line))
	if err != nil || s == "" {
		return 0, false
	}
	return idHash(s), true
}
