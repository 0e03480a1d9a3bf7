package ingest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/mailtel/mailtel/pipeline"
	"github.com/mailtel/mailtel/pipeline/config"
	"github.com/mailtel/mailtel/pipeline/ingest"
	"github.com/mailtel/mailtel/pipeline/obs"
	"github.com/mailtel/mailtel/pipeline/pipelinetest"
)

// stalwartEvent is one Stalwart webhook event with the given fields, each
// a string of size bytes.
func stalwartEvent(id string, fields, size int) string {
	return `{"id":"` + id + `","createdAt":"2025-11-27T14:59:28Z","type":"auth.failed","data":{"accountName":"mallory"` +
		stringFields(fields, size) + "}}"
}

// stringFields returns fields JSON members "fNN":"xxx...", each after a
// comma.
func stringFields(fields, size int) string {
	var b strings.Builder
	for i := 0; i < fields; i++ {
		fmt.Fprintf(&b, `,"f%02d":"%s"`, i, strings.Repeat("x", size))
	}
	return b.String()
}

func batchOf(events ...string) string { return `{"events":[` + strings.Join(events, ",") + `]}` }

// answer is what the ingest endpoints answer.
type answer struct {
	Accepted   int
	Duplicates int
	Rejected   []struct {
		Index int
		Error string
	}
	Failed []struct {
		Index int
		Error string
	}
	Error string
}

func postJSON(t *testing.T, url, body string) (int, answer, time.Duration) {
	t.Helper()
	began := time.Now()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var a answer
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil {
		t.Fatalf("answer is not JSON: %v", err)
	}
	return resp.StatusCode, a, time.Since(began)
}

// deadLetters returns the messages of the DLQ stream, oldest first.
func deadLetters(t *testing.T, js jetstream.JetStream, cfg *config.Config) []*jetstream.RawStreamMsg {
	t.Helper()
	ctx := context.Background()
	s, err := js.Stream(ctx, cfg.Streams.DLQ)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

// letterFor returns the dead letter whose reason contains s.
func letterFor(t *testing.T, letters []*jetstream.RawStreamMsg, s string) *jetstream.RawStreamMsg {
	t.Helper()
	for _, m := range letters {
		if strings.Contains(m.Header.Get(pipeline.HeaderReason), s) {
			return m
		}
	}
	t.Fatalf("no dead letter with %q in its reason among %d", s, len(letters))
	return nil
}

var sizeReason = regexp.MustCompile(`event encodes to (\d+) bytes, more than the limit of (\d+) bytes \(the NATS server's max payload of (\d+) bytes`)

// TestHTTPEventSizes posts events over the server's max payload and over
// the string limit between good ones: the good ones are stored and
// counted, the others rejected with the reason and dead-lettered (cut to
// fit, and saying so), and a retry stores nothing twice.
func TestHTTPEventSizes(t *testing.T) {
	env, cfg, pub := setup(t)
	srv := httptest.NewServer(ingest.NewHandler(pub, env.JS, pubConfig(), zerolog.Nop(), obs.NewMetrics()))
	defer srv.Close()
	maxPayload := env.Conn.MaxPayload()
	limit := pipeline.MaxEventSize(maxPayload)
	if maxPayload != 1<<20 {
		t.Fatalf("test server max payload %d, want the default 1 MiB", maxPayload)
	}
	big := stalwartEvent("big1", 20, 60_000)        // 1.2 MB encoded, each field within max-string
	longString := stalwartEvent("long1", 1, 70_000) // over the default max-string of 64 KiB
	bigDovecot := `{"event":"imap_command_finished","hostname":"imap1","start_time":"2026-11-21T12:19:56.588053Z",` +
		`"end_time":"2026-11-21T12:19:56.588270Z","fields":{"user":"alice"` + stringFields(20, 60_000) + `}}`
	goodBatch := batchOf(stalwartEvent("good1", 1, 10), big, stalwartEvent("good2", 1, 10))

	for _, tc := range []struct {
		name, path, body string
		status           int
		accepted, dups   int
		rejected         []int  // indexes
		reason           string // in the rejection and the dead letter
		letterReason     string // finds the dead letter
		letterOf         string // the input the dead letter holds
		truncated        bool
		stored           []string // in EVENTS afterwards
		dlq              int      // dead letters afterwards
	}{
		{name: "too large for the server", path: ingest.PathStalwart, body: goodBatch, status: 200, accepted: 2, rejected: []int{1},
			reason: "event encodes to", letterReason: "stalwart event 1: event encodes to", letterOf: big, truncated: true,
			stored: []string{"good1", "good2"}, dlq: 1},
		{name: "retry stores nothing twice", path: ingest.PathStalwart, body: goodBatch, status: 200, accepted: 2, dups: 2, rejected: []int{1},
			reason: "event encodes to", letterReason: "stalwart event 1: event encodes to", letterOf: big, truncated: true,
			stored: []string{"good1", "good2"}, dlq: 1},
		{name: "over max-string", path: ingest.PathStalwart, body: batchOf(stalwartEvent("good3", 1, 10), longString), status: 200,
			accepted: 1, rejected: []int{1}, reason: "value of 70000 bytes, more than the limit of 65536",
			letterReason: "stalwart event 1: field", letterOf: longString, stored: []string{"good1", "good2", "good3"}, dlq: 2},
		{name: "dovecot too large", path: ingest.PathDovecot, body: bigDovecot, status: 400,
			letterReason: "dovecot event: event encodes to", letterOf: bigDovecot, truncated: true,
			stored: []string{"good1", "good2", "good3"}, dlq: 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, a, _ := postJSON(t, srv.URL+tc.path, tc.body)
			if status != tc.status {
				t.Fatalf("status %d, want %d: %+v", status, tc.status, a)
			}
			if status == 200 && (a.Accepted != tc.accepted || a.Duplicates != tc.dups || len(a.Failed) != 0 || a.Error != "") {
				t.Errorf("answer %+v, want accepted %d, duplicates %d", a, tc.accepted, tc.dups)
			}
			if status == 400 && !sizeReason.MatchString(a.Error) {
				t.Errorf("400 answer %q does not name the size and the limit", a.Error)
			}
			var idx []int
			for _, r := range a.Rejected {
				idx = append(idx, r.Index)
				if !strings.Contains(r.Error, tc.reason) {
					t.Errorf("rejection %q, want %q", r.Error, tc.reason)
				}
				if m := sizeReason.FindStringSubmatch(r.Error); m != nil {
					size, _ := strconv.Atoi(m[1])
					if m[2] != strconv.FormatInt(limit, 10) || m[3] != "1048576" || size <= 1_200_000 {
						t.Errorf("rejection %q: want a size over 1.2 MB, the limit %d and the max payload 1048576", r.Error, limit)
					}
				}
			}
			if fmt.Sprint(idx) != fmt.Sprint(tc.rejected) {
				t.Errorf("rejected %v, want %v", idx, tc.rejected)
			}
			got := stored(t, env.JS, cfg)
			if len(got) != len(tc.stored) {
				t.Errorf("EVENTS holds %v, want %v", keys(got), tc.stored)
			}
			for _, id := range tc.stored {
				if got[id] == nil {
					t.Errorf("%s not in EVENTS (%v)", id, keys(got))
				}
			}
			letters := deadLetters(t, env.JS, cfg)
			if len(letters) != tc.dlq {
				t.Errorf("DLQ holds %d letters, want %d", len(letters), tc.dlq)
			}
			m := letterFor(t, letters, tc.letterReason)
			if m.Subject != "dlq.ingest.unknown" {
				t.Errorf("dead letter on %s", m.Subject)
			}
			if !strings.HasPrefix(tc.letterOf, string(m.Data)) || len(m.Data) == 0 {
				t.Errorf("dead letter holds %d bytes that are not the start of the input", len(m.Data))
			}
			truncated := m.Header.Get(pipeline.HeaderTruncated) == "true"
			if truncated != tc.truncated || (truncated && m.Header.Get(pipeline.HeaderOriginalSize) != strconv.Itoa(len(tc.letterOf))) ||
				(!truncated && len(m.Data) != len(tc.letterOf)) {
				t.Errorf("dead letter of %d bytes, headers %v; want truncated %v of the %d bytes input", len(m.Data), m.Header, tc.truncated, len(tc.letterOf))
			}
			if truncated {
				if size := len(m.Data) + len(m.Header.Get(pipeline.HeaderReason)); int64(size) > maxPayload || len(m.Data) < int(maxPayload)-4096 {
					t.Errorf("truncated dead letter keeps %d bytes of a %d max payload", len(m.Data), maxPayload)
				}
				if !sizeReason.MatchString(m.Header.Get(pipeline.HeaderReason)) {
					t.Errorf("dead letter reason %q does not name the size and the limit", m.Header.Get(pipeline.HeaderReason))
				}
			}
		})
	}
}

// closeSoon closes pub when the test ends, waiting at most a second: with
// the NATS server gone, a publish in flight is retried for a while.
func closeSoon(t *testing.T, pub *pipeline.Publisher) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		pub.Close(ctx)
	})
}

// TestHTTPNATSDown shuts the NATS server down mid-test: every request that
// needs to store something is answered 503 at once, never 200, with
// counts of what was stored (nothing).
func TestHTTPNATSDown(t *testing.T) {
	env := pipelinetest.Start(t)
	env.EnsureStreams(t, config.Default())
	pub := pipeline.NewPublisher(env.JS, config.Default().Levels, 64, nil)
	closeSoon(t, pub)
	h := ingest.NewHandler(pub, env.JS, pubConfig(), zerolog.Nop(), obs.NewMetrics())
	srv := httptest.NewServer(h)
	defer srv.Close()
	good := stalwartEvent("up1", 1, 10)
	bad := `{"id":"x","createdAt":"yesterday","type":"auth.failed","data":{}}`
	if status, a, _ := postJSON(t, srv.URL+ingest.PathStalwart, batchOf(good, bad)); status != 200 || a.Accepted != 1 || len(a.Rejected) != 1 {
		t.Fatalf("with NATS up: %d %+v", status, a)
	}

	t.Run("client gone", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		rec := httptest.NewRecorder()
		body := batchOf(stalwartEvent("gone1", 1, 10), `{"id":"gone2","type":"nope"}`)
		req := httptest.NewRequestWithContext(ctx, http.MethodPost, ingest.PathStalwart, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		h.ServeHTTP(rec, req)
		var a answer
		json.Unmarshal(rec.Body.Bytes(), &a)
		if rec.Code != 503 || a.Accepted != 0 || len(a.Failed) != 2 || !strings.Contains(a.Error, "context canceled") {
			t.Errorf("%d %+v, want 503 with both events failed", rec.Code, a)
		}
	})

	env.Server.Close()
	for deadline := time.Now().Add(5 * time.Second); env.Conn.Status() == nats.CONNECTED; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the client did not notice the server is gone")
		}
	}
	down := []string{bad, `{"id":"y","type":"nope"}`, `{"id":"z"}`}
	for _, tc := range []struct {
		name, path, body string
		failed           int
	}{
		{"bad and good", ingest.PathStalwart, batchOf(append(down, stalwartEvent("down1", 1, 10))...), 4},
		{"all bad", ingest.PathStalwart, batchOf(down...), 3},
		{"good only", ingest.PathStalwart, batchOf(stalwartEvent("down2", 1, 10)), 1},
		{"dovecot garbage", ingest.PathDovecot, `[1,2]`, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, a, took := postJSON(t, srv.URL+tc.path, tc.body)
			if status != http.StatusServiceUnavailable {
				t.Errorf("status %d, want 503: %+v", status, a)
			}
			if took > 2*time.Second {
				t.Errorf("answered after %v, want at once", took)
			}
			if a.Accepted != 0 || len(a.Failed) != tc.failed || !strings.Contains(a.Error, "not connected to NATS") {
				t.Errorf("answer %+v, want nothing accepted, %d failed, not connected", a, tc.failed)
			}
		})
	}
}

// TestHTTPNATSLostMidRequest shuts the NATS server down while a request
// waits for JetStream (whose EVENTS stream is missing, so the publish is
// being retried): the request is answered 503 at once.
func TestHTTPNATSLostMidRequest(t *testing.T) {
	env := pipelinetest.Start(t)
	pub := pipeline.NewPublisher(env.JS, config.Default().Levels, 64, nil)
	closeSoon(t, pub)
	srv := httptest.NewServer(ingest.NewHandler(pub, env.JS, pubConfig(), zerolog.Nop(), obs.NewMetrics()))
	defer srv.Close()
	type result struct {
		status int
		a      answer
	}
	done := make(chan result, 1)
	go func() {
		status, a, _ := postJSON(t, srv.URL+ingest.PathStalwart, batchOf(stalwartEvent("mid1", 1, 10)))
		done <- result{status, a}
	}()
	select {
	case r := <-done:
		t.Fatalf("answered %d %+v before the server went away", r.status, r.a)
	case <-time.After(500 * time.Millisecond):
	}
	env.Server.Close()
	select {
	case r := <-done:
		if r.status != http.StatusServiceUnavailable || r.a.Accepted != 0 || len(r.a.Failed) != 1 || !strings.Contains(r.a.Error, "not connected to NATS") {
			t.Errorf("answer %d %+v, want 503, nothing accepted, not connected", r.status, r.a)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("no answer within 2s of the server going away")
	}
}

// TestFileSizes publishes a file with an event too large for the server
// between two good ones.
func TestFileSizes(t *testing.T) {
	env, cfg, pub := setup(t)
	big := stalwartEvent("big1", 20, 60_000)
	in := stalwartEvent("f1", 1, 10) + "\n" + big + "\n" + stalwartEvent("f2", 1, 10) + "\n"
	var rejected []string
	counts, err := ingest.File(context.Background(), strings.NewReader(in), pub, env.JS, func(r ingest.Rejection) {
		rejected = append(rejected, fmt.Sprintf("%d: %v", r.Line, r.Err))
	})
	if err != nil || counts != (ingest.Counts{Published: 2, Rejected: 1, DeadLettered: 1}) {
		t.Errorf("counts %+v, err %v", counts, err)
	}
	if len(rejected) != 1 || !strings.HasPrefix(rejected[0], "2: stalwart event big1~") || !sizeReason.MatchString(rejected[0]) {
		t.Errorf("rejections %.300q", rejected)
	}
	if got := stored(t, env.JS, cfg); len(got) != 2 || got["f1"] == nil || got["f2"] == nil {
		t.Errorf("EVENTS holds %v", keys(got))
	}
	letters := deadLetters(t, env.JS, cfg)
	if len(letters) != 1 || letters[0].Header.Get(pipeline.HeaderTruncated) != "true" ||
		letters[0].Header.Get(pipeline.HeaderOriginalSize) != strconv.Itoa(len(big)) || !bytes.HasPrefix([]byte(big), letters[0].Data) {
		t.Errorf("DLQ holds %d letters, want the big line truncated", len(letters))
	}
}

// TestFileLettersNotStored runs File with NATS down: the counts say that
// the rejected lines are not in the DLQ, and each is reported.
func TestFileLettersNotStored(t *testing.T) {
	env, _, pub := setup(t)
	env.Server.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	var reports []string
	counts, err := ingest.File(ctx, strings.NewReader("not json\n{\"id\":\"1\"}\n"), pub, env.JS, func(r ingest.Rejection) {
		reports = append(reports, fmt.Sprintf("%d: %v", r.Line, r.Err))
	})
	if err != nil || counts != (ingest.Counts{Rejected: 2}) {
		t.Errorf("counts %+v, err %v; want 2 rejected, none dead-lettered", counts, err)
	}
	var letterFailures int
	for _, r := range reports {
		if strings.Contains(r, "dead-letter") {
			letterFailures++
		}
	}
	if len(reports) != 4 || letterFailures != 2 {
		t.Errorf("reports %q, want each line rejected and its dead letter failed", reports)
	}
}
