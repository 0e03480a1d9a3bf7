package catalog

import (
	"bytes"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/mailtel/mailtel/catalog/internal/gen/catgen"
)

// Seed counts: the Stalwart table has 541 rows; the Dovecot document has 28
// event headings (the issue text said 27, but every heading is a real event).
const (
	wantStalwart = 541
	wantDovecot  = 28
	wantTotal    = wantStalwart + wantDovecot
	wantKeys     = 74
)

func TestCounts(t *testing.T) {
	counts := map[Source]int{}
	for _, et := range All() {
		counts[et.Source]++
	}
	tests := []struct {
		name string
		got  int
		want int
	}{
		{"total All", len(All()), wantTotal},
		{"total Len", Len(), wantTotal},
		{"stalwart", counts[SourceStalwart], wantStalwart},
		{"dovecot", counts[SourceDovecot], wantDovecot},
		{"unknown source", counts[SourceUnknown], 0},
		{"stalwart keys", len(StalwartKeys()), wantKeys},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Errorf("got %d, want %d", tt.got, tt.want)
			}
		})
	}
}

func TestDefaultLevels(t *testing.T) {
	tests := []struct {
		id     string
		source Source
		level  Level
	}{
		{"auth.success", SourceStalwart, LevelInfo},
		{"telemetry.update", SourceStalwart, LevelDisable},
		{"delivery.dsn-perm-fail", SourceStalwart, LevelInfo},
		{"auth.failed", SourceStalwart, LevelDebug},
		{"acme.auth-error", SourceStalwart, LevelWarn},
		{"tls.not-configured", SourceStalwart, LevelError},
		{"auth.request-finished", SourceDovecot, LevelInfo},
		{"auth.passdb-request-started", SourceDovecot, LevelDebug},
		{"http.request-redirected", SourceDovecot, LevelDebug},
		{"client.connection-disconnected", SourceDovecot, LevelDebug},
	}
	for _, tt := range tests {
		t.Run(tt.id, func(t *testing.T) {
			et, ok := Lookup(tt.id)
			if !ok {
				t.Fatalf("Lookup(%q) not found", tt.id)
			}
			if et.Source != tt.source || et.Level != tt.level {
				t.Errorf("got source %v level %v, want %v %v", et.Source, et.Level, tt.source, tt.level)
			}
		})
	}
}

// subjectTokenRe is what an id token may hold: valid in a NATS subject
// (no '.', '*', '>' or whitespace) and restricted further to [a-z0-9-].
var subjectTokenRe = regexp.MustCompile(`^[a-z0-9-]+$`)

func TestIDs(t *testing.T) {
	all := All()
	if !sort.SliceIsSorted(all, func(i, j int) bool { return all[i].ID < all[j].ID }) {
		t.Error("All() is not sorted by ID")
	}
	seen := map[string]bool{}
	natives := map[string]bool{}
	for i := range all {
		et := &all[i]
		t.Run(et.ID, func(t *testing.T) {
			if seen[et.ID] {
				t.Errorf("duplicate id")
			}
			seen[et.ID] = true
			if natives[et.Native] {
				t.Errorf("duplicate native name %q", et.Native)
			}
			natives[et.Native] = true
			toks := strings.Split(et.ID, ".")
			if len(toks) != 2 || !subjectTokenRe.MatchString(toks[0]) || !subjectTokenRe.MatchString(toks[1]) {
				t.Errorf("id is not two [a-z0-9-] tokens: %q", toks)
			}
			if et.Category+"."+et.Event != et.ID {
				t.Errorf("Category %q + Event %q != ID", et.Category, et.Event)
			}
			if et.Index != i {
				t.Errorf("Index = %d, want %d", et.Index, i)
			}
			if et.Subject() != "events."+et.ID {
				t.Errorf("Subject() = %q", et.Subject())
			}
			if et.Description == "" {
				t.Error("empty description")
			}
			if !et.Level.Valid() {
				t.Errorf("invalid level %d", et.Level)
			}
			if et.Source == SourceStalwart && (et.Native != et.ID || et.Section != "" || len(et.Fields) != 0) {
				t.Errorf("stalwart type has Native %q, Section %q, %d fields", et.Native, et.Section, len(et.Fields))
			}
			if got, ok := Lookup(et.ID); !ok || got != et {
				t.Errorf("Lookup does not return the type itself")
			}
			if got, ok := LookupNative(et.Native); !ok || got != et {
				t.Errorf("LookupNative(%q) does not return the type itself", et.Native)
			}
			if got, ok := LookupSubject(et.Subject()); !ok || got != et {
				t.Errorf("LookupSubject(%q) does not return the type itself", et.Subject())
			}
		})
	}
}

func TestLookups(t *testing.T) {
	tests := []struct {
		name   string
		lookup func(string) (*EventType, bool)
		in     string
		want   string // id, or "" for not found
	}{
		{"id stalwart", Lookup, "auth.success", "auth.success"},
		{"id dovecot", Lookup, "auth.request-finished", "auth.request-finished"},
		{"id unknown", Lookup, "auth.nope", ""},
		{"id native dovecot name", Lookup, "auth_request_finished", ""},
		{"id empty", Lookup, "", ""},
		{"id case matters", Lookup, "Auth.Success", ""},
		{"native stalwart", LookupNative, "auth.success", "auth.success"},
		{"native dovecot", LookupNative, "auth_request_finished", "auth.request-finished"},
		{"native dovecot id is not native", LookupNative, "auth.request-finished", ""},
		{"native unknown", LookupNative, "auth_nope", ""},
		{"subject events", LookupSubject, "events.auth.success", "auth.success"},
		{"subject routed", LookupSubject, "routed.siem.auth.success", "auth.success"},
		{"subject dovecot", LookupSubject, "events.http.request-finished", "http.request-finished"},
		{"subject bare id", LookupSubject, "delivery.dsn-perm-fail", "delivery.dsn-perm-fail"},
		{"subject unknown", LookupSubject, "events.auth.nope", ""},
		{"subject one token", LookupSubject, "events", ""},
		{"subject trailing dot", LookupSubject, "events.auth.", ""},
		{"subject leading dot", LookupSubject, ".success", ""},
		{"subject empty", LookupSubject, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			et, ok := tt.lookup(tt.in)
			switch {
			case tt.want == "" && ok:
				t.Errorf("%q: found %s, want not found", tt.in, et.ID)
			case tt.want != "" && !ok:
				t.Errorf("%q: not found, want %s", tt.in, tt.want)
			case ok && et.ID != tt.want:
				t.Errorf("%q: got %s, want %s", tt.in, et.ID, tt.want)
			case !ok && et != nil:
				t.Errorf("%q: not found but returned %v", tt.in, et)
			}
		})
	}
}

func TestDovecotMapping(t *testing.T) {
	examples := []struct{ name, id string }{
		{"auth_request_finished", "auth.request-finished"},
		{"auth_client_userdb_lookup_started", "auth.client-userdb-lookup-started"},
		{"client_connection_disconnected", "client.connection-disconnected"},
		{"mail_delivery_finished", "mail.delivery-finished"},
	}
	for _, ex := range examples {
		t.Run(ex.name, func(t *testing.T) {
			if got := DovecotID(ex.name); got != ex.id {
				t.Errorf("DovecotID(%q) = %q, want %q", ex.name, got, ex.id)
			}
			if got := DovecotName(ex.id); got != ex.name {
				t.Errorf("DovecotName(%q) = %q, want %q", ex.id, got, ex.name)
			}
		})
	}
	for _, et := range All() {
		if et.Source != SourceDovecot {
			continue
		}
		t.Run(et.Native, func(t *testing.T) {
			if got := DovecotID(et.Native); got != et.ID {
				t.Errorf("DovecotID = %q, want %q", got, et.ID)
			}
			if got := DovecotName(et.ID); got != et.Native {
				t.Errorf("DovecotName(%q) = %q, want %q", et.ID, got, et.Native)
			}
			if got := DovecotLevel(et.Native); got != et.Level {
				t.Errorf("DovecotLevel = %v, catalog has %v", got, et.Level)
			}
			if other, ok := LookupNative(DovecotID(et.Native)); ok {
				t.Errorf("id %s is also the native name of %s event %s", et.ID, other.Source, other.ID)
			}
			if et.Section == "" || len(et.Fields) == 0 {
				t.Errorf("Section %q, %d fields; want both", et.Section, len(et.Fields))
			}
			wantDesc := et.Section + ": " + strings.ReplaceAll(et.Native, "_", " ")
			if et.Description != wantDesc {
				t.Errorf("Description = %q, want %q", et.Description, wantDesc)
			}
		})
	}
}

var fieldNameRe = regexp.MustCompile(`^[a-z_]+$`)

func TestDovecotFields(t *testing.T) {
	tests := []struct {
		native string
		want   []string
	}{
		{"client_connection_disconnected", []string{"client_ip", "client_port", "ip", "port", "bytes_in", "bytes_out", "reason"}},
		{"server_connection_disconnected", []string{"client_ip", "bytes_in", "reason"}},
		{"http_request_finished", []string{"status_code", "attempts", "redirects", "bytes_in", "bytes_out"}},
		{"http_request_redirected", []string{"status_code", "attempts", "redirects", "bytes_in", "bytes_out"}},
		{"http_request_retried", []string{"status_code", "bytes_out"}},
		{"mail_delivery_finished", []string{"message_id", "message_size", "rcpt_to"}},
		{"auth_request_finished", []string{"user", "login_user", "master_user", "policy_result"}},
		{"imap_command_finished", []string{"tag", "name", "bytes_in", "bytes_out"}},
	}
	for _, tt := range tests {
		t.Run(tt.native, func(t *testing.T) {
			et, ok := LookupNative(tt.native)
			if !ok {
				t.Fatalf("LookupNative(%q) not found", tt.native)
			}
			have := map[string]bool{}
			for _, f := range et.Fields {
				have[f.Name] = true
			}
			for _, name := range tt.want {
				if !have[name] {
					t.Errorf("field %s missing from %v", name, et.Fields)
				}
			}
		})
	}
	t.Run("login_user description is unwrapped", func(t *testing.T) {
		et, _ := LookupNative("auth_request_finished")
		want := "when doing login using master_user, this is the user we are logging in as"
		for _, f := range et.Fields {
			if f.Name == "login_user" && f.Description != want {
				t.Errorf("login_user: %q, want %q", f.Description, want)
			}
		}
	})
	for _, et := range All() {
		if et.Source != SourceDovecot {
			continue
		}
		t.Run("well-formed/"+et.Native, func(t *testing.T) {
			seen := map[string]bool{}
			for _, f := range et.Fields {
				if !fieldNameRe.MatchString(f.Name) || f.Description == "" {
					t.Errorf("malformed field %+v", f)
				}
				if seen[f.Name] {
					t.Errorf("duplicate field %s", f.Name)
				}
				seen[f.Name] = true
			}
		})
	}
}

func TestStalwartKeys(t *testing.T) {
	keys := StalwartKeys()
	byName := map[string]string{}
	for _, k := range keys {
		if _, dup := byName[k.Name]; dup {
			t.Errorf("duplicate key %s", k.Name)
		}
		byName[k.Name] = k.Description
	}
	tests := []struct{ name, desc string }{
		{"accountId", "Unique identifier for an account"},
		{"remoteIp", "Remote IP address"},
		{"elapsed", "Elapsed time since a specific point"},
		{"value", "Value of a property or measurement"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, ok := byName[tt.name]; !ok || got != tt.desc {
				t.Errorf("got %q (found %v), want %q", got, ok, tt.desc)
			}
		})
	}
	if len(keys) > 0 && keys[0].Name != "accountId" {
		t.Errorf("first key %s, want accountId (seed order)", keys[0].Name)
	}
}

func TestParseLevel(t *testing.T) {
	tests := []struct {
		in      string
		want    Level
		wantErr bool
	}{
		{"trace", LevelTrace, false},
		{"DEBUG", LevelDebug, false},
		{"Info", LevelInfo, false},
		{" info ", LevelInfo, false},
		{"WARN", LevelWarn, false},
		{"warning", LevelWarn, false},
		{"error", LevelError, false},
		{"DISABLE", LevelDisable, false},
		{"disabled", LevelDisable, false},
		{"off", LevelDisable, false},
		{"", 0, true},
		{"fatal", 0, true},
		{"info2", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseLevel(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if err == nil && got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
			// The generator's copy of the level names must agree.
			name, gerr := catgen.ParseLevel(tt.in)
			if (gerr != nil) != tt.wantErr || (gerr == nil && name != tt.want.String()) {
				t.Errorf("catgen.ParseLevel = %q, %v; want %q", name, gerr, tt.want)
			}
		})
	}
}

func TestLevelText(t *testing.T) {
	tests := []struct {
		level Level
		want  string
		valid bool
	}{
		{LevelTrace, "trace", true},
		{LevelDebug, "debug", true},
		{LevelInfo, "info", true},
		{LevelWarn, "warn", true},
		{LevelError, "error", true},
		{LevelDisable, "disable", true},
		{Level(9), "level(9)", false},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			if got := tt.level.String(); got != tt.want {
				t.Errorf("String() = %q, want %q", got, tt.want)
			}
			if tt.level.Valid() != tt.valid {
				t.Errorf("Valid() = %v", !tt.valid)
			}
			b, err := tt.level.MarshalText()
			if !tt.valid {
				if err == nil {
					t.Errorf("MarshalText of invalid level succeeded: %q", b)
				}
				return
			}
			if err != nil || string(b) != tt.want {
				t.Fatalf("MarshalText = %q, %v", b, err)
			}
			var back Level
			if err := back.UnmarshalText(bytes.ToUpper(b)); err != nil || back != tt.level {
				t.Errorf("UnmarshalText(%q) = %v, %v", bytes.ToUpper(b), back, err)
			}
		})
	}
}

func TestRecords(t *testing.T) {
	tests := []struct {
		threshold, event Level
		want             bool
	}{
		{LevelInfo, LevelInfo, true},
		{LevelInfo, LevelWarn, true},
		{LevelInfo, LevelError, true},
		{LevelInfo, LevelDebug, false},
		{LevelTrace, LevelTrace, true},
		{LevelTrace, LevelError, true},
		{LevelError, LevelWarn, false},
		{LevelTrace, LevelDisable, false},
		{LevelError, LevelDisable, false},
		{LevelDisable, LevelError, false},
		{LevelDisable, LevelDisable, false},
	}
	for _, tt := range tests {
		t.Run(tt.threshold.String()+"/"+tt.event.String(), func(t *testing.T) {
			if got := tt.threshold.Records(tt.event); got != tt.want {
				t.Errorf("%v.Records(%v) = %v, want %v", tt.threshold, tt.event, got, tt.want)
			}
		})
	}
}

func TestLevels(t *testing.T) {
	l := NewLevels(map[string]Level{
		"auth.success":          LevelDebug,
		"auth.request-finished": LevelWarn,
		"vendor.new-event":      LevelError, // not in the catalog
	})
	tests := []struct {
		id   string
		want Level
	}{
		{"auth.success", LevelDebug},                // override
		{"auth.request-finished", LevelWarn},        // override of a Dovecot type
		{"auth.failed", LevelDebug},                 // catalog default
		{"telemetry.update", LevelDisable},          // catalog default
		{"delivery.dsn-perm-fail", LevelInfo},       // catalog default
		{"vendor.new-event", LevelError},            // unknown-id override
		{"vendor.other-event", l.Default},           // neither
		{"events.auth.success", l.Default},          // a subject is not an id
		{"", l.Default},                             // empty
		{"auth.client-request-started", LevelDebug}, // Dovecot default
	}
	for _, tt := range tests {
		t.Run(tt.id, func(t *testing.T) {
			if got := l.Of(tt.id); got != tt.want {
				t.Errorf("Of(%q) = %v, want %v", tt.id, got, tt.want)
			}
			if et, ok := Lookup(tt.id); ok {
				if got := l.OfType(et); got != tt.want {
					t.Errorf("OfType = %v, want %v", got, tt.want)
				}
			}
		})
	}
	t.Run("no overrides is the catalog", func(t *testing.T) {
		d := NewLevels(nil)
		for i := range All() {
			et := &All()[i]
			if got := d.OfType(et); got != et.Level {
				t.Errorf("%s: %v, want %v", et.ID, got, et.Level)
			}
		}
	})
	t.Run("override does not change the catalog", func(t *testing.T) {
		if et, _ := Lookup("auth.success"); et.Level != LevelInfo {
			t.Errorf("catalog default changed to %v", et.Level)
		}
	})
}

func TestParseOverrides(t *testing.T) {
	got, errs := ParseOverrides(map[string]string{
		"auth.success":     "DEBUG",
		"auth.failed":      "loud",
		"telemetry.update": "info",
		"x.y":              "",
	})
	if want := map[string]Level{"auth.success": LevelDebug, "telemetry.update": LevelInfo}; len(got) != len(want) ||
		got["auth.success"] != want["auth.success"] || got["telemetry.update"] != want["telemetry.update"] {
		t.Errorf("overrides = %v, want %v", got, want)
	}
	if len(errs) != 2 {
		t.Fatalf("got %d errors (%v), want 2", len(errs), errs)
	}
	for i, prefix := range []string{"tracing.level.auth.failed:", "tracing.level.x.y:"} {
		if !strings.HasPrefix(errs[i].Error(), prefix) {
			t.Errorf("error %d = %q, want prefix %q", i, errs[i], prefix)
		}
	}
}

// TestGeneratedUpToDate regenerates the catalog from seeds/ and compares it
// with the committed catalog_gen.go.
func TestGeneratedUpToDate(t *testing.T) {
	want, err := catgen.Generate("seeds")
	if err != nil {
		t.Fatalf("generate: %v", err)
	}
	got, err := os.ReadFile("catalog_gen.go")
	if err != nil {
		t.Fatalf("read committed file: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("catalog_gen.go is out of date with seeds/: run go generate ./catalog")
	}
	again, err := catgen.Generate("seeds")
	if err != nil || !bytes.Equal(again, want) {
		t.Fatalf("second generation differs (err %v): generator is not deterministic", err)
	}
}

func TestLookupAllocs(t *testing.T) {
	l := NewLevels(map[string]Level{"auth.success": LevelDebug, "vendor.x": LevelWarn})
	tests := []struct {
		name string
		fn   func()
	}{
		{"Lookup", func() { Lookup("delivery.dsn-perm-fail") }},
		{"LookupNative", func() { LookupNative("auth_request_finished") }},
		{"LookupSubject", func() { LookupSubject("routed.siem.auth.success") }},
		{"Levels.Of", func() { l.Of("vendor.x") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if n := testing.AllocsPerRun(100, tt.fn); n != 0 {
				t.Errorf("%v allocs per run, want 0", n)
			}
		})
	}
}

func BenchmarkLookup(b *testing.B) {
	ids := []string{"auth.success", "delivery.dsn-perm-fail", "auth.request-finished", "nope.nope"}
	subjects := []string{"events.auth.success", "routed.siem.delivery.dsn-perm-fail"}
	b.Run("id", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			Lookup(ids[i%len(ids)])
		}
	})
	b.Run("subject", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			LookupSubject(subjects[i%len(subjects)])
		}
	})
}
