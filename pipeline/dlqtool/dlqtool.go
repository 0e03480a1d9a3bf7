// Package dlqtool lists, shows and re-drives the dead letters of the DLQ
// stream.
//
// A dead letter is a message some stage gave up on, stored on
// dlq.<stage>.<category>.<event> with the reason and the source in
// headers (see pipeline.Letter). Stages are "ingest" (input that could not
// be parsed), "router" (a payload that is not an event, or whose type does
// not match its subject) and "sink.<name>" (events a sink could not
// write). Only sink dead letters can be re-driven: they hold events that
// were routed and decoded once, and re-driving puts them back on the
// sink's routed.<name>.<category>.<event> subjects. Ingest and router dead
// letters hold bytes that are not an event; the fix is at the sender, who
// publishes again.
//
// List and Show only read the stream. Redrive publishes to the ROUTED
// stream and deletes what it re-drove from the DLQ stream.
package dlqtool

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mailtel/mailtel/pipeline"
	"github.com/mailtel/mailtel/schema"
)

// Filter selects dead letters. The zero Filter selects all of them.
type Filter struct {
	// Sink selects the dead letters of the sink with this name
	// (dlq.sink.<Sink>.>).
	Sink string
	// Stage selects the dead letters of a stage: "ingest", "router",
	// "sink" (every sink) or "sink.<name>" (dlq.<Stage>.>). Sink and Stage
	// are exclusive.
	Stage string
	// Max bounds how many dead letters are returned (0: no bound), oldest
	// first.
	Max int
}

// Subject returns the DLQ subject filter of f, or an error saying what is
// wrong with it.
func (f Filter) Subject() (string, error) {
	switch {
	case f.Sink != "" && f.Stage != "":
		return "", errors.New("give a sink or a stage, not both")
	case f.Max < 0:
		return "", fmt.Errorf("max %d: must not be negative", f.Max)
	case f.Sink != "":
		if !token(f.Sink) {
			return "", fmt.Errorf("sink %q: not a sink name (one subject token: no dots, spaces or wildcards)", f.Sink)
		}
		return pipeline.DLQPrefix + "sink." + f.Sink + ".>", nil
	case f.Stage != "":
		for _, t := range strings.Split(f.Stage, ".") {
			if !token(t) {
				return "", fmt.Errorf("stage %q: want ingest, router, sink or sink.<name>", f.Stage)
			}
		}
		return pipeline.DLQPrefix + f.Stage + ".>", nil
	}
	return pipeline.DLQPrefix + ">", nil
}

// token reports whether s can be one token of a subject.
func token(s string) bool {
	return s != "" && !strings.ContainsAny(s, ".*> \t\r\n")
}

// Letter is one dead letter as List describes it.
type Letter struct {
	// Seq is the dead letter's sequence in the DLQ stream: Show and
	// the redrive output refer to it.
	Seq     uint64 `json:"seq"`
	Subject string `json:"subject"`
	// Stage is who gave up: "ingest", "router", "sink.<name>".
	Stage string `json:"stage"`
	// EventID and Type come from the payload when it is an event; Type
	// falls back to the subject's, and EventID is empty.
	EventID string `json:"event_id,omitempty"`
	Type    string `json:"type,omitempty"`
	Reason  string `json:"reason"`
	// FailedAt is when the stage gave up.
	FailedAt time.Time `json:"failed_at"`
	// SourceSubject and SourceSeq locate the message that failed (empty
	// and 0 for ingest dead letters, which had no source message).
	SourceSubject string `json:"source_subject,omitempty"`
	SourceSeq     uint64 `json:"source_seq,omitempty"`
	Deliveries    uint64 `json:"deliveries,omitempty"`
	// DecodeError says why the payload is not an event ("" when it is).
	DecodeError string `json:"decode_error,omitempty"`
	// Truncated is set when the payload was cut to fit the server's max
	// payload (Mailtel-Truncated); OriginalSize is its size before. A
	// truncated payload is never an event, even when its start reads as
	// one.
	Truncated    bool  `json:"truncated,omitempty"`
	OriginalSize int64 `json:"original_size,omitempty"`
}

// letterOf describes a stored dead letter.
func letterOf(m *jetstream.RawStreamMsg) Letter {
	l := Letter{Seq: m.Sequence, Subject: m.Subject, Stage: m.Header.Get(pipeline.HeaderStage),
		Reason: m.Header.Get(pipeline.HeaderReason), SourceSubject: m.Header.Get(pipeline.HeaderSourceSubject)}
	l.FailedAt, _ = time.Parse(time.RFC3339Nano, m.Header.Get(pipeline.HeaderFailedAt))
	l.SourceSeq, _ = strconv.ParseUint(m.Header.Get(pipeline.HeaderSourceSeq), 10, 64)
	l.Deliveries, _ = strconv.ParseUint(m.Header.Get(pipeline.HeaderDeliveries), 10, 64)
	if id, typ, _, err := schema.Peek(m.Data); err != nil {
		l.DecodeError = err.Error()
		l.Type = pipeline.SubjectEventID(m.Subject)
	} else {
		l.EventID, l.Type = strings.Clone(id), strings.Clone(typ)
	}
	if m.Header.Get(pipeline.HeaderTruncated) == "true" {
		l.Truncated = true
		l.OriginalSize, _ = strconv.ParseInt(m.Header.Get(pipeline.HeaderOriginalSize), 10, 64)
		l.DecodeError = fmt.Sprintf("the payload was truncated to %d of its %d bytes to fit the server's max payload", len(m.Data), l.OriginalSize)
	}
	return l
}

// scan calls fn with every message of stream on subject, oldest first, up
// to the stream's last sequence when the scan started (dead letters stored
// meanwhile are left for the next run). fn returns false to stop.
func scan(ctx context.Context, js jetstream.JetStream, stream, subject string, fn func(*jetstream.RawStreamMsg) (bool, error)) error {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return fmt.Errorf("open stream %s: %w", stream, err)
	}
	last := s.CachedInfo().State.LastSeq
	for seq := uint64(1); seq <= last; {
		m, err := s.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(subject))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read %s from %s sequence %d: %w", subject, stream, seq, err)
		}
		if m.Sequence > last {
			return nil
		}
		more, err := fn(m)
		if err != nil || !more {
			return err
		}
		seq = m.Sequence + 1
	}
	return nil
}

// List returns the dead letters of the DLQ stream that f selects, oldest
// first. It only reads the stream.
func List(ctx context.Context, js jetstream.JetStream, dlqStream string, f Filter) ([]Letter, error) {
	subject, err := f.Subject()
	if err != nil {
		return nil, fmt.Errorf("list dead letters: %w", err)
	}
	var out []Letter
	err = scan(ctx, js, dlqStream, subject, func(m *jetstream.RawStreamMsg) (bool, error) {
		out = append(out, letterOf(m))
		return f.Max == 0 || len(out) < f.Max, nil
	})
	if err != nil {
		return out, fmt.Errorf("list dead letters: %w", err)
	}
	return out, nil
}

// Detail is one dead letter with its headers and payload, as Show returns
// it.
type Detail struct {
	Letter
	// Stored is when the DLQ stream stored the dead letter.
	Stored time.Time `json:"stored"`
	// Header holds every header of the dead letter.
	Header nats.Header `json:"header"`
	// Event is the payload decoded, as JSON (see EventJSON); nil when the
	// payload is not an event (see DecodeError).
	Event json.RawMessage `json:"event,omitempty"`
	// Payload is the raw payload when it is not an event (JSON encodes it
	// in base64).
	Payload []byte `json:"payload,omitempty"`
}

// ErrNotFound is returned (wrapped) by Show for a sequence that holds no
// dead letter (never stored, deleted, or re-driven).
var ErrNotFound = errors.New("no dead letter with this sequence")

// Show returns the dead letter stored at seq in the DLQ stream.
func Show(ctx context.Context, js jetstream.JetStream, dlqStream string, seq uint64) (*Detail, error) {
	s, err := js.Stream(ctx, dlqStream)
	if err != nil {
		return nil, fmt.Errorf("show dead letter %d: open stream %s: %w", seq, dlqStream, err)
	}
	m, err := s.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, fmt.Errorf("show dead letter %d of stream %s: %w", seq, dlqStream, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("show dead letter %d of stream %s: %w", seq, dlqStream, err)
	}
	d := &Detail{Letter: letterOf(m), Stored: m.Time.UTC(), Header: m.Header}
	if d.Truncated {
		d.Payload = m.Data
		return d, nil
	}
	var ev schema.Event
	if err := schema.Unmarshal(m.Data, &ev); err != nil {
		d.DecodeError = err.Error()
		d.Payload = m.Data
		return d, nil
	}
	d.Event = EventJSON(&ev)
	return d, nil
}

// EventJSON renders an event as one JSON object: the envelope (id, type,
// level, time, host, server) and its fields under "data", typed as
// Stalwart's webhook JSON types them (schema.AppendStalwart).
func EventJSON(ev *schema.Event) json.RawMessage {
	var stalwart struct {
		Data json.RawMessage `json:"data"`
	}
	// AppendStalwart writes valid JSON; on the impossible error Data stays
	// null.
	_ = json.Unmarshal(schema.AppendStalwart(nil, ev), &stalwart)
	out, _ := json.Marshal(struct {
		ID     string          `json:"id"`
		Type   string          `json:"type"`
		Level  string          `json:"level"`
		Time   time.Time       `json:"time"`
		Host   string          `json:"host,omitempty"`
		Server string          `json:"server,omitempty"`
		Data   json.RawMessage `json:"data"`
	}{ev.ID, ev.Type, ev.Level.String(), ev.Time.UTC(), ev.Host, ev.Server, stalwart.Data})
	return out
}

// RedriveOptions tune Redrive.
type RedriveOptions struct {
	// DryRun reports what would be re-driven and changes nothing.
	DryRun bool
	// Max bounds how many dead letters are re-driven (0: all).
	Max int
	// RoutedStream, when set, is the stream the re-driven events must be
	// stored in (the publish fails otherwise).
	RoutedStream string
	// Timeout bounds each publish and each delete (default 10s).
	Timeout time.Duration
}

// Outcome is what Redrive did, or would do, with one dead letter.
type Outcome struct {
	Letter Letter `json:"letter"`
	// Target is the routed subject the event is (or would be) published to.
	Target string `json:"target,omitempty"`
	// Skipped says why the dead letter cannot be re-driven ("" when it
	// was, or would be).
	Skipped string `json:"skipped,omitempty"`
}

// RedriveMsgID is the Nats-Msg-Id of the re-driven copy of the dead letter
// stored at seq at time stored: new, so that the ROUTED stream does not
// take it for a duplicate of the original copy; the same on every run, so
// that a redrive repeated after a crash between publishing and deleting
// stores the event once (within the stream's duplicate window); and with
// the storage time, so that the letters of a DLQ stream recreated with
// sequences starting over are not taken for duplicates of older ones.
func RedriveMsgID(sink string, seq uint64, stored time.Time) string {
	return "redrive." + sink + "." + strconv.FormatUint(seq, 10) + "." + strconv.FormatInt(stored.UnixNano(), 10)
}

// HeaderRedrivenFrom, on a re-driven event, is "<DLQ stream>:<seq>" of the
// dead letter it came from.
const HeaderRedrivenFrom = "Mailtel-Redriven-From"

// Redrive re-publishes the dead letters of the sink named sink
// (dlq.sink.<sink>.>), oldest first, to routed.<sink>.<type> so that the
// sink's consumer delivers them again. For each dead letter it publishes
// the payload with Nats-Msg-Id RedriveMsgID, waits for
// JetStream's acknowledgement, then deletes the dead letter from the DLQ
// stream: a second Redrive does not send it again. Dead letters whose
// payload is not an event (or was truncated) are skipped and kept. Dead letters stored after
// Redrive started are left for the next run, so a sink that still fails
// is not fed in a loop.
//
// Only sink dead letters can be re-driven: a sink name is required.
// Redrive returns what it did, and stops at the first failure (what was
// re-driven before it stays re-driven).
func Redrive(ctx context.Context, js jetstream.JetStream, dlqStream, sink string, opts RedriveOptions) ([]Outcome, error) {
	if sink == "" {
		return nil, errors.New("redrive: a sink name is required; only sink dead letters (dlq.sink.<name>.>) can be re-driven, " +
			"router and ingest dead letters hold input that is not an event")
	}
	f := Filter{Sink: sink}
	subject, err := f.Subject()
	if err != nil {
		return nil, fmt.Errorf("redrive: %w", err)
	}
	if opts.Max < 0 {
		return nil, fmt.Errorf("redrive: max %d: must not be negative", opts.Max)
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 10 * time.Second
	}
	s, err := js.Stream(ctx, dlqStream)
	if err != nil {
		return nil, fmt.Errorf("redrive: open stream %s: %w", dlqStream, err)
	}
	var out []Outcome
	redriven := 0
	err = scan(ctx, js, dlqStream, subject, func(m *jetstream.RawStreamMsg) (bool, error) {
		l := letterOf(m)
		o := Outcome{Letter: l}
		switch {
		case l.DecodeError != "":
			o.Skipped = "the payload is not an event: " + l.DecodeError
		case !schema.ValidType(l.Type):
			o.Skipped = fmt.Sprintf("event type %q cannot be a subject", l.Type)
		default:
			o.Target = pipeline.RoutedPrefix + sink + "." + l.Type
		}
		if o.Skipped != "" || opts.DryRun {
			out = append(out, o)
			if o.Skipped == "" {
				redriven++
			}
			return opts.Max == 0 || redriven < opts.Max, nil
		}
		if err := redrive(ctx, js, s, dlqStream, sink, m, o.Target, opts); err != nil {
			return false, err
		}
		out = append(out, o)
		redriven++
		return opts.Max == 0 || redriven < opts.Max, nil
	})
	if err != nil {
		return out, fmt.Errorf("redrive %s: %w", subject, err)
	}
	return out, nil
}

// redrive publishes one dead letter to target and deletes it.
func redrive(ctx context.Context, js jetstream.JetStream, s jetstream.Stream, dlqStream, sink string, m *jetstream.RawStreamMsg, target string, opts RedriveOptions) error {
	msg := &nats.Msg{Subject: target, Data: m.Data, Header: nats.Header{}}
	msg.Header.Set(HeaderRedrivenFrom, dlqStream+":"+strconv.FormatUint(m.Sequence, 10))
	popts := []jetstream.PublishOpt{jetstream.WithMsgID(RedriveMsgID(sink, m.Sequence, m.Time))}
	if opts.RoutedStream != "" {
		popts = append(popts, jetstream.WithExpectStream(opts.RoutedStream))
	}
	pctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	if _, err := js.PublishMsg(pctx, msg, popts...); err != nil {
		return fmt.Errorf("re-publish dead letter %d to %s: %w", m.Sequence, target, err)
	}
	dctx, cancel2 := context.WithTimeout(ctx, opts.Timeout)
	defer cancel2()
	if err := s.DeleteMsg(dctx, m.Sequence); err != nil {
		if _, gerr := s.GetMsg(dctx, m.Sequence); errors.Is(gerr, jetstream.ErrMsgNotFound) {
			return nil // a concurrent redrive deleted it (and its copy was deduplicated)
		}
		return fmt.Errorf("dead letter %d was re-published to %s but not deleted from %s (a new redrive within the duplicate window will not send it twice): %w",
			m.Sequence, target, dlqStream, err)
	}
	return nil
}
