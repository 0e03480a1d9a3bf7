// Package pipeline carries events through NATS JetStream: it creates the
// streams, runs an embedded NATS server when none is configured, publishes
// events, routes them to sinks and runs the sink consumers.
//
// Streams (names configurable, see config.Streams):
//
//	EVENTS         events.<category>.<event>          written by publishers
//	ROUTED_<sink>  routed.<sink>.<category>.<event>   written by routers, one stream per sink
//	DLQ            dlq.<stage>.<...>                  written by any stage
//
// Delivery contract: a publisher reports success only after JetStream
// stored the event; a router acks an EVENTS message only after every copy
// is stored in its sink's ROUTED stream; a sink consumer acks a ROUTED
// message only after the sink's write succeeded, or after the message was
// stored in DLQ with its reason. Every publish carries a deterministic Nats-Msg-Id, so retries
// within the streams' duplicate window store nothing twice.
package pipeline
