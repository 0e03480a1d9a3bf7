package crashtest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/mailtel/mailtel/catalog"
	"github.com/mailtel/mailtel/pipeline/synth"
	"github.com/mailtel/mailtel/schema"
)

// stream is the events one publisher process publishes: `publisher gen
// --seed seed --count count`. Its ids are "syn-<seed hex>-<n>"; its types
// are those of synth.New(synth.Options{Seed: seed}), which do not depend on
// Options.Start (the publisher starts at time.Now).
type stream struct {
	seed  uint64
	count int64
	rate  float64 // events per second (0: as fast as possible)
	types []uint16
}

// expected is what the sinks must hold: every event of the streams, by
// (stream, n), with its catalog type.
type expected struct {
	streams []*stream
	byHex   map[string]int // seed in hex -> index in streams
	levels  *catalog.Levels
}

// newExpected generates the types of every stream.
func newExpected(streams []*stream) (*expected, error) {
	e := &expected{streams: streams, byHex: map[string]int{}, levels: catalog.NewLevels(nil)}
	var ev schema.Event
	for i, s := range streams {
		hex := strconv.FormatUint(s.seed, 16)
		if _, dup := e.byHex[hex]; dup {
			return nil, fmt.Errorf("two streams with seed %d", s.seed)
		}
		e.byHex[hex] = i
		g := synth.New(synth.Options{Seed: s.seed})
		s.types = make([]uint16, s.count)
		for n := range s.count {
			g.Next(&ev)
			t, ok := catalog.Lookup(ev.Type)
			if !ok {
				return nil, fmt.Errorf("synth seed %d event %d: type %q is not in the catalog", s.seed, n, ev.Type)
			}
			if want := fmt.Sprintf("syn-%x-%d", s.seed, n); ev.ID != want {
				return nil, fmt.Errorf("synth seed %d event %d: id %q, want %q", s.seed, n, ev.ID, want)
			}
			s.types[n] = uint16(t.Index)
		}
	}
	return e, nil
}

// sinkRule says whether a sink must hold an event of a type.
type sinkRule func(e *expected, typ string) bool

// allRule is [tracer.all]: level trace, every event not disabled.
func allRule(e *expected, typ string) bool { return e.levels.Of(typ) != catalog.LevelDisable }

// authRule is [tracer.auth]: level trace, events ["auth.*"].
func authRule(e *expected, typ string) bool {
	return strings.HasPrefix(typ, "auth.") && e.levels.Of(typ) != catalog.LevelDisable
}

// want counts the events a sink must hold, and the types it must never
// hold among the generated ones.
func (e *expected) want(rule sinkRule) int64 {
	all := catalog.All()
	var n int64
	for _, s := range e.streams {
		for _, ti := range s.types {
			if rule(e, all[ti].ID) {
				n++
			}
		}
	}
	return n
}

// lookup parses an id of one of the streams.
func (e *expected) lookup(id string) (si int, n int64, ok bool) {
	rest, found := strings.CutPrefix(id, "syn-")
	if !found {
		return 0, 0, false
	}
	hex, num, found := strings.Cut(rest, "-")
	if !found {
		return 0, 0, false
	}
	si, ok = e.byHex[hex]
	if !ok {
		return 0, 0, false
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 || n >= e.streams[si].count {
		return 0, 0, false
	}
	return si, n, true
}

func (e *expected) typeOf(si int, n int64) string {
	return catalog.All()[e.streams[si].types[n]].ID
}

// pos is where a line is: file, line number (from 1) and byte offset.
type pos struct {
	file   string
	line   int
	offset int64
}

func (p pos) String() string {
	return fmt.Sprintf("%s:%d (byte %d)", filepath.Base(p.file), p.line, p.offset)
}

// tally counts, per event, how often a sink holds it, and collects what is
// wrong.
type tally struct {
	sink    string
	e       *expected
	rule    sinkRule
	seen    [][]uint8 // per stream, per n: times held (saturating)
	lines   int64
	wrong   []string // unexpected, mismatched or unreadable lines
	wrongN  int
	maxList int
}

func newTally(sink string, e *expected, rule sinkRule) *tally {
	t := &tally{sink: sink, e: e, rule: rule, maxList: 20}
	for _, s := range e.streams {
		t.seen = append(t.seen, make([]uint8, s.count))
	}
	return t
}

func (t *tally) problem(format string, args ...any) {
	t.wrongN++
	if len(t.wrong) < t.maxList {
		t.wrong = append(t.wrong, fmt.Sprintf(format, args...))
	}
}

// add records that the sink holds event id, written with type typ, at p.
func (t *tally) add(id, typ string, p pos) {
	t.lines++
	si, n, ok := t.e.lookup(id)
	if !ok {
		t.problem("%s: event %q was never published", p, id)
		return
	}
	want := t.e.typeOf(si, n)
	if typ != want {
		t.problem("%s: event %s has type %q, published as %q", p, id, typ, want)
	}
	if !t.rule(t.e, want) {
		t.problem("%s: event %s of type %s must not reach sink %s", p, id, want, t.sink)
	}
	if c := &t.seen[si][n]; *c < 255 {
		*c++
	}
}

// result summarises a tally: the ids missing and held more than once
// (each list capped), and their counts.
type result struct {
	want, held, lines     int64
	missing, duplicated   []string
	missingN, duplicatedN int64
	extraCopies           int64 // lines beyond the first of duplicated events
	wrong                 []string
	wrongN                int
}

func (t *tally) result(limit int) result {
	r := result{want: t.e.want(t.rule), lines: t.lines, wrong: t.wrong, wrongN: t.wrongN}
	all := catalog.All()
	for si, s := range t.e.streams {
		for n, c := range t.seen[si] {
			should := t.rule(t.e, all[s.types[n]].ID)
			id := fmt.Sprintf("syn-%x-%d", s.seed, n)
			switch {
			case c > 0:
				r.held++
				if c > 1 {
					r.duplicatedN++
					r.extraCopies += int64(c) - 1
					if len(r.duplicated) < limit {
						r.duplicated = append(r.duplicated, id)
					}
				}
			case should:
				r.missingN++
				if len(r.missing) < limit {
					r.missing = append(r.missing, id+" ("+all[s.types[n]].ID+")")
				}
			}
		}
	}
	return r
}

func (r result) ok() bool {
	return r.missingN == 0 && r.duplicatedN == 0 && r.wrongN == 0 && r.held == r.want
}

// logFiles returns the sink's log files in dir (hidden sidecars excluded),
// sorted by name, which is by period.
func logFiles(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		if e.Type().IsRegular() && !strings.HasPrefix(e.Name(), ".") {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	sort.Strings(out)
	return out, nil
}

// eachLine calls fn for every line of the file at path (without its
// newline) with its position. A last line without a newline is reported as
// torn through fn with torn set.
func eachLine(path string, fn func(line []byte, p pos, torn bool)) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 1<<20)
	var off int64
	for n := 1; ; n++ {
		line, err := r.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			// A line longer than the buffer: collect it whole.
			full := append([]byte(nil), line...)
			for err == bufio.ErrBufferFull {
				line, err = r.ReadSlice('\n')
				full = append(full, line...)
			}
			line = full
		}
		if len(line) > 0 {
			p := pos{file: path, line: n, offset: off}
			off += int64(len(line))
			if line[len(line)-1] == '\n' {
				fn(line[:len(line)-1], p, false)
			} else {
				fn(line, p, true)
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// checkJSONSink reads a json log sink's files: every line must be a JSON
// object whose "id" is a published event, with its "type".
func checkJSONSink(dir string, t *tally) error {
	files, err := logFiles(dir)
	if err != nil {
		return err
	}
	if len(files) == 0 {
		return fmt.Errorf("no log files in %s", dir)
	}
	var v struct {
		ID   string `json:"id"`
		Type string `json:"type"`
	}
	for _, path := range files {
		err := eachLine(path, func(line []byte, p pos, torn bool) {
			if torn {
				t.problem("%s: torn last line (no newline): %.120q", p, line)
			}
			v.ID, v.Type = "", ""
			if err := json.Unmarshal(line, &v); err != nil || v.ID == "" {
				t.problem("%s: not a JSON event line (%v): %.120q", p, err, line)
				return
			}
			t.add(v.ID, v.Type, p)
		})
		if err != nil {
			return fmt.Errorf("read %s: %w", path, err)
		}
	}
	return nil
}

// sidecar is the parsed id sidecar of a text log file (see
// pipeline/sinks/tracer/file.go): quoted ids, each batch closed by a
// commit line "@<log size after the batch>".
type sidecar struct {
	ids         []string // committed ids, in write order
	lastCommit  int64    // log size recorded by the last commit (-1: none)
	uncommitted int      // ids after the last commit
	bad         []string // lines that are neither ids nor commits
}

func readSidecar(path string) (*sidecar, error) {
	sc := &sidecar{lastCommit: -1}
	var pending []string
	err := eachLine(path, func(line []byte, p pos, torn bool) {
		switch {
		case torn:
			sc.bad = append(sc.bad, fmt.Sprintf("%s: torn last line %q", p, line))
		case len(line) > 1 && line[0] == '@':
			n, err := strconv.ParseInt(string(line[1:]), 10, 64)
			if err != nil {
				sc.bad = append(sc.bad, fmt.Sprintf("%s: bad commit %q", p, line))
				return
			}
			sc.ids = append(sc.ids, pending...)
			pending = pending[:0]
			sc.lastCommit = n
		case len(line) > 1 && line[0] == '"':
			id, err := strconv.Unquote(string(line))
			if err != nil {
				sc.bad = append(sc.bad, fmt.Sprintf("%s: bad id %q", p, line))
				return
			}
			pending = append(pending, id)
		default:
			sc.bad = append(sc.bad, fmt.Sprintf("%s: unexpected line %q", p, line))
		}
	})
	sc.uncommitted = len(pending)
	return sc, err
}

// textType returns the event type of a Stalwart text line: the first
// "(category.event)" followed by a space or the end of the line.
func textType(line []byte) string {
	for i := 0; i < len(line); i++ {
		if line[i] != '(' {
			continue
		}
		j := bytes.IndexByte(line[i:], ')')
		if j < 0 {
			return ""
		}
		typ := line[i+1 : i+j]
		after := i + j + 1
		if bytes.IndexByte(typ, '.') > 0 && bytes.IndexByte(typ, ' ') < 0 && (after == len(line) || line[after] == ' ') {
			return string(typ)
		}
	}
	return ""
}

// checkTextSink reads a text log sink's files with their id sidecars. The
// text lines carry no id: line i of a file is the event of committed id i
// of its sidecar, so the file must have exactly as many lines as the
// sidecar has committed ids, end where the last commit says, and each
// line's "(type)" must be the type of its id.
func checkTextSink(dir string, t *tally) error {
	files, err := logFiles(dir)
	if err != nil {
		return err
	}
	if len(files) == 0 {
		return fmt.Errorf("no log files in %s", dir)
	}
	for _, path := range files {
		sidePath := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".ids")
		sc, err := readSidecar(sidePath)
		if err != nil {
			return fmt.Errorf("read sidecar of %s: %w", path, err)
		}
		for _, b := range sc.bad {
			t.problem("sidecar %s", b)
		}
		if sc.uncommitted > 0 {
			t.problem("sidecar of %s: %d ids after the last commit (left by a crash and not repaired at the next open)", filepath.Base(path), sc.uncommitted)
		}
		st, err := os.Stat(path)
		if err != nil {
			return err
		}
		if sc.lastCommit != st.Size() {
			t.problem("%s: size %d, but its sidecar's last commit records %d", filepath.Base(path), st.Size(), sc.lastCommit)
		}
		i := 0
		err = eachLine(path, func(line []byte, p pos, torn bool) {
			if torn {
				t.problem("%s: torn last line (no newline): %.120q", p, line)
			}
			if i >= len(sc.ids) {
				t.lines++
				t.problem("%s: line beyond the %d ids of the sidecar: %.160q", p, len(sc.ids), line)
				i++
				return
			}
			typ := textType(line)
			if typ == "" {
				t.problem("%s: no (type) in text line %.160q", p, line)
			}
			t.add(sc.ids[i], typ, p)
			i++
		})
		if err != nil {
			return fmt.Errorf("read %s: %w", path, err)
		}
		if i < len(sc.ids) {
			t.problem("%s: %d lines, but its sidecar has %d committed ids", filepath.Base(path), i, len(sc.ids))
		}
	}
	return nil
}

// positions returns where each of ids appears in a sink's files (json:
// the "id" field; text: the sidecar's committed ids, mapped to log
// lines).
func positions(dir string, text bool, ids []string) map[string][]pos {
	want := map[string]bool{}
	for _, id := range ids {
		want[id] = true
	}
	out := map[string][]pos{}
	files, _ := logFiles(dir)
	for _, path := range files {
		if text {
			sc, err := readSidecar(filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".ids"))
			if err != nil {
				continue
			}
			idx := map[int]string{}
			for i, id := range sc.ids {
				if want[id] {
					idx[i] = id
				}
			}
			i := 0
			eachLine(path, func(_ []byte, p pos, _ bool) {
				if id, ok := idx[i]; ok {
					out[id] = append(out[id], p)
				}
				i++
			})
			continue
		}
		var v struct {
			ID string `json:"id"`
		}
		eachLine(path, func(line []byte, p pos, _ bool) {
			v.ID = ""
			if json.Unmarshal(line, &v) == nil && want[v.ID] {
				out[v.ID] = append(out[v.ID], p)
			}
		})
	}
	return out
}
