package synth_test

import (
	"fmt"
	"time"

	"github.com/mailtel/mailtel/pipeline/synth"
	"github.com/mailtel/mailtel/schema"
)

// A generator with a fixed seed and start time always produces the same
// stream. Reusing one Event keeps Next down to one allocation (the id).
func ExampleGenerator() {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	g := synth.New(synth.Options{Seed: 1, Start: start, Rate: 100})
	var ev schema.Event
	for range 5 {
		g.Next(&ev)
		fmt.Println(ev.ID, ev.Time.Sub(start).Round(time.Millisecond), ev.Server, ev.Host, ev.Type, ev.Level)
	}
	// Output:
	// syn-1-0 0s dovecot dovecot1.example.com mail.delivery-started debug
	// syn-1-1 14ms dovecot dovecot2.example.com auth.client-request-started debug
	// syn-1-2 21ms stalwart imap1.example.com network.connection-start info
	// syn-1-3 28ms dovecot dovecot2.example.com auth.client-request-started debug
	// syn-1-4 40ms stalwart imap1.example.com network.connection-start info
}

// Sessions are interleaved; following one spanId shows a whole inbound SMTP
// session, from connection-start to connection-end.
func ExampleGenerator_session() {
	g := synth.New(synth.Options{Seed: 1, Start: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)})
	var ev schema.Event
	var span uint64
	for {
		g.Next(&ev)
		if l, _ := ev.Get("listenerId"); span == 0 && l.Str() == "smtp" {
			s, _ := ev.Get("spanId")
			span = s.Uint()
		}
		if s, ok := ev.Get("spanId"); span == 0 || !ok || s.Uint() != span {
			continue
		}
		fmt.Print(ev.Type)
		for _, f := range ev.Fields[1:] { // all but spanId
			fmt.Printf(" %s=%s", f.Key, show(f.Value))
		}
		fmt.Println()
		if ev.Type == "network.connection-end" {
			break
		}
	}
	// Output:
	// network.connection-start listenerId=smtp localPort=uint(25) remoteIp=192.0.2.205 remotePort=uint(37119)
	// smtp.start-tls
	// tls.handshake version=TLSv1_3 details=TLS13_AES_256_GCM_SHA384 elapsed=36ms
	// smtp.ehlo domain=unknown.example.net
	// smtp.iprev-fail remoteIp=192.0.2.205 elapsed=20ms causedBy=Nested(iprev.fail)
	// smtp.spf-ehlo-pass domain=unknown.example.net elapsed=32ms
	// smtp.mail-from from=a.kowalski@example.net
	// smtp.spf-from-fail from=a.kowalski@example.net result=softfail causedBy=Nested(spf.soft-fail) elapsed=59ms
	// smtp.rcpt-to to=dave@example.org
	// smtp.dkim-fail domain=example.net result=fail elapsed=3ms causedBy=Nested(dkim.fail)
	// smtp.dmarc-fail domain=example.net policy=quarantine result=fail elapsed=21ms causedBy=Nested(dmarc.fail)
	// spam.classify result=spam elapsed=260ms
	// queue.queue-message queueId=uint(6703906174677) from=a.kowalski@example.net to=List([]schema.Value{String("dave@example.org")}) size=uint(104640) total=uint(1)
	// smtp.quit
	// network.connection-end elapsed=658ms
}

// show renders a value briefly: durations as durations, nested events by
// their type.
func show(v schema.Value) string {
	switch v.Kind() {
	case schema.KindDuration:
		return v.Duration().Round(time.Millisecond).String()
	case schema.KindEvent:
		return "Nested(" + v.Event().Type + ")"
	case schema.KindIP:
		return v.IP().String()
	case schema.KindString:
		return v.Str()
	}
	return fmt.Sprintf("%#v", v)
}

// Mix documents the kinds of sessions the generator draws from.
func ExampleGenerator_Mix() {
	g := synth.New(synth.Options{Start: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)})
	for _, w := range g.Mix() {
		fmt.Printf("%-18s %-8s %4.1f%%\n", w.Name, w.Server, 100*w.Weight)
	}
	// Output:
	// smtp-inbound       stalwart 25.1%
	// smtp-submission    stalwart  9.1%
	// imap               stalwart 25.1%
	// pop3               stalwart  2.3%
	// jmap               stalwart  5.7%
	// auth-attack        stalwart  3.4%
	// blocked            stalwart  1.4%
	// dovecot-imap       dovecot  17.1%
	// dovecot-lmtp       dovecot   6.8%
	// dovecot-connection dovecot   2.9%
	// dovecot-http       dovecot   1.1%
}
