package replay_test

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/mailtel/mailtel/pipeline/config"
	"github.com/mailtel/mailtel/pipeline/obs"
	"github.com/mailtel/mailtel/pipeline/replay"
)

func TestParseRange(t *testing.T) {
	now := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		since, until   string
		from, to       uint64
		want           replay.Range
		wantErr        string
		sinceT, untilT string
	}{
		{since: "2h", want: replay.Range{Since: now.Add(-2 * time.Hour)}},
		{since: "7d", until: "1d", want: replay.Range{Since: now.Add(-7 * 24 * time.Hour), Until: now.Add(-24 * time.Hour)}},
		{since: "2026-11-21T06:00:00Z", until: "2026-11-21T06:30:00.5Z",
			want: replay.Range{Since: time.Date(2026, 11, 21, 6, 0, 0, 0, time.UTC), Until: time.Date(2026, 11, 21, 6, 30, 0, 5e8, time.UTC)}},
		{from: 10, to: 20, want: replay.Range{FromSeq: 10, ToSeq: 20}},
		{from: 10, until: "1h", want: replay.Range{FromSeq: 10, Until: now.Add(-time.Hour)}},
		{since: "1h", to: 99, want: replay.Range{Since: now.Add(-time.Hour), ToSeq: 99}},
		{wantErr: "say where the replay starts: --since DURATION|TIME or --from-seq N"},
		{until: "1h", wantErr: "say where the replay starts"},
		{since: "2h", from: 3, wantErr: "give --since or --from-seq, not both"},
		{since: "2h", until: "1h", to: 3, wantErr: "give --until or --to-seq, not both"},
		{since: "1h", until: "2h", wantErr: "--until 2h is before --since 1h"},
		{since: "2026-11-21T06:00:00Z", until: "2026-11-20T06:00:00Z", wantErr: "is before --since"},
		{from: 20, to: 10, wantErr: "--to-seq 10 is before --from-seq 20"},
		{since: "yesterday", wantErr: `--since: invalid time "yesterday": want a duration before now`},
		{since: "-2h", wantErr: `--since: invalid time "-2h"`},
		{since: "2026-11-21 06:00", wantErr: "RFC 3339"},
		{since: "1h", until: "soon", wantErr: `--until: invalid time "soon"`},
	}
	for _, tt := range tests {
		name := strings.Join([]string{tt.since, tt.until}, "..")
		t.Run(name, func(t *testing.T) {
			got, err := replay.ParseRange(tt.since, tt.until, tt.from, tt.to, now)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !got.Since.Equal(tt.want.Since) || !got.Until.Equal(tt.want.Until) || got.FromSeq != tt.want.FromSeq || got.ToSeq != tt.want.ToSeq {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
			if err := got.Validate(); err != nil {
				t.Errorf("Validate: %v", err)
			}
		})
	}
}

func TestSubjects(t *testing.T) {
	streams := config.Default().Streams
	tests := []struct {
		subjects   []string
		wantStream string
		wantErr    string
	}{
		{[]string{"events.auth.>"}, "EVENTS", ""},
		{[]string{"events.*.error", "events.smtp.>"}, "EVENTS", ""},
		{[]string{"routed.siem.>"}, "ROUTED_siem", ""},
		{[]string{"routed.>"}, "", `subject "routed.>" spans the ROUTED streams of every sink: give one sink`},
		{[]string{"routed.*.auth.>"}, "", "spans the ROUTED streams of every sink"},
		{[]string{"routed.siem.>", "routed.log.>"}, "", "are in different streams"},
		{[]string{"dlq.sink.siem.>"}, "DLQ", ""},
		{[]string{"events.>"}, "EVENTS", ""},
		{nil, "", "no subject given"},
		{[]string{"events.auth.>", "routed.siem.>"}, "", `subjects "events.auth.>" (stream EVENTS) and "routed.siem.>" (stream ROUTED_siem) are in different streams`},
		{[]string{"events..auth"}, "", "empty token"},
		{[]string{"events.auth."}, "", "empty token"},
		{[]string{".events.auth"}, "", "empty token"},
		{[]string{"events.>.auth"}, "", "'>' must be the last token"},
		{[]string{"events.auth*"}, "", "'*' and '>' must be whole tokens"},
		{[]string{"events.auth>"}, "", "must be whole tokens"},
		{[]string{"events.auth .>"}, "", "contains whitespace"},
		{[]string{""}, "", "empty subject"},
		{[]string{"auth.>"}, "", `subject "auth.>" is in no mailtel stream: it must start with events., routed. or dlq.`},
		{[]string{"events"}, "", "in no mailtel stream"},
		{[]string{"*.auth.>"}, "", "in no mailtel stream"},
		{[]string{"events.auth.success"}, "EVENTS", ""},
		{[]string{"routed.siem.*.*"}, "ROUTED_siem", ""},
		{[]string{"events.auth"}, "", `subject "events.auth" matches no event: subjects are events.<category>.<event> (did you mean events.auth.>?)`},
		{[]string{"events.auth.success.x"}, "", "matches no event"},
		{[]string{"events.a.b.>"}, "", "matches no event"},
		{[]string{"routed.siem.auth"}, "", "routed.<sink>.<category>.<event> (did you mean routed.siem.auth.>?)"},
		{[]string{"dlq.sink"}, "DLQ", ""},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.subjects, " "), func(t *testing.T) {
			got, err := replay.StreamOf(tt.subjects, streams)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.wantStream {
				t.Errorf("StreamOf = %q, %v; want %q", got, err, tt.wantStream)
			}
		})
	}
}

func TestMatchAndOverlap(t *testing.T) {
	for _, tt := range []struct {
		filter, subject string
		match           bool
	}{
		{"events.auth.>", "events.auth.success", true},
		{"events.auth.>", "events.auth", false},
		{"events.auth.>", "events.authx.success", false},
		{"events.*.error", "events.acme.error", true},
		{"events.*.error", "events.acme.errors", false},
		{"events.*.error", "events.acme.x.error", false},
		{"events.>", "events.a.b", true},
		{"events.auth.success", "events.auth.success", true},
		{"events.auth.success", "events.auth.success.x", false},
	} {
		if got := replay.Match(tt.filter, tt.subject); got != tt.match {
			t.Errorf("Match(%q, %q) = %v", tt.filter, tt.subject, got)
		}
	}
	for _, tt := range []struct {
		a, b    string
		overlap bool
	}{
		{"events.auth.>", "events.*.error", true},
		{"events.auth.>", "events.smtp.>", false},
		{"events.*.error", "events.*.success", false},
		{"events.auth.success", "events.*.*", true},
		{"events.auth", "events.auth.>", false},
		{"events.>", "events.a.b.c", true},
		{"events.a.b", "events.a", false},
	} {
		if got := replay.Overlap(tt.a, tt.b); got != tt.overlap {
			t.Errorf("Overlap(%q, %q) = %v", tt.a, tt.b, got)
		}
		if got := replay.Overlap(tt.b, tt.a); got != tt.overlap {
			t.Errorf("Overlap(%q, %q) = %v", tt.b, tt.a, got)
		}
	}
	f, here := replay.ServerFilters([]string{"events.auth.>", "events.smtp.>", "events.auth.>"})
	if strings.Join(f, " ") != "events.auth.> events.smtp.>" || here {
		t.Errorf("disjoint filters: %v %v", f, here)
	}
	f, here = replay.ServerFilters([]string{"events.auth.>", "events.*.error"})
	if strings.Join(f, " ") != "events.>" || !here {
		t.Errorf("overlapping filters: %v %v", f, here)
	}
}

func TestProgress(t *testing.T) {
	p := replay.Progress{Done: 1200, Total: 5000, Written: 1190, Skipped: 10, Elapsed: 2 * time.Second}
	if got, want := replay.FormatProgress(p), "1200/5000 events (24%), 600/s, ETA 6s, written 1190, skipped 10, failed 0"; got != want {
		t.Errorf("FormatProgress = %q, want %q", got, want)
	}
	p.Final, p.Done = true, 5000
	if got := replay.FormatProgress(p); !strings.Contains(got, "5000/5000 events (100%), 2500/s, took 2s") {
		t.Errorf("final: %q", got)
	}

	// Not a terminal: plain lines, at most one a second, and the final one.
	var buf bytes.Buffer
	pr := replay.NewPrinter(&buf, false, "replay log")
	for i := range 100 {
		pr.Update(replay.Progress{Done: uint64(i), Total: 100})
	}
	pr.Update(replay.Progress{Done: 100, Total: 100, Final: true})
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 2 || strings.Contains(buf.String(), "\r") || !strings.HasPrefix(lines[1], "replay log 100/100 events") {
		t.Errorf("plain progress %q", buf.String())
	}

	// A terminal: one line, rewritten in place, cleared when shorter.
	buf.Reset()
	pr = replay.NewPrinter(&buf, true, "replay")
	pr.Update(replay.Progress{Done: 10000, Total: 20000, Elapsed: time.Second})
	time.Sleep(120 * time.Millisecond)
	pr.Update(replay.Progress{Done: 20000, Total: 20000, Elapsed: 2 * time.Second, Final: true})
	out := buf.String()
	if strings.Count(out, "\r") != 2 || strings.Count(out, "\n") != 1 || !strings.HasSuffix(out, "\n") {
		t.Errorf("terminal progress %q", out)
	}

	if obs.IsTerminal(&buf) {
		t.Error("a buffer is not a terminal")
	}
	f2, err := os.CreateTemp(t.TempDir(), "out")
	if err != nil {
		t.Fatal(err)
	}
	defer f2.Close()
	if obs.IsTerminal(f2) {
		t.Error("a file is not a terminal")
	}
}
