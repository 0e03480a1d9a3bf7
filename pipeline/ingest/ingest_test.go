package ingest_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/mailtel/mailtel/pipeline"
	"github.com/mailtel/mailtel/pipeline/config"
	"github.com/mailtel/mailtel/pipeline/ingest"
	"github.com/mailtel/mailtel/pipeline/obs"
	"github.com/mailtel/mailtel/pipeline/pipelinetest"
	"github.com/mailtel/mailtel/schema"
)

func setup(t testing.TB) (*pipelinetest.Env, *config.Config, *pipeline.Publisher) {
	t.Helper()
	env := pipelinetest.Start(t)
	cfg := config.Default()
	env.EnsureStreams(t, cfg)
	pub := pipeline.NewPublisher(env.JS, cfg.Levels, 64, nil)
	t.Cleanup(func() { pub.Close(context.Background()) })
	return env, cfg, pub
}

// stored returns the events in EVENTS, by id (Stalwart's own id for
// Stalwart events).
func stored(t *testing.T, js jetstream.JetStream, cfg *config.Config) map[string]*schema.Event {
	t.Helper()
	ctx := context.Background()
	s, err := js.Stream(ctx, cfg.Streams.Events)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*schema.Event{}
	for seq := uint64(1); seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		ev := new(schema.Event)
		if err := schema.Unmarshal(m.Data, ev); err != nil {
			t.Fatalf("seq %d: %v", seq, err)
		}
		if m.Subject != pipeline.EventsPrefix+ev.Type {
			t.Errorf("event %s stored on %s", ev.ID, m.Subject)
		}
		out[schema.StalwartNativeID(ev.ID)] = ev
	}
	return out
}

// pubConfig is the [publisher] section of the handler tests, without auth.
func pubConfig() config.Publisher { return config.Default().Publisher }

func dlqCount(t *testing.T, js jetstream.JetStream, cfg *config.Config) uint64 {
	t.Helper()
	s, err := js.Stream(context.Background(), cfg.Streams.DLQ)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

func TestFileMixedFormatsAndBadLines(t *testing.T) {
	env, cfg, pub := setup(t)
	f, err := os.Open("testdata/mixed.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var rejected []string
	counts, err := ingest.File(context.Background(), f, pub, env.JS, func(r ingest.Rejection) {
		rejected = append(rejected, fmt.Sprintf("%d: %v", r.Line, r.Err))
	})
	if err != nil {
		t.Fatal(err)
	}
	if counts != (ingest.Counts{Published: 4, Rejected: 2, DeadLettered: 2}) {
		t.Errorf("counts = %+v", counts)
	}
	if len(rejected) != 2 || !strings.HasPrefix(rejected[0], "4: ") || !strings.HasPrefix(rejected[1], "6: ") {
		t.Errorf("rejections = %q, want lines 4 and 6", rejected)
	}
	got := stored(t, env.JS, cfg)
	if len(got) != 4 {
		t.Fatalf("stored %d events", len(got))
	}
	if ev := got["17647154680"]; ev == nil || ev.Type != "auth.success" || ev.Level.String() != "info" {
		t.Errorf("stalwart event stored as %+v", ev)
	}
	var dovecot *schema.Event
	for _, ev := range got {
		if ev.Server == "dovecot" {
			dovecot = ev
		}
	}
	if dovecot == nil || dovecot.Type != "auth.request-finished" || dovecot.Host != "vm" {
		t.Errorf("dovecot event stored as %+v", dovecot)
	}
	if n := dlqCount(t, env.JS, cfg); n != 2 {
		t.Errorf("DLQ holds %d messages, want the 2 bad lines", n)
	}

	// Publishing the same file again stores nothing new.
	f.Seek(0, io.SeekStart)
	counts, err = ingest.File(context.Background(), f, pub, env.JS, nil)
	if err != nil || counts.Duplicate != 4 || counts.Published != 0 {
		t.Errorf("second run: %+v %v", counts, err)
	}
	if n := dlqCount(t, env.JS, cfg); n != 2 {
		t.Errorf("DLQ holds %d messages after a retry, want 2", n)
	}
}

func TestFileLongLine(t *testing.T) {
	env, _, pub := setup(t)
	in := strings.Repeat("x", ingest.MaxLine+10) + "\n" +
		`{"id":"1","createdAt":"2025-11-27T14:59:28Z","type":"auth.success","data":{}}` + "\n"
	var lines []int
	counts, err := ingest.File(context.Background(), strings.NewReader(in), pub, env.JS, func(r ingest.Rejection) { lines = append(lines, r.Line) })
	if err != nil || counts.Published != 1 || counts.Rejected != 1 || fmt.Sprint(lines) != "[1]" {
		t.Errorf("counts %+v err %v rejected lines %v", counts, err, lines)
	}
}

func TestDetect(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want ingest.Format
	}{
		{`{"id":"1","type":"auth.success","data":{"event":"x"}}`, ingest.Stalwart},
		{`{"event" : "imap_command_finished","fields":{}}`, ingest.Dovecot},
		{`{"fields":{"type":"x"},"event":"imap_command_finished"}`, ingest.Stalwart}, // ambiguous: parsed as Stalwart, fails clearly
		{`garbage`, ingest.Stalwart},
	} {
		if got := ingest.Detect([]byte(tc.in)); got != tc.want {
			t.Errorf("Detect(%s) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

func TestHTTP(t *testing.T) {
	env, cfg, pub := setup(t)
	pcfg := cfg.Publisher
	pcfg.Token = "t0ken"
	pcfg.SignatureKey = "k3y"
	pcfg.MaxBody = 4096
	srv := httptest.NewServer(ingest.NewHandler(pub, env.JS, pcfg, zerolog.Nop(), obs.NewMetrics()))
	defer srv.Close()

	sign := func(body string) string {
		mac := hmac.New(sha256.New, []byte("k3y"))
		mac.Write([]byte(body))
		return base64.StdEncoding.EncodeToString(mac.Sum(nil))
	}
	post := func(path, body string, hdr map[string]string) (int, map[string]any) {
		req, _ := http.NewRequest("POST", srv.URL+path, strings.NewReader(body))
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
			t.Fatalf("%s answered non-JSON: %v", path, err)
		}
		return resp.StatusCode, out
	}
	auth := func(body string) map[string]string {
		return map[string]string{"Authorization": "Bearer t0ken", "X-Signature": sign(body), "Content-Type": "application/json"}
	}
	batch := `{"events":[
	 {"id":"a1","createdAt":"2025-11-27T14:59:28Z","type":"auth.success","data":{"accountName":"a","remoteIp":"192.0.2.1"}},
	 {"id":"a2","createdAt":"2025-11-27T14:59:29Z","type":"not a type","data":{}},
	 {"id":"a3","createdAt":"2025-11-27T14:59:30Z","type":"auth.failed","data":{}}]}`
	dovecot := `{"event":"imap_command_finished","hostname":"imap1","start_time":"2026-11-21T12:19:56.588053Z","end_time":"2026-11-21T12:19:56.588270Z","categories":["imap"],"fields":{"name":"SELECT","tagged_reply_state":"OK","user":"alice"}}`

	for _, tc := range []struct {
		name, path, body string
		hdr              map[string]string
		status           int
		check            func(map[string]any) string
	}{
		{"no token", ingest.PathStalwart, batch, map[string]string{"X-Signature": sign(batch)}, 401, nil},
		{"bad signature", ingest.PathStalwart, batch, map[string]string{"Authorization": "Bearer t0ken", "X-Signature": sign("other"), "Content-Type": "application/json"}, 401, nil},
		{"partial batch", ingest.PathStalwart, batch, auth(batch), 200, func(a map[string]any) string {
			rej, _ := a["rejected"].([]any)
			if a["accepted"] != 2.0 || len(rej) != 1 || rej[0].(map[string]any)["index"] != 1.0 {
				return fmt.Sprint(a)
			}
			return ""
		}},
		{"retry is a duplicate", ingest.PathStalwart, batch, auth(batch), 200, func(a map[string]any) string {
			if a["duplicates"] != 2.0 {
				return fmt.Sprint(a)
			}
			return ""
		}},
		{"not json", ingest.PathStalwart, "{nope", auth("{nope"), 400, nil},
		{"no events", ingest.PathStalwart, `{"evts":[]}`, auth(`{"evts":[]}`), 400, nil},
		{"too large", ingest.PathStalwart, strings.Repeat(" ", 5000), auth(strings.Repeat(" ", 5000)), 413, nil},
		{"dovecot", ingest.PathDovecot, dovecot, auth(dovecot), 200, func(a map[string]any) string {
			if a["accepted"] != 1.0 {
				return fmt.Sprint(a)
			}
			return ""
		}},
		{"dovecot garbage", ingest.PathDovecot, `[1,2]`, auth(`[1,2]`), 400, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body := post(tc.path, tc.body, tc.hdr)
			if status != tc.status {
				t.Fatalf("status %d, want %d (%v)", status, tc.status, body)
			}
			if status >= 400 && body["error"] == "" {
				t.Errorf("error answer without a reason: %v", body)
			}
			if tc.check != nil {
				if msg := tc.check(body); msg != "" {
					t.Errorf("answer %s", msg)
				}
			}
		})
	}
	got := stored(t, env.JS, cfg)
	if len(got) != 3 || got["a1"] == nil || got["a3"] == nil {
		t.Errorf("stored %v", keys(got))
	}
	// The bad event of the batch and the bad Dovecot body are dead-lettered.
	if n := dlqCount(t, env.JS, cfg); n != 2 {
		t.Errorf("DLQ has %d messages, want 2", n)
	}
}

func keys(m map[string]*schema.Event) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
