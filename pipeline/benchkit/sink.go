package benchkit

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mailtel/mailtel/pipeline"
	"github.com/mailtel/mailtel/schema"
)

// TimedSink decorates a real sink to observe it: Write calls the real
// Write and, when that returned nil, records the time it returned and how
// many events the batch held, and hands the batch to Recorder. It changes
// nothing in what the sink does or returns. Like any Sink, Write is called
// by one goroutine at a time; Written and LastWrite may be called from any
// goroutine.
type TimedSink struct {
	Sink pipeline.Sink
	// Recorder, when not nil, gets every written batch with the time its
	// Write returned.
	Recorder *LatencyRecorder

	written atomic.Int64
	last    atomic.Int64 // UnixNano of the last successful Write
}

var _ pipeline.Sink = (*TimedSink)(nil)

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
type LatencyRecorder struct {
	mu        sync.Mutex
	sent      map[string]time.Time
	latencies []time.Duration
	unmatched int
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
		r.latencies = append(r.latencies, t.Sub(sent))
		delete(r.sent, ev.ID)
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
	return len(r.latencies)
}
