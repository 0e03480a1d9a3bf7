package replay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/mailtel/mailtel/pipeline"
	"github.com/mailtel/mailtel/pipeline/delivery"
	"github.com/mailtel/mailtel/pipeline/sink"
	"github.com/mailtel/mailtel/schema"
)

// Output is one sink a replay writes to.
type Output struct {
	Name string
	Sink sink.Sink
	// Retry is how a failing write to Sink is retried: the live sink's
	// policy (pipeline.RetryPolicy), so a replay waits out an outage as
	// the live sink does.
	Retry delivery.Policy
}

// Selector appends to dst the indexes, in the outputs of the replay, of
// the outputs an event goes to, and returns dst. It must not keep ev.
type Selector func(dst []int, ev *schema.Event) []int

// Every sends every event to every one of n outputs: a sink's own history
// goes back to that sink.
func Every(n int) Selector {
	return func(dst []int, _ *schema.Event) []int {
		for i := range n {
			dst = append(dst, i)
		}
		return dst
	}
}

// Routes selects outputs by the routing table, exactly as the router
// routes: an event of type T goes to every output named by a target of
// table.Route(T). Targets whose sink is not among the outputs are left
// out.
func Routes(table *pipeline.Table, outputs []Output) Selector {
	index := make(map[string]int, len(outputs))
	for i, o := range outputs {
		index[o.Name] = i
	}
	return func(dst []int, ev *schema.Event) []int {
		targets, _ := table.Route(ev.Type)
		for _, t := range targets {
			if i, ok := index[t.Sink]; ok {
				dst = append(dst, i)
			}
		}
		return dst
	}
}

// Options tune Run.
type Options struct {
	// Batch is the most events given to one Write (default 500).
	Batch int
	// Retrying, if set, is told about every failed write that will be
	// retried.
	Retrying func(output string, f delivery.Failure)
	// FlushEvery bounds how long read events wait for their batch to fill
	// (default 1s).
	FlushEvery time.Duration
	// Failed, if set, is told about events a sink rejected permanently.
	Failed func(output string, ids []string, err error)
	// Malformed, if set, is told about messages that are not events.
	Malformed func(m Message, err error)
	// Progress, if set, is called after every read batch and once at the end
	// (with Final set).
	Progress func(Progress)
}

// Counts are what a replay did.
type Counts struct {
	// Read is how many messages were read from the stream.
	Read uint64
	// Malformed messages were skipped: their payload is not an event, or
	// the event's type is not the one its subject names (the router
	// dead-letters such messages and routes nothing).
	Malformed uint64
	// Unselected events went to no output.
	Unselected uint64
	// Outputs are the counts of each output, in the order of the outputs.
	Outputs []OutputCounts
	// Resume is, when the replay stopped before the end of its range, the
	// lowest stream sequence not yet written to every output it goes to: a
	// replay from there misses nothing (and may write again, to some
	// outputs, events at and after it). 0 when the replay finished.
	Resume uint64
}

// OutputCounts are what one output of a replay did.
type OutputCounts struct {
	Name string
	// Selected events were given to this output.
	Selected uint64
	// Written events were written by a successful Write.
	Written uint64
	// Skipped events were accepted by the sink but not written because it
	// had written them before (a sink with a Skipped() uint64 method, such
	// as a tracer, reports them).
	Skipped uint64
	// Failed events were rejected by the sink with a permanent error.
	Failed uint64
}

// Totals returns the written, skipped and failed events of every output,
// summed, with the malformed messages counted as skipped.
func (c Counts) Totals() (written, skipped, failed uint64) {
	skipped = c.Malformed
	for _, o := range c.Outputs {
		written += o.Written
		skipped += o.Skipped
		failed += o.Failed
	}
	return written, skipped, failed
}

// Progress is the state of a replay.
type Progress struct {
	// Done messages were read (and written, except those waiting in a batch)
	// out of about Total (see Reader.Total).
	Done, Total              uint64
	Written, Skipped, Failed uint64
	Elapsed                  time.Duration
	Final                    bool
}

// Run reads r to its end and writes each event to the outputs sel picks,
// in stream order, in batches of at most Options.Batch events per output.
// It does not close r or the outputs.
//
// Failures: a message that is not an event is skipped (counted as
// Malformed). Writes are retried by Output.Retry, the live sink's policy
// (package delivery): a destination that is down is probed with one event
// per backoff until it returns. If it has not returned after discard-after,
// Run stops and returns the error, with Counts.Resume telling where to
// start again: the rest of the range would fail the same way. A permanent
// error is reported to Options.Failed and counted as failed, for the events
// it names (sink.FailedEventIDs) or else the whole batch, and the
// replay continues: one rejected batch should not stop a night's replay,
// and what failed is listed. Nothing is dead-lettered: a replay is an
// operator's command, not the live pipeline.
//
// Run returns when the range is read (nil), when ctx ends (ctx's error,
// with Counts.Resume set) or on a read or write error.
func Run(ctx context.Context, r *Reader, outs []Output, sel Selector, o Options) (Counts, error) {
	if o.Batch < 1 {
		o.Batch = 500
	}
	if o.FlushEvery <= 0 {
		o.FlushEvery = time.Second
	}
	run := &runner{opts: o, outs: outs, sel: sel, pending: make([]batch, len(outs)), start: time.Now(), total: r.Total()}
	run.counts.Outputs = make([]OutputCounts, len(outs))
	for i, out := range outs {
		run.counts.Outputs[i].Name = out.Name
	}
	err := run.loop(ctx, r)
	run.progress(true)
	return run.counts, err
}

type runner struct {
	opts    Options
	outs    []Output
	sel     Selector
	pending []batch
	counts  Counts
	start   time.Time
	total   uint64
	last    uint64 // sequence of the last message read
}

// batch is the events waiting for one output and the stream sequence of
// the first of them.
type batch struct {
	events   []*schema.Event
	firstSeq uint64
}

func (run *runner) loop(ctx context.Context, r *Reader) error {
	msgs := make([]Message, 0, run.opts.Batch)
	var idx []int
	lastFlush := time.Now()
	for {
		var err error
		msgs, err = r.NextBatch(ctx, msgs[:0], run.opts.Batch, run.opts.FlushEvery)
		for _, m := range msgs {
			run.counts.Read++
			run.last = m.Seq
			ev := new(schema.Event)
			if derr := schema.Unmarshal(m.Data, ev); derr != nil {
				run.malformed(m, fmt.Errorf("decode event: %w", derr))
				continue
			}
			if id := pipeline.SubjectEventID(m.Subject); id != ev.Type {
				run.malformed(m, fmt.Errorf("event type %q does not match subject %q", ev.Type, m.Subject))
				continue
			}
			idx = run.sel(idx[:0], ev)
			if len(idx) == 0 {
				run.counts.Unselected++
			}
			for _, i := range idx {
				b := &run.pending[i]
				if len(b.events) == 0 {
					b.firstSeq = m.Seq
				}
				b.events = append(b.events, ev)
				run.counts.Outputs[i].Selected++
				if len(b.events) >= run.opts.Batch {
					if werr := run.write(ctx, i); werr != nil {
						return werr
					}
				}
			}
		}
		switch {
		case errors.Is(err, io.EOF):
			return run.flush(ctx)
		case err != nil:
			run.setResume()
			return err
		}
		if len(msgs) == 0 || time.Since(lastFlush) >= run.opts.FlushEvery {
			if err := run.flush(ctx); err != nil {
				return err
			}
			lastFlush = time.Now()
		}
		run.progress(false)
	}
}

func (run *runner) malformed(m Message, err error) {
	run.counts.Malformed++
	if run.opts.Malformed != nil {
		run.opts.Malformed(m, err)
	}
}

func (run *runner) flush(ctx context.Context) error {
	for i := range run.pending {
		if len(run.pending[i].events) > 0 {
			if err := run.write(ctx, i); err != nil {
				return err
			}
		}
	}
	return nil
}

// setResume records where a replay that stops now must start again.
func (run *runner) setResume() {
	resume := run.last + 1
	for _, b := range run.pending {
		if len(b.events) > 0 {
			resume = min(resume, b.firstSeq)
		}
	}
	run.counts.Resume = resume
}

// write writes the pending batch of output i, retrying as Run documents.
func (run *runner) write(ctx context.Context, i int) error {
	b := &run.pending[i]
	out, c := run.outs[i], &run.counts.Outputs[i]
	sk, _ := out.Sink.(sink.Skipper)
	var before uint64
	if sk != nil {
		before = sk.Skipped()
	}
	var written uint64
	res := out.Retry.Do(ctx, b.events, out.Sink.Write, delivery.Hooks{
		Written: func(idx []int) { written += uint64(len(idx)) },
		Failed: func(f delivery.Failure) {
			if run.opts.Retrying != nil {
				run.opts.Retrying(out.Name, f)
			}
		},
	})
	var skipped uint64
	if sk != nil {
		skipped = min(sk.Skipped()-before, written)
	}
	c.Written += written - skipped
	c.Skipped += skipped
	if len(res.Unwritten) > 0 {
		run.setResume()
		return fmt.Errorf("write to sink %s: %w (last error: %v)", out.Name, ctx.Err(), res.Stopped)
	}
	if len(res.Rejected) > 0 {
		ids := make([]string, len(res.Rejected))
		for j, k := range res.Rejected {
			ids[j] = b.events[k].ID
		}
		if res.Expired {
			// The destination stayed down for discard-after: the rest of
			// the range would fail the same way.
			run.setResume()
			return fmt.Errorf("write to sink %s: %w", out.Name, res.Reason)
		}
		c.Failed += uint64(len(ids))
		if run.opts.Failed != nil {
			run.opts.Failed(out.Name, ids, res.Reason)
		}
	}
	b.events = b.events[:0]
	return nil
}

func (run *runner) progress(final bool) {
	if run.opts.Progress == nil {
		return
	}
	w, s, f := run.counts.Totals()
	run.opts.Progress(Progress{Done: run.counts.Read, Total: max(run.total, run.counts.Read),
		Written: w, Skipped: s, Failed: f, Elapsed: time.Since(run.start), Final: final})
}
