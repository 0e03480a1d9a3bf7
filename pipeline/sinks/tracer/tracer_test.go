package tracer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mailtel/mailtel/catalog"
	"github.com/mailtel/mailtel/pipeline/sink"
	"github.com/mailtel/mailtel/schema"
)

// clock is a settable time source for rotation tests.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) set(t time.Time) { c.mu.Lock(); defer c.mu.Unlock(); c.t = t }

// ev returns an auth.success event whose field "n" repeats its id, so that
// text lines, which carry no id, can be counted by id.
func ev(id string) *schema.Event {
	return &schema.Event{
		ID: id, Type: "auth.success", Time: t0, Level: catalog.LevelInfo, Server: "stalwart",
		Fields: []schema.Field{{Key: "n", Value: schema.String(id)}, {Key: "accountId", Value: schema.Uint(3)}},
	}
}

func evs(ids ...string) []*schema.Event {
	out := make([]*schema.Event, len(ids))
	for i, id := range ids {
		out[i] = ev(id)
	}
	return out
}

func logCfg(dir, format, rotate string) *Config {
	return &Config{Type: "log", Path: dir, Prefix: "mail", Format: format, Rotate: rotate}
}

func newSink(t *testing.T, cfg *Config, opts Options) *Sink {
	t.Helper()
	s, err := New("t", cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	return s
}

func write(t *testing.T, s *Sink, batch []*schema.Event) {
	t.Helper()
	if err := s.Write(context.Background(), batch); err != nil {
		t.Fatal(err)
	}
}

func closeSink(t *testing.T, s *Sink) {
	t.Helper()
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// ids returns the ids of the lines of a log file in order, from the "n"
// field (text) or the "id" field (json), and fails on a line that is not
// a complete event.
func ids(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > 0 && b[len(b)-1] != '\n' {
		t.Errorf("%s ends in a torn line: %q", path, b)
	}
	var out []string
	for _, line := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		if line == "" {
			continue
		}
		if line[0] == '{' {
			var v struct{ ID string }
			if err := json.Unmarshal([]byte(line), &v); err != nil {
				t.Errorf("%s: bad json line %q: %v", path, line, err)
			}
			out = append(out, v.ID)
			continue
		}
		_, rest, ok := strings.Cut(line, `n = "`)
		id, _, ok2 := strings.Cut(rest, `"`)
		if !ok || !ok2 || !strings.HasSuffix(line, ", accountId = 3") {
			t.Errorf("%s: bad text line %q", path, line)
		}
		out = append(out, id)
	}
	return out
}

func files(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		out = append(out, e.Name())
	}
	return out
}

func TestRotation(t *testing.T) {
	day1 := time.Date(2025, 11, 27, 23, 10, 0, 0, time.UTC)
	tests := []struct {
		rotate string
		times  []time.Time // one batch per time: ids b0, b1, ...
		want   map[string][]string
	}{
		{
			rotate: "daily",
			times:  []time.Time{day1, day1.Add(40 * time.Minute), day1.Add(50 * time.Minute), day1.Add(25 * time.Hour)},
			want: map[string][]string{
				"mail.2025-11-27": {"b0", "b1"},
				"mail.2025-11-28": {"b2"},
				"mail.2025-11-29": {"b3"},
			},
		},
		{
			rotate: "hourly",
			// The last time is in another zone: names are UTC.
			times: []time.Time{day1, day1.Add(10 * time.Minute), day1.Add(55 * time.Minute),
				day1.Add(56 * time.Minute).In(time.FixedZone("X", 5*3600))},
			want: map[string][]string{
				"mail.2025-11-27T23": {"b0", "b1"},
				"mail.2025-11-28T00": {"b2", "b3"},
			},
		},
		{
			rotate: "never",
			times:  []time.Time{day1, day1.Add(48 * time.Hour)},
			want:   map[string][]string{"mail": {"b0", "b1"}},
		},
	}
	for _, format := range []string{"json", "text"} {
		for _, tc := range tests {
			t.Run(format+"/"+tc.rotate, func(t *testing.T) {
				dir := filepath.Join(t.TempDir(), "logs", "sub")
				clk := &clock{t: tc.times[0]}
				s := newSink(t, logCfg(dir, format, tc.rotate), Options{Now: clk.now})
				for i, at := range tc.times {
					clk.set(at)
					write(t, s, evs(fmt.Sprintf("b%d", i)))
				}
				closeSink(t, s)
				var names []string
				for _, n := range files(t, dir) {
					if !strings.HasPrefix(n, ".") {
						names = append(names, n)
					}
				}
				var want []string
				for n := range tc.want {
					want = append(want, n)
				}
				slices.Sort(want)
				if !slices.Equal(names, want) {
					t.Fatalf("files %v, want %v", names, want)
				}
				for name, wantIDs := range tc.want {
					if got := ids(t, filepath.Join(dir, name)); !slices.Equal(got, wantIDs) {
						t.Errorf("%s holds %v, want %v", name, got, wantIDs)
					}
				}
			})
		}
	}
}

func TestFilePermissions(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "new")
	clk := &clock{t: t0}
	s := newSink(t, logCfg(dir, "json", "daily"), Options{Now: clk.now})
	write(t, s, evs("a"))
	tests := []struct {
		path string
		want os.FileMode
	}{
		{dir, os.ModeDir | 0o750},
		{filepath.Join(dir, "mail.2025-11-27"), 0o640},
	}
	for _, tc := range tests {
		t.Run(filepath.Base(tc.path), func(t *testing.T) {
			st, err := os.Stat(tc.path)
			if err != nil {
				t.Fatal(err)
			}
			// The umask may take permissions away, never add them.
			got := st.Mode()
			if got.Type() != tc.want.Type() || got.Perm()&^tc.want.Perm() != 0 || got.Perm()&0o700 != tc.want.Perm()&0o700 {
				t.Errorf("mode %v, want %v", got, tc.want)
			}
		})
	}
}

func TestInstanceNaming(t *testing.T) {
	tests := []struct {
		instance, rotate, want string
	}{
		{"", "daily", "mail.2025-11-27"},
		{"a", "daily", "mail.a.2025-11-27"},
		{"sinks-2", "hourly", "mail.sinks-2.2025-11-27T14"},
		{"b", "never", "mail.b"},
	}
	for _, tc := range tests {
		t.Run(tc.instance+"/"+tc.rotate, func(t *testing.T) {
			dir := t.TempDir()
			s := newSink(t, logCfg(dir, "json", tc.rotate), Options{Instance: tc.instance, Now: func() time.Time { return t0 }})
			write(t, s, evs("x"))
			if got := ids(t, filepath.Join(dir, tc.want)); !slices.Equal(got, []string{"x"}) {
				t.Errorf("%s holds %v", tc.want, got)
			}
		})
	}
}

// TestFlockConflict: a second sink on a file another holds does not fail
// at New: its Write waits for the lock until its context ends, with an
// error that names the file and the fix, and succeeds once the first
// sink is closed.
func TestFlockConflict(t *testing.T) {
	for _, format := range []string{"json", "text"} {
		t.Run(format, func(t *testing.T) {
			dir := t.TempDir()
			now := func() time.Time { return t0 }
			first := newSink(t, logCfg(dir, format, "daily"), Options{Instance: "a", Now: now})

			second := newSink(t, logCfg(dir, format, "daily"), Options{Instance: "a", Now: now})
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			err := second.Write(ctx, evs("2"))
			if !errors.Is(err, ErrLocked) || !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("second sink on the same file: err = %v, want ErrLocked after the deadline", err)
			}
			if sink.IsPermanent(err) {
				t.Errorf("a held lock is permanent: %v", err)
			}
			if !strings.Contains(err.Error(), "instance name, sinks --instance") || !strings.Contains(err.Error(), "mail.a.2025-11-27") {
				t.Errorf("error does not name the file and the fix: %v", err)
			}

			other := newSink(t, logCfg(dir, format, "daily"), Options{Instance: "b", Now: now})
			write(t, first, evs("1"))
			write(t, other, evs("2"))

			closeSink(t, first)
			write(t, second, evs("1", "3"))
			closeSink(t, second)
			if got := ids(t, filepath.Join(dir, "mail.a.2025-11-27")); !slices.Equal(got, []string{"1", "3"}) {
				t.Errorf("instance a file holds %v", got)
			}
		})
	}
}

func TestDedupeAcrossRestart(t *testing.T) {
	for _, format := range []string{"json", "text"} {
		t.Run(format, func(t *testing.T) {
			dir := t.TempDir()
			clk := &clock{t: t0}
			cfg := logCfg(dir, format, "daily")
			s := newSink(t, cfg, Options{Now: clk.now})
			write(t, s, evs("a", "b", "c"))
			write(t, s, evs("b", "c", "d")) // redelivery within the process
			if got := s.Skipped(); got != 2 {
				t.Errorf("skipped %d, want 2", got)
			}
			closeSink(t, s)

			s = newSink(t, cfg, Options{Now: clk.now})
			write(t, s, evs("a", "b", "c", "d", "e", "e", "f"))
			if got := s.Skipped(); got != 5 {
				t.Errorf("after restart: skipped %d, want 5", got)
			}
			closeSink(t, s)
			want := []string{"a", "b", "c", "d", "e", "f"}
			if got := ids(t, filepath.Join(dir, "mail.2025-11-27")); !slices.Equal(got, want) {
				t.Errorf("file holds %v, want %v", got, want)
			}
		})
	}
}

// TestDedupeAcrossRotation restarts the sink just after midnight: a batch
// written before midnight and redelivered goes to no file twice.
func TestDedupeAcrossRotation(t *testing.T) {
	for _, format := range []string{"json", "text"} {
		t.Run(format, func(t *testing.T) {
			dir := t.TempDir()
			clk := &clock{t: time.Date(2025, 11, 27, 23, 59, 59, 0, time.UTC)}
			cfg := logCfg(dir, format, "daily")
			s := newSink(t, cfg, Options{Now: clk.now})
			write(t, s, evs("a", "b"))
			closeSink(t, s)

			clk.set(time.Date(2025, 11, 28, 0, 0, 1, 0, time.UTC))
			s = newSink(t, cfg, Options{Now: clk.now})
			write(t, s, evs("a", "b", "c"))
			closeSink(t, s)
			if got := ids(t, filepath.Join(dir, "mail.2025-11-28")); !slices.Equal(got, []string{"c"}) {
				t.Errorf("new day holds %v, want [c]", got)
			}
		})
	}
}

// TestCrashRecoveryJSON leaves a json file as a crash would: a complete
// line of an unacknowledged batch and a torn line after it.
func TestCrashRecoveryJSON(t *testing.T) {
	dir := t.TempDir()
	clk := &clock{t: t0}
	cfg := logCfg(dir, "json", "never")
	s := newSink(t, cfg, Options{Now: clk.now})
	write(t, s, evs("a"))
	closeSink(t, s)

	line, err := newJSONFormatter().appendEvent(nil, ev("b"))
	if err != nil {
		t.Fatal(err)
	}
	torn, _ := newJSONFormatter().appendEvent(nil, ev("c"))
	appendFile(t, filepath.Join(dir, "mail"), append(line, torn[:len(torn)/2]...))

	s = newSink(t, cfg, Options{Now: clk.now})
	write(t, s, evs("a", "b", "c", "d"))
	closeSink(t, s)
	if got := ids(t, filepath.Join(dir, "mail")); !slices.Equal(got, []string{"a", "b", "c", "d"}) {
		t.Errorf("file holds %v", got)
	}
}

// TestCrashRecoveryText leaves a text file as a crash between the log's
// fsync and the sidecar's commit would: the batch's lines in the log, its
// ids in the sidecar, but no commit line.
func TestCrashRecoveryText(t *testing.T) {
	tests := []struct {
		name    string
		log     string // appended to the log after a committed batch [a]
		sidecar string // appended to the sidecar
	}{
		{"batch written, not committed", "line b\nline c\n", "\"b\"\n\"c\"\n"},
		{"torn batch, no ids", "line b\nli", ""},
		{"torn sidecar", "line b\n", "\"b\"\n@99"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			clk := &clock{t: t0}
			cfg := logCfg(dir, "text", "never")
			s := newSink(t, cfg, Options{Now: clk.now})
			write(t, s, evs("a"))
			closeSink(t, s)
			appendFile(t, filepath.Join(dir, "mail"), []byte(tc.log))
			appendFile(t, filepath.Join(dir, ".mail.ids"), []byte(tc.sidecar))

			s = newSink(t, cfg, Options{Now: clk.now})
			write(t, s, evs("a", "b", "c"))
			if got := s.Skipped(); got != 1 {
				t.Errorf("skipped %d, want 1 (a)", got)
			}
			closeSink(t, s)
			if got := ids(t, filepath.Join(dir, "mail")); !slices.Equal(got, []string{"a", "b", "c"}) {
				t.Errorf("file holds %v", got)
			}
		})
	}
}

// TestTextAdoptsExistingLog starts a text tracer on a log that has lines
// but no sidecar (an existing Stalwart log): the lines are kept.
func TestTextAdoptsExistingLog(t *testing.T) {
	dir := t.TempDir()
	old := "2025-11-27T14:59:28Z INFO Authentication successful (auth.success) n = \"old\", accountId = 3\n"
	if err := os.WriteFile(filepath.Join(dir, "mail"), []byte(old), 0o640); err != nil {
		t.Fatal(err)
	}
	s := newSink(t, logCfg(dir, "text", "never"), Options{})
	write(t, s, evs("new"))
	closeSink(t, s)
	if got := ids(t, filepath.Join(dir, "mail")); !slices.Equal(got, []string{"old", "new"}) {
		t.Errorf("file holds %v", got)
	}
}

func appendFile(t *testing.T, path string, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestWriteErrorRetry makes a write fail after part of a batch reached the
// file: the error is retryable and the retry writes each event once.
func TestWriteErrorRetry(t *testing.T) {
	for _, format := range []string{"json", "text"} {
		t.Run(format, func(t *testing.T) {
			dir := t.TempDir()
			s := newSink(t, logCfg(dir, format, "never"), Options{})
			write(t, s, evs("a"))

			path := filepath.Join(dir, "mail")
			good := s.file.f
			appendFile(t, path, []byte("partial line of b\nand c"))
			ro, err := os.Open(path) // writes through it fail
			if err != nil {
				t.Fatal(err)
			}
			s.file.f = ro
			err = s.Write(context.Background(), evs("b", "c"))
			if err == nil || sink.IsPermanent(err) {
				t.Fatalf("write to a read-only file: err = %v, want a retryable error", err)
			}
			s.file.f = good
			ro.Close()

			write(t, s, evs("b", "c"))
			closeSink(t, s)
			if got := ids(t, path); !slices.Equal(got, []string{"a", "b", "c"}) {
				t.Errorf("file holds %v", got)
			}
		})
	}
}

func TestStdout(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"console defaults to text", Config{Type: "console"},
			"2025-11-27T14:59:28Z INFO Authentication successful (auth.success) n = \"a\", accountId = 3\n"},
		{"stdout defaults to text", Config{Type: "stdout"},
			"2025-11-27T14:59:28Z INFO Authentication successful (auth.success) n = \"a\", accountId = 3\n"},
		{"console ansi", Config{Type: "console", Ansi: true},
			"\x1b[37m2025-11-27T14:59:28Z\x1b[0m \x1b[32;1mINFO\x1b[0m \x1b[37;1mAuthentication successful\x1b[0m (auth.success) " +
				"\x1b[36mn\x1b[0m = \"a\", \x1b[36maccountId\x1b[0m = 3\n"},
		{"console multiline", Config{Type: "console", Multiline: true},
			"2025-11-27T14:59:28Z INFO Authentication successful (auth.success)\n\tn = \"a\"\n\taccountId = 3\n"},
		{"format json chooses", Config{Type: "stdout", Format: "json", Ansi: true},
			`{"id":"a","type":"auth.success","level":"info","time":"2025-11-27T14:59:28.123456789Z","source":"stalwart",` +
				`"message":"Authentication successful","data":{"n":"a","accountId":3}}` + "\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			s := newSink(t, &tc.cfg, Options{Stdout: &out})
			write(t, s, evs("a"))
			write(t, s, evs("a")) // skipped
			closeSink(t, s)
			if out.String() != tc.want {
				t.Errorf("got  %q\nwant %q", out.String(), tc.want)
			}
		})
	}
}

func TestNewErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		cfg  *Config
		opts Options
		want string
	}{
		{"nil config", nil, Options{}, "no configuration"},
		{"bad type", &Config{Type: "journal"}, Options{}, `unsupported type "journal"`},
		{"bad format", &Config{Type: "stdout", Format: "xml"}, Options{}, `unsupported format "xml"`},
		{"no path", &Config{Type: "log"}, Options{}, "path is required"},
		{"bad rotate", &Config{Type: "log", Path: dir, Rotate: "minutely"}, Options{}, `unsupported rotate "minutely"`},
		{"prefix with slash", &Config{Type: "log", Path: dir, Prefix: "../x"}, Options{}, "prefix"},
		{"instance dot-dot", &Config{Type: "log", Path: dir}, Options{Instance: ".."}, "instance name"},
		{"path is a file", &Config{Type: "log", Path: filepath.Join(dir, "f", "x")}, Options{}, "create log directory"},
	}
	if err := os.WriteFile(filepath.Join(dir, "f"), nil, 0o640); err != nil {
		t.Fatal(err)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := New("t", tc.cfg, tc.opts)
			if err == nil {
				s.Close(context.Background())
				t.Fatal("New succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "tracer t: ") {
				t.Errorf("error %q, want it to start with the tracer and contain %q", err, tc.want)
			}
		})
	}
}

func TestClose(t *testing.T) {
	tests := []struct {
		name string
		cfg  func(dir string) *Config
	}{
		{"log", func(dir string) *Config { return logCfg(dir, "text", "daily") }},
		{"stdout", func(string) *Config { return &Config{Type: "stdout"} }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			s, err := New("t", tc.cfg(t.TempDir()), Options{Stdout: &out})
			if err != nil {
				t.Fatal(err)
			}
			closeSink(t, s) // without a Write
			closeSink(t, s) // again
			if err := s.Write(context.Background(), evs("a")); !errors.Is(err, ErrClosed) {
				t.Errorf("Write after Close: %v, want ErrClosed", err)
			}
		})
	}
}

// TestCloseHonoursContext holds the sink's lock as a Write in flight would.
func TestCloseHonoursContext(t *testing.T) {
	s := newSink(t, &Config{Type: "stdout"}, Options{Stdout: &bytes.Buffer{}})
	s.sem <- struct{}{}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := s.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Close while a write holds the sink: %v, want deadline exceeded", err)
	}
	if err := s.Write(ctx, evs("a")); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Write while a write holds the sink: %v, want deadline exceeded", err)
	}
	<-s.sem
	closeSink(t, s)
}

// TestConcurrentCloseDuringWrite closes the sink while writers run: every
// Write either completes or reports ErrClosed, and the file holds only
// complete lines, each id once.
func TestConcurrentCloseDuringWrite(t *testing.T) {
	dir := t.TempDir()
	s := newSink(t, logCfg(dir, "json", "never"), Options{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	written := map[string]bool{}
	for w := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				batch := evs(fmt.Sprintf("w%d-%d", w, i), fmt.Sprintf("w%d-%d-x", w, i))
				err := s.Write(context.Background(), batch)
				if errors.Is(err, ErrClosed) {
					return
				}
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				written[batch[0].ID], written[batch[1].ID] = true, true
				mu.Unlock()
			}
		})
	}
	time.Sleep(20 * time.Millisecond)
	var cw sync.WaitGroup
	for range 3 {
		cw.Go(func() {
			if err := s.Close(context.Background()); err != nil {
				t.Error(err)
			}
		})
	}
	cw.Wait()
	wg.Wait()
	got := ids(t, filepath.Join(dir, "mail"))
	seen := map[string]bool{}
	for _, id := range got {
		if seen[id] {
			t.Errorf("id %s written twice", id)
		}
		seen[id] = true
	}
	if len(seen) != len(written) || len(written) == 0 {
		t.Errorf("file holds %d ids, writers had %d acknowledged", len(seen), len(written))
	}
}

func TestIDSetBounded(t *testing.T) {
	s := newIDSet(3)
	for _, id := range []string{"a", "b", "c", "b", "d"} {
		s.add(id)
	}
	tests := []struct {
		id   string
		want bool
	}{{"a", false}, {"b", true}, {"c", true}, {"d", true}}
	for _, tc := range tests {
		t.Run(tc.id, func(t *testing.T) {
			if got := s.has(tc.id); got != tc.want {
				t.Errorf("has(%q) = %v, want %v", tc.id, got, tc.want)
			}
		})
	}
	if s.len() != 3 {
		t.Errorf("len %d, want 3", s.len())
	}
}

// BenchmarkWriteLogJSON writes batches of 500 new events to a json log
// file, fsync included.
func BenchmarkWriteLogJSON(b *testing.B) {
	s, err := New("t", logCfg(b.TempDir(), "json", "never"), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close(context.Background())
	batch := make([]*schema.Event, 500)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		b.StopTimer() // building the events is not the sink's cost
		for j := range batch {
			batch[j] = ev(fmt.Sprintf("%d-%d", i, j))
		}
		b.StartTimer()
		if err := s.Write(context.Background(), batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*len(batch))/b.Elapsed().Seconds(), "events/s")
}

// TestZerologDisabled: when zerolog's global level suppresses output, a
// json Write fails instead of acknowledging events it did not write.
func TestZerologDisabled(t *testing.T) {
	prev := zerolog.GlobalLevel()
	zerolog.SetGlobalLevel(zerolog.Disabled)
	defer zerolog.SetGlobalLevel(prev)
	var out bytes.Buffer
	s := newSink(t, &Config{Type: "stdout", Format: "json"}, Options{Stdout: &out})
	if err := s.Write(context.Background(), evs("a")); !errors.Is(err, errZerologDisabled) {
		t.Errorf("Write: %v, want errZerologDisabled", err)
	}
	if out.Len() != 0 {
		t.Errorf("wrote %q", out.String())
	}
}
