package tracer

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/mailtel/mailtel/schema"
)

// clockSlack is how far the clock of the host that writes a log file may
// be behind the clock of the JetStream server that timestamps ROUTED: a
// search for what was written since t looks at what was written since
// t - clockSlack.
const clockSlack = 5 * time.Second

// Written reports which of events were already written to this sink's log
// files at or after since (the runner passes the earliest time one of them
// was stored in ROUTED). It is exact for events with a valid UTF-8 id:
//
//   - an event reported written has a complete line in one of the files
//     (json), or a committed id in a file's id sidecar (text), so it would
//     survive a crash of the writer and the repair at the next open;
//   - an event written at or after since is reported, however much was
//     written since and across any number of crashes, as long as its file
//     is still there (see the package doc).
//
// It answers first from the index of the files this sink has open (see
// logFile), then searches the other files of every instance of the sink in
// its directory ("<prefix>" and "<prefix>.*": another instance may have
// written an event that JetStream redelivers to this one) that were
// modified at or after since - clockSlack, from the batch each file's time
// index says was written then (see indexStart), up to the last complete
// line or commit, reading as it goes and stopping once every event is
// found. Files of other sinks, sidecars and dotfiles are left alone. Events
// with an empty id are never reported.
//
// The keys of the map are the events' ID strings. Console and stdout
// tracers return nil, nil: they have nothing to search. Written is
// serialised with Write and Close; like Write, it waits for the lock on the
// sink's file until ctx ends. It returns ctx's error if ctx ends during the
// search, and an error wrapping ErrClosed after Close.
func (s *Sink) Written(ctx context.Context, events []*schema.Event, since time.Time) (map[string]bool, error) {
	if s.dir == "" {
		return nil, nil
	}
	if err := s.lock(ctx); err != nil {
		return nil, fmt.Errorf("tracer %s: check written: %w", s.name, err)
	}
	defer s.unlock()
	if s.closed {
		return nil, fmt.Errorf("tracer %s: check written: %w", s.name, ErrClosed)
	}
	if err := s.open(ctx, lockWait); err != nil {
		return nil, fmt.Errorf("tracer %s: check written: %w", s.name, err)
	}
	found := make(map[string]bool)
	want := make(map[string]string) // ids still sought, to themselves
	for _, e := range events {
		if e == nil || e.ID == "" {
			continue
		}
		known, err := s.known(e.ID, idHash(e.ID))
		if err != nil {
			return nil, fmt.Errorf("tracer %s: check written: %w", s.name, err)
		}
		if known {
			found[e.ID] = true
		} else {
			want[e.ID] = e.ID
		}
	}
	if len(want) == 0 {
		return found, nil
	}
	targets, err := s.targets(since.Add(-clockSlack))
	if err != nil {
		return nil, fmt.Errorf("tracer %s: check written: %w", s.name, err)
	}
	for _, t := range targets {
		if err := t.search(ctx, want, found); err != nil {
			return nil, fmt.Errorf("tracer %s: check written: %w", s.name, err)
		}
		if len(want) == 0 {
			break
		}
	}
	return found, nil
}

// target is one log file to search.
type target struct {
	log    string // the log file
	path   string // what is read: the log (json) or its id sidecar (text)
	text   bool
	cutoff time.Time
	mod    time.Time
}

// targets lists the files of this sink (every instance) in its directory
// modified at or after cutoff, but those this sink has open (it has their
// ids), the most recently modified first.
func (s *Sink) targets(cutoff time.Time) ([]target, error) {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", s.dir, err)
	}
	var out []target
	for _, e := range ents {
		name := e.Name()
		if !e.Type().IsRegular() || strings.HasPrefix(name, ".") ||
			(name != s.prefix && !strings.HasPrefix(name, s.prefix+".")) {
			continue
		}
		t := target{log: filepath.Join(s.dir, name), cutoff: cutoff}
		if s.isOpen(t.log) {
			continue
		}
		if format, prefix, ok := readIndexHeader(t.log); ok {
			if prefix != s.prefix {
				continue // another sink's file, whose prefix extends ours
			}
			t.text = format == "text"
		} else {
			// No index (a file from before indexes, or one deleted): the
			// name must read "<prefix>[.<instance>][.<period>]".
			if !logName(name[len(s.prefix):]) {
				continue
			}
			_, err := os.Stat(sidecarPath(t.log))
			t.text = err == nil
		}
		t.path = t.log
		if t.text {
			t.path = sidecarPath(t.log)
		}
		st, err := os.Stat(t.path)
		if errors.Is(err, os.ErrNotExist) {
			continue // removed meanwhile, or a text log mailtel never wrote
		}
		if err != nil {
			return nil, fmt.Errorf("stat %s: %w", t.path, err)
		}
		if st.ModTime().Before(cutoff) {
			continue
		}
		t.mod = st.ModTime()
		out = append(out, t)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].mod.After(out[j].mod) })
	return out, nil
}

// isOpen reports whether the log file at path is one this sink has open.
func (s *Sink) isOpen(path string) bool {
	return (s.file != nil && path == s.file.path) || (s.prev != nil && path == s.prev.path)
}

// logName reports whether rest, what follows the prefix in a file name,
// is that of a log file: empty, ".<instance>", ".<period>" or
// ".<instance>.<period>" (periods as fileName writes them).
func logName(rest string) bool {
	if rest == "" {
		return true
	}
	rest, ok := strings.CutPrefix(rest, ".")
	if !ok || rest == "" {
		return false
	}
	i := strings.LastIndexByte(rest, '.')
	if i < 0 {
		return true // an instance or a period
	}
	last := rest[i+1:]
	_, errDay := time.Parse("2006-01-02", last)
	_, errHour := time.Parse("2006-01-02T15", last)
	return errDay == nil || errHour == nil
}

// search reads the target from where its index says the batches written
// since its cutoff start, up to its stable end, moving the ids it finds
// from want to found.
func (t target) search(ctx context.Context, want map[string]string, found map[string]bool) error {
	f, err := os.Open(t.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil // removed since it was listed
	}
	if err != nil {
		return fmt.Errorf("open %s: %w", t.path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("stat %s: %w", t.path, err)
	}
	size := st.Size()
	start, err := indexStart(indexPath(t.log), t.cutoff, size)
	if err != nil {
		return fmt.Errorf("index of %s: %w", t.log, err)
	}
	if start > 0 {
		// An entry must point at a line start; one that does not is
		// garbage, and the index is not trusted.
		var b [1]byte
		if _, err := f.ReadAt(b[:], start-1); err != nil || b[0] != '\n' {
			start = 0
		}
	}
	// Another process may be appending, or cutting off what a crash left,
	// while this reads: only what precedes the last complete line (json) or
	// commit (text) is never cut.
	end, err := stableEnd(f, start, size, t.text)
	if err != nil {
		return fmt.Errorf("read %s: %w", t.path, err)
	}
	br := bufio.NewReaderSize(io.NewSectionReader(f, start, end-start), 256<<10)
	if t.text {
		err = searchIDs(ctx, br, want, found)
	} else {
		err = searchJSON(ctx, br, want, found)
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", t.path, err)
	}
	return nil
}

// stableEnd returns the end of the last complete line (json) or of the
// last commit line (text) of f between from, a line start, and size; from
// if there is none. The crash repair at open (see logFile) cuts only what
// follows it.
func stableEnd(f *os.File, from, size int64, text bool) (int64, error) {
	for w := int64(64 << 10); ; w *= 4 {
		lo := max(from, size-w)
		buf := make([]byte, size-lo)
		n, err := f.ReadAt(buf, lo)
		if err != nil && !errors.Is(err, io.EOF) {
			return 0, err
		}
		buf = buf[:n] // shorter if the file was cut meanwhile
		if end, ok := lastEnd(buf, lo == from, text); ok {
			return lo + int64(end), nil
		}
		if lo == from {
			return from, nil
		}
	}
}

// lastEnd returns the end of the last complete line (json) or commit line
// (text) of buf; startsLine says whether buf starts at a line start.
func lastEnd(buf []byte, startsLine, text bool) (int, bool) {
	if !text {
		i := bytes.LastIndexByte(buf, '\n')
		return i + 1, i >= 0
	}
	end := len(buf)
	for {
		i := bytes.LastIndexByte(buf[:end], '\n')
		if i < 0 {
			return 0, false
		}
		j := bytes.LastIndexByte(buf[:i], '\n') // the line is buf[j+1:i]
		if j < 0 && !startsLine {
			return 0, false // its start is before buf
		}
		if isCommit(buf[j+1 : i]) {
			return i + 1, true
		}
		end = i
	}
}

// isCommit reports whether a sidecar line (without its newline) is a commit
// line "@<size>", as openSidecar reads them.
func isCommit(line []byte) bool {
	if len(line) < 2 || line[0] != '@' {
		return false
	}
	n, err := strconv.ParseInt(string(line[1:]), 10, 64)
	return err == nil && n >= 0
}

// checkEvery is how many lines a search reads between looks at its ctx.
const checkEvery = 4096

// jsonIDPrefix starts every line of a json log (see jsonFormatter).
const jsonIDPrefix = `{"id":"`

// searchJSON reads json log lines from br, each starting at a line start,
// and moves the ids of complete event lines from want to found. A line
// without its newline (the end of a torn file) does not count.
func searchJSON(ctx context.Context, br *bufio.Reader, want map[string]string, found map[string]bool) error {
	for n := 0; ; n++ {
		if n%checkEvery == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		line, err := br.ReadSlice('\n')
		var id string
		var ok bool
		if errors.Is(err, bufio.ErrBufferFull) {
			// A line longer than the buffer: its id is in this first part
			// (or the line is not one of ours); the rest is skipped.
			id, ok = jsonLineID(line, want)
			var last byte
			for errors.Is(err, bufio.ErrBufferFull) {
				last = line[len(line)-1]
				line, err = br.ReadSlice('\n')
			}
			if len(line) >= 2 {
				last = line[len(line)-2]
			}
			if err == nil && ok && last == '}' {
				markFound(id, want, found)
			}
		} else if err == nil {
			if len(line) >= 2 && line[len(line)-2] == '}' {
				if id, ok = jsonLineID(line, want); ok {
					markFound(id, want, found)
				}
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if len(want) == 0 {
			return nil
		}
	}
}

// jsonLineID returns the sought id a json log line starts with, if any.
func jsonLineID(line []byte, want map[string]string) (string, bool) {
	quoted, escaped, ok := jsonID(line)
	if !ok {
		return "", false
	}
	if !escaped {
		id, ok := want[string(quoted[1:len(quoted)-1])]
		return id, ok
	}
	s, ok := decodeJSONID(quoted)
	if !ok {
		return "", false
	}
	id, ok := want[s]
	return id, ok
}

// jsonID returns the id a json log line starts with, quoted and escaped as
// jsonFormatter wrote it; escaped says whether it holds an escape.
func jsonID(line []byte) (quoted []byte, escaped, ok bool) {
	rest, found := bytes.CutPrefix(line, []byte(jsonIDPrefix))
	if !found {
		return nil, false, false
	}
	for i := 0; i < len(rest); i++ {
		switch rest[i] {
		case '\\':
			escaped = true
			i++
		case '"':
			if i+1 >= len(rest) || rest[i+1] != ',' {
				return nil, false, false
			}
			return line[len(jsonIDPrefix)-1 : len(jsonIDPrefix)+i+1], escaped, true
		}
	}
	return nil, false, false
}

// decodeJSONID decodes a quoted id with escapes. It fails for an id with
// the escape \ufffd: zerolog writes every byte that is not UTF-8 so, and
// such an id cannot be told from the others it may have been.
func decodeJSONID(quoted []byte) (string, bool) {
	if bytes.Contains(bytes.ToLower(quoted), []byte(`\ufffd`)) {
		return "", false
	}
	var s string
	if json.Unmarshal(quoted, &s) != nil {
		return "", false
	}
	return s, true
}

func markFound(id string, want map[string]string, found map[string]bool) {
	if _, ok := want[id]; ok {
		found[id] = true
		delete(want, id)
	}
}

// searchIDs reads text id sidecar lines from br, starting just after a
// commit (or at the sidecar's start), and moves the ids a commit line
// follows from want to found.
func searchIDs(ctx context.Context, br *bufio.Reader, want map[string]string, found map[string]bool) error {
	var pending []string // sought ids since the last commit
	for n := 0; ; n++ {
		if n%checkEvery == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// No id or commit is this long: skip the line.
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = br.ReadSlice('\n')
			}
			if err == nil {
				pending = pending[:0] // not a sidecar we understand
				continue
			}
		}
		if errors.Is(err, io.EOF) {
			return nil // a torn or uncommitted end
		}
		if err != nil {
			return err
		}
		line = line[:len(line)-1]
		switch {
		case isCommit(line):
			for _, id := range pending {
				markFound(id, want, found)
			}
			pending = pending[:0]
			if len(want) == 0 {
				return nil
			}
		case len(line) >= 2 && line[0] == '"' && line[len(line)-1] == '"':
			raw := line[1 : len(line)-1]
			if bytes.IndexByte(raw, '\\') < 0 {
				if id, ok := want[string(raw)]; ok {
					pending = append(pending, id)
				}
				continue
			}
			if s, err := strconv.Unquote(string(line)); err == nil {
				if id, ok := want[s]; ok {
					pending = append(pending, id)
				}
			}
		}
	}
}
