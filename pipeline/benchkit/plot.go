package benchkit

import (
	"fmt"
	"image/color"
	"math"
	"os"
	"slices"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// SoakPlot is one soak (one variant of the pipeline) to draw.
type SoakPlot struct {
	Title     string
	Warmup    time.Duration
	Interval  time.Duration // of Intervals
	Intervals []Interval
	// Procs are the readings of every process; their RSS is drawn.
	Procs map[string][]ProcSample
	// Dup is the duplicate-window memory (MiB) over time, drawn dashed on
	// the memory panel; nil for none.
	Dup      []Sample
	DupLabel string
}

var plotColors = []color.Color{
	color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}, // blue
	color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff}, // red
	color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff}, // green
	color.RGBA{R: 0xff, G: 0x7f, B: 0x0e, A: 0xff}, // orange
	color.RGBA{R: 0x94, G: 0x67, B: 0xbd, A: 0xff}, // purple
}

// PlotSoak draws the soaks into one PNG at path: a column per soak, with
// publish->write latency p50/p99/max per interval (log scale) on top and
// the resident memory of every process below, against minutes since the
// soak began.
func PlotSoak(path string, soaks []SoakPlot) error {
	if len(soaks) == 0 {
		return fmt.Errorf("plot soak: nothing to draw")
	}
	rows := [][]*plot.Plot{make([]*plot.Plot, len(soaks)), make([]*plot.Plot, len(soaks))}
	for i, s := range soaks {
		lat, err := latencyPlot(s)
		if err != nil {
			return fmt.Errorf("plot soak latency: %w", err)
		}
		mem, err := memoryPlot(s)
		if err != nil {
			return fmt.Errorf("plot soak memory: %w", err)
		}
		rows[0][i], rows[1][i] = lat, mem
	}
	const tileW, tileH = 14 * vg.Centimeter, 10 * vg.Centimeter
	img := vgimg.NewWith(vgimg.UseWH(tileW*vg.Length(len(soaks)), 2*tileH), vgimg.UseDPI(110))
	dc := draw.New(img)
	t := draw.Tiles{Rows: 2, Cols: len(soaks), PadX: vg.Centimeter, PadY: vg.Centimeter,
		PadTop: 3 * vg.Millimeter, PadBottom: 3 * vg.Millimeter, PadLeft: 3 * vg.Millimeter, PadRight: 5 * vg.Millimeter}
	canvases := plot.Align(rows, t, dc)
	for r := range rows {
		for c := range rows[r] {
			rows[r][c].Draw(canvases[r][c])
		}
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("plot soak: %w", err)
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return fmt.Errorf("plot soak: write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("plot soak: write %s: %w", path, err)
	}
	return nil
}

func newPlot(title, ylabel string) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "minutes since the soak began"
	p.Y.Label.Text = ylabel
	p.Legend.Top = true
	p.Legend.Left = true
	p.Add(plotter.NewGrid())
	return p
}

func latencyPlot(s SoakPlot) (*plot.Plot, error) {
	p := newPlot(fmt.Sprintf("%s: publish->write latency per %s (warm-up %s)", s.Title, shortDuration(s.Interval), shortDuration(s.Warmup)), "ms (log scale)")
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	for i, q := range []struct {
		name string
		get  func(Latency) time.Duration
	}{
		{"p50", func(l Latency) time.Duration { return l.P50 }},
		{"p99", func(l Latency) time.Duration { return l.P99 }},
		{"max", func(l Latency) time.Duration { return l.Max }},
	} {
		var xy plotter.XYs
		for _, iv := range s.Intervals {
			if iv.Latency.N == 0 {
				continue
			}
			// The middle of the interval; log scale: no zero.
			xy = append(xy, plotter.XY{X: ((iv.Start + iv.End) / 2).Minutes(), Y: math.Max(float64(q.get(iv.Latency))/1e6, 0.01)})
		}
		if len(xy) == 0 {
			continue
		}
		l, pts, err := plotter.NewLinePoints(xy)
		if err != nil {
			return nil, err
		}
		l.Color, pts.Color = plotColors[i], plotColors[i]
		l.Width = vg.Points(1.5)
		p.Add(l, pts)
		p.Legend.Add(q.name, l, pts)
	}
	p.X.Min = 0
	if n := len(s.Intervals); n > 0 { // the same span as the memory panel
		p.X.Max = max(p.X.Max, s.Intervals[n-1].End.Minutes())
	}
	// Whole decades, and one more on top for the legend: LogTicks labels
	// the powers of ten.
	if p.Y.Max > 0 {
		p.Y.Min = math.Pow(10, math.Floor(math.Log10(p.Y.Min)))
		p.Y.Max = math.Pow(10, math.Ceil(math.Log10(p.Y.Max*4)))
	}
	return p, nil
}

// shortDuration prints 1m0s as 1m and 30s as 30s.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	return s
}

func memoryPlot(s SoakPlot) (*plot.Plot, error) {
	p := newPlot(s.Title+": resident memory (RSS)", "MiB")
	names := slices.Sorted(func(yield func(string) bool) {
		for n := range s.Procs {
			if !yield(n) {
				return
			}
		}
	})
	for i, name := range names {
		var xy plotter.XYs
		for _, r := range s.Procs[name] {
			xy = append(xy, plotter.XY{X: r.At.Minutes(), Y: mib(r.RSS)})
		}
		if len(xy) == 0 {
			continue
		}
		l, err := plotter.NewLine(xy)
		if err != nil {
			return nil, err
		}
		l.Color = plotColors[i%len(plotColors)]
		l.Width = vg.Points(1.5)
		p.Add(l)
		p.Legend.Add(name, l)
	}
	if len(s.Dup) > 0 {
		var xy plotter.XYs
		for _, d := range s.Dup {
			xy = append(xy, plotter.XY{X: d.At.Minutes(), Y: d.Value})
		}
		l, err := plotter.NewLine(xy)
		if err != nil {
			return nil, err
		}
		l.Color = color.Gray{Y: 0x60}
		l.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
		l.Width = vg.Points(1.2)
		p.Add(l)
		p.Legend.Add(s.DupLabel, l)
	}
	p.X.Min, p.Y.Min = 0, 0
	p.Y.Max *= 1.3 // room for the legend
	p.Y.Tick.Marker = plainTicks{}
	return p, nil
}

// plainTicks are plot.DefaultTicks labelled without trailing zeros:
// DefaultTicks prints "5000.00" on one panel's axis and "4000" on the
// next, depending on the range.
type plainTicks struct{}

func (plainTicks) Ticks(min, max float64) []plot.Tick {
	ticks := plot.DefaultTicks{}.Ticks(min, max)
	for i, t := range ticks {
		if strings.Contains(t.Label, ".") {
			ticks[i].Label = strings.TrimSuffix(strings.TrimRight(t.Label, "0"), ".")
		}
	}
	return ticks
}
