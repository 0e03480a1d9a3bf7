// Package stalwart is the ingest format of Stalwart's telemetry webhook:
// POST /v1/ingest/stalwart takes its body, {"events":[...]}, and
// `publisher file` takes its events one per line. Events are decoded by
// schema.FromStalwart.
package stalwart

import (
	"fmt"

	"github.com/mailtel/mailtel/pipeline/ingest/format"
	"github.com/mailtel/mailtel/schema"
)

// Name is the name of the format.
const Name = "stalwart"

// Format is the Stalwart format, registered by this package.
var Format = format.Format{
	Name:     Name,
	Doc:      `Stalwart telemetry webhook: {"id","createdAt","type","data"} per event, {"events":[...]} per request`,
	Detect:   Detect,
	Fallback: true,
	Decode:   schema.FromStalwart,
	Split:    Split,
}

func init() { format.Register(Format) }

// Detect reports whether line is a Stalwart event: it has a "type" key.
// A line with a "type" and an "event" key is one too. (Stalwart is also
// the fallback format: a line that no format detects is decoded as a
// Stalwart event, and rejected with its reason.)
func Detect(line []byte) bool { return format.HasKey(line, "type") }

// Split walks the events of a webhook body, {"events":[...]}, in place
// (see format.SplitArray): it is the one parser of Stalwart batches.
var Split = format.SplitArray("events")

// DecodeBatch decodes every event of a webhook body, {"events":[...]}, in
// order, all or nothing: a body that is not a batch, or holds a bad event,
// is an error naming the first bad one ("stalwart event 3: ...").
func DecodeBatch(body []byte) ([]schema.Event, error) {
	var evs []schema.Event
	var bad error
	err := Split(body, func(raw, _ []byte) bool {
		var ev schema.Event
		if err := schema.FromStalwart(raw, &ev); err != nil {
			bad = fmt.Errorf("%s event %d: %w", Name, len(evs), err)
			return false
		}
		evs = append(evs, ev)
		return true
	})
	if err == nil {
		err = bad
	}
	if err != nil {
		return nil, err
	}
	return evs, nil
}
