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

// MaxSlope is the memory slope, in MiB per minute, under which a soak
// calls a process's memory flat after its warm-up.
const MaxSlope = 1.0

// Verdict is what a fitted memory slope says of a process.
type Verdict int

// The verdicts of Judge. Their numbers are the values of a soak's
// `rss verdict <process>` rows.
const (
	// CannotTell: the slope is within two standard errors of MaxSlope, so
	// the run cannot tell memory under the bar from memory over it. A
	// longer soak narrows the error: for noise like a steady sawtooth's,
	// by its length to the power 1.5 (twice as long, 2.8 times as narrow).
	CannotTell Verdict = 0
	Flat       Verdict = 1  // the slope is under MaxSlope by more than two errors
	Grows      Verdict = -1 // the slope is MaxSlope or more by two errors or more
)

func (v Verdict) String() string {
	switch v {
	case Flat:
		return "flat"
	case Grows:
		return "grows"
	}
	return "cannot tell"
}

// Judge returns the verdict on a memory slope and its standard error
// (RSSSlope, HeapSlope), in MiB per minute: where the slope give or take
// two errors lies against MaxSlope.
func Judge(slope, stderr float64) Verdict {
	switch {
	case math.IsNaN(slope) || math.IsNaN(stderr):
		return CannotTell
	case slope+2*stderr < MaxSlope:
		return Flat
	case slope-2*stderr >= MaxSlope:
		return Grows
	}
	return CannotTell
}

// Slope returns the least-squares slope of samples in value units per
// minute, or NaN when fewer than two samples at different times are given.
func Slope(samples []Sample) float64 {
	slope, _ := fitLine(samples)
	return slope
}

// SlopeError returns the standard error of Slope(samples), NaN for fewer
// than three samples. Memory read every few seconds is not independent
// noise around a line: a heap rises and falls over collection cycles and,
// in the NATS server, over the minutes its array of message ids takes to
// be compacted, so each residual is much like the one before. The error
// therefore takes the residuals as an AR(1) series (samples evenly spaced
// in time, as a soak takes them): the least-squares error times
// sqrt((1+r)/(1-r)), where r is their lag-1 autocorrelation (none when r
// is not positive; r at most maxAutocorr). On the NATS server's RSS in
// hour-long soaks r is about 0.8, and the error three times the one that
// takes the residuals as independent.
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
	// The residuals' sum of squares, and of products with the one before.
	var sq, lag, prev float64
	for i, s := range samples {
		r := s.Value - my - slope*(s.At.Minutes()-mx)
		sq += r * r
		if i > 0 {
			lag += r * prev
		}
		prev = r
	}
	stderr = math.Sqrt(sq / (n - 2) / sxx)
	if sq > 0 {
		if r := min(lag/sq, maxAutocorr); r > 0 {
			stderr *= math.Sqrt((1 + r) / (1 - r))
		}
	}
	return slope, stderr
}

// maxAutocorr caps the lag-1 autocorrelation SlopeError corrects for: at
// 0.99 the error is 14 times the independent one, and nearer 1 (a random
// walk, or a curve the line does not follow) it would grow without bound.
const maxAutocorr = 0.99
