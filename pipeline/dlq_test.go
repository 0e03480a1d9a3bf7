package pipeline_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mailtel/mailtel/pipeline"
	"github.com/mailtel/mailtel/pipeline/config"
	"github.com/mailtel/mailtel/pipeline/pipelinetest"
)

// wireSize is the size the server counts against its max payload: the
// payload and the header block as nats.go writes it.
func wireSize(m *nats.Msg) int {
	n := len(m.Data)
	if len(m.Header) > 0 {
		n += len("NATS/1.0\r\n\r\n")
		for k, vs := range m.Header {
			for _, v := range vs {
				n += len(k) + len(": ") + len(strings.TrimSpace(v)) + len("\r\n")
			}
		}
	}
	return n
}

func TestLetterMsg(t *testing.T) {
	const maxPayload = 1 << 20
	big := bytes.Repeat([]byte("0123456789"), 300_000) // 3 MB
	longReason := errors.New(strings.Repeat("x", 100_000))
	for _, tc := range []struct {
		name       string
		l          pipeline.Letter
		maxPayload int64
		truncated  bool
		reasonCut  bool
		dropped    bool // the source's headers were dropped
	}{
		{"fits", pipeline.Letter{Stage: "ingest", Data: big[:1000], Reason: errors.New("bad")}, maxPayload, false, false, false},
		{"no bound", pipeline.Letter{Stage: "ingest", Data: big, Reason: errors.New("bad")}, 0, false, false, false},
		{"payload cut", pipeline.Letter{Stage: "ingest", Data: big, Reason: errors.New("bad")}, maxPayload, true, false, false},
		{"payload just over", pipeline.Letter{Stage: "ingest", Data: big[:maxPayload], Reason: errors.New("bad")}, maxPayload, true, false, false},
		{"long reason", pipeline.Letter{Stage: "ingest", Data: big[:1000], Reason: longReason}, maxPayload, false, true, false},
		{"long reason and payload", pipeline.Letter{Stage: "sink.siem", EventID: "auth.failed", Data: big, Reason: longReason,
			SourceSubject: "routed.siem.auth.failed", SourceSeq: 7, Deliveries: 3}, maxPayload, true, true, false},
		{"multibyte reason", pipeline.Letter{Stage: "ingest", Data: big[:10], Reason: errors.New(strings.Repeat("é", 5000))}, maxPayload, false, true, false},
		{"huge source headers", pipeline.Letter{Stage: "router", Data: big[:500_000], Reason: errors.New("bad"),
			Header: nats.Header{"X-Huge": []string{string(big[:maxPayload])}, jetstream.MsgIDHeader: []string{"src"}}}, maxPayload, false, false, true},
		{"huge source headers and payload", pipeline.Letter{Stage: "router", Data: big, Reason: errors.New("bad"),
			Header: nats.Header{"X-Huge": []string{string(big[:maxPayload])}, pipeline.HeaderReason: []string{"spoofed"}}}, maxPayload, true, false, true},
		{"source headers kept", pipeline.Letter{Stage: "router", Data: big, Reason: errors.New("bad"),
			Header: nats.Header{"X-Huge": []string{"small"}, jetstream.MsgIDHeader: []string{"src"}}}, maxPayload, true, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := pipeline.LetterMsg(tc.l, tc.maxPayload)
			if tc.maxPayload > 0 && wireSize(m) > int(tc.maxPayload) {
				t.Errorf("letter of %d bytes on the wire, more than the max payload of %d", wireSize(m), tc.maxPayload)
			}
			if !bytes.HasPrefix(tc.l.Data, m.Data) {
				t.Errorf("payload is not a prefix of the original")
			}
			if got := m.Header.Get(pipeline.HeaderTruncated) == "true"; got != tc.truncated {
				t.Errorf("truncated = %v, want %v (headers %v)", got, tc.truncated, m.Header)
			}
			if tc.truncated {
				if got := m.Header.Get(pipeline.HeaderOriginalSize); got != strconv.Itoa(len(tc.l.Data)) {
					t.Errorf("original size %q, want %d", got, len(tc.l.Data))
				}
				if wireSize(m) != int(tc.maxPayload) && len(m.Data) > 0 {
					t.Errorf("truncated letter uses %d of %d bytes: cut more than needed", wireSize(m), tc.maxPayload)
				}
			} else if len(m.Data) != len(tc.l.Data) {
				t.Errorf("payload of %d bytes, want all %d", len(m.Data), len(tc.l.Data))
			}
			reason := m.Header.Get(pipeline.HeaderReason)
			if len(reason) > pipeline.MaxReasonLen || !utf8.ValidString(reason) {
				t.Errorf("reason of %d bytes (valid UTF-8 %v), want at most %d", len(reason), utf8.ValidString(reason), pipeline.MaxReasonLen)
			}
			if full := tc.l.Reason.Error(); tc.reasonCut {
				if !strings.HasSuffix(reason, fmt.Sprintf("[reason truncated, %d bytes]", len(full))) || !strings.HasPrefix(full, strings.TrimSuffix(reason[:100], " ")) {
					t.Errorf("cut reason %q... does not say it was cut", reason[:min(len(reason), 80)])
				}
			} else if reason != full {
				t.Errorf("reason %q, want %q", reason, full)
			}
			if tc.l.Header != nil {
				dropped := m.Header.Get(pipeline.HeaderHeadersDropped) == "true"
				if gone := m.Header.Get("X-Huge") == ""; gone != tc.dropped || dropped != tc.dropped {
					t.Errorf("source header gone = %v, Mailtel-Headers-Dropped = %v; want %v", gone, dropped, tc.dropped)
				}
			}
			if m.Header.Get(jetstream.MsgIDHeader) == "src" {
				t.Error("the source's Nats-Msg-Id was kept")
			}
		})
	}
}

// TestPublishLetterDropsServerDirectives: the source's Nats-* headers (a
// re-driven event carries Nats-Expected-Stream, an event of a server
// fan-out Nats-Stream-Source) are not copied onto its dead letter, which
// the server would refuse; its other headers are.
func TestPublishLetterDropsServerDirectives(t *testing.T) {
	env := pipelinetest.Start(t)
	cfg := config.Default()
	env.EnsureStreams(t, cfg)
	ctx := context.Background()
	src := nats.Header{
		"Nats-Expected-Stream":        {"ROUTED_siem"},
		"Nats-Expected-Last-Sequence": {"1"},
		"Nats-Rollup":                 {"sub"},
		"Nats-TTL":                    {"1s"},
		"nats-expected-last-msg-id":   {"x"},
		"Nats-Stream-Source":          {"EVENTS 7"},
		"Mailtel-Redriven-From":       {"DLQ:3"},
	}
	l := pipeline.Letter{Stage: "sink.siem", EventID: "auth.failed", Data: []byte("payload"), Header: src, Reason: errors.New("answered 400"),
		SourceSubject: "routed.siem.auth.failed", SourceSeq: 9}
	if err := pipeline.PublishLetter(ctx, env.JS, l); err != nil {
		t.Fatalf("PublishLetter: %v", err)
	}
	s, err := env.JS.Stream(ctx, cfg.Streams.DLQ)
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.GetLastMsgForSubject(ctx, l.Subject())
	if err != nil {
		t.Fatal(err)
	}
	for k := range src {
		kept := m.Header.Get(k) != ""
		if want := !strings.HasPrefix(strings.ToLower(k), "nats-"); kept != want {
			t.Errorf("header %s kept = %v, want %v (headers %v)", k, kept, want, m.Header)
		}
	}
}

// TestPublishLetterFitsServer stores letters of every size around the
// server's max payload, and one far over it with a long reason: each is
// stored (never "maximum payload exceeded"), cut to fit, and says so.
func TestPublishLetterFitsServer(t *testing.T) {
	env := pipelinetest.Start(t)
	cfg := config.Default()
	env.EnsureStreams(t, cfg)
	ctx := context.Background()
	mp := int(env.Conn.MaxPayload())
	data := bytes.Repeat([]byte{0xc1}, 3*mp)
	s, err := env.JS.Stream(ctx, cfg.Streams.DLQ)
	if err != nil {
		t.Fatal(err)
	}
	check := func(t *testing.T, n int, reason error) *jetstream.RawStreamMsg {
		t.Helper()
		id := "test." + strconv.Itoa(n) + "." + strconv.Itoa(len(reason.Error()))
		l := pipeline.Letter{Stage: "ingest", Data: data[:n], Reason: reason, MsgID: id}
		if err := pipeline.PublishLetter(ctx, env.JS, l); err != nil {
			t.Fatalf("letter of %d bytes: %v", n, err)
		}
		m, err := s.GetLastMsgForSubject(ctx, l.Subject())
		if err != nil {
			t.Fatal(err)
		}
		if m.Header.Get(jetstream.MsgIDHeader) != id {
			t.Fatalf("last letter is %q, want %q", m.Header.Get(jetstream.MsgIDHeader), id)
		}
		truncated := m.Header.Get(pipeline.HeaderTruncated) == "true"
		if truncated != (len(m.Data) < n) || !bytes.Equal(m.Data, data[:len(m.Data)]) {
			t.Fatalf("letter of %d bytes stored with %d (truncated header %v)", n, len(m.Data), truncated)
		}
		if truncated && m.Header.Get(pipeline.HeaderOriginalSize) != strconv.Itoa(n) {
			t.Fatalf("original size %q, want %d", m.Header.Get(pipeline.HeaderOriginalSize), n)
		}
		return m
	}
	t.Run("around the max payload", func(t *testing.T) {
		// The headers of such a letter take about h bytes (the time in
		// Mailtel-Failed-At varies in length by a few).
		h := wireSize(pipeline.LetterMsg(pipeline.Letter{Stage: "ingest", Reason: errors.New("bad input"), MsgID: "test.1048000.9"}, 0))
		for _, n := range []int{mp - h - 8, mp - h - 3, mp - h - 2, mp - h - 1, mp - h, mp - h + 1, mp - h + 2, mp - h + 60, mp} {
			m := check(t, n, errors.New("bad input"))
			if cut := len(m.Data) < n; cut != (n > mp-h+3) && (n < mp-h-5 || n > mp-h+5) {
				t.Errorf("letter of %d bytes (max payload %d, headers about %d): cut = %v", n, mp, h, cut)
			}
		}
	})
	t.Run("far over, long reason", func(t *testing.T) {
		m := check(t, 3*mp, errors.New(strings.Repeat("reason ", 100_000)))
		if r := m.Header.Get(pipeline.HeaderReason); len(r) > pipeline.MaxReasonLen || !strings.Contains(r, "[reason truncated, 700000 bytes]") {
			t.Errorf("reason of %d bytes: %q", len(r), r[max(0, len(r)-60):])
		}
		if len(m.Data) < mp-4096 {
			t.Errorf("kept %d bytes of a %d max payload: cut more than needed", len(m.Data), mp)
		}
	})
}
