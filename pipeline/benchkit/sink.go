package benchkit

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mailtel/mailtel/pipeline/sink"
	"github.com/mailtel/mailtel/schema"
)

// TimedSink decorates a real sink to observe it: Write calls the real
// Write and, when that returned nil, records the time it returned and how
// many events the batch held, and hands the batch to Recorder. It changes
// nothing in what the sink does or returns. Like any Sink, Write is called
// by one goroutine at a time; Written and LastWrite may be called from any
// goroutine.
type TimedSink struct {
	Sink sink.Sink
	// Recorder, when not nil, gets every written batch with the time its
	// Write returned.
	Recorder *LatencyRecorder

	written atomic.Int64
	last    atomic.Int64 // UnixNano of the last successful Write
}

var _ sink.Sink = (*TimedSink)(nil)

// Write writes batch with the real sink, then records.
func (s *TimedSink) Write(ctx context.Context, batch []*schema.Event) error {
	if err := s.Sink.Write(ctx, batch); err != nil {
		return err
	}
	now := time.Now()
	s.written.Add(int64(len(batch)))
	s.last.Store(now.UnixNano())
	if s.Recorder != nil {
		s.Recorder.Written(batch, now)
	}
	return nil
}

// Close closes the real sink.
func (s *TimedSink) Close(ctx context.Context) error { return s.Sink.Close(ctx) }

// Written returns how many events the successful Writes carried.
func (s *TimedSink) Written() int64 { return s.written.Load() }

// LastWrite returns when the last successful Write returned (zero before
// the first).
func (s *TimedSink) LastWrite() time.Time {
	ns := s.last.Load()
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

// LatencyRecorder measures, per event id, the time from Published (called
// just before the event is handed to the publisher) to the first Written
// batch holding the id. The id is then forgotten, so memory stays bounded
// by the events in flight: a later write of the same id (a redelivery), or
// of an id never published through the recorder, counts as Unmatched. It
// is safe for concurrent use.
//
// A bucketed recorder (NewBucketedRecorder), for a soak, keeps no list of
// latencies: it counts them in one Histogram per interval of the time the
// write returned, so its memory stays flat however long it runs.
type LatencyRecorder struct {
	mu        sync.Mutex
	sent      map[string]time.Time
	latencies []time.Duration
	unmatched int

	start time.Time
	width time.Duration // 0: not bucketed
	hists []*Histogram  // by (write time - start) / width
}

// NewBucketedRecorder returns an empty recorder that counts the latencies
// in one Histogram per interval of width, counted from start, in which
// their write returned (see Histograms); a write before start counts in
// the first. Result returns no latencies.
func NewBucketedRecorder(start time.Time, width time.Duration) *LatencyRecorder {
	r := NewLatencyRecorder()
	r.start, r.width = start, max(width, time.Nanosecond)
	return r
}

// NewLatencyRecorder returns an empty recorder.
func NewLatencyRecorder() *LatencyRecorder {
	return &LatencyRecorder{sent: make(map[string]time.Time)}
}

// Published records that the event id is being published at t.
func (r *LatencyRecorder) Published(id string, t time.Time) {
	r.mu.Lock()
	r.sent[id] = t
	r.mu.Unlock()
}

// Written records that the events of batch were written at t.
func (r *LatencyRecorder) Written(batch []*schema.Event, t time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, ev := range batch {
		if ev == nil {
			continue
		}
		sent, ok := r.sent[ev.ID]
		if !ok {
			r.unmatched++
			continue
		}
		delete(r.sent, ev.ID)
		if r.width == 0 {
			r.latencies = append(r.latencies, t.Sub(sent))
			continue
		}
		i := max(int(t.Sub(r.start)/r.width), 0)
		for len(r.hists) <= i {
			r.hists = append(r.hists, &Histogram{})
		}
		r.hists[i].Add(t.Sub(sent))
	}
}

// Result returns a copy of the latencies measured so far, how many written
// events were unmatched, and how many published ids are not written yet.
func (r *LatencyRecorder) Result() (latencies []time.Duration, unmatched, pending int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]time.Duration(nil), r.latencies...), r.unmatched, len(r.sent)
}

// Measured returns how many events have a latency.
func (r *LatencyRecorder) Measured() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := len(r.latencies)
	for _, h := range r.hists {
		n += h.N()
	}
	return n
}

// SetStart moves the start of a bucketed recorder's first interval to t;
// call it before the first Written.
func (r *LatencyRecorder) SetStart(t time.Time) {
	r.mu.Lock()
	r.start = t
	r.mu.Unlock()
}

// Histograms returns a copy of the histograms of a bucketed recorder, one
// per interval from the start (nil when not bucketed).
func (r *LatencyRecorder) Histograms() []*Histogram {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*Histogram, len(r.hists))
	for i, h := range r.hists {
		out[i] = h.Clone()
	}
	return out
}
