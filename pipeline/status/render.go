package status

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/mailtel/mailtel/pipeline/config/value"
)

// Render writes s as tables readable at a glance: the sinks (state, how far
// behind, rate, dead letters), the consumers, the streams with their
// duplicate windows, and the dead letters per stage. Times are shown as
// ages relative to s.Time, so the same Status always renders the same.
func Render(w io.Writer, s *Status) error {
	bw := bufio.NewWriter(w)
	now := s.Time

	head := "mailtel status at " + s.Time.UTC().Format("2006-01-02 15:04:05 UTC")
	if s.Server != "" {
		head += " from " + s.Server
	}
	if s.RateInterval > 0 {
		head += ", rates over " + time.Duration(s.RateInterval).String()
	} else {
		head += ", no rates (one sample)"
	}
	fmt.Fprintln(bw, head)
	if len(s.Endpoints) > 0 {
		parts := make([]string, len(s.Endpoints))
		for i, e := range s.Endpoints {
			state := "answered"
			if e.Error != "" {
				state = "no answer"
			}
			parts[i] = e.Addr + " " + state
		}
		fmt.Fprintln(bw, "metrics endpoints: "+strings.Join(parts, ", "))
	}

	fmt.Fprintln(bw)
	if len(s.Sinks) == 0 {
		fmt.Fprintln(bw, "no sinks: no ROUTED stream exists and the configuration names none")
	} else {
		t := table{head: []string{"SINK", "STATE", "BEHIND", "RATE/S", "DEAD LETTERS", "FED BY", "REASON"}, right: []bool{2: true, 3: true, 4: true}}
		for _, k := range s.Sinks {
			behind := count(k.Behind)
			if k.State == StateNoStream {
				behind = "-"
			}
			t.add(k.Name, k.State, behind, rate(k.Rate), count(k.DeadLetters), dash(k.FedBy), k.Reason)
		}
		t.write(bw)
	}

	fmt.Fprintln(bw)
	if len(s.Consumers) == 0 {
		fmt.Fprintln(bw, "no consumers")
	} else {
		t := table{head: []string{"CONSUMER", "STREAM", "STATE", "PENDING", "ACK PENDING", "REDELIVERED", "WAITING", "LAST ACTIVE", "RATE/S"},
			right: []bool{3: true, 4: true, 5: true, 6: true, 7: true, 8: true}}
		for _, c := range s.Consumers {
			if c.State == StateNoConsumer {
				t.add(c.Name, c.Stream, c.State, "-", "-", "-", "-", "-", "-")
				continue
			}
			t.add(c.Name, c.Stream, c.State, count(c.Pending), count(uint64(c.AckPending)), count(uint64(c.Redelivered)),
				count(uint64(c.Waiting)), ago(c.LastActive, now), rate(c.Rate))
		}
		t.write(bw)
	}

	fmt.Fprintln(bw)
	t := table{head: []string{"STREAM", "MESSAGES", "BYTES", "FIRST", "LAST", "DUP WINDOW", "IDS IN WINDOW", "ID MEMORY"},
		right: []bool{1: true, 2: true, 3: true, 4: true, 5: true, 6: true, 7: true}}
	var ids, idBytes uint64
	for _, st := range s.Streams {
		if st.Missing {
			t.add(st.Name, "missing", "", "", "", "", "", "")
			continue
		}
		t.add(st.Name, count(st.Messages), size(st.Bytes), ago(st.First, now), ago(st.Last, now),
			window(time.Duration(st.Duplicates)), count(st.WindowIDs), size(st.WindowBytes))
		ids += st.WindowIDs
		idBytes += st.WindowBytes
	}
	t.write(bw)
	fmt.Fprintf(bw, "duplicate windows: %s message ids, about %s of NATS server memory (%d bytes each)\n", count(ids), size(idBytes), BytesPerID)

	fmt.Fprintln(bw)
	if len(s.DeadLetters) == 0 {
		fmt.Fprintln(bw, "dead letters: none")
	} else {
		t := table{head: []string{"DEAD LETTERS", "COUNT"}, right: []bool{1: true}}
		var total uint64
		for _, d := range s.DeadLetters {
			t.add(d.Stage, count(d.Count))
			total += d.Count
		}
		t.add("total", count(total))
		t.write(bw)
	}
	return bw.Flush()
}

// table is a text table whose columns are as wide as their widest cell,
// two spaces apart; right-aligned columns hold numbers. The last column is
// not padded.
type table struct {
	head  []string
	right []bool
	rows  [][]string
}

func (t *table) add(cells ...string) { t.rows = append(t.rows, cells) }

func (t *table) write(w io.Writer) {
	widths := make([]int, len(t.head))
	for _, r := range append([][]string{t.head}, t.rows...) {
		for i, c := range r {
			widths[i] = max(widths[i], len([]rune(c)))
		}
	}
	for _, r := range append([][]string{t.head}, t.rows...) {
		var b strings.Builder
		for i, c := range r {
			pad := strings.Repeat(" ", widths[i]-len([]rune(c)))
			switch {
			case i < len(t.right) && t.right[i]:
				b.WriteString(pad + c)
			case i == len(r)-1:
				b.WriteString(c)
			default:
				b.WriteString(c + pad)
			}
			if i < len(r)-1 {
				b.WriteString("  ")
			}
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	}
}

// count writes n with thousands separators: 1,234,567.
func count(n uint64) string {
	s := strconv.FormatUint(n, 10)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// rate writes events per second: "-" when unknown, one decimal below 10.
func rate(r *float64) string {
	switch {
	case r == nil:
		return "-"
	case *r < 10:
		return strconv.FormatFloat(*r, 'f', 1, 64)
	}
	return count(uint64(*r + 0.5))
}

// size writes a size in B, KiB, MiB, GiB or TiB.
func size(n uint64) string {
	if n < 1024 {
		return strconv.FormatUint(n, 10) + " B"
	}
	v := float64(n)
	unit := ""
	for _, u := range []string{"KiB", "MiB", "GiB", "TiB"} {
		v /= 1024
		unit = u
		if v < 1024 {
			break
		}
	}
	return strconv.FormatFloat(v, 'f', 1, 64) + " " + unit
}

// ago writes the age of t at now: "12s ago", "3m05s ago", "2h03m ago",
// "6d04h ago"; "-" for no time.
func ago(t *time.Time, now time.Time) string {
	if t == nil {
		return "-"
	}
	d := max(now.Sub(*t), 0).Round(time.Second)
	s := int64(d / time.Second)
	switch {
	case s < 60:
		return fmt.Sprintf("%ds ago", s)
	case s < 3600:
		return fmt.Sprintf("%dm%02ds ago", s/60, s%60)
	case s < 48*3600:
		return fmt.Sprintf("%dh%02dm ago", s/3600, s%3600/60)
	}
	return fmt.Sprintf("%dd%02dh ago", s/86400, s%86400/3600)
}

// window writes a duplicate window: "10m", "2m", "90s", "none".
func window(d time.Duration) string {
	if d <= 0 {
		return "none"
	}
	return value.FormatDuration(d)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
