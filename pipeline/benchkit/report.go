// Package benchkit holds the measuring parts of mailtel's end-to-end
// benchmark (cmd/bench): the result table and its JSON form, latency
// percentiles, the trend of memory samples over a soak, process CPU and
// memory read from /proc, a reader of Prometheus text exposition, and a
// Sink decorator that timestamps writes.
//
// Nothing here changes what the pipeline does: the decorator calls the real
// sink and only records when its Write returned.
package benchkit

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"time"
	"unicode/utf8"
)

// Row is one measured figure.
type Row struct {
	Scenario string  `json:"scenario"`
	Metric   string  `json:"metric"`
	Value    float64 `json:"value"`
	Unit     string  `json:"unit"`
}

// Meta describes the run a Report belongs to.
type Meta struct {
	Started    time.Time `json:"started"`
	Finished   time.Time `json:"finished"`
	WallSecs   float64   `json:"wall_seconds"`
	GitCommit  string    `json:"git_commit,omitempty"`
	GitDirty   bool      `json:"git_dirty,omitempty"`
	GoVersion  string    `json:"go_version"`
	GOMAXPROCS int       `json:"gomaxprocs"`
	NumCPU     int       `json:"num_cpu"`
	N          int       `json:"n"`
	Mode       string    `json:"mode"`   // "short", "full" or "soak"
	Router     string    `json:"router"` // "process" or "inproc"
	// Settings are the knobs of the run that are not in the rows
	// (message size, sink settings, ...), as name -> value.
	Settings map[string]string `json:"settings,omitempty"`
}

// Report is the whole result of a run: what Print shows and WriteJSON
// stores. It is not safe for concurrent use.
type Report struct {
	Meta Meta
	Rows []Row
	// Series are sampled values over time (the RSS of a soak), by name;
	// WriteJSON stores them, Print does not show them.
	Series map[string][]Sample
}

// Add appends a row.
func (r *Report) Add(scenario, metric string, value float64, unit string) {
	r.Rows = append(r.Rows, Row{Scenario: scenario, Metric: metric, Value: value, Unit: unit})
}

// Get returns the value of the first row with scenario and metric.
func (r *Report) Get(scenario, metric string) (float64, bool) {
	for _, row := range r.Rows {
		if row.Scenario == scenario && row.Metric == metric {
			return row.Value, true
		}
	}
	return 0, false
}

// Print writes the header and the table: one line per row with the
// scenario, metric, value and unit in aligned columns.
func (r *Report) Print(w io.Writer) error {
	m := r.Meta
	commit := m.GitCommit
	if commit == "" {
		commit = "unknown"
	} else if len(commit) > 12 {
		commit = commit[:12]
	}
	if m.GitDirty {
		commit += " (dirty)"
	}
	fmt.Fprintf(w, "mailtel bench: %s mode, N=%d, router %s, commit %s, %s, GOMAXPROCS=%d, %d CPUs\n",
		m.Mode, m.N, m.Router, commit, m.GoVersion, m.GOMAXPROCS, m.NumCPU)
	fmt.Fprintf(w, "started %s, wall %.1f s\n", m.Started.Format(time.RFC3339), m.WallSecs)
	// Names left-aligned, values right-aligned.
	head := Row{Scenario: "scenario", Metric: "metric", Unit: "unit"}
	ws, wm, wv := len(head.Scenario), len(head.Metric), len("value")
	vals := make([]string, len(r.Rows))
	for i, row := range r.Rows {
		vals[i] = FormatValue(row.Value)
		ws, wm, wv = max(ws, len(row.Scenario)), max(wm, utf8.RuneCountInString(row.Metric)), max(wv, len(vals[i]))
	}
	line := func(sc, metric, val, unit string) {
		fmt.Fprintf(w, "%-*s  %-*s  %*s  %s\n", ws, sc, wm+len(metric)-utf8.RuneCountInString(metric), metric, wv, val, unit)
	}
	line(head.Scenario, head.Metric, "value", head.Unit)
	for i, row := range r.Rows {
		line(row.Scenario, row.Metric, vals[i], row.Unit)
	}
	return nil
}

// FormatValue prints v with as many decimals as its size calls for:
// none from 100 up, two from 1, three below 1. NaN prints as "n/a".
func FormatValue(v float64) string {
	switch a := math.Abs(v); {
	case math.IsNaN(v):
		return "n/a"
	case a >= 100 || v == math.Trunc(v):
		return fmt.Sprintf("%.0f", v)
	case a >= 1:
		return fmt.Sprintf("%.2f", v)
	default:
		return fmt.Sprintf("%.3f", v)
	}
}

// WriteJSON stores the report as indented JSON at path, creating the
// directory. NaN values (figures that could not be measured) are stored as
// null.
func (r *Report) WriteJSON(path string) error {
	type jsonRow struct {
		Scenario string   `json:"scenario"`
		Metric   string   `json:"metric"`
		Value    *float64 `json:"value"`
		Unit     string   `json:"unit"`
	}
	type jsonSample struct {
		At    float64 `json:"at_seconds"`
		Value float64 `json:"value"`
	}
	out := struct {
		Meta   Meta                    `json:"meta"`
		Rows   []jsonRow               `json:"rows"`
		Series map[string][]jsonSample `json:"series,omitempty"`
	}{Meta: r.Meta}
	for name, ss := range r.Series {
		if out.Series == nil {
			out.Series = map[string][]jsonSample{}
		}
		for _, s := range ss {
			out.Series[name] = append(out.Series[name], jsonSample{At: s.At.Seconds(), Value: s.Value})
		}
	}
	for _, row := range r.Rows {
		jr := jsonRow{Scenario: row.Scenario, Metric: row.Metric, Unit: row.Unit}
		if !math.IsNaN(row.Value) && !math.IsInf(row.Value, 0) {
			v := row.Value
			jr.Value = &v
		}
		out.Rows = append(out.Rows, jr)
	}
	data, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return fmt.Errorf("encode results: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("create results directory: %w", err)
	}
	if err := os.WriteFile(path, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	return nil
}
