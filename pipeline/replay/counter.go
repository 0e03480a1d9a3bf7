package replay

import (
	"context"
	"sync"

	"github.com/mailtel/mailtel/pipeline/sink"
	"github.com/mailtel/mailtel/schema"
)

// Counter is a Sink that writes nothing and counts, by type, the events it
// is given: put in place of the real sinks, it makes a replay a dry run
// that reports exactly what the real run would write, since everything
// else (reading, decoding, selecting, batching) is the same code. It is
// safe for concurrent use.
type Counter struct {
	mu     sync.Mutex
	byType map[string]uint64
}

var _ sink.Sink = (*Counter)(nil)

// NewCounter returns an empty Counter.
func NewCounter() *Counter { return &Counter{byType: map[string]uint64{}} }

// Write counts the batch; it never fails.
func (c *Counter) Write(_ context.Context, batch []*schema.Event) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, ev := range batch {
		if ev != nil {
			c.byType[ev.Type]++
		}
	}
	return nil
}

// Close does nothing.
func (c *Counter) Close(context.Context) error { return nil }

// Counts returns a copy of the counts by event type.
func (c *Counter) Counts() map[string]uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]uint64, len(c.byType))
	for k, v := range c.byType {
		out[k] = v
	}
	return out
}
