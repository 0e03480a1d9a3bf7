package otel

import (
	"strings"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"

	"github.com/mailtel/mailtel/catalog"
	"github.com/mailtel/mailtel/schema"
)

// Names of the attributes and values the sink sets (OpenTelemetry semantic
// conventions where one applies).
const (
	AttrEventID     = "event.id"
	AttrServiceName = "service.name"
	AttrHostName    = "host.name"
	// AttrNestedEventName is the key of a nested event's type in the map
	// that carries it (Stalwart's name for it).
	AttrNestedEventName = "eventName"
	// ScopeName is the instrumentation scope of every record.
	ScopeName = "mailtel"
	// ServiceStalwart is the service.name of events from Stalwart: the
	// one Stalwart's own exporter sends, so that queries written for it
	// keep working.
	ServiceStalwart = "stalwart-mail"
	// ServiceUnknown is the service.name of events that name no server,
	// the semantic conventions' default.
	ServiceUnknown = "unknown_service"
)

// severity maps a catalog level to OpenTelemetry's severity number and to
// the text Stalwart sends (trc's Level::as_str). Disable, which no routed
// event has, is Error as in Stalwart.
func severity(l catalog.Level) (plog.SeverityNumber, string) {
	switch l {
	case catalog.LevelTrace:
		return plog.SeverityNumberTrace, "TRACE"
	case catalog.LevelDebug:
		return plog.SeverityNumberDebug, "DEBUG"
	case catalog.LevelInfo:
		return plog.SeverityNumberInfo, "INFO"
	case catalog.LevelWarn:
		return plog.SeverityNumberWarn, "WARN"
	case catalog.LevelError:
		return plog.SeverityNumberError, "ERROR"
	case catalog.LevelDisable:
		return plog.SeverityNumberError, "DISABLE"
	}
	return plog.SeverityNumberUnspecified, ""
}

// serviceName returns the service.name of events from a server of kind.
func serviceName(kind string) string {
	switch kind {
	case "":
		return ServiceUnknown
	case schema.ServerStalwart:
		return ServiceStalwart
	}
	return kind
}

// Encode returns the export request that carries events, one log record
// each, as the package documentation says; observed is the records'
// observed time. Events of one server (Server and Host) share a resource;
// resources and records keep the order of events. Nil events are skipped.
func Encode(events []*schema.Event, observed time.Time) plogotlp.ExportRequest {
	ld := plog.NewLogs()
	type origin struct{ server, host string }
	scopes := map[origin]plog.LogRecordSlice{}
	obs := pcommon.NewTimestampFromTime(observed)
	for _, ev := range events {
		if ev == nil {
			continue
		}
		o := origin{ev.Server, ev.Host}
		recs, ok := scopes[o]
		if !ok {
			rl := ld.ResourceLogs().AppendEmpty()
			attrs := rl.Resource().Attributes()
			attrs.PutStr(AttrServiceName, validUTF8(serviceName(ev.Server)))
			if ev.Host != "" {
				attrs.PutStr(AttrHostName, validUTF8(ev.Host))
			}
			sl := rl.ScopeLogs().AppendEmpty()
			sl.Scope().SetName(ScopeName)
			recs = sl.LogRecords()
			scopes[o] = recs
		}
		encodeRecord(recs.AppendEmpty(), ev, obs)
	}
	return plogotlp.NewExportRequestFromLogs(ld)
}

func encodeRecord(lr plog.LogRecord, ev *schema.Event, observed pcommon.Timestamp) {
	if !ev.Time.IsZero() {
		lr.SetTimestamp(pcommon.NewTimestampFromTime(ev.Time))
	}
	lr.SetObservedTimestamp(observed)
	num, text := severity(ev.Level)
	lr.SetSeverityNumber(num)
	lr.SetSeverityText(text)
	lr.SetEventName(validUTF8(ev.Type))
	if t, ok := catalog.Lookup(ev.Type); ok && t.Description != "" {
		lr.Body().SetStr(t.Description)
	} else {
		lr.Body().SetStr(validUTF8(ev.Type))
	}
	attrs := lr.Attributes()
	attrs.EnsureCapacity(len(ev.Fields) + 1)
	putFields(attrs, ev.Fields, 0)
	attrs.PutStr(AttrEventID, validUTF8(ev.ID))
}

// maxDepth bounds the nesting of lists and nested events, as the msgpack
// decoder bounds what it accepts.
const maxDepth = schema.MsgpackMaxDepth

// putFields puts fields into m. A key that repeats gathers its values in a
// list, in order: no value is lost and attribute keys stay unique, as
// OpenTelemetry requires.
func putFields(m pcommon.Map, fields []schema.Field, depth int) {
	var gathered map[string]bool // keys whose value is a list of repeats
	for i := range fields {
		key := validUTF8(fields[i].Key)
		v, existed := m.GetOrPutEmpty(key)
		if !existed {
			setValue(v, fields[i].Value, depth)
			continue
		}
		if !gathered[key] {
			if gathered == nil {
				gathered = map[string]bool{}
			}
			gathered[key] = true
			first := pcommon.NewValueEmpty()
			v.MoveTo(first)
			first.MoveTo(v.SetEmptySlice().AppendEmpty())
		}
		setValue(v.Slice().AppendEmpty(), fields[i].Value, depth)
	}
}

// setValue sets dst to v with its type kept where OpenTelemetry has one:
//
//	string, IP         -> string (an IP in its text form)
//	int                -> int
//	uint               -> int, the same 64 bits (above MaxInt64 it reads negative), as Stalwart
//	float              -> double
//	bool               -> bool
//	time               -> string, RFC 3339 with nanoseconds, UTC (as Stalwart)
//	duration           -> int, milliseconds (as Stalwart)
//	bytes              -> bytes
//	list               -> array of values
//	nested event       -> map: eventName (its type, when it has one) and its fields (as Stalwart)
//	none               -> empty value
func setValue(dst pcommon.Value, v schema.Value, depth int) {
	switch v.Kind() {
	case schema.KindString:
		dst.SetStr(validUTF8(v.Str()))
	case schema.KindInt:
		dst.SetInt(v.Int())
	case schema.KindUint:
		// As Stalwart (`*v as i64`): the same bits, so that a key keeps
		// one type (spanId often exceeds MaxInt64) and uint64(v) gives
		// the number back.
		dst.SetInt(int64(v.Uint()))
	case schema.KindFloat:
		dst.SetDouble(v.Float())
	case schema.KindBool:
		dst.SetBool(v.Bool())
	case schema.KindTime:
		dst.SetStr(v.Time().Format(time.RFC3339Nano))
	case schema.KindDuration:
		dst.SetInt(v.Duration().Milliseconds())
	case schema.KindIP:
		if a := v.IP(); a.IsValid() {
			dst.SetStr(a.String())
		}
	case schema.KindBytes:
		dst.SetEmptyBytes().FromRaw(v.BytesValue())
	case schema.KindList:
		if depth >= maxDepth {
			return
		}
		s := dst.SetEmptySlice()
		s.EnsureCapacity(len(v.List()))
		for _, e := range v.List() {
			setValue(s.AppendEmpty(), e, depth+1)
		}
	case schema.KindEvent:
		ev := v.Event()
		if ev == nil || depth >= maxDepth {
			return
		}
		m := dst.SetEmptyMap()
		m.EnsureCapacity(len(ev.Fields) + 1)
		if ev.Type != "" {
			m.PutStr(AttrNestedEventName, validUTF8(ev.Type))
		}
		putFields(m, ev.Fields, depth+1)
	}
}

// validUTF8 returns s with invalid UTF-8 replaced by U+FFFD: a protobuf
// string must be UTF-8, and a receiver built on the protobuf library
// rejects the whole request for one bad byte.
func validUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}
