package ingest

import (
	"context"
	"sync"
	"time"

	"github.com/mailtel/mailtel/pipeline"
	"github.com/mailtel/mailtel/pipeline/synth"
	"github.com/mailtel/mailtel/schema"
)

// Generate publishes count synthetic events (0 = until ctx ends) from g at
// about rate events per second (0 = as fast as JetStream takes them), and
// returns once every published event was acknowledged. progress, if not
// nil, is called about once a second with the counts so far.
func Generate(ctx context.Context, pub *pipeline.Publisher, g *synth.Generator, count int64, rate float64, progress func(Counts)) (Counts, error) {
	var c counters
	var wg sync.WaitGroup
	start := time.Now()
	lastReport := start
	var runErr error
	for n := int64(0); count == 0 || n < count; n++ {
		if rate > 0 {
			// Pace by the schedule, not by sleeps per event: stay on
			// n/rate seconds after start.
			if due := start.Add(time.Duration(float64(n) / rate * float64(time.Second))); time.Until(due) > time.Millisecond {
				select {
				case <-ctx.Done():
				case <-time.After(time.Until(due)):
				}
			}
		}
		if ctx.Err() != nil {
			break
		}
		ev := new(schema.Event)
		g.Next(ev)
		wg.Add(1)
		if err := pub.Publish(ctx, ev, func(a pipeline.Ack) { c.add(a); wg.Done() }); err != nil {
			wg.Done()
			if ctx.Err() != nil {
				break
			}
			c.failed.Add(1)
			runErr = err
		}
		if progress != nil && time.Since(lastReport) >= time.Second {
			lastReport = time.Now()
			progress(c.counts())
		}
	}
	wg.Wait()
	return c.counts(), runErr
}
