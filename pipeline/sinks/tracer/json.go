package tracer

import (
	"errors"
	"math"
	"strconv"

	"github.com/rs/zerolog"

	"github.com/mailtel/mailtel/schema"
)

// jsonFormatter renders one JSON object per line with zerolog:
//
//	{"id":"..","type":"auth.success","level":"info","time":"2025-11-27T14:59:28.123456789Z",
//	 "source":"stalwart","host":"mx1","message":"Authentication successful","data":{..}}
//
// time is the event time in UTC with nine fraction digits (so lines sort
// as text); host is left out when empty; message is the catalog
// description, or the type for a type the catalog does not know. data
// holds the fields with JSON values: strings, numbers, booleans, times in
// RFC 3339 (fraction only when not zero, as Stalwart writes them),
// durations in whole milliseconds (as Stalwart), IPs as strings, bytes in
// standard base64, lists as arrays, a nested event as
// {"type":..,"data":{..}}, a missing value as null, and a float that JSON
// cannot hold as the string "NaN", "+Inf" or "-Inf". A key that appears
// twice keeps its first value, so data stays a valid object.
//
// The data object is rendered by this package (schema exports no JSON
// value renderer yet) and added as raw JSON; zerolog writes the envelope.
//
// A jsonFormatter reuses its buffers: it is not safe for concurrent use.
type jsonFormatter struct {
	w    sliceWriter
	log  zerolog.Logger
	time []byte // scratch for the envelope time
	data []byte // scratch for the data object
}

// sliceWriter is the zerolog output: it appends to a slice.
type sliceWriter struct{ b []byte }

func (w *sliceWriter) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	return len(p), nil
}

// errZerologDisabled is returned when zerolog's global level suppresses the
// sink's output; the sink must then fail rather than ack unwritten events.
var errZerologDisabled = errors.New("zerolog global level is disabled: json tracer output would be dropped")

func newJSONFormatter() *jsonFormatter {
	f := &jsonFormatter{}
	f.log = zerolog.New(&f.w)
	return f
}

func (f *jsonFormatter) appendEvent(dst []byte, e *schema.Event) ([]byte, error) {
	ev := f.log.Log()
	if ev == nil {
		return dst, errZerologDisabled
	}
	f.time = e.Time.UTC().AppendFormat(f.time[:0], "2006-01-02T15:04:05.000000000Z07:00")
	f.data = appendJSONFields(f.data[:0], e.Fields, 0)
	ev.Str("id", e.ID).
		Str("type", e.Type).
		Str("level", e.Level.String()).
		Bytes("time", f.time).
		Str("source", e.Server)
	if e.Host != "" {
		ev.Str("host", e.Host)
	}
	f.w.b = dst
	ev.Str("message", description(e.Type)).RawJSON("data", f.data).Send()
	dst, f.w.b = f.w.b, nil
	return dst, nil
}

// appendJSONFields appends fields as a JSON object, keeping the first of
// repeated keys.
func appendJSONFields(dst []byte, fields []schema.Field, depth int) []byte {
	dst = append(dst, '{')
	n := 0
	for i := range fields {
		if seenKey(fields[:i], fields[i].Key) {
			continue
		}
		if n > 0 {
			dst = append(dst, ',')
		}
		n++
		dst = schema.AppendJSONString(dst, fields[i].Key)
		dst = append(dst, ':')
		dst = appendJSONValue(dst, &fields[i].Value, depth+1)
	}
	return append(dst, '}')
}

func seenKey(fields []schema.Field, key string) bool {
	for i := range fields {
		if fields[i].Key == key {
			return true
		}
	}
	return false
}

func appendJSONValue(dst []byte, v *schema.Value, depth int) []byte {
	if depth > maxDepth {
		return append(dst, "null"...)
	}
	switch v.Kind() {
	case schema.KindString:
		return schema.AppendJSONString(dst, v.Str())
	case schema.KindInt:
		return strconv.AppendInt(dst, v.Int(), 10)
	case schema.KindUint:
		return strconv.AppendUint(dst, v.Uint(), 10)
	case schema.KindFloat:
		return appendJSONFloat(dst, v.Float())
	case schema.KindBool:
		return strconv.AppendBool(dst, v.Bool())
	case schema.KindTime:
		dst = append(dst, '"')
		dst = v.Time().AppendFormat(dst, "2006-01-02T15:04:05.999999999Z07:00")
		return append(dst, '"')
	case schema.KindDuration:
		return schema.AppendMillis(dst, v.Duration())
	case schema.KindIP:
		if a := v.IP(); a.IsValid() {
			dst = append(dst, '"')
			dst = a.AppendTo(dst)
			return append(dst, '"')
		}
	case schema.KindBytes:
		dst = append(dst, '"')
		dst = appendBase64(dst, v.RawString())
		return append(dst, '"')
	case schema.KindList:
		dst = append(dst, '[')
		l := v.List()
		for i := range l {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendJSONValue(dst, &l[i], depth+1)
		}
		return append(dst, ']')
	case schema.KindEvent:
		ev := v.Event()
		if ev == nil {
			break
		}
		dst = append(dst, `{"type":`...)
		dst = schema.AppendJSONString(dst, ev.Type)
		dst = append(dst, `,"data":`...)
		dst = appendJSONFields(dst, ev.Fields, depth)
		return append(dst, '}')
	}
	return append(dst, "null"...)
}

// appendJSONFloat appends x as a JSON number, or as a string for NaN and
// the infinities, which JSON cannot hold.
func appendJSONFloat(dst []byte, x float64) []byte {
	switch {
	case math.IsNaN(x):
		return append(dst, `"NaN"`...)
	case math.IsInf(x, 1):
		return append(dst, `"+Inf"`...)
	case math.IsInf(x, -1):
		return append(dst, `"-Inf"`...)
	}
	if a := math.Abs(x); a != 0 && (a < 1e-6 || a >= 1e21) {
		return strconv.AppendFloat(dst, x, 'e', -1, 64)
	}
	return strconv.AppendFloat(dst, x, 'f', -1, 64)
}
