package benchkit

import (
	"math"
	"slices"
	"time"
)

// Latency summarises a set of latencies.
type Latency struct {
	N                  int
	Mean               time.Duration
	P50, P95, P99, Max time.Duration
}

// Summarize returns the summary of ds, sorting ds in place. Percentiles use
// the nearest-rank method (the smallest value with at least p% of the
// values at or below it). An empty ds gives a zero Latency.
func Summarize(ds []time.Duration) Latency {
	if len(ds) == 0 {
		return Latency{}
	}
	slices.Sort(ds)
	var sum float64
	for _, d := range ds {
		sum += float64(d)
	}
	return Latency{
		N:    len(ds),
		Mean: time.Duration(sum / float64(len(ds))),
		P50:  Percentile(ds, 50),
		P95:  Percentile(ds, 95),
		P99:  Percentile(ds, 99),
		Max:  ds[len(ds)-1],
	}
}

// Percentile returns the p-th percentile (0 < p <= 100) of sorted by the
// nearest-rank method, or 0 for an empty slice.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

// Sample is one value of a series taken At a time since the series began.
type Sample struct {
	At    time.Duration
	Value float64
}

// Trend describes the tail of a series of samples, such as the resident
// memory of a process during a soak.
type Trend struct {
	// Samples is how many samples the tail holds (the last TailFraction of
	// the series; the first ones are warm-up).
	Samples int
	First   float64 // first value of the tail
	Last    float64
	Min     float64
	Max     float64
	Mean    float64
	// Ratio is Max/Min over the tail.
	Ratio float64
	// SlopePerMinute is the least-squares slope over the tail, in value
	// units per minute.
	SlopePerMinute float64
	// Growth is the slope times the span of the tail, relative to Mean:
	// 0.05 means the fitted line rose by 5% of the mean across the tail.
	Growth float64
	// Flat is Ratio <= MaxRatio and Growth <= MaxGrowth.
	Flat bool
}

// Thresholds of Trend.Flat and the share of a series Analyse looks at.
const (
	TailFraction = 0.8
	MaxRatio     = 1.15
	MaxGrowth    = 0.10
)

// Analyse returns the Trend of the last TailFraction of samples (at least
// two samples when the series has two). It needs samples in time order.
func Analyse(samples []Sample) Trend {
	k := int(math.Ceil(TailFraction * float64(len(samples))))
	k = min(max(k, 2), len(samples))
	tail := samples[len(samples)-k:]
	if len(tail) == 0 {
		return Trend{}
	}
	t := Trend{Samples: len(tail), First: tail[0].Value, Last: tail[len(tail)-1].Value,
		Min: math.Inf(1), Max: math.Inf(-1)}
	var sx, sy float64
	for _, s := range tail {
		t.Min = min(t.Min, s.Value)
		t.Max = max(t.Max, s.Value)
		sx += s.At.Minutes()
		sy += s.Value
	}
	n := float64(len(tail))
	t.Mean = sy / n
	if t.Min > 0 {
		t.Ratio = t.Max / t.Min
	}
	if s := Slope(tail); !math.IsNaN(s) {
		t.SlopePerMinute = s
	}
	span := (tail[len(tail)-1].At - tail[0].At).Minutes()
	if t.Mean != 0 {
		t.Growth = t.SlopePerMinute * span / t.Mean
	}
	t.Flat = t.Ratio <= MaxRatio && t.Growth <= MaxGrowth
	return t
}

// Slope returns the least-squares slope of samples in value units per
// minute, or NaN when fewer than two samples at different times are given.
func Slope(samples []Sample) float64 {
	slope, _ := fitLine(samples)
	return slope
}

// SlopeError returns the standard error of Slope(samples), NaN for fewer
// than three samples. It takes the residuals as independent, which the
// sawtooth of a garbage-collected heap is not: read it as the least the
// slope may be off by. A slope within two of it of zero says the samples
// cannot tell growth from noise.
func SlopeError(samples []Sample) float64 {
	_, se := fitLine(samples)
	return se
}

// fitLine fits a least-squares line to samples (x in minutes) and returns
// its slope and the slope's standard error.
func fitLine(samples []Sample) (slope, stderr float64) {
	if len(samples) < 2 {
		return math.NaN(), math.NaN()
	}
	var sx, sy float64
	for _, s := range samples {
		sx += s.At.Minutes()
		sy += s.Value
	}
	n := float64(len(samples))
	mx, my := sx/n, sy/n
	var sxy, sxx float64
	for _, s := range samples {
		dx := s.At.Minutes() - mx
		sxy += dx * (s.Value - my)
		sxx += dx * dx
	}
	if sxx == 0 {
		return math.NaN(), math.NaN()
	}
	slope = sxy / sxx
	if len(samples) < 3 {
		return slope, math.NaN()
	}
	var rss float64
	for _, s := range samples {
		r := s.Value - my - slope*(s.At.Minutes()-mx)
		rss += r * r
	}
	return slope, math.Sqrt(rss / (n - 2) / sxx)
}
