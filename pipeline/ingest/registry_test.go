package ingest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mailtel/mailtel/pipeline"
	"github.com/mailtel/mailtel/pipeline/ingest"
	"github.com/mailtel/mailtel/pipeline/ingest/format"
	"github.com/mailtel/mailtel/pipeline/obs"
	"github.com/mailtel/mailtel/schema"
)

// fake is a format registered by this test binary only: a batch
// {"fakes":[{"fake":TYPE,"id":ID}, ...]} over HTTP, {"fake":TYPE,"id":ID}
// per line. It is what a new format package does, in a test.
var fake = format.Format{
	Name:   "fake",
	Doc:    "a format of the tests: {\"fakes\":[{\"fake\":TYPE,\"id\":ID}, ...]}",
	Detect: func(line []byte) bool { return format.HasKey(line, "fake") },
	Decode: func(data []byte, ev *schema.Event) error {
		var in struct{ Fake, ID string }
		if err := json.Unmarshal(data, &in); err != nil {
			return fmt.Errorf("decode fake event: %w", err)
		}
		if !schema.ValidType(in.Fake) || in.ID == "" {
			return fmt.Errorf("decode fake event: bad type %q or id %q", in.Fake, in.ID)
		}
		*ev = schema.Event{ID: in.ID, Type: in.Fake, Server: "fake", Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
		return nil
	},
	Split: format.SplitArray("fakes"),
}

func init() { format.Register(fake) }

func TestRegistryListsFormatsSorted(t *testing.T) {
	if got := format.Names(); !slices.Equal(got, []string{"dovecot", "fake", "stalwart"}) {
		t.Errorf("format.Names() = %q, want the built-in formats and the test's, sorted", got)
	}
	var names []string
	for _, f := range format.All() {
		names = append(names, f.Name)
	}
	if !slices.IsSorted(names) {
		t.Errorf("format.All() not sorted: %q", names)
	}
}

// TestFormatRegisteredInTest: a format registered by a package (here, the
// test) is served on /v1/ingest/<its name> with the answers of a batch,
// and detected per line by File, next to the built-in formats.
func TestFormatRegisteredInTest(t *testing.T) {
	env, cfg, pub := setup(t)
	srv := httptest.NewServer(ingest.NewHandler(pub, env.JS, pubConfig(), zerolog.Nop(), obs.NewMetrics()))
	defer srv.Close()

	status, a, _ := postJSON(t, srv.URL+ingest.PathPrefix+"fake", `{"fakes":[{"fake":"auth.success","id":"f1"},{"fake":"not a type","id":"f2"},{"fake":"auth.failed","id":"f3"}]}`)
	if status != http.StatusOK || a.Accepted != 2 || len(a.Rejected) != 1 || a.Rejected[0].Index != 1 || !strings.Contains(a.Rejected[0].Error, "bad type") {
		t.Fatalf("POST fake batch: %d %+v", status, a)
	}
	letters := deadLetters(t, env.JS, cfg)
	if len(letters) != 1 || !strings.HasPrefix(letters[0].Header.Get(pipeline.HeaderReason), "fake event 1: decode fake event: bad type") {
		t.Errorf("dead letters %+v", letters)
	}
	status, a, _ = postJSON(t, srv.URL+ingest.PathPrefix+"fake", `{"events":[]}`)
	if status != http.StatusBadRequest || a.Error != `body is not {"fakes":[...]}: no "fakes" array` {
		t.Errorf("POST fake non-batch: %d %+v", status, a)
	}

	lines := `{"fake":"auth.banned","id":"f4"}` + "\n" +
		`{"id":"s1","createdAt":"2025-11-27T14:59:28Z","type":"auth.success","data":{}}` + "\n" +
		`{"event":"imap_command_finished","hostname":"imap1","start_time":"2026-11-21T12:19:56.588053Z","end_time":"2026-11-21T12:19:56.588270Z","fields":{"name":"SELECT"}}` + "\n"
	if got := ingest.Detect([]byte(`{"fake":"auth.banned","id":"f4"}`)); got != "fake" {
		t.Errorf("Detect = %q, want fake", got)
	}
	counts, err := ingest.File(context.Background(), strings.NewReader(lines), pub, env.JS, func(r ingest.Rejection) { t.Errorf("line %d: %v", r.Line, r.Err) })
	if err != nil || counts != (ingest.Counts{Published: 3}) {
		t.Fatalf("File: %+v, %v", counts, err)
	}
	got := stored(t, env.JS, cfg)
	for id, server := range map[string]string{"f1": "fake", "f3": "fake", "f4": "fake", "s1": "stalwart"} {
		if ev := got[id]; ev == nil || ev.Server != server {
			t.Errorf("event %s stored as %+v, want from %s", id, ev, server)
		}
	}
	if len(got) != 5 {
		t.Errorf("stored %d events, want 5", len(got))
	}
}

func TestUnknownFormat(t *testing.T) {
	env, _, pub := setup(t)
	pcfg := pubConfig()
	pcfg.Token = "t0ken" // checked after the format: an unknown one is 404 all the same
	srv := httptest.NewServer(ingest.NewHandler(pub, env.JS, pcfg, zerolog.Nop(), obs.NewMetrics()))
	defer srv.Close()
	for _, name := range []string{"postfix", "Stalwart", "stalwart.json", strings.Repeat("x", 100)} {
		status, a, _ := postJSON(t, srv.URL+ingest.PathPrefix+name, `{"events":[]}`)
		if status != http.StatusNotFound || !strings.HasPrefix(a.Error, "unknown ingest format ") ||
			!strings.HasSuffix(a.Error, ": the formats are dovecot, fake, stalwart") || len(a.Error) > 150 {
			t.Errorf("POST %s: %d %+v", name, status, a)
		}
	}
	// The known ones still ask for the token.
	status, _, _ := postJSON(t, srv.URL+ingest.PathStalwart, `{"events":[]}`)
	if status != http.StatusUnauthorized {
		t.Errorf("POST %s without the token: %d", ingest.PathStalwart, status)
	}
}

// TestDecodeDetected: Decode decodes a line with the format that detects
// it, and says which.
func TestDecodeDetected(t *testing.T) {
	var ev schema.Event
	f, err := ingest.Decode([]byte(`{"fake":"auth.success"}`), &ev)
	if f != "fake" || err == nil || !strings.HasPrefix(err.Error(), "parse fake event: decode fake event: bad type") {
		t.Errorf("Decode = %q, %v; want the fake format's error", f, err)
	}
	f, err = ingest.Decode([]byte(`{"fake":"auth.success","id":"x"}`), &ev)
	if f != "fake" || err != nil || ev.Server != "fake" {
		t.Errorf("Decode = %q, %v, %+v", f, err, ev)
	}
}
