package replay

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/mailtel/mailtel/pipeline/delivery"
)

// Printer shows the progress of a replay. On a terminal it keeps one line
// up to date (rewritten with \r, at most ten times a second); elsewhere (a
// log, a pipe) it prints a plain line at most every Interval. The final
// update always prints and ends the line. It is safe for concurrent use.
type Printer struct {
	w        io.Writer
	tty      bool
	interval time.Duration
	label    string
	dryRun   bool // the outputs count what they would write: "selected N"

	mu    sync.Mutex
	last  time.Time
	width int
}

// NewPrinter returns a Printer writing to w, which is treated as a terminal
// when tty is true; label starts every line ("replay siem").
func NewPrinter(w io.Writer, tty bool, label string) *Printer {
	p := &Printer{w: w, tty: tty, interval: time.Second, label: label}
	if tty {
		p.interval = 100 * time.Millisecond
	}
	return p
}

// DryRun makes p show what a dry run's outputs counted as "selected N":
// nothing was written.
func (p *Printer) DryRun() *Printer {
	p.dryRun = true
	return p
}

// Update shows pr, unless the previous line is too recent and pr is not
// final.
func (p *Printer) Update(pr Progress) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	if !pr.Final && now.Sub(p.last) < p.interval {
		return
	}
	p.last = now
	line := p.label + " " + formatProgress(pr, p.dryRun)
	if !p.tty {
		fmt.Fprintln(p.w, line)
		return
	}
	pad := ""
	if n := p.width - len(line); n > 0 {
		pad = strings.Repeat(" ", n) // clear what is left of a longer line
	}
	p.width = len(line)
	end := ""
	if pr.Final {
		end = "\n"
	}
	fmt.Fprintf(p.w, "\r%s%s%s", line, pad, end)
}

// FormatProgress renders pr as "1200/5000 events (24%), 3400/s, ETA 1s,
// written 1190, skipped 10, failed 0".
func FormatProgress(pr Progress) string { return formatProgress(pr, false) }

// formatProgress is FormatProgress, or for a dry run "..., selected 1190".
func formatProgress(pr Progress, dryRun bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d/%d events", pr.Done, pr.Total)
	if pr.Total > 0 {
		fmt.Fprintf(&b, " (%d%%)", pr.Done*100/pr.Total)
	}
	rate := 0.0
	if s := pr.Elapsed.Seconds(); s > 0 {
		rate = float64(pr.Done) / s
	}
	fmt.Fprintf(&b, ", %.0f/s", rate)
	switch {
	case pr.Final:
		fmt.Fprintf(&b, ", took %s", pr.Elapsed.Round(time.Millisecond))
	case rate > 0 && pr.Total >= pr.Done:
		eta := time.Duration(float64(pr.Total-pr.Done) / rate * float64(time.Second))
		fmt.Fprintf(&b, ", ETA %s", eta.Round(time.Second))
	default:
		b.WriteString(", ETA ?")
	}
	if dryRun {
		fmt.Fprintf(&b, ", selected %d copies", pr.Written) // an event for two sinks counts twice
	} else {
		fmt.Fprintf(&b, ", written %d, skipped %d, failed %d", pr.Written, pr.Skipped, pr.Failed)
	}
	return b.String()
}

// LogRetries returns an Options.Retrying that tells w about a failing
// destination: at its first failure, then at most once a minute while it
// keeps failing.
func LogRetries(w io.Writer) func(output string, f delivery.Failure) {
	var last time.Time
	return func(output string, f delivery.Failure) {
		if f.Attempt > 1 && time.Since(last) < time.Minute {
			return
		}
		last = time.Now()
		fmt.Fprintf(w, "sink %s: write failed (attempt %d, failing for %s; next try in %s, one event at a time): %v\n",
			output, f.Attempt, f.FailingFor.Round(time.Second), f.Wait.Round(time.Millisecond), f.Err)
	}
}

// Logger returns a logger for the sinks of a replay (a log sink waiting
// for its file lock says so), writing plain lines to w.
func Logger(w io.Writer) zerolog.Logger {
	return zerolog.New(zerolog.ConsoleWriter{Out: w, NoColor: true, TimeFormat: time.TimeOnly}).With().Timestamp().Logger()
}
