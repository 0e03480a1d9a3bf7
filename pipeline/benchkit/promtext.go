package benchkit

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// PromSample is one line of the Prometheus text exposition format.
type PromSample struct {
	Name   string
	Labels string // the text between the braces, "" when none
	Value  float64
}

// PromSamples are the samples of one scrape.
type PromSamples []PromSample

// ParsePromText reads the Prometheus text exposition format (what
// promhttp serves). Comment lines are skipped; a line that is not
// `name[{labels}] value [timestamp]` is an error.
func ParsePromText(r io.Reader) (PromSamples, error) {
	var out PromSamples
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		s := strings.TrimSpace(sc.Text())
		if s == "" || s[0] == '#' {
			continue
		}
		var p PromSample
		rest := ""
		if i := strings.IndexAny(s, "{ "); i < 0 {
			return nil, fmt.Errorf("metrics line %d: no value in %q", line, truncate(s, 80))
		} else if s[i] == '{' {
			// Label values may hold spaces and braces; '}' ends the labels
			// only outside quotes.
			j, err := closingBrace(s, i)
			if err != nil {
				return nil, fmt.Errorf("metrics line %d: %w", line, err)
			}
			p.Name, p.Labels, rest = s[:i], s[i+1:j], s[j+1:]
		} else {
			p.Name, rest = s[:i], s[i:]
		}
		f := strings.Fields(rest)
		if len(f) == 0 || len(f) > 2 {
			return nil, fmt.Errorf("metrics line %d: want a value (and a timestamp) after the name in %q", line, truncate(s, 80))
		}
		v, err := parsePromFloat(f[0])
		if err != nil {
			return nil, fmt.Errorf("metrics line %d: %w", line, err)
		}
		p.Value = v
		out = append(out, p)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read metrics: %w", err)
	}
	return out, nil
}

func closingBrace(s string, open int) (int, error) {
	inQuote, escaped := false, false
	for j := open + 1; j < len(s); j++ {
		switch c := s[j]; {
		case escaped:
			escaped = false
		case c == '\\':
			escaped = inQuote
		case c == '"':
			inQuote = !inQuote
		case c == '}' && !inQuote:
			return j, nil
		}
	}
	return 0, fmt.Errorf("unterminated labels in %q", truncate(s, 80))
}

func parsePromFloat(s string) (float64, error) {
	switch s {
	case "+Inf":
		return math.Inf(1), nil
	case "-Inf":
		return math.Inf(-1), nil
	case "NaN":
		return math.NaN(), nil
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, fmt.Errorf("bad value %q", s)
	}
	return v, nil
}

// Sum adds the values of the samples named name whose labels contain
// every one of match (each written as in the exposition, `stage="router"`).
// ok is false when no sample matched.
func (ss PromSamples) Sum(name string, match ...string) (sum float64, ok bool) {
next:
	for _, s := range ss {
		if s.Name != name {
			continue
		}
		for _, m := range match {
			if !strings.Contains(s.Labels, m) {
				continue next
			}
		}
		sum += s.Value
		ok = true
	}
	return sum, ok
}

// Scrape GETs url (a /metrics endpoint) and parses the answer, within
// timeout.
func Scrape(ctx context.Context, url string, timeout time.Duration) (PromSamples, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", url, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scrape %s: %s", url, resp.Status)
	}
	ss, err := ParsePromText(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", url, err)
	}
	return ss, nil
}

// CounterValue returns the current value of a counter (0 if it cannot be
// read). It is cheap enough to poll every millisecond.
func CounterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return 0
	}
	return m.GetCounter().GetValue()
}

// Gather collects the counters, gauges and untyped metrics of g as
// PromSamples, labels written as in the text format (`k="v",k2="v2"`), so
// that an in-process registry is read like a scraped one.
func Gather(g prometheus.Gatherer) (PromSamples, error) {
	mfs, err := g.Gather()
	if err != nil {
		return nil, fmt.Errorf("gather metrics: %w", err)
	}
	var out PromSamples
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var v float64
			switch {
			case m.Counter != nil:
				v = m.GetCounter().GetValue()
			case m.Gauge != nil:
				v = m.GetGauge().GetValue()
			case m.Untyped != nil:
				v = m.GetUntyped().GetValue()
			default:
				continue
			}
			var labels strings.Builder
			for i, lp := range m.GetLabel() {
				if i > 0 {
					labels.WriteByte(',')
				}
				fmt.Fprintf(&labels, "%s=%q", lp.GetName(), lp.GetValue())
			}
			out = append(out, PromSample{Name: mf.GetName(), Labels: labels.String(), Value: v})
		}
	}
	return out, nil
}
