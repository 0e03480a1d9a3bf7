package schema_test

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/mailtel/mailtel/catalog"
	"github.com/mailtel/mailtel/schema"
)

func ExampleFromStalwart() {
	data := []byte(`{"id":"17647154680","createdAt":"2025-11-27T14:59:28Z","type":"auth.success",` +
		`"data":{"accountName":"postmaster@example.com","accountId":3,"spanId":8814,"listenerId":"imaptls",` +
		`"localPort":993,"remoteIp":"2a12:bec4:1be0:a8f1::1","remotePort":42376}}`)
	var ev schema.Event
	if err := schema.FromStalwart(data, &ev); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(schema.StalwartNativeID(ev.ID), ev.Type, ev.Time, ev.Server)
	for _, f := range ev.Fields {
		fmt.Printf("%s %s\n", f.Key, f.Value.Kind())
	}
	ip, _ := ev.Get("remoteIp")
	fmt.Println(ip.IP())
	// Output:
	// 17647154680 auth.success 2025-11-27 14:59:28 +0000 UTC stalwart
	// accountName string
	// accountId uint
	// spanId uint
	// listenerId string
	// localPort uint
	// remoteIp ip
	// remotePort uint
	// 2a12:bec4:1be0:a8f1::1
}

func ExampleFromStalwart_causedBy() {
	data := []byte(`{"id":"1","createdAt":"2025-11-27T15:08:28Z","type":"imap.error","data":{` +
		`"elapsed":5000,"causedBy":{"type":"store.not-found","data":{"causedBy":"crates/store/src/read.rs:12"}}}}`)
	var ev schema.Event
	if err := schema.FromStalwart(data, &ev); err != nil {
		fmt.Println(err)
		return
	}
	elapsed, _ := ev.Get("elapsed")
	cause, _ := ev.Get("causedBy")
	where, _ := cause.Event().Get("causedBy")
	fmt.Println(elapsed.Duration(), cause.Event().Type, where.Str())
	// Output:
	// 5s store.not-found crates/store/src/read.rs:12
}

func ExampleAppendStalwart() {
	data := []byte(`{"id":"9","createdAt":"2025-11-27T14:59:28Z","type":"auth.failed","data":{"remoteIp":"192.0.2.7","elapsed":12,"tags":[1,"x",null]}}`)
	var ev schema.Event
	if err := schema.FromStalwart(data, &ev); err != nil {
		fmt.Println(err)
		return
	}
	out := schema.AppendStalwart(nil, &ev)
	fmt.Println(string(out))
	fmt.Println(string(out) == string(data))
	// Output:
	// {"id":"9","createdAt":"2025-11-27T14:59:28Z","type":"auth.failed","data":{"remoteIp":"192.0.2.7","elapsed":12,"tags":[1,"x",null]}}
	// true
}

func ExampleFromDovecot() {
	data := []byte(`{"event":"auth_request_finished","hostname":"vm","start_time":"2026-11-21T12:19:56.588053Z",` +
		`"end_time":"2026-11-21T12:19:56.588270Z","categories":["service:auth","auth"],"fields":{"duration":155,` +
		`"success":"yes","mechanism":"PLAIN","service":"imap","remote_ip":"127.0.0.1","remote_port":40846,"user":"alice"}}`)
	var ev schema.Event
	if err := schema.FromDovecot(data, &ev); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(ev.ID)
	fmt.Println(ev.Type, ev.Host, ev.Server, ev.Time.Format("15:04:05.000000"))
	for _, key := range []string{"start_time", "categories", "duration", "remote_ip"} {
		v, _ := ev.Get(key)
		fmt.Println(key, v.Kind())
	}
	d, _ := ev.Get("duration")
	fmt.Println(d.Duration())
	fmt.Println(string(schema.AppendDovecot(nil, &ev)) == string(data))
	// Output:
	// dc-2f9f94f90cd6dccf628c746cfa8fe369
	// auth.request-finished vm dovecot 12:19:56.588270
	// start_time time
	// categories list
	// duration duration
	// remote_ip ip
	// 155µs
	// true
}

func ExampleToDovecot() {
	data := []byte(`{"event":"imap_command_finished","hostname":"mail1","start_time":1763726396.588053,` +
		`"end_time":1763726396.601200,"categories":["imap"],"fields":{"name":"SELECT","running_usecs":812}}`)
	var ev schema.Event
	if err := schema.FromDovecot(data, &ev); err != nil {
		fmt.Println(err)
		return
	}
	format, _ := ev.Get("time_format")
	fmt.Println(format.Str())
	out, err := schema.ToDovecot(&ev)
	fmt.Println(string(out), err)
	// Output:
	// unix
	// {"event":"imap_command_finished","hostname":"mail1","start_time":1763726396.588053,"end_time":1763726396.601200,"categories":["imap"],"fields":{"name":"SELECT","running_usecs":812}} <nil>
}

func ExampleLookupKey() {
	for _, name := range []string{"remoteIp", "elapsed", "remote_port", "x-custom"} {
		k, ok := schema.LookupKey(name)
		fmt.Println(name, k.Kind, ok)
	}
	// Output:
	// remoteIp ip true
	// elapsed duration true
	// remote_port uint true
	// x-custom none false
}

// ExampleMarshal shows the wire format's round trip: an event encoded for
// JetStream, its head read without decoding the fields (as the router
// does), and the whole event decoded again.
func ExampleMarshal() {
	ev := schema.Event{
		ID:     "17647154680",
		Type:   "auth.failed",
		Time:   time.Date(2026, 11, 21, 12, 19, 56, 0, time.UTC),
		Level:  catalog.LevelWarn,
		Host:   "mx1.example.com",
		Server: "stalwart",
		Fields: []schema.Field{
			{Key: "accountName", Value: schema.String("alice@example.com")},
			{Key: "remoteIp", Value: schema.IP(netip.MustParseAddr("192.0.2.7"))},
			{Key: "elapsed", Value: schema.Duration(12 * time.Millisecond)},
		},
	}
	data, err := schema.Marshal(&ev)
	if err != nil {
		fmt.Println(err)
		return
	}
	id, typ, level, _ := schema.Peek(data)
	fmt.Println(id, typ, level)

	var back schema.Event
	if err := schema.Unmarshal(data, &back); err != nil {
		fmt.Println(err)
		return
	}
	ip, _ := back.Get("remoteIp")
	elapsed, _ := back.Get("elapsed")
	fmt.Println(back.Host, ip.IP(), elapsed.Duration(), back.Equal(&ev))

	// Bytes that are not an event give an error, never a panic.
	fmt.Println(schema.Unmarshal(data[:len(data)/2], &back) != nil)
	// Output:
	// 17647154680 auth.failed warn
	// mx1.example.com 192.0.2.7 12ms true
	// true
}
