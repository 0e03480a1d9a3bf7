package benchkit

import (
	"math"
	"slices"
	"time"
)

// histGrowth is the ratio of the upper bounds of two neighbouring bins of
// a Histogram: a percentile is off by at most 1/64 (1.6%).
const histGrowth = 1 + 1.0/64

var logHistGrowth = math.Log(histGrowth)

// Histogram counts durations in bins whose bounds grow by 1/64 from 1µs
// (about 1,340 bins up to 1,000 s), keeping the exact maximum and sum: a
// long soak measures millions of latencies in a few KiB. The zero value is
// empty and ready. It is not safe for concurrent use.
type Histogram struct {
	counts []uint64
	n      int
	sum    float64
	max    time.Duration
}

// histBin returns the bin of d: the smallest i with d <= 1µs x growth^i.
func histBin(d time.Duration) int {
	if d <= time.Microsecond {
		return 0
	}
	i := int(math.Ceil(math.Log(float64(d)/float64(time.Microsecond)) / logHistGrowth))
	// Guard against rounding at a bin's exact bound.
	for i > 0 && float64(d) <= histUpper(i-1) {
		i--
	}
	return i
}

func histUpper(i int) float64 { return float64(time.Microsecond) * math.Pow(histGrowth, float64(i)) }

// Add counts d.
func (h *Histogram) Add(d time.Duration) {
	i := histBin(d)
	if i >= len(h.counts) {
		h.counts = append(h.counts, make([]uint64, i+1-len(h.counts))...)
	}
	h.counts[i]++
	h.n++
	h.sum += float64(d)
	h.max = max(h.max, d)
}

// Merge adds the counts of o.
func (h *Histogram) Merge(o *Histogram) {
	if o == nil {
		return
	}
	if len(o.counts) > len(h.counts) {
		h.counts = append(h.counts, make([]uint64, len(o.counts)-len(h.counts))...)
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.sum += o.sum
	h.max = max(h.max, o.max)
}

// N returns how many durations were counted.
func (h *Histogram) N() int { return h.n }

// Clone returns a copy.
func (h *Histogram) Clone() *Histogram {
	c := *h
	c.counts = slices.Clone(h.counts)
	return &c
}

// Summary returns the Latency of what was counted: percentiles by the
// nearest-rank method, each the upper bound of its bin (capped at the
// exact maximum), so within 1.6% above the true value; Max and Mean are
// exact. An empty histogram gives a zero Latency.
func (h *Histogram) Summary() Latency {
	if h.n == 0 {
		return Latency{}
	}
	pct := func(p float64) time.Duration {
		rank := uint64(min(max(int(math.Ceil(p/100*float64(h.n))), 1), h.n))
		var seen uint64
		for i, c := range h.counts {
			seen += c
			if seen >= rank {
				return min(time.Duration(histUpper(i)), h.max)
			}
		}
		return h.max
	}
	return Latency{N: h.n, Mean: time.Duration(h.sum / float64(h.n)),
		P50: pct(50), P95: pct(95), P99: pct(99), Max: h.max}
}
