// Package dovecot is the ingest format of Dovecot's event_exporter (with
// format = json): POST /v1/ingest/dovecot takes one event per request (the
// http-post transport), and `publisher file` takes one per line. Events are
// decoded by schema.FromDovecot.
package dovecot

import (
	"github.com/mailtel/mailtel/pipeline/ingest/format"
	"github.com/mailtel/mailtel/schema"
)

// Name is the name of the format.
const Name = "dovecot"

// Format is the Dovecot format, registered by this package.
var Format = format.Format{
	Name:   Name,
	Doc:    "Dovecot event_exporter (transport = http-post, format = json): one JSON object per event",
	Detect: Detect,
	Decode: schema.FromDovecot,
}

func init() { format.Register(Format) }

// Detect reports whether line is a Dovecot event: it has an "event" key
// and no "type" key (which would make it a Stalwart event).
func Detect(line []byte) bool {
	return format.HasKey(line, "event") && !format.HasKey(line, "type")
}
