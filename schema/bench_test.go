package schema_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/mailtel/mailtel/catalog"
	"github.com/mailtel/mailtel/schema"
)

// msgpJSONEvent mirrors the envelope as a plain struct for encoding/json, the
// baseline the msgpack codec is compared with.
type msgpJSONEvent struct {
	ID     string         `json:"id"`
	Type   string         `json:"type"`
	Time   time.Time      `json:"time"`
	Level  catalog.Level  `json:"level"`
	Host   string         `json:"host"`
	Server string         `json:"server"`
	Fields map[string]any `json:"fields"`
}

// msgpJSONAuthEvent is msgpAuthEvent as its JSON mirror.
func msgpJSONAuthEvent() *msgpJSONEvent {
	e := msgpAuthEvent()
	return &msgpJSONEvent{
		ID: e.ID, Type: e.Type, Time: e.Time, Level: e.Level, Host: e.Host, Server: e.Server,
		Fields: map[string]any{
			"accountName": "alice@example.org",
			"accountId":   uint64(42),
			"spanId":      uint64(12345678901234567),
			"listenerId":  "smtp",
			"localPort":   uint64(25),
			"remoteIp":    "192.0.2.17",
			"remotePort":  uint64(54321),
			"elapsed":     int64(3210 * time.Microsecond),
		},
	}
}

func BenchmarkEncode(b *testing.B) {
	b.Run("msgpack", func(b *testing.B) {
		e := msgpAuthEvent()
		b.ReportAllocs()
		for b.Loop() {
			if _, err := schema.Marshal(e); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("msgpack-append", func(b *testing.B) {
		e := msgpAuthEvent()
		buf := make([]byte, 0, 512)
		b.ReportAllocs()
		for b.Loop() {
			buf = e.AppendMsgpack(buf[:0])
		}
	})
	b.Run("json", func(b *testing.B) {
		e := msgpJSONAuthEvent()
		b.ReportAllocs()
		for b.Loop() {
			if _, err := json.Marshal(e); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkDecode(b *testing.B) {
	b.Run("msgpack", func(b *testing.B) {
		data := msgpAuthEvent().AppendMsgpack(nil)
		var e schema.Event
		b.SetBytes(int64(len(data)))
		b.ReportAllocs()
		for b.Loop() {
			if err := schema.Unmarshal(data, &e); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("json", func(b *testing.B) {
		data, err := json.Marshal(msgpJSONAuthEvent())
		if err != nil {
			b.Fatal(err)
		}
		var e msgpJSONEvent
		b.SetBytes(int64(len(data)))
		b.ReportAllocs()
		for b.Loop() {
			if err := json.Unmarshal(data, &e); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkPeek(b *testing.B) {
	data := msgpAuthEvent().AppendMsgpack(nil)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, _, err := schema.Peek(data); err != nil {
			b.Fatal(err)
		}
	}
}
