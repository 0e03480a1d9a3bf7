// Package status answers, in one look, which sink is behind, by how much,
// how fast each goes and how many dead letters each stage left: `router
// status`. Gatherer reads it from JetStream (stream and consumer
// information only: it works against any deployment, embedded or
// cluster, and changes nothing) and from the processes' /metrics and
// /readyz endpoints when they answer; Render prints it as a table.
//
// Gathering and rendering are apart: Render takes a Status, which is plain
// data (also what `router status --json` prints).
package status

import (
	"time"
)

// BytesPerID is about how much memory the NATS server keeps for each
// message id of a stream's duplicate window (see README, "Memory").
const BytesPerID = 250

// Status is the state of a mailtel pipeline at one moment.
type Status struct {
	// Time is when the status was gathered.
	Time time.Time `json:"time"`
	// Server is the NATS server the status was read from (no password).
	Server string `json:"server"`
	// RateInterval is the time between the two samples the rates come
	// from; 0 when there was one sample only and no rate is known.
	RateInterval Duration   `json:"rate_interval"`
	Sinks        []Sink     `json:"sinks"`
	Streams      []Stream   `json:"streams"`
	Consumers    []Consumer `json:"consumers"`
	// DeadLetters counts the messages of the DLQ stream per stage:
	// "ingest", "router", "sink.<name>", sorted by stage.
	DeadLetters []DeadLetters `json:"dead_letters"`
	// Endpoints are the metrics endpoints asked, and how they answered.
	Endpoints []Endpoint `json:"endpoints"`
}

// Sink states.
const (
	// StateUp: the sink's consumer is bound (pull requests wait on it, or it
	// delivered lately) and its destination takes writes.
	StateUp = "up"
	// StatePaused: the destination fails; the sink probes it and the
	// backlog waits in JetStream (from /readyz or mailtel_sink_up).
	StatePaused = "paused"
	// StateNotReady: a sinks process reports the sink not ready (starting,
	// stopped).
	StateNotReady = "not ready"
	// StateNotRunning: the consumer exists, but no pull request waits on it
	// and it delivered nothing for a while: no process reads it (or one is
	// paused and its metrics endpoint was not reachable).
	StateNotRunning = "not running"
	// StateNoConsumer: the stream exists but no sink ever bound to it.
	StateNoConsumer = "no consumer"
	// StateNoStream: the configuration names the sink, but its ROUTED
	// stream does not exist (no process with this configuration started).
	StateNoStream = "no stream"
)

// Sink is one sink: its ROUTED stream, its consumer and what its
// process says about it.
type Sink struct {
	Name  string `json:"name"`
	State string `json:"state"`
	// Reason says why the state is not "up", when known.
	Reason string `json:"reason,omitempty"`
	// FedBy is "router" or "server" (the stream has EVENTS as a source:
	// [router] server-fan-out); "" when the stream does not exist.
	FedBy string `json:"fed_by,omitempty"`
	// Behind is how many messages of its stream the sink has not acked
	// yet: not yet delivered (pending) plus delivered and unacked.
	Behind uint64 `json:"behind"`
	// Rate is how many events per second its consumer acked over the last
	// RateInterval (every instance of the sink together); nil when
	// unknown.
	Rate *float64 `json:"rate"`
	// Written is mailtel_written_total of the sink, summed over the
	// metrics endpoints that answered; nil when none reported it.
	Written *float64 `json:"written_total,omitempty"`
	// DeadLetters counts the sink's messages in the DLQ stream
	// (dlq.sink.<name>.>).
	DeadLetters uint64 `json:"dead_letters"`
}

// Stream is one stream's state.
type Stream struct {
	Name    string `json:"name"`
	Missing bool   `json:"missing,omitempty"`
	// Messages and Bytes are what the stream holds.
	Messages uint64     `json:"messages"`
	Bytes    uint64     `json:"bytes"`
	First    *time.Time `json:"first,omitempty"`
	Last     *time.Time `json:"last,omitempty"`
	// Duplicates is the stream's duplicate window.
	Duplicates Duration `json:"duplicates"`
	// WindowIDs estimates how many message ids the server holds for the
	// duplicate window: the messages stored within the last Duplicates
	// (every message mailtel stores carries a Nats-Msg-Id).
	WindowIDs uint64 `json:"window_ids"`
	// WindowBytes is WindowIDs x BytesPerID: the server memory the window
	// takes.
	WindowBytes uint64 `json:"window_bytes"`
}

// Consumer is one durable consumer on EVENTS, a ROUTED stream or DLQ.
type Consumer struct {
	Stream string `json:"stream"`
	Name   string `json:"name"`
	// Sink is the sink whose consumer this is ("" for others, such as the
	// router's).
	Sink string `json:"sink,omitempty"`
	// State is StateUp, StateNotRunning, or StateNoConsumer for the
	// router's consumer when it does not exist.
	State string `json:"state"`
	// Pending is how many messages of the stream were not delivered yet.
	Pending uint64 `json:"pending"`
	// AckPending were delivered and are not acked yet.
	AckPending int `json:"ack_pending"`
	// Redelivered are delivered more than once and not acked yet.
	Redelivered int `json:"redelivered"`
	// Waiting is the number of pull requests waiting for messages: 0 when
	// no process reads the consumer.
	Waiting int `json:"waiting"`
	// AckFloor is the stream sequence below which everything is acked.
	AckFloor uint64 `json:"ack_floor"`
	// LastActive is the last delivery or ack; nil when never.
	LastActive *time.Time `json:"last_active,omitempty"`
	// Rate is how many messages per second the consumer acked over the
	// last RateInterval (every process reading it together); nil when
	// unknown.
	Rate *float64 `json:"rate"`
}

// DeadLetters is the count of one stage's dead letters.
type DeadLetters struct {
	Stage string `json:"stage"`
	Count uint64 `json:"count"`
}

// Endpoint is a process's health and metrics endpoint.
type Endpoint struct {
	Addr string `json:"addr"`
	// Error says why it did not answer ("" when it did).
	Error string `json:"error,omitempty"`
	// Ready is the first line of its /readyz answer.
	Ready string `json:"ready,omitempty"`
}

// Duration is a time.Duration that reads and writes as Go's duration
// syntax in JSON ("10m0s").
type Duration time.Duration

// MarshalText writes d as "1m30s".
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText reads Go's duration syntax.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	*d = Duration(v)
	return err
}
