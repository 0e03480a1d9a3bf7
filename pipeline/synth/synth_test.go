package synth

import (
	"math"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/mailtel/mailtel/catalog"
	"github.com/mailtel/mailtel/schema"
)

var testStart = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// generate returns n events of a generator for opts, each in its own Event.
func generate(opts Options, n int) []schema.Event {
	g := New(opts)
	out := make([]schema.Event, n)
	for i := range out {
		g.Next(&out[i])
	}
	return out
}

// sample is a large stream shared by the statistical tests.
var sample = generate(Options{Seed: 7, Start: testStart}, 100_000)

// eachEvent calls fn for every event of evs and every nested causedBy event.
func eachEvent(evs []schema.Event, fn func(ev *schema.Event, nested bool)) {
	var walk func(ev *schema.Event, nested bool)
	walk = func(ev *schema.Event, nested bool) {
		fn(ev, nested)
		for _, f := range ev.Fields {
			if f.Value.Kind() == schema.KindEvent {
				walk(f.Value.Event(), true)
			}
		}
	}
	for i := range evs {
		walk(&evs[i], false)
	}
}

func TestDeterministic(t *testing.T) {
	const n = 10_000
	tests := []struct {
		name  string
		seed  uint64
		reuse bool // the second generator writes every event into one Event
		same  bool
	}{
		{"same seed", 42, false, true},
		{"same seed, reused event", 42, true, true},
		{"other seed", 43, false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := New(Options{Seed: 42, Start: testStart})
			b := New(Options{Seed: tc.seed, Start: testStart})
			var reused schema.Event
			equal, sameID, sameType := 0, 0, 0
			for i := range n {
				var ea, fresh schema.Event
				eb := &fresh
				if tc.reuse {
					eb = &reused
				}
				a.Next(&ea)
				b.Next(eb)
				if ea.Equal(eb) {
					equal++
				} else if tc.same {
					t.Fatalf("event %d differs:\n%+v\n%+v", i, ea, *eb)
				}
				if ea.ID == eb.ID {
					sameID++
				}
				if ea.Type == eb.Type {
					sameType++
				}
			}
			if tc.same {
				if equal != n {
					t.Errorf("%d of %d events equal, want all", equal, n)
				}
				return
			}
			if equal != 0 || sameID != 0 {
				t.Errorf("different seeds: %d equal events, %d equal ids; want 0", equal, sameID)
			}
			if sameType > n/2 {
				t.Errorf("different seeds: %d of %d events have the same type; want different streams", sameType, n)
			}
		})
	}
}

func TestIDs(t *testing.T) {
	seen := make(map[string]bool, len(sample))
	for i, ev := range sample {
		if seen[ev.ID] {
			t.Fatalf("event %d: duplicate id %q", i, ev.ID)
		}
		seen[ev.ID] = true
	}
	other := generate(Options{Seed: 8, Start: testStart}, 10_000)
	for i, ev := range other {
		if seen[ev.ID] {
			t.Fatalf("seed 8 event %d: id %q also produced by seed 7", i, ev.ID)
		}
	}
	tests := []struct {
		seed uint64
		n    int
		want string
	}{
		{0, 0, "syn-0-0"},
		{0xbeef, 0, "syn-beef-0"},
		{0xbeef, 12, "syn-beef-12"},
		{math.MaxUint64, 3, "syn-ffffffffffffffff-3"},
	}
	for _, tc := range tests {
		t.Run(tc.want, func(t *testing.T) {
			evs := generate(Options{Seed: tc.seed, Start: testStart}, tc.n+1)
			if got := evs[tc.n].ID; got != tc.want {
				t.Errorf("id of event %d = %q, want %q", tc.n, got, tc.want)
			}
		})
	}
}

func TestTypesInCatalog(t *testing.T) {
	sources := map[string]catalog.Source{ServerStalwart: catalog.SourceStalwart, ServerDovecot: catalog.SourceDovecot}
	t.Run("every op", func(t *testing.T) {
		for o, id := range opTypes {
			if _, ok := catalog.Lookup(id); !ok {
				t.Errorf("op %d: type %q not in the catalog", o, id)
			}
		}
	})
	t.Run("every emitted event", func(t *testing.T) {
		eachEvent(sample, func(ev *schema.Event, nested bool) {
			et, ok := catalog.Lookup(ev.Type)
			if !ok {
				t.Fatalf("event %s: type %q not in the catalog", ev.ID, ev.Type)
			}
			if ev.Level != et.Level {
				t.Fatalf("event %s (%s): level %v, want catalog default %v", ev.ID, ev.Type, ev.Level, et.Level)
			}
			if nested {
				if et.Source != catalog.SourceStalwart {
					t.Fatalf("nested %s: source %v, want stalwart", ev.Type, et.Source)
				}
				return
			}
			if want, ok := sources[ev.Server]; !ok || et.Source != want {
				t.Fatalf("event %s (%s): server %q, catalog source %v", ev.ID, ev.Type, ev.Server, et.Source)
			}
		})
	})
}

func TestMix(t *testing.T) {
	types := map[string]int{}
	servers := map[string]int{}
	for _, ev := range sample {
		types[ev.Type]++
		servers[ev.Server]++
	}
	n := float64(len(sample))
	share := func(match func(string) bool) float64 {
		c := 0
		for typ, k := range types {
			if match(typ) {
				c += k
			}
		}
		return float64(c) / n
	}
	is := func(id string) func(string) bool { return func(s string) bool { return s == id } }
	prefix := func(p string) func(string) bool { return func(s string) bool { return strings.HasPrefix(s, p) } }
	shares := []struct {
		name     string
		match    func(string) bool
		min, max float64
	}{
		{"auth.failed", is("auth.failed"), 0.005, 0.10},
		{"auth.success", is("auth.success"), 0.01, 0.15},
		{"auth.banned", is("auth.banned"), 0.00005, 0.01},
		{"delivery.*", prefix("delivery."), 0.03, 0.30},
		{"delivery.dsn-perm-fail", is("delivery.dsn-perm-fail"), 0.00001, 0.005},
		{"delivery.dsn-temp-fail", is("delivery.dsn-temp-fail"), 0.00001, 0.005},
		{"message-ingest.spam", is("message-ingest.spam"), 0.0005, 0.02},
		{"message-ingest.ham", is("message-ingest.ham"), 0.005, 0.10},
		{"network.connection-start", is("network.connection-start"), 0.02, 0.20},
		{"imap.*", prefix("imap."), 0.05, 0.50},
		{"pop3.*", prefix("pop3."), 0.0005, 0.05},
		{"jmap.*", prefix("jmap."), 0.002, 0.10},
	}
	for _, tc := range shares {
		t.Run(tc.name, func(t *testing.T) {
			if got := share(tc.match); got < tc.min || got > tc.max {
				t.Errorf("share %.4f%%, want between %.4f%% and %.2f%%", 100*got, 100*tc.min, 100*tc.max)
			}
		})
	}
	t.Run("servers", func(t *testing.T) {
		dv := float64(servers[ServerDovecot]) / n
		if dv < 0.05 || dv > 0.40 || servers[ServerStalwart]+servers[ServerDovecot] != len(sample) {
			t.Errorf("servers %v: want only stalwart and dovecot, dovecot 5-40%%", servers)
		}
	})
	t.Run("distinct types", func(t *testing.T) {
		if len(types) < 30 {
			t.Errorf("%d distinct types, want at least 30", len(types))
		}
	})
	for _, id := range []string{
		"smtp.ehlo", "smtp.mail-from", "smtp.rcpt-to", "smtp.spf-from-pass", "smtp.dkim-pass",
		"smtp.dmarc-pass", "queue.queue-message", "queue.queue-message-submission",
		"delivery.attempt-start", "delivery.delivered", "auth.too-many-attempts",
		"network.drop-blocked", "imap.select", "pop3.fetch", "jmap.method-call",
		"auth.request-finished", "imap.command-finished", "mail.delivery-finished",
		"client.connection-connected", "client.connection-disconnected", "http.request-finished",
	} {
		t.Run("has "+id, func(t *testing.T) {
			if types[id] == 0 {
				t.Errorf("no %s event in %d events", id, len(sample))
			}
		})
	}
}

func TestMixWeights(t *testing.T) {
	mix := New(Options{Start: testStart}).Mix()
	sum := 0.0
	names := map[string]bool{}
	for _, w := range mix {
		if w.Weight <= 0 || w.Name == "" || w.Events == "" || names[w.Name] ||
			(w.Server != ServerStalwart && w.Server != ServerDovecot) {
			t.Errorf("bad mix entry %+v", w)
		}
		names[w.Name] = true
		sum += w.Weight
	}
	if math.Abs(sum-1) > 1e-9 {
		t.Errorf("weights sum to %v, want 1", sum)
	}
}

func TestFieldKinds(t *testing.T) {
	tests := []struct {
		server, key string
		kinds       []schema.Kind
	}{
		{ServerStalwart, "spanId", []schema.Kind{schema.KindUint}},
		{ServerStalwart, "accountName", []schema.Kind{schema.KindString}},
		{ServerStalwart, "accountId", []schema.Kind{schema.KindUint}},
		{ServerStalwart, "listenerId", []schema.Kind{schema.KindString}},
		{ServerStalwart, "localPort", []schema.Kind{schema.KindUint}},
		{ServerStalwart, "remoteIp", []schema.Kind{schema.KindIP}},
		{ServerStalwart, "remotePort", []schema.Kind{schema.KindUint}},
		{ServerStalwart, "elapsed", []schema.Kind{schema.KindDuration}},
		{ServerStalwart, "size", []schema.Kind{schema.KindUint}},
		{ServerStalwart, "from", []schema.Kind{schema.KindString}},
		{ServerStalwart, "to", []schema.Kind{schema.KindString, schema.KindList}},
		{ServerStalwart, "queueId", []schema.Kind{schema.KindUint}},
		{ServerStalwart, "code", []schema.Kind{schema.KindUint}},
		{ServerStalwart, "nextRetry", []schema.Kind{schema.KindTime}},
		{ServerStalwart, "causedBy", []schema.Kind{schema.KindString, schema.KindEvent}},
		{ServerDovecot, "remote_ip", []schema.Kind{schema.KindIP}},
		{ServerDovecot, "remote_port", []schema.Kind{schema.KindUint}},
		{ServerDovecot, "user", []schema.Kind{schema.KindString}},
		{ServerDovecot, "duration", []schema.Kind{schema.KindDuration}},
		{ServerDovecot, "bytes_in", []schema.Kind{schema.KindUint}},
		{ServerDovecot, "bytes_out", []schema.Kind{schema.KindUint}},
		{ServerDovecot, "tagged_reply_state", []schema.Kind{schema.KindString}},
		{ServerDovecot, "message_size", []schema.Kind{schema.KindUint}},
		{ServerDovecot, "client_ip", []schema.Kind{schema.KindIP}},
	}
	for _, tc := range tests {
		t.Run(tc.server+"/"+tc.key, func(t *testing.T) {
			seen := map[schema.Kind]int{}
			for _, ev := range sample {
				if ev.Server != tc.server {
					continue
				}
				if v, ok := ev.Get(tc.key); ok {
					seen[v.Kind()]++
				}
			}
			for _, k := range tc.kinds {
				if seen[k] == 0 {
					t.Errorf("no %s value of kind %v (seen %v)", tc.key, k, seen)
				}
				delete(seen, k)
			}
			if len(seen) > 0 {
				t.Errorf("%s has unexpected kinds %v", tc.key, seen)
			}
		})
	}
	t.Run("list elements", func(t *testing.T) {
		for _, ev := range sample {
			if v, ok := ev.Get("to"); ok && v.Kind() == schema.KindList {
				if len(v.List()) == 0 {
					t.Fatalf("event %s: empty to list", ev.ID)
				}
				for _, e := range v.List() {
					if e.Kind() != schema.KindString {
						t.Fatalf("event %s: to element of kind %v", ev.ID, e.Kind())
					}
				}
			}
		}
	})
}

func TestAddresses(t *testing.T) {
	ranges := []netip.Prefix{
		netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("198.51.100.0/24"),
		netip.MustParsePrefix("203.0.113.0/24"), netip.MustParsePrefix("2001:db8::/32"),
	}
	inRanges := func(a netip.Addr) bool {
		for _, p := range ranges {
			if p.Contains(a) {
				return true
			}
		}
		return false
	}
	domains := []string{"@example.com", "@example.net", "@example.org"}
	var v4, v6, mails int
	eachEvent(sample, func(ev *schema.Event, _ bool) {
		for _, f := range ev.Fields {
			vals := []schema.Value{f.Value}
			if f.Value.Kind() == schema.KindList {
				vals = f.Value.List()
			}
			for _, v := range vals {
				switch v.Kind() {
				case schema.KindIP:
					a := v.IP()
					if !inRanges(a) {
						t.Fatalf("event %s: %s=%v outside the documentation ranges", ev.ID, f.Key, a)
					}
					if a.Is4() {
						v4++
					} else {
						v6++
					}
				case schema.KindString:
					s := v.Str()
					if !strings.Contains(s, "@") || strings.ContainsAny(s, " <>:") {
						continue // not an address
					}
					mails++
					ok := false
					for _, d := range domains {
						ok = ok || strings.HasSuffix(s, d)
					}
					if !ok {
						t.Fatalf("event %s: %s=%q not at example.com/.net/.org", ev.ID, f.Key, s)
					}
				}
			}
		}
	})
	if v6 == 0 || v4 < v6 || mails == 0 {
		t.Errorf("%d IPv4, %d IPv6, %d mail addresses: want both families, mostly IPv4, and addresses", v4, v6, mails)
	}
}

func TestSessions(t *testing.T) {
	type span struct {
		host     string
		first    string
		ended    bool
		listener bool
	}
	spans := map[uint64]*span{}
	queued := map[uint64]bool{}
	var starts, ends, deliveries int
	for _, ev := range sample {
		if ev.Server != ServerStalwart {
			continue
		}
		v, ok := ev.Get("spanId")
		if !ok {
			if ev.Type != "network.drop-blocked" {
				t.Fatalf("event %s (%s) has no spanId", ev.ID, ev.Type)
			}
			continue
		}
		sp := spans[v.Uint()]
		if sp == nil {
			sp = &span{host: ev.Host, first: ev.Type}
			spans[v.Uint()] = sp
		}
		if sp.host != ev.Host {
			t.Fatalf("event %s: span %d on %s and %s", ev.ID, v.Uint(), sp.host, ev.Host)
		}
		if sp.ended {
			t.Fatalf("event %s (%s) after the end of its span", ev.ID, ev.Type)
		}
		switch ev.Type {
		case "network.connection-start":
			starts++
			if sp.first != ev.Type {
				t.Fatalf("event %s: connection-start not first in its span (%s was)", ev.ID, sp.first)
			}
		case "network.connection-end":
			ends++
			sp.ended = true
			if sp.first != "network.connection-start" {
				t.Fatalf("event %s: connection-end of a span that began with %s", ev.ID, sp.first)
			}
		case "queue.queue-message", "queue.queue-message-submission":
			queued[mustGet(t, &ev, "queueId").Uint()] = true
		case "delivery.attempt-start":
			deliveries++
			if id := mustGet(t, &ev, "queueId").Uint(); !queued[id] {
				t.Fatalf("event %s: delivery of queueId %d that was never queued", ev.ID, id)
			}
		}
	}
	if starts == 0 || ends == 0 || ends > starts || deliveries == 0 {
		t.Errorf("%d connection-start, %d connection-end, %d deliveries", starts, ends, deliveries)
	}
	if len(spans) > starts+deliveries {
		t.Errorf("%d spans for %d connections and %d deliveries", len(spans), starts, deliveries)
	}
}

func mustGet(t *testing.T, ev *schema.Event, key string) schema.Value {
	t.Helper()
	v, ok := ev.Get(key)
	if !ok {
		t.Fatalf("event %s (%s) has no %s", ev.ID, ev.Type, key)
	}
	return v
}

func TestTimestamps(t *testing.T) {
	tests := []struct {
		name string
		rate float64
		want float64 // events per second
	}{
		{"default", 0, DefaultRate},
		{"slow", 50, 50},
		{"fast", 1e6, 1e6},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			const n = 20_000
			evs := generate(Options{Seed: 3, Start: testStart, Rate: tc.rate}, n)
			if !evs[0].Time.Equal(testStart) {
				t.Errorf("first event at %v, want %v", evs[0].Time, testStart)
			}
			for i := 1; i < n; i++ {
				if evs[i].Time.Before(evs[i-1].Time) {
					t.Fatalf("event %d at %v before event %d at %v", i, evs[i].Time, i-1, evs[i-1].Time)
				}
			}
			got := float64(n-1) / evs[n-1].Time.Sub(evs[0].Time).Seconds()
			if math.Abs(got-tc.want)/tc.want > 0.05 {
				t.Errorf("rate %.1f events/s, want %.1f ±5%%", got, tc.want)
			}
		})
	}
}

func TestOptions(t *testing.T) {
	hostSet := func(hs ...string) map[string]bool {
		m := map[string]bool{}
		for _, h := range hs {
			m[h] = true
		}
		return m
	}
	tests := []struct {
		name          string
		opts          Options
		stalwart, dov map[string]bool
	}{
		{"defaults", Options{}, hostSet(DefaultHosts...), hostSet(DefaultDovecotHosts...)},
		{"custom hosts", Options{Hosts: []string{"a.test"}, DovecotHosts: []string{"b.test", "c.test"}},
			hostSet("a.test"), hostSet("b.test", "c.test")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := time.Now()
			evs := generate(tc.opts, 5000)
			after := time.Now()
			if tc.opts.Start.IsZero() {
				if first := evs[0].Time; first.Before(before) || first.After(after) || first.Location() != time.UTC {
					t.Errorf("first event at %v, want UTC between %v and %v", first, before, after)
				}
			}
			seen := map[string]map[string]bool{ServerStalwart: {}, ServerDovecot: {}}
			for _, ev := range evs {
				want := tc.stalwart
				if ev.Server == ServerDovecot {
					want = tc.dov
				}
				if !want[ev.Host] {
					t.Fatalf("%s event on host %q, want one of %v", ev.Server, ev.Host, want)
				}
				seen[ev.Server][ev.Host] = true
			}
			if len(seen[ServerStalwart]) != len(tc.stalwart) || len(seen[ServerDovecot]) != len(tc.dov) {
				t.Errorf("hosts used %v, want all of %v and %v", seen, tc.stalwart, tc.dov)
			}
		})
	}
}

// TestNextAllocs guards the load-test path: one allocation (the id) per
// event, plus the rare per-session strings, lists and nested events.
func TestNextAllocs(t *testing.T) {
	g := New(Options{Seed: 1, Start: testStart})
	var ev schema.Event
	for range 1000 {
		g.Next(&ev)
	}
	if got := testing.AllocsPerRun(10_000, func() { g.Next(&ev) }); got > 1.5 {
		t.Errorf("%.2f allocations per event, want at most 1.5", got)
	}
}

func BenchmarkNext(b *testing.B) {
	g := New(Options{Seed: 1, Start: testStart})
	var ev schema.Event
	b.ReportAllocs()
	for b.Loop() {
		g.Next(&ev)
	}
}
