// Package tracer is Stalwart's `[tracer.<id>]` loggers as a mailtel sink:
// type "log" writes rotating files, types "console" and "stdout" write to
// standard output. Each writes every event it is given (the router has
// already applied levels, allowlists and blocklists), in one of two
// formats:
//
//   - "text": Stalwart's own log line, so that fail2ban and CrowdSec
//     filters written for Stalwart keep working (see textFormatter), with
//     the ansi and multiline options as Stalwart has them;
//   - "json": one JSON object per line (see jsonFormatter).
//
// # Files
//
// A log tracer writes under its path to a file named after its prefix,
// the instance name if any, and the period of the rotation, all in UTC:
// "<prefix>.2025-11-27" (daily), "<prefix>.2025-11-27T14" (hourly) or
// "<prefix>" (never); with an instance name, "<prefix>.<instance>.2025-11-27"
// and so on, so that scaled sinks processes never share a file. The period
// is that of the time of writing, and a batch is written whole to one file.
// The sink takes an exclusive flock on its file; a second writer gets an
// error wrapping ErrLocked that tells the operator to give each instance its
// own name. Next to each file the sink keeps hidden sidecars: the index
// ".<file>.idx" and, for the text format, the ids ".<file>.ids"; a glob
// such as "<prefix>.*" does not match them.
//
// # Guarantees
//
// Write returns nil only when the whole batch is on disk (written and
// fsynced), so the runtime may ack it.
//
// A log tracer is idempotent by event id across restarts and crashes, and
// writes each event exactly once however often JetStream redelivers it:
//
//   - Write skips (and counts, see Skipped) an event whose id it wrote
//     recently: the last RecentIDs ids of this process, and after a start
//     those of the end of the current and the previous period's file (see
//     logFile for how each format keeps them).
//   - Written (the runtime's pipeline.WrittenChecker) answers, for a
//     redelivered message, whether its event was written at or after the
//     time the message was stored in ROUTED, however much was written
//     since and by whichever instance: it searches the files of every
//     instance of the sink, starting near that time with the help of an
//     index sidecar per file (see indexPath), and reports only events that
//     are in a file for good (see Written).
//
// The limits: events with an empty id are always written; an event whose
// file was deleted or moved away (rotated files older than the previous
// period, say) before JetStream redelivered it is written again, and so
// is, in the json format, an event whose id is not valid UTF-8 (zerolog
// cannot write it unchanged). Written compares the sink host's clock with
// the JetStream server's, which must agree within clockSlack. In the text
// format, lines an instance wrote but had not committed when it crashed
// stay in its file until that instance opens the file again. Console and
// stdout tracers remember ids only within the process and check nothing
// on redelivery.
package tracer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/mailtel/mailtel/pipeline"
	"github.com/mailtel/mailtel/pipeline/config"
	"github.com/mailtel/mailtel/schema"
)

// ErrClosed is returned (wrapped) by Write after Close.
var ErrClosed = errors.New("tracer sink is closed")

// RecentIDs is how many of the last written event ids a sink remembers to
// skip redelivered events.
const RecentIDs = 100_000

// Options are the process-level settings of a tracer sink.
type Options struct {
	// Instance names this sinks process among the scaled instances of the
	// same sink; it is part of the log file name. Empty for a single
	// instance.
	Instance string
	// Stdout is where console and stdout tracers write (default os.Stdout).
	Stdout io.Writer
	// Now returns the time of writing, which picks the log file (default
	// time.Now).
	Now func() time.Time
}

// Sink is a tracer sink. Write and Close may be called from different
// goroutines: they are serialised, and Close waits for a Write in flight.
type Sink struct {
	name string
	fmt  formatter
	now  func() time.Time

	// log type only
	dir, prefix, base, rotate string // base: prefix[.instance]
	sidecar                   bool
	// console and stdout types only
	out io.Writer

	sem     chan struct{} // held by Write and Close
	closed  bool
	file    *logFile
	period  int64 // rotation period of file
	seen    *idSet
	batch   map[string]struct{} // ids of the batch being formatted
	ids     []string            // ids of the events being written
	buf     []byte
	skipped atomic.Uint64
}

var (
	_ pipeline.Sink           = (*Sink)(nil)
	_ pipeline.WrittenChecker = (*Sink)(nil)
)

// formatter renders one event, ending with a newline, onto dst.
type formatter interface {
	appendEvent(dst []byte, e *schema.Event) ([]byte, error)
}

// New returns the sink of the tracer named name. For a log tracer it opens
// and locks the current file at once, so that a misconfiguration (a second
// instance without its own instance name, a path it cannot write) fails at
// start; the caller must Close the sink.
//
// Empty settings take defaults: format "json" for log tracers and "text"
// for console and stdout, rotate "daily", prefix "mailtel".
func New(name string, cfg *config.Tracer, opts Options) (*Sink, error) {
	if cfg == nil {
		return nil, fmt.Errorf("tracer %s: no configuration", name)
	}
	s := &Sink{
		name:  name,
		now:   opts.Now,
		sem:   make(chan struct{}, 1),
		seen:  newIDSet(RecentIDs),
		batch: make(map[string]struct{}),
	}
	if s.now == nil {
		s.now = time.Now
	}
	format := cfg.Format
	switch cfg.Type {
	case config.KindLog:
		if format == "" {
			format = "json"
		}
	case config.KindConsole, config.KindStdout:
		if format == "" {
			format = "text"
		}
		s.out = opts.Stdout
		if s.out == nil {
			s.out = os.Stdout
		}
	default:
		return nil, fmt.Errorf("tracer %s: unsupported type %q (want log, console or stdout)", name, cfg.Type)
	}
	switch format {
	case "json":
		s.fmt = newJSONFormatter()
	case "text":
		s.fmt = textFormatter{ansi: cfg.Ansi, multiline: cfg.Multiline}
	default:
		return nil, fmt.Errorf("tracer %s: unsupported format %q (want json or text)", name, format)
	}
	if cfg.Type != config.KindLog {
		return s, nil
	}

	if cfg.Path == "" {
		return nil, fmt.Errorf("tracer %s: path is required for a log tracer", name)
	}
	prefix := cfg.Prefix
	if prefix == "" {
		prefix = "mailtel"
	}
	if err := checkNamePart(prefix); err != nil {
		return nil, fmt.Errorf("tracer %s: prefix: %w", name, err)
	}
	s.prefix, s.base = prefix, prefix
	if opts.Instance != "" {
		if err := checkNamePart(opts.Instance); err != nil {
			return nil, fmt.Errorf("tracer %s: instance name: %w", name, err)
		}
		s.base += "." + opts.Instance
	}
	s.rotate = cfg.Rotate
	switch s.rotate {
	case "":
		s.rotate = "daily"
	case "daily", "hourly", "never":
	default:
		return nil, fmt.Errorf("tracer %s: unsupported rotate %q (want daily, hourly or never)", name, s.rotate)
	}
	s.dir = cfg.Path
	s.sidecar = format == "text"

	now := s.now()
	if s.rotate != "never" {
		if err := s.loadPrevious(now); err != nil {
			return nil, err
		}
	}
	if err := s.openFile(now); err != nil {
		return nil, err
	}
	return s, nil
}

// checkNamePart rejects a file name part that would leave the directory.
func checkNamePart(s string) error {
	if s == "." || s == ".." || strings.ContainsAny(s, `/\`) || strings.ContainsRune(s, 0) {
		return fmt.Errorf("%q cannot be part of a file name", s)
	}
	return nil
}

// Write writes every event of batch whose id was not written recently and
// returns nil once they are all durable. It returns the first error met;
// errors are retryable (none is marked Permanent: every event can be
// rendered). Write is serialised with other Writes and with Close; it
// gives up waiting for them when ctx ends, but a write that has started
// runs to the end.
func (s *Sink) Write(ctx context.Context, batch []*schema.Event) error {
	if err := s.lock(ctx); err != nil {
		return fmt.Errorf("tracer %s: write: %w", s.name, err)
	}
	defer s.unlock()
	if s.closed {
		return fmt.Errorf("tracer %s: write: %w", s.name, ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("tracer %s: write: %w", s.name, err)
	}
	if s.dir != "" {
		if err := s.rotateIfDue(); err != nil {
			return err
		}
	}

	s.buf, s.ids = s.buf[:0], s.ids[:0]
	clear(s.batch)
	var skipped uint64
	for _, e := range batch {
		if e == nil {
			continue
		}
		if e.ID != "" {
			if _, dup := s.batch[e.ID]; dup || s.seen.has(e.ID) {
				skipped++
				continue
			}
			s.batch[e.ID] = struct{}{}
			s.ids = append(s.ids, e.ID)
		}
		var err error
		if s.buf, err = s.fmt.appendEvent(s.buf, e); err != nil {
			return fmt.Errorf("tracer %s: format event %s: %w", s.name, e.ID, err)
		}
	}
	if len(s.buf) > 0 {
		if err := s.output(); err != nil {
			return err
		}
	}
	for _, id := range s.ids {
		s.seen.add(strings.Clone(id)) // the batch's strings may be reused
	}
	clear(s.batch)
	s.skipped.Add(skipped)
	return nil
}

func (s *Sink) output() error {
	if s.file != nil {
		if err := s.file.write(s.buf, s.ids); err != nil {
			return fmt.Errorf("tracer %s: %w", s.name, err)
		}
		return nil
	}
	if _, err := s.out.Write(s.buf); err != nil {
		return fmt.Errorf("tracer %s: write to stdout: %w", s.name, err)
	}
	return nil
}

// Skipped returns how many events Write skipped because their id had
// already been written. It is safe for concurrent use.
func (s *Sink) Skipped() uint64 { return s.skipped.Load() }

// Close closes the log file, releasing its lock. It is idempotent and safe
// without a Write; it waits for a Write in flight, or returns ctx's error
// (leaving the sink open) if ctx ends first. Console and stdout tracers do
// not close their writer.
func (s *Sink) Close(ctx context.Context) error {
	if err := s.lock(ctx); err != nil {
		return fmt.Errorf("tracer %s: close: %w", s.name, err)
	}
	defer s.unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if s.file == nil {
		return nil
	}
	err := s.file.close()
	s.file = nil
	if err != nil {
		return fmt.Errorf("tracer %s: close: %w", s.name, err)
	}
	return nil
}

func (s *Sink) lock(ctx context.Context) error {
	select {
	case s.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *Sink) unlock() { <-s.sem }

// periodOf returns the rotation period t falls in.
func (s *Sink) periodOf(t time.Time) int64 {
	var n int64
	switch s.rotate {
	case "daily":
		n = 24 * 3600
	case "hourly":
		n = 3600
	default:
		return 0
	}
	sec := t.Unix()
	p := sec / n
	if sec%n < 0 {
		p--
	}
	return p
}

// fileName returns the name of the log file of the period t falls in.
func (s *Sink) fileName(t time.Time) string {
	t = t.UTC()
	switch s.rotate {
	case "daily":
		return s.base + "." + t.Format("2006-01-02")
	case "hourly":
		return s.base + "." + t.Format("2006-01-02T15")
	}
	return s.base
}

// openFile opens the log file of the period now falls in.
func (s *Sink) openFile(now time.Time) error {
	path := filepath.Join(s.dir, s.fileName(now))
	lf, err := openLogFile(path, s.sidecar, s.prefix, s.seen.add)
	if err != nil {
		return fmt.Errorf("tracer %s: %w", s.name, err)
	}
	s.file, s.period = lf, s.periodOf(now)
	return nil
}

// rotateIfDue switches to the file of the current period.
func (s *Sink) rotateIfDue() error {
	now := s.now()
	if s.file != nil && s.periodOf(now) == s.period {
		return nil
	}
	var closeErr error
	if s.file != nil {
		closeErr = s.file.close()
		s.file = nil
		if closeErr != nil {
			closeErr = fmt.Errorf("tracer %s: rotate: %w", s.name, closeErr)
		}
	}
	return errors.Join(closeErr, s.openFile(now))
}

// loadPrevious loads the ids of the previous period's file, if there is
// one, so that a batch written just before the period changed and
// redelivered after a restart is not written again to the new file. The
// file is repaired as at open, then closed.
func (s *Sink) loadPrevious(now time.Time) error {
	prev := now.Add(-time.Hour)
	if s.rotate == "daily" {
		prev = now.Add(-24 * time.Hour)
	}
	path := filepath.Join(s.dir, s.fileName(prev))
	if _, err := os.Stat(path); err != nil {
		return nil // no previous file (or none we can see): nothing to load
	}
	lf, err := openLogFile(path, s.sidecar, s.prefix, s.seen.add)
	if err != nil {
		return fmt.Errorf("tracer %s: previous file: %w", s.name, err)
	}
	if err := lf.close(); err != nil {
		return fmt.Errorf("tracer %s: previous file: %w", s.name, err)
	}
	return nil
}
