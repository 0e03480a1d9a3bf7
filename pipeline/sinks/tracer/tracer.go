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
// Next to each file the sink keeps hidden sidecars: the id index
// ".<file>.idh", the time index ".<file>.idx" and, for the text format,
// the ids ".<file>.ids"; a glob such as "<prefix>.*" does not match them.
//
// # Instances
//
// Every process that writes a log sink's files is an instance with files
// of its own. A sink holds an exclusive flock on the hidden, empty
// instance lock ".<prefix>[.<instance>].lock" in its directory from its
// first open to Close, and on each file it has open. How it picks its
// instance:
//
//   - Given an instance name (Options.Instance, `sinks --instance`) it is
//     pinned to it. A sink that finds a lock held (by a predecessor still
//     exiting) waits for it: New returns, and Write waits, bounded by its
//     context, logging a warning at once and every lockLogEvery while it
//     waits.
//   - Without one, with Options.AnySlot (what `sinks run` does), New takes
//     the first free instance slot: the files without an instance name
//     when their locks are free, else instance "2", then "3", ..., the
//     first whose instance lock and current (and previous) period's files
//     it can lock at once, and logs which it took. Identical processes
//     thus each get a slot, and a process restarted while its predecessor
//     still exits takes another slot rather than wait.
//   - Without either, it is pinned to the files without an instance name.
//
// Since the instance lock is held across periods, a slot is never taken
// from a sink that has not yet opened the file of a new period. Which slot
// wrote an event does not matter to the guarantees below: Written searches
// the files of every instance.
//
// # Guarantees
//
// Write returns nil only when the whole batch is on disk (written and
// fsynced), so the runtime may ack it. Its errors are retryable, never
// Permanent: a full disk (ENOSPC, EDQUOT), an I/O error or a short write
// leaves no partial line (the file is cut back to the end of its last
// complete batch) and the same batch, written again once there is room, is
// written exactly once.
//
// A log tracer is idempotent by event id across restarts, crashes and
// replays, and writes each event exactly once however often JetStream
// redelivers it or an operator replays it:
//
//   - Write skips (and counts, see Skipped) an event whose id is in the
//     current period's file or the previous period's: the sink indexes
//     every id of both files (see logFile and idIndex: the last 2 million
//     ids of the current file in memory, about 42 MB at most, the others
//     in sorted runs on disk, 8 bytes each, so that memory does not grow
//     with the file; and an exact check against the file for every hash
//     that matches), kept in the id index sidecar too so that an open does
//     not read the whole log, and repaired from the log when a crash left
//     it behind.
//   - Written (the runtime's sink.WrittenChecker) answers, for a
//     redelivered message, whether its event was written at or after the
//     time the message was stored in ROUTED, however much was written
//     since and by whichever instance: it answers from the index for the
//     files this sink has open, and searches the other files of every
//     instance of the sink, starting near that time with the help of a
//     time index sidecar per file (see indexPath), and reports only events
//     that are in a file for good (see Written).
//
// The limits: events with an empty id are always written; an event whose
// file is older than the previous period, or was deleted or moved away,
// is written again by Write (a replay repeated two periods after the first
// writes its events again, to the new period's file; Written still finds
// a redelivered event in an older file modified since it was stored), and
// so is an event whose line starts beyond the first TiB of its file and,
// in the json format, an event whose id is not valid UTF-8 (zerolog cannot
// write it unchanged). Written compares
// the sink host's clock with the JetStream server's, which must agree
// within clockSlack. In the text format, lines an instance wrote but had
// not committed when it crashed stay in its file until that instance opens
// the file again. Console and stdout tracers remember the last RecentIDs
// ids of the process and check nothing on redelivery.
package tracer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/mailtel/mailtel/schema"
)

// ErrClosed is returned (wrapped) by Write after Close.
var ErrClosed = errors.New("tracer sink is closed")

// RecentIDs is how many of the last written event ids a console or stdout
// sink remembers to skip redelivered events.
const RecentIDs = 100_000

// lockPoll is how often a sink waiting for the lock on its file tries
// again, and lockLogEvery how often it says it is still waiting (a
// variable for the tests).
const lockPoll = 100 * time.Millisecond

var lockLogEvery = 10 * time.Second

const (
	// slowOpen: an open that takes longer (building the index of a large
	// file written by an older version, say) is logged.
	slowOpen = time.Second
)

// maxSlots bounds the search of New for a free instance slot.
const maxSlots = 1000

// Options are the process-level settings of a tracer sink.
type Options struct {
	// Instance names this sinks process among the scaled instances of the
	// same sink; it is part of the log file name. A log sink given an
	// Instance is pinned to it: when another process holds its lock, the
	// sink waits for it (see the package doc). Empty for the file without
	// an instance name, or, with AnySlot, the first free instance slot.
	Instance string
	// AnySlot, when Instance is empty, makes a log sink take the first
	// free instance slot (see the package doc) rather than wait for the
	// lock on the file without an instance name: what `sinks run` does, so
	// that identical commands can run side by side.
	AnySlot bool
	// Stdout is where console and stdout tracers write (default os.Stdout).
	Stdout io.Writer
	// Now returns the time of writing, which picks the log file (default
	// time.Now).
	Now func() time.Time
	// Log receives what the sink has to tell the operator: that it waits
	// for the lock on its file, that opening a file took long. The zero
	// value logs nothing.
	Log zerolog.Logger
}

// Sink is a tracer sink. Write and Close may be called from different
// goroutines: they are serialised, and Close waits for a Write in flight.
type Sink struct {
	name string
	fmt  formatter
	now  func() time.Time
	log  zerolog.Logger

	// log type only
	dir, prefix, base, rotate string   // base: prefix[.instance]
	instance                  string   // the instance (slot) in use, "" for none
	slot                      *os.File // the locked instance lock file (see slotLockPath), or nil
	sidecar                   bool     // text format: ids in a sidecar
	// console and stdout types only
	out  io.Writer
	seen *idSet

	sem        chan struct{} // held by Write, Written and Close
	closed     bool
	file       *logFile // the file of the current period, nil until open
	period     int64    // rotation period of file
	prev       *logFile // the previous period's file, if any, read only
	prevPeriod int64
	waitSince  time.Time // when the sink began to wait for a lock
	waitLogged time.Time
	batch      map[string]struct{} // ids of the batch being formatted
	ids        []string            // ids of the events being written
	hashes     []uint64            // their hashes (see idHash)
	starts     []int               // offsets in buf of their lines
	buf        []byte
	skipped    atomic.Uint64
}

// formatter renders one event, ending with a newline, onto dst.
type formatter interface {
	appendEvent(dst []byte, e *schema.Event) ([]byte, error)
}

// New returns the sink of the tracer named name. For a log tracer it opens
// and locks the current file at once, so that a misconfiguration (a path
// it cannot write) fails at start; when another process holds the lock, or
// the disk is full, New logs it and returns, and the first Write waits for
// the lock or tries again. The caller must Close the sink.
//
// Empty settings take defaults: format "json" for log tracers and "text"
// for console and stdout, rotate "daily", prefix "mailtel".
func New(name string, cfg *Config, opts Options) (*Sink, error) {
	if cfg == nil {
		return nil, fmt.Errorf("tracer %s: no configuration", name)
	}
	s := &Sink{
		name:  name,
		now:   opts.Now,
		log:   opts.Log,
		sem:   make(chan struct{}, 1),
		batch: make(map[string]struct{}),
	}
	if s.now == nil {
		s.now = time.Now
	}
	format := cfg.Format
	switch cfg.Type {
	case TypeLog:
		if format == "" {
			format = "json"
		}
	case TypeConsole, TypeStdout:
		if format == "" {
			format = "text"
		}
		s.out = opts.Stdout
		if s.out == nil {
			s.out = os.Stdout
		}
		s.seen = newIDSet(RecentIDs)
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
	if cfg.Type != TypeLog {
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
	s.prefix = prefix
	if opts.Instance != "" {
		if err := checkNamePart(opts.Instance); err != nil {
			return nil, fmt.Errorf("tracer %s: instance name: %w", name, err)
		}
	}
	s.setInstance(opts.Instance)
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

	if opts.Instance == "" && opts.AnySlot {
		if err := s.takeSlot(); err != nil {
			s.closeFiles()
			return nil, fmt.Errorf("tracer %s: %w", name, err)
		}
		return s, nil
	}
	if err := s.open(context.Background(), lockNow); err != nil {
		if !transient(err) {
			s.closeFiles()
			return nil, fmt.Errorf("tracer %s: %w", name, err)
		}
		if !errors.Is(err, ErrLocked) { // logged by acquire
			s.log.Warn().Err(err).Str("sink", name).Msg("cannot open the log file yet; writes retry")
		}
	}
	return s, nil
}

// setInstance makes instance (possibly "") the one whose files the sink
// writes.
func (s *Sink) setInstance(instance string) {
	s.instance, s.base = instance, s.prefix
	if instance != "" {
		s.base += "." + instance
	}
}

// takeSlot makes the sink's instance the first free instance slot: the
// file without an instance name, then instances "2", "3", ...; a slot is
// free when its instance lock and the locks of its current (and previous)
// period's files can all be taken at once. A slot whose files cannot be
// opened for a reason that may pass (a full disk) is kept: writes retry.
func (s *Sink) takeSlot() error {
	for n := 1; n <= maxSlots; n++ {
		instance := ""
		if n > 1 {
			instance = strconv.Itoa(n)
		}
		s.setInstance(instance)
		err := s.open(context.Background(), lockProbe)
		if errors.Is(err, ErrLocked) {
			// Nothing was written: a failed close has lost nothing, and
			// released the locks all the same.
			if err := s.closeFiles(); err != nil {
				s.log.Warn().Err(err).Str("sink", s.name).Msg("closing the files of a slot another process holds")
			}
			continue
		}
		if err != nil && !transient(err) {
			return err
		}
		slot := strconv.Quote(instance) + " (no instance name in the file name)"
		if instance != "" {
			slot = strconv.Quote(instance)
		}
		s.log.Info().Str("sink", s.name).Str("instance", instance).Str("file", filepath.Join(s.dir, s.fileName(s.now()))).
			Msg("log sink took instance slot " + slot + ", the first whose lock was free")
		if err != nil {
			s.log.Warn().Err(err).Str("sink", s.name).Msg("cannot open the log file yet; writes retry")
		}
		return nil
	}
	s.setInstance("")
	return fmt.Errorf("no free instance slot among the first %d in %s: every one is locked by another process", maxSlots, s.dir)
}

// Instance returns the instance whose files a log sink writes: the one it
// was given, or the slot it took; "" for the files without an instance
// name (and for console and stdout tracers).
func (s *Sink) Instance() string { return s.instance }

// transient reports whether an error opening the log files may go away by
// itself (a lock another process holds, a full disk), so that the sink
// starts and its writes retry, rather than refuse to start.
func transient(err error) bool {
	return errors.Is(err, ErrLocked) || errors.Is(err, syscall.ENOSPC) ||
		errors.Is(err, syscall.EDQUOT) || errors.Is(err, syscall.EIO)
}

// checkNamePart rejects a file name part that would leave the directory.
func checkNamePart(s string) error {
	if s == "." || s == ".." || strings.ContainsAny(s, `/\`) || strings.ContainsRune(s, 0) {
		return fmt.Errorf("%q cannot be part of a file name", s)
	}
	return nil
}

// Write writes every event of batch whose id was not written before (see
// the package doc) and returns nil once they are all durable. It returns
// the first error met; errors are retryable (none is marked Permanent:
// every event can be rendered, and a full disk frees up). Write is
// serialised with other Writes and with Close; it gives up waiting for
// them, or for the lock on its file, when ctx ends, but a write that has
// started runs to the end.
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
		if err := s.open(ctx, lockWait); err != nil {
			return fmt.Errorf("tracer %s: %w", s.name, err)
		}
	}

	s.buf, s.ids, s.hashes, s.starts = s.buf[:0], s.ids[:0], s.hashes[:0], s.starts[:0]
	clear(s.batch)
	defer clear(s.batch) // the batch's strings may be reused
	var skipped uint64
	for _, e := range batch {
		if e == nil {
			continue
		}
		if e.ID != "" {
			if _, dup := s.batch[e.ID]; dup {
				skipped++
				continue
			}
			h := idHash(e.ID)
			known, err := s.known(e.ID, h)
			if err != nil {
				return fmt.Errorf("tracer %s: check event %s: %w", s.name, e.ID, err)
			}
			if known {
				skipped++
				continue
			}
			s.batch[e.ID] = struct{}{}
			s.ids = append(s.ids, e.ID)
			s.hashes = append(s.hashes, h)
			s.starts = append(s.starts, len(s.buf))
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
	if s.seen != nil {
		for _, id := range s.ids {
			s.seen.add(strings.Clone(id)) // the batch's strings may be reused
		}
	}
	s.skipped.Add(skipped)
	return nil
}

// known reports whether the event with id, of hash h (see idHash), was
// written: to one of the files the sink has open (log), or by this
// process (console, stdout).
func (s *Sink) known(id string, h uint64) (bool, error) {
	if s.seen != nil {
		return s.seen.has(id), nil
	}
	if ok, err := s.file.has(id, h); ok || err != nil {
		return ok, err
	}
	if s.prev != nil {
		return s.prev.has(id, h)
	}
	return false, nil
}

func (s *Sink) output() error {
	if s.file != nil {
		if err := s.file.write(s.buf, s.ids, s.hashes, s.starts); err != nil {
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

// Close closes the log files, releasing their locks. It is idempotent and
// safe without a Write; it waits for a Write in flight, or returns ctx's
// error (leaving the sink open) if ctx ends first. Console and stdout
// tracers do not close their writer.
func (s *Sink) Close(ctx context.Context) error {
	if err := s.lock(ctx); err != nil {
		return fmt.Errorf("tracer %s: close: %w", s.name, err)
	}
	defer s.unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if err := s.closeFiles(); err != nil {
		return fmt.Errorf("tracer %s: close: %w", s.name, err)
	}
	return nil
}

// closeFiles closes the log files and then releases the instance lock.
func (s *Sink) closeFiles() error {
	var errs []error
	for _, lf := range []*logFile{s.file, s.prev} {
		if lf != nil {
			errs = append(errs, lf.close())
		}
	}
	s.file, s.prev = nil, nil
	if s.slot != nil {
		if err := s.slot.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close %s: %w", s.slot.Name(), err))
		}
		s.slot = nil
	}
	return errors.Join(errs...)
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
	n := s.periodLen()
	if n == 0 {
		return 0
	}
	sec := t.Unix()
	p := sec / n
	if sec%n < 0 {
		p--
	}
	return p
}

// periodLen is the length of a rotation period in seconds, 0 for never.
func (s *Sink) periodLen() int64 {
	switch s.rotate {
	case "daily":
		return 24 * 3600
	case "hourly":
		return 3600
	}
	return 0
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

// lockMode says what opening a file does when another process holds its
// lock.
type lockMode int

const (
	// lockNow gives up at once with an error wrapping ErrLocked, and logs
	// that the sink waits for the lock (New: the first Write waits).
	lockNow lockMode = iota
	// lockProbe gives up at once with an error wrapping ErrLocked, and
	// logs nothing (New, looking for a free instance slot).
	lockProbe
	// lockWait waits for the lock until the context ends, logging that it
	// does.
	lockWait
)

// open makes the file of the current period the sink's file, and the
// previous period's file, if there is one, its previous file (whose ids
// are skipped too, so that a batch written just before the period changed
// and redelivered after it is not written again). At a change of period
// the current file becomes the previous one. First of all it takes the
// lock of the sink's instance (see slotLockPath), which the sink holds
// until Close. mode says what it does about a lock another process holds.
func (s *Sink) open(ctx context.Context, mode lockMode) error {
	now := s.now()
	p := s.periodOf(now)
	if s.file != nil && s.period == p {
		return nil
	}
	if err := s.holdSlot(ctx, mode); err != nil {
		return err
	}
	if s.file != nil {
		if s.file.dirty {
			// Cut the failed batch off before leaving the file: its retry
			// goes to the new one.
			if err := s.file.repair(); err != nil {
				return fmt.Errorf("rotate: %w", err)
			}
		}
		var errs []error
		if s.prev != nil {
			errs = append(errs, s.prev.close())
			s.prev = nil
		}
		if p == s.period+1 {
			s.prev, s.prevPeriod = s.file, s.period
			s.prev.ix.sealForGood() // read only from now on
		} else {
			errs = append(errs, s.file.close())
		}
		s.file = nil
		if err := errors.Join(errs...); err != nil {
			s.log.Warn().Err(err).Str("sink", s.name).Msg("closing the log files of the last period")
		}
	}
	if n := s.periodLen(); n > 0 && (s.prev == nil || s.prevPeriod != p-1) {
		if s.prev != nil {
			s.prev.close()
			s.prev = nil
		}
		path := filepath.Join(s.dir, s.fileName(now.Add(-time.Duration(n)*time.Second)))
		if _, err := os.Stat(path); err == nil {
			lf, err := s.openFile(ctx, path, mode)
			if err != nil {
				return fmt.Errorf("previous file: %w", err)
			}
			lf.ix.sealForGood()
			s.prev, s.prevPeriod = lf, p-1
		}
	}
	lf, err := s.openFile(ctx, filepath.Join(s.dir, s.fileName(now)), mode)
	if err != nil {
		return err
	}
	s.file, s.period = lf, p
	return nil
}

// slotLockPath is the instance lock file of the sink's instance: the
// hidden, empty ".<prefix>[.<instance>].lock" in its directory. A sink
// holds it (flock) from its first open to Close, whatever the period, so
// that a process looking for a free instance slot never takes an instance
// whose owner has not yet opened the file of a new period. The file is
// left in place: removing a lock file another process may be opening
// would let two processes hold "the" lock.
func (s *Sink) slotLockPath() string {
	return filepath.Join(s.dir, "."+s.base+".lock")
}

// holdSlot takes the lock of the sink's instance, unless it holds it.
func (s *Sink) holdSlot(ctx context.Context, mode lockMode) error {
	if s.slot != nil {
		return nil
	}
	// Named after the log file the operator knows.
	logPath := filepath.Join(s.dir, s.fileName(s.now()))
	return s.acquire(ctx, logPath, mode, func() error {
		f, err := lockSlotFile(s.slotLockPath())
		if err != nil {
			return fmt.Errorf("%s: %w", logPath, err)
		}
		s.slot = f
		return nil
	})
}

// openFile opens the log file at path; mode says what it does when
// another process holds its lock.
func (s *Sink) openFile(ctx context.Context, path string, mode lockMode) (*logFile, error) {
	var lf *logFile
	err := s.acquire(ctx, path, mode, func() error {
		began := time.Now()
		var err error
		if lf, err = openLogFile(path, s.sidecar, s.prefix); err != nil {
			return err
		}
		if took := time.Since(began); took >= slowOpen {
			s.log.Info().Str("sink", s.name).Str("file", lf.path).Int("ids", lf.ix.len()).Dur("took", took.Round(time.Millisecond)).
				Msg("opened log file and indexed its event ids")
		}
		return nil
	})
	return lf, err
}

// acquire calls take, which locks the file at path (or the instance lock
// of the log file at path), until it returns
// anything but an error wrapping ErrLocked; mode says whether it tries
// again (every lockPoll, until ctx ends) and whether it logs the wait: at
// once, then every lockLogEvery, and its end.
func (s *Sink) acquire(ctx context.Context, path string, mode lockMode, take func() error) error {
	var t *time.Timer
	defer func() {
		if t != nil {
			t.Stop()
		}
	}()
	for {
		err := take()
		if err == nil {
			if !s.waitSince.IsZero() {
				s.log.Info().Str("sink", s.name).Str("file", path).Dur("waited", time.Since(s.waitSince).Round(time.Millisecond)).
					Msg("got the lock on the log file")
				s.waitSince = time.Time{}
			}
			return nil
		}
		if !errors.Is(err, ErrLocked) || mode == lockProbe {
			return err
		}
		now := time.Now()
		switch {
		case s.waitSince.IsZero():
			s.waitSince, s.waitLogged = now, now
			s.log.Warn().Str("sink", s.name).Str("file", path).Str("instance", s.instance).
				Msg("log file is locked by another process; waiting for it to release the lock " +
					"(a previous sinks process of this instance still exiting? processes running at once must not share an instance: " +
					"give each its own --instance, or none, and each takes a free one)")
		case now.Sub(s.waitLogged) >= lockLogEvery:
			s.waitLogged = now
			s.log.Warn().Str("sink", s.name).Str("file", path).Dur("waited", now.Sub(s.waitSince).Round(time.Second)).
				Msg("still waiting for the lock on the log file")
		}
		if mode != lockWait {
			return err
		}
		if t == nil {
			t = time.NewTimer(lockPoll)
		} else {
			t.Reset(lockPoll)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w; waited %s (another sinks process writes this instance's files: give each process its own instance name, sinks --instance, or none to take a free one): %w",
				err, now.Sub(s.waitSince).Round(time.Millisecond), ctx.Err())
		case <-t.C:
		}
	}
}
