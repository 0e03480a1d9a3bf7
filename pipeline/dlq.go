package pipeline

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mailtel/mailtel/pipeline/config"
)

// Headers of a dead letter.
const (
	HeaderReason        = "Mailtel-Reason"
	HeaderStage         = "Mailtel-Stage"
	HeaderSourceSubject = "Mailtel-Source-Subject"
	HeaderSourceSeq     = "Mailtel-Source-Seq"
	HeaderFailedAt      = "Mailtel-Failed-At"
	HeaderDeliveries    = "Mailtel-Deliveries"
)

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
	if !config.ValidEventID(id) {
		id = "unknown"
	}
	return DLQPrefix + l.Stage + "." + id
}

// PublishLetter stores a dead letter in the DLQ stream and returns only
// after JetStream stored it.
func PublishLetter(ctx context.Context, js jetstream.JetStream, l Letter) error {
	msg := &nats.Msg{Subject: l.Subject(), Data: l.Data, Header: nats.Header{}}
	for k, v := range l.Header {
		if k != jetstream.MsgIDHeader {
			msg.Header[k] = v
		}
	}
	msg.Header.Set(HeaderReason, l.Reason.Error())
	msg.Header.Set(HeaderStage, l.Stage)
	if l.SourceSubject != "" {
		msg.Header.Set(HeaderSourceSubject, l.SourceSubject)
		msg.Header.Set(HeaderSourceSeq, strconv.FormatUint(l.SourceSeq, 10))
		msg.Header.Set(HeaderDeliveries, strconv.FormatUint(l.Deliveries, 10))
	}
	msg.Header.Set(HeaderFailedAt, time.Now().UTC().Format(time.RFC3339Nano))
	id := l.MsgID
	if id == "" {
		id = "dlq." + l.Stage + "." + strconv.FormatUint(l.SourceSeq, 10)
	}
	msg.Header.Set(jetstream.MsgIDHeader, id)
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
