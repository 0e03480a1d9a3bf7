package ingest_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/rs/zerolog"

	"github.com/mailtel/mailtel/pipeline/ingest"
	"github.com/mailtel/mailtel/pipeline/obs"
)

// FuzzIngestHTTP posts arbitrary bodies to both ingest endpoints of a
// handler backed by a real embedded JetStream server: every answer is
// 200, 400 or 413 with a JSON body, 4xx answers carry a reason, and a
// 200 accounts for every event of the request.
func FuzzIngestHTTP(f *testing.F) {
	for _, seed := range []string{
		`{"events":[{"id":"1","createdAt":"2025-11-27T14:59:28Z","type":"auth.success","data":{"remoteIp":"192.0.2.1","elapsed":12}}]}`,
		`{"events":[{"id":"2","createdAt":"2025-11-27T14:59:28Z","type":"x.y","data":{"causedBy":{"type":"a.b","data":{}}}},{"id":"","type":"?"}]}`,
		`{"events":[]}`,
		`{"event":"auth_request_finished","hostname":"vm","start_time":"2026-11-21T12:19:56.588053Z","end_time":"2026-11-21T12:19:56.588270Z","categories":["auth"],"fields":{"duration":155,"user":"alice"}}`,
		`{"event":"x","start_time":1763726396.588053,"end_time":1763726396.6,"fields":{"a":["b"]}}`,
		"\xff\xfe", `[[[[[[[[`, `{"events":{"id":1}}`, `null`,
	} {
		f.Add(seed, true)
		f.Add(seed, false)
	}
	env, _, pub := setup(f)
	cfg := pubConfig()
	h := ingest.NewHandler(pub, env.JS, cfg, zerolog.Nop(), obs.NewMetrics())
	f.Fuzz(func(t *testing.T, body string, stalwart bool) {
		path := ingest.PathDovecot
		if stalwart {
			path = ingest.PathStalwart
		}
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader([]byte(body)))
		req.Header.Set("Content-Type", "application/json")
		h.ServeHTTP(rec, req)
		var a struct {
			Accepted, Duplicates int
			Rejected             []struct{ Index int }
			Error                string
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &a); err != nil {
			t.Fatalf("status %d with a non-JSON answer %q", rec.Code, rec.Body)
		}
		switch rec.Code {
		case http.StatusOK:
			var n int
			if stalwart {
				// Keys match exactly (a map, not a struct field); a body
				// with two "events" is refused.
				var b map[string]json.RawMessage
				var events []json.RawMessage
				json.Unmarshal([]byte(body), &b)
				json.Unmarshal(b["events"], &events)
				n = len(events)
			} else {
				n = 1
			}
			if a.Accepted+len(a.Rejected) != n {
				t.Fatalf("200 accounts for %d+%d of %d events: %s", a.Accepted, len(a.Rejected), n, rec.Body)
			}
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
			if a.Error == "" {
				t.Fatalf("%d without a reason", rec.Code)
			}
		default:
			t.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
	})
}
