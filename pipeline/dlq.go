package pipeline

import (
	"context"
	"fmt"
	"net/textproto"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/mailtel/mailtel/schema"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Headers of a dead letter.
const (
	HeaderReason        = "Mailtel-Reason"
	HeaderStage         = "Mailtel-Stage"
	HeaderSourceSubject = "Mailtel-Source-Subject"
	HeaderSourceSeq     = "Mailtel-Source-Seq"
	HeaderFailedAt      = "Mailtel-Failed-At"
	HeaderDeliveries    = "Mailtel-Deliveries"
	// HeaderTruncated is "true" on a dead letter whose payload was cut to
	// fit the server's max payload; HeaderOriginalSize then holds the
	// payload's size in bytes before it was cut.
	HeaderTruncated    = "Mailtel-Truncated"
	HeaderOriginalSize = "Mailtel-Original-Size"
	// HeaderHeadersDropped is "true" on a dead letter whose source headers
	// were dropped because they alone did not fit the max payload.
	HeaderHeadersDropped = "Mailtel-Headers-Dropped"
)

// MaxReasonLen bounds the Mailtel-Reason header of a dead letter, in bytes:
// a longer reason (an error quoting a large input) is cut and ends with a
// marker giving its full length. 1 KiB keeps a sink's dead letter of the
// largest event Publish takes within the headroom it leaves
// (PayloadHeadroom), so that such a letter is stored whole.
const MaxReasonLen = 1 << 10

// Letter is one dead letter: the payload that failed and why.
type Letter struct {
	// Stage is who gave up: "ingest", "router", "sink.<name>".
	Stage string
	// EventID is the "category.event" id the payload claims, if known.
	EventID string
	Data    []byte
	Header  nats.Header // headers of the source message, kept
	Reason  error
	// SourceSubject and SourceSeq locate the source message, if any.
	SourceSubject string
	SourceSeq     uint64
	Deliveries    uint64
	// MsgID dedupes the dead letter; default "dlq.<stage>.<source seq>".
	MsgID string
}

// Subject returns dlq.<stage>.<event id> ("unknown" when the id is not a
// valid event id).
func (l *Letter) Subject() string {
	id := l.EventID
	if !schema.ValidType(id) {
		id = "unknown"
	}
	return DLQPrefix + l.Stage + "." + id
}

// LetterMsg returns the message PublishLetter stores for l: its payload,
// the source's headers (but the server's Nats-* ones, see serverDirective)
// and the Mailtel-* headers,
// with Nats-Msg-Id set to l's MsgID.
//
// The whole message (payload and headers) is kept within maxPayload bytes,
// the server's max payload (nats.Conn.MaxPayload; 0 or less: no bound),
// because a dead letter is often what did not fit somewhere: the reason is
// cut to MaxReasonLen bytes, and a payload that still does not fit is cut
// to the bytes that do, with Mailtel-Truncated: true and
// Mailtel-Original-Size: <bytes> saying so. The source's headers are
// dropped (Mailtel-Headers-Dropped: true) only when they alone leave no
// room. A truncated payload no longer decodes; dlqtool shows it as such
// and does not re-drive it.
func LetterMsg(l Letter, maxPayload int64) *nats.Msg {
	own := nats.Header{}
	reason := "unknown"
	if l.Reason != nil {
		reason = l.Reason.Error()
	}
	own.Set(HeaderReason, cutReason(reason))
	own.Set(HeaderStage, l.Stage)
	if l.SourceSubject != "" {
		own.Set(HeaderSourceSubject, l.SourceSubject)
		own.Set(HeaderSourceSeq, strconv.FormatUint(l.SourceSeq, 10))
		own.Set(HeaderDeliveries, strconv.FormatUint(l.Deliveries, 10))
	}
	own.Set(HeaderFailedAt, time.Now().UTC().Format(time.RFC3339Nano))
	id := l.MsgID
	if id == "" {
		id = "dlq." + l.Stage + "." + strconv.FormatUint(l.SourceSeq, 10)
	}
	own.Set(jetstream.MsgIDHeader, id)
	msg := &nats.Msg{Subject: l.Subject(), Data: l.Data, Header: make(nats.Header, len(l.Header)+len(own)+2)}
	for k, v := range l.Header {
		if !serverDirective(k) {
			msg.Header[k] = v
		}
	}
	for k, v := range own { // ours win, the source's Nats-Msg-Id among them
		msg.Header[k] = v
	}
	fits := func() bool { return int64(headerSize(msg.Header)+len(msg.Data)) <= maxPayload }
	if maxPayload <= 0 || fits() {
		return msg
	}
	truncate := func() {
		msg.Header.Set(HeaderTruncated, "true")
		msg.Header.Set(HeaderOriginalSize, strconv.Itoa(len(l.Data)))
	}
	truncate()
	if int64(headerSize(msg.Header)) > maxPayload {
		// The source's headers leave no room at all: keep only ours.
		msg.Header = own
		msg.Header.Set(HeaderHeadersDropped, "true")
		if fits() {
			return msg
		}
		truncate()
	}
	room := max(0, maxPayload-int64(headerSize(msg.Header)))
	msg.Data = l.Data[:min(int64(len(l.Data)), room)]
	return msg
}

// serverDirective reports whether a header of the source is one of the
// server's (Nats-*): Nats-Expected-Stream, Nats-Expected-Last-Sequence,
// Nats-Rollup, Nats-TTL ask something of the server that stores the
// message carrying them, and it refuses a published message with
// Nats-Stream-Source, which its stream sources add to their copies (every
// event of a server fan-out sink carries one). Copied onto a dead letter,
// any of them would make the server refuse it, and the message would be
// redelivered and refused again without end (a re-driven event carries
// Nats-Expected-Stream: ROUTED_<sink>), or act on the DLQ stream. Where the
// letter came from is in Mailtel-Source-Subject and Mailtel-Source-Seq.
func serverDirective(key string) bool {
	return len(key) >= 5 && strings.EqualFold(key[:5], "Nats-")
}

// cutReason cuts a reason longer than MaxReasonLen bytes, on a rune
// boundary, and marks it with the reason's full length.
func cutReason(s string) string {
	if len(s) <= MaxReasonLen {
		return s
	}
	marker := fmt.Sprintf(" ... [reason truncated, %d bytes]", len(s))
	n := MaxReasonLen - len(marker)
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + marker
}

// headerSize is the size of h on the wire, as nats.go encodes it
// ("NATS/1.0\r\n", "key: value\r\n" per value with the value trimmed, and
// "\r\n"), which the server counts against its max payload with the
// payload.
func headerSize(h nats.Header) int {
	if len(h) == 0 {
		return 0
	}
	n := len("NATS/1.0\r\n") + len("\r\n")
	for k, vs := range h {
		for _, v := range vs {
			n += len(k) + len(textproto.TrimString(v)) + len(": \r\n")
		}
	}
	return n
}

// maxPayload returns the max payload of the server js is connected to (0
// when unknown).
func maxPayload(js jetstream.JetStream) int64 {
	if nc := js.Conn(); nc != nil {
		return nc.MaxPayload()
	}
	return 0
}

// PublishLetter stores a dead letter in the DLQ stream and returns only
// after JetStream stored it. The letter is cut to fit the server's max
// payload (see LetterMsg). It is safe for concurrent use.
func PublishLetter(ctx context.Context, js jetstream.JetStream, l Letter) error {
	msg := LetterMsg(l, maxPayload(js))
	if _, err := js.PublishMsg(ctx, msg); err != nil {
		return fmt.Errorf("dead-letter to %s: %w", msg.Subject, err)
	}
	return nil
}

// DeadLetter stores a message that failed at stage in the DLQ, with the
// reason and the source's subject, sequence and delivery count in headers.
// Dead-lettering the same message twice stores it once.
func DeadLetter(ctx context.Context, js jetstream.JetStream, stage string, src jetstream.Msg, reason error) error {
	l := Letter{Stage: stage, EventID: SubjectEventID(src.Subject()), Data: src.Data(), Header: src.Headers(),
		Reason: reason, SourceSubject: src.Subject()}
	if md, err := src.Metadata(); err == nil {
		l.SourceSeq, l.Deliveries = md.Sequence.Stream, md.NumDelivered
	}
	return PublishLetter(ctx, js, l)
}
