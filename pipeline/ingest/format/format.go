// Package format is the contract between the ingest engine (package
// ingest: `publisher file` and the HTTP endpoints of `publisher ingest`)
// and the wire formats it takes. A format is one package that describes
// itself with a Format and registers it from its init function; the
// engine never names a format: it serves POST /v1/ingest/<name> for every
// registered one, and auto-detects the format of each line of a file by
// asking the registered formats in turn. This package imports only
// schema (and the engine's internal JSON scanner); a format package
// imports only this package and schema. Over HTTP a format takes JSON (the
// engine takes only application/json bodies); the lines of a file may be
// anything its Detect and Decode take, a syslog line of Postfix say.
//
// The built-in formats are packages stalwart (Stalwart's telemetry
// webhook) and dovecot (Dovecot's event_exporter); package formats links
// them all into a program.
//
// # Adding a format
//
// To add a format, say Postfix log lines:
//
//  1. Write package pipeline/ingest/postfix, importing this package and
//     schema (and nothing of the engine). Its init function calls
//     Register(Format{Name: "postfix", Doc: "...", Detect: ..., Decode:
//     ..., Split: ...}): Decode makes one *schema.Event of one event
//     (an event id the sender gave, a type that schema.ValidType takes),
//     Detect recognizes one line of it, and Split, for a body that
//     carries many events, finds them (see SplitArray). Test Decode with
//     good and bad inputs in testdata/ and fuzz it: it decodes untrusted
//     input.
//  2. Add one line to package formats:
//     import _ "github.com/mailtel/mailtel/pipeline/ingest/postfix".
//
// That is all: `publisher ingest` serves POST /v1/ingest/postfix with the
// engine's authentication, limits, dead letters and answers, `publisher
// file` detects its lines, and both list it in their --help.
package format

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/mailtel/mailtel/schema"
)

// Format is one wire format of events. Its functions keep no state: they
// are safe for concurrent use.
type Format struct {
	// Name names the format: the <name> of POST /v1/ingest/<name>, and
	// the start of the reasons of its rejected events ("stalwart event
	// 3: ..."). 1 to MaxNameLen lower-case ASCII letters, digits and
	// '-', starting with a letter.
	Name string
	// Doc says in one line what sends the format, for --help and logs.
	Doc string

	// Detect reports whether line, one line of a file (without its
	// newline), is an event of this format. It must be cheap (it runs
	// for every line) and specific: the formats are asked in the order
	// of their names, and the first that says yes decodes the line.
	Detect func(line []byte) bool
	// Fallback makes the format decode the lines no format detects, so
	// that they are rejected with its reasons. At most one format has it.
	Fallback bool

	// Decode decodes one event, data, into ev, which it resets first. An
	// error says why the event is rejected; ev must not be used then.
	// The decoded event must not alias data. The engine checks the
	// decoded event against its limits.
	Decode func(data []byte, ev *schema.Event) error

	// Split makes the HTTP body a batch of events; nil, the body is one
	// event. It also shapes the answer (see the ingest package's Handler).
	//
	// With Split nil, the whole body is given to Decode (a body that is
	// not JSON is rejected by it), and a rejected event is answered
	// 400 {"error":"<name> event: <reason>"} (and dead-lettered).
	//
	// With Split set, the body may hold many events: Split calls each
	// with every event of body, in order, raw (one valid JSON value, a
	// slice of body: the body stays the only copy of the request), and
	// rest, the body from that event on, until each returns false. The
	// engine checks each raw event against its limits before Decode
	// sees it. A body that is not a batch of the format (not JSON
	// included) is an error, returned before each is called, and
	// answered 400 {"error":"<the error>"}; otherwise the answer is 200
	// with counts and the index and reason of every rejected event.
	Split func(body []byte, each func(raw, rest []byte) bool) error
}

// MaxNameLen is the longest name of a format.
const MaxNameLen = 32

var (
	mu sync.Mutex // serializes Register
	// registered holds the formats sorted by name; it is replaced, never
	// changed, so that readers need no lock.
	registered atomic.Pointer[[]Format]
)

// Register makes f known to the engine. It is meant to be called from the
// init function of f's package, and panics when f is incomplete (no Doc,
// Detect or Decode, a Doc of more than one line), its name is not valid
// or already registered, or a second format has Fallback. It is safe for
// concurrent use; a Handler made before serves only the formats
// registered by then.
func Register(f Format) {
	switch {
	case !validName(f.Name):
		panic(fmt.Sprintf("ingest format %q: name must be 1 to %d of a-z, 0-9 and '-', starting with a letter", f.Name, MaxNameLen))
	case f.Doc == "" || strings.ContainsAny(f.Doc, "\r\n"):
		panic(fmt.Sprintf("ingest format %s: Doc must be one line", f.Name))
	case f.Detect == nil || f.Decode == nil:
		panic(fmt.Sprintf("ingest format %s: Detect and Decode are required", f.Name))
	}
	mu.Lock()
	defer mu.Unlock()
	var next []Format
	if p := registered.Load(); p != nil {
		next = slices.Clone(*p)
	}
	for _, g := range next {
		if g.Name == f.Name {
			panic(fmt.Sprintf("ingest format %s registered twice", f.Name))
		}
		if g.Fallback && f.Fallback {
			panic(fmt.Sprintf("ingest format %s: %s is the fallback already", f.Name, g.Name))
		}
	}
	next = append(next, f)
	slices.SortFunc(next, func(a, b Format) int { return strings.Compare(a.Name, b.Name) })
	registered.Store(&next)
}

func validName(name string) bool {
	if len(name) == 0 || len(name) > MaxNameLen || name[0] < 'a' || name[0] > 'z' {
		return false
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

func all() []Format {
	if p := registered.Load(); p != nil {
		return *p
	}
	return nil
}

// All returns the registered formats sorted by name.
func All() []Format { return slices.Clone(all()) }

// Names returns the names of the registered formats, sorted.
func Names() []string {
	fs := all()
	names := make([]string, len(fs))
	for i, f := range fs {
		names[i] = f.Name
	}
	return names
}

// Lookup returns the registered format of the name.
func Lookup(name string) (Format, bool) {
	for _, f := range all() {
		if f.Name == name {
			return f, true
		}
	}
	return Format{}, false
}

// Detect returns the format of line, one line of a file: the first
// registered format, in the order of their names, whose Detect says yes,
// or else the Fallback format. It reports false when there is neither.
// It allocates nothing.
func Detect(line []byte) (Format, bool) {
	var fallback *Format
	fs := all()
	for i := range fs {
		if fs[i].Detect(line) {
			return fs[i], true
		}
		if fs[i].Fallback {
			fallback = &fs[i]
		}
	}
	if fallback != nil {
		return *fallback, true
	}
	return Format{}, false
}

// HasKey reports whether data holds the key name ("event", unquoted)
// followed by a colon, anywhere: a cheap test for Detect functions of JSON
// formats, which never misses a key of the outer object. It allocates
// nothing.
func HasKey(data []byte, name string) bool {
	if name == "" {
		return false
	}
	for i := 0; ; {
		j := bytes.Index(data[i:], []byte(name))
		if j < 0 {
			return false
		}
		start, k := i+j, i+j+len(name)
		if start > 0 && data[start-1] == '"' && k < len(data) && data[k] == '"' {
			for k++; k < len(data) && (data[k] == ' ' || data[k] == '\t' || data[k] == '\r' || data[k] == '\n'); k++ {
			}
			if k < len(data) && data[k] == ':' {
				return true
			}
		}
		i = start + 1
	}
}
