package pipeline

import (
	"testing"

	"github.com/mailtel/mailtel/catalog"
	"github.com/mailtel/mailtel/pipeline/config"
)

// routeConfig has a level-based tracer, an allowlisted webhook and the
// metrics sink with a blocklist, so Route has several kinds of rule to
// have compiled.
const routeConfig = `
[tracing.level]
"auth.success" = "warn"

[tracer.log]
type = "log"
level = "info"
path = "/var/log/mailtel"

[webhook.siem]
url = "https://siem.example.com/mail"
events = ["auth.*", "smtp.*-fail"]

[metrics.prometheus]
enable = true

[metrics]
disabled-events = ["network.*"]
`

func routeTable(t testing.TB) *Table {
	t.Helper()
	cfg, err := config.Parse([]byte(routeConfig))
	if err != nil {
		t.Fatal(err)
	}
	return NewTable(cfg.SinkSpecs(), cfg.Levels)
}

func TestTableRoute(t *testing.T) {
	tab := routeTable(t)
	for _, tc := range []struct {
		id    string
		known bool
		sinks []string
	}{
		{"auth.success", true, []string{"log", "metrics", "siem"}},    // warn by override
		{"network.closed", true, nil},                                 // trace: below info; blocked by metrics
		{"delivery.dsn-perm-fail", true, []string{"log", "metrics"}},  // not allowlisted by siem
		{"mailtel.not-in-catalog", false, []string{"log", "metrics"}}, // info by default
	} {
		t.Run(tc.id, func(t *testing.T) {
			if tc.known {
				if _, ok := catalog.Lookup(tc.id); !ok {
					t.Fatalf("%s is not in the catalog; the case tests nothing", tc.id)
				}
			}
			targets, known := tab.Route(tc.id)
			if known != tc.known {
				t.Errorf("known = %v, want %v", known, tc.known)
			}
			var got []string
			for _, tg := range targets {
				got = append(got, tg.Sink)
				if want := RoutedPrefix + tg.Sink + "." + tc.id; tg.Subject != want {
					t.Errorf("subject %q, want %q", tg.Subject, want)
				}
			}
			if len(got) != len(tc.sinks) {
				t.Fatalf("sinks %v, want %v", got, tc.sinks)
			}
			for i := range got {
				if got[i] != tc.sinks[i] {
					t.Fatalf("sinks %v, want %v", got, tc.sinks)
				}
			}
		})
	}
}

// TestRouteAllocatesNothing holds the table to its contract: routing a
// catalog type (and a type outside the catalog, once cached) allocates
// nothing.
func TestRouteAllocatesNothing(t *testing.T) {
	tab := routeTable(t)
	for _, id := range []string{"auth.success", "delivery.dsn-perm-fail", "mailtel.not-in-catalog"} {
		t.Run(id, func(t *testing.T) {
			tab.Route(id) // caches an unknown type
			if n := testing.AllocsPerRun(1000, func() { tab.Route(id) }); n != 0 {
				t.Errorf("Route(%q) allocates %.1f times, want 0", id, n)
			}
		})
	}
}

// BenchmarkRoute routes a catalog type, the router's per-event decision.
func BenchmarkRoute(b *testing.B) {
	tab := routeTable(b)
	ids := []string{"auth.success", "delivery.dsn-perm-fail", "smtp.rcpt-to", "imap.command-finished"}
	for _, id := range ids {
		if _, ok := catalog.Lookup(id); !ok {
			b.Fatalf("%s is not in the catalog", id)
		}
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if targets, _ := tab.Route(ids[i%len(ids)]); len(targets) == 0 {
			b.Fatal("no targets")
		}
		i++
	}
}

// TestRouterTableAndWants: the router's table leaves out the sinks the
// server feeds, and Wants answers as Route does, for those sinks too,
// without allocating for a catalog type.
func TestRouterTableAndWants(t *testing.T) {
	cfg, err := config.Parse([]byte(routeConfig + "\n[router]\nserver-fan-out = [\"log\", \"metrics\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	tab := NewTable(cfg.SinkSpecs(), cfg.Levels)
	rt := tab.RouterTable()
	if got := len(rt.Specs()); got != 1 || rt.Specs()[0].Name != "siem" {
		t.Fatalf("router table sinks %v, want [siem]", rt.Specs())
	}
	if full := NewTable(routeTable(t).Specs(), cfg.Levels); full.RouterTable() != full {
		t.Error("RouterTable of a table without server fan-out is not the table itself")
	}
	for _, id := range []string{"auth.success", "network.closed", "delivery.dsn-perm-fail", "mailtel.not-in-catalog"} {
		targets, _ := tab.Route(id)
		for _, sink := range []string{"log", "metrics", "siem"} {
			want := false
			for _, tg := range targets {
				want = want || tg.Sink == sink
			}
			if got := tab.Wants(sink, id); got != want {
				t.Errorf("Wants(%s, %s) = %v, Route says %v", sink, id, got, want)
			}
		}
		if _, ok := catalog.Lookup(id); ok {
			if n := testing.AllocsPerRun(100, func() { tab.Wants("log", id) }); n != 0 {
				t.Errorf("Wants(log, %s) allocates %v times", id, n)
			}
		}
	}
}
