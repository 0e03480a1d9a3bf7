// Package schema defines the mailtel event envelope, its typed field values,
// the known keys, the msgpack wire format and the JSON adapters for
// Stalwart's telemetry webhook and Dovecot's event exporter.
//
// Decoding never panics: any byte string yields an event or an error.
// Unknown keys and unknown event types are kept as they came.
package schema

import (
	"time"

	"github.com/mailtel/mailtel/catalog"
)

// Event is the envelope every stage of mailtel carries.
type Event struct {
	// ID is unique per event and is the dedupe key at every hop.
	ID string
	// Type is the canonical event id ("auth.success"); it may be a type the
	// catalog does not know.
	Type string
	// Time is when the server emitted the event.
	Time time.Time
	// Level is the effective level given to the event when it was ingested.
	Level catalog.Level
	// Host is the host name of the server that emitted the event.
	Host string
	// Server is the kind of server ("stalwart", "dovecot", or what the
	// sender said).
	Server string
	// Fields are the event's key/value pairs in the order they came.
	Fields []Field
}

// Field is one key/value pair of an event.
type Field struct {
	Key   string
	Value Value
}

// Get returns the value of the first field with the key.
func (e *Event) Get(key string) (Value, bool) {
	for i := range e.Fields {
		if e.Fields[i].Key == key {
			return e.Fields[i].Value, true
		}
	}
	return Value{}, false
}

// Subject returns the EVENTS subject of the event: "events.<type>".
func (e *Event) Subject() string { return catalog.SubjectPrefix + e.Type }

// Reset clears the event for reuse, keeping the capacity of Fields.
func (e *Event) Reset() {
	f := e.Fields[:0]
	*e = Event{Fields: f}
}
