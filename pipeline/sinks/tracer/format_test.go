package tracer

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"flag"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailtel/mailtel/catalog"
	"github.com/mailtel/mailtel/schema"
)

// update rewrites the golden files: go test ./pipeline/sinks/tracer -update
var update = flag.Bool("update", false, "rewrite the golden files in testdata")

var t0 = time.Date(2025, 11, 27, 14, 59, 28, 123456789, time.UTC)

// formatEvents cover every value kind, a causedBy chain two levels deep,
// an unknown type, unicode, and strings that need escaping.
func formatEvents() []*schema.Event {
	return []*schema.Event{
		{
			ID: "1001", Type: "auth.success", Time: t0, Level: catalog.LevelInfo,
			Host: "mx1.example.com", Server: "stalwart",
			Fields: []schema.Field{
				{Key: "accountName", Value: schema.String("postmaster@example.com")},
				{Key: "accountId", Value: schema.Uint(3)},
				{Key: "spanId", Value: schema.Uint(8814)},
				{Key: "listenerId", Value: schema.String("imaptls")},
				{Key: "localPort", Value: schema.Uint(993)},
				{Key: "remoteIp", Value: schema.IP(netip.MustParseAddr("2a12:bec4:1be0:a8f1::1"))},
				{Key: "remotePort", Value: schema.Uint(42376)},
			},
		},
		{
			ID: "1002", Type: "smtp.mail-from", Time: t0.Add(time.Second), Level: catalog.LevelDebug,
			Server: "stalwart",
			Fields: []schema.Field{
				{Key: "from", Value: schema.String("a\", spanId = 999, x = \"b\r\n\x1b\\")},
				{Key: "size", Value: schema.Int(-1024)},
				{Key: "ratio", Value: schema.Float(0.25)},
				{Key: "big", Value: schema.Float(1e21)},
				{Key: "nan", Value: schema.Float(math.NaN())},
				{Key: "inf", Value: schema.Float(math.Inf(-1))},
				{Key: "tls", Value: schema.Bool(true)},
				{Key: "plain", Value: schema.Bool(false)},
				{Key: "expires", Value: schema.Time(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))},
				{Key: "seen", Value: schema.Time(time.Date(2026, 1, 2, 3, 4, 5, 500_000_000, time.UTC))},
				{Key: "elapsed", Value: schema.Duration(1534 * time.Millisecond)},
				{Key: "remoteIp", Value: schema.IP(netip.MustParseAddr("192.0.2.7"))},
				{Key: "contents", Value: schema.Bytes([]byte("hi!\x00\xff"))},
				{Key: "to", Value: schema.List(schema.String("b@example.org"), schema.String("jürgen@例え.jp"), schema.Uint(7))},
				{Key: "empty", Value: schema.List()},
				{Key: "none", Value: schema.Value{}},
				{Key: "size", Value: schema.Uint(1)}, // repeated key
			},
		},
		{
			ID: "1003", Type: "store.ldap-error", Time: t0.Add(2 * time.Second), Level: catalog.LevelError,
			Host: "mx2", Server: "stalwart",
			Fields: []schema.Field{
				{Key: "details", Value: schema.String("Grüße ❤ \"quoted\"\ttab")},
				{Key: "causedBy", Value: schema.Nested(&schema.Event{
					Type: "store.data-corruption",
					Fields: []schema.Field{
						{Key: "reason", Value: schema.String("bad")},
						{Key: "spanId", Value: schema.Uint(5)},
						{Key: "causedBy", Value: schema.Nested(&schema.Event{
							Type:   "store.ldap-error",
							Fields: []schema.Field{{Key: "code", Value: schema.Int(49)}},
						})},
					},
				})},
				{Key: "after", Value: schema.Nested(&schema.Event{Type: "auth.failed"})},
				{Key: "list", Value: schema.List(schema.Nested(&schema.Event{
					Type: "auth.failed", Fields: []schema.Field{{Key: "x", Value: schema.Uint(1)}},
				}))},
			},
		},
		{
			ID: "1004", Type: "acme.brand-new-thing", Time: t0.Add(3 * time.Second), Level: catalog.LevelWarn,
			Server: "stalwart-next",
			Fields: []schema.Field{
				{Key: "weird\nkey", Value: schema.String("v")},
				{Key: "ipv4in6", Value: schema.IP(netip.MustParseAddr("::ffff:198.51.100.1"))},
			},
		},
		{
			ID: "1005", Type: "auth.request-finished", Time: t0.Add(4 * time.Second), Level: catalog.LevelTrace,
			Host: "imap1", Server: "dovecot",
		},
	}
}

var formatCases = []struct {
	name   string
	golden string
	fmt    func() formatter
}{
	{"json", "json.golden", func() formatter { return newJSONFormatter() }},
	{"text", "text.golden", func() formatter { return textFormatter{} }},
	{"text multiline", "text-multiline.golden", func() formatter { return textFormatter{multiline: true} }},
	{"text ansi", "text-ansi.golden", func() formatter { return textFormatter{ansi: true} }},
	{"text ansi multiline", "text-ansi-multiline.golden", func() formatter { return textFormatter{ansi: true, multiline: true} }},
}

func TestFormatGolden(t *testing.T) {
	for _, tc := range formatCases {
		t.Run(tc.name, func(t *testing.T) {
			f := tc.fmt()
			var out []byte
			for _, e := range formatEvents() {
				var err error
				if out, err = f.appendEvent(out, e); err != nil {
					t.Fatalf("format %s: %v", e.ID, err)
				}
			}
			golden(t, tc.golden, out)
		})
	}
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden file (run with -update to create it): %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("output differs from %s (run with -update to accept)\ngot:\n%s\nwant:\n%s", path, got, want)
	}
}

// TestTextStalwartLine checks the text format against lines Stalwart
// writes (the first from the unit test of Stalwart's FmtWriter).
func TestTextStalwartLine(t *testing.T) {
	tests := []struct {
		name string
		e    *schema.Event
		want string
	}{
		{
			name: "stalwart fmt_text test",
			e: &schema.Event{
				Type: "smtp.mail-from", Time: time.Unix(1_700_000_000, 0), Level: catalog.LevelInfo,
				Fields: []schema.Field{
					{Key: "spanId", Value: schema.Uint(7)},
					{Key: "hostname", Value: schema.String("mx.example.org")},
					{Key: "from", Value: schema.String("a\", spanId = 999, x = \"b\r\n\x1b")},
					{Key: "size", Value: schema.Uint(1024)},
					{Key: "elapsed", Value: schema.Duration(15 * time.Millisecond)},
					{Key: "contents", Value: schema.Bytes([]byte("hi!"))},
					{Key: "code", Value: schema.Int(-3)},
					{Key: "total", Value: schema.List(schema.Bool(true), schema.Value{})},
					{Key: "remoteIp", Value: schema.IP(netip.MustParseAddr("10.0.0.1"))},
					{Key: "causedBy", Value: schema.Nested(&schema.Event{
						Type:   "store.data-corruption",
						Fields: []schema.Field{{Key: "reason", Value: schema.String("bad")}},
					})},
				},
			},
			want: `2023-11-14T22:13:20Z INFO SMTP MAIL FROM command (smtp.mail-from) hostname = "mx.example.org", ` +
				`from = "a\", spanId = 999, x = \"b\r\n\x1b", size = 1024, elapsed = 15ms, contents = base64:aGkh, code = -3, ` +
				`total = [true, (null)], remoteIp = 10.0.0.1, causedBy = Data corruption detected (store.data-corruption) { reason = "bad" }` + "\n",
		},
		{
			name: "auth.success",
			e:    formatEvents()[0],
			want: `2025-11-27T14:59:28Z INFO Authentication successful (auth.success) accountName = "postmaster@example.com", ` +
				`accountId = 3, listenerId = "imaptls", localPort = 993, remoteIp = 2a12:bec4:1be0:a8f1::1, remotePort = 42376` + "\n",
		},
		{
			name: "no fields keeps the space after the id",
			e:    &schema.Event{Type: "auth.failed", Time: t0, Level: catalog.LevelDebug},
			want: "2025-11-27T14:59:28Z DEBUG Authentication failed (auth.failed) \n",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := textFormatter{}.appendEvent(nil, tc.e)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Errorf("got  %q\nwant %q", got, tc.want)
			}
		})
	}
}

// TestJSONShape decodes every json line and checks the envelope and the
// JSON types of the data values.
func TestJSONShape(t *testing.T) {
	f := newJSONFormatter()
	events := formatEvents()
	var out []byte
	for _, e := range events {
		var err error
		if out, err = f.appendEvent(out, e); err != nil {
			t.Fatal(err)
		}
	}
	lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	if len(lines) != len(events) {
		t.Fatalf("%d lines for %d events", len(lines), len(events))
	}
	type line struct {
		ID, Type, Level, Time, Source, Host, Message string
		Data                                         map[string]any
	}
	got := make([]line, len(lines))
	for i, l := range lines {
		if err := json.Unmarshal([]byte(l), &got[i]); err != nil {
			t.Fatalf("line %d is not JSON: %v\n%s", i, err, l)
		}
	}
	tests := []struct {
		name string
		ok   bool
	}{
		{"envelope", got[0].ID == "1001" && got[0].Type == "auth.success" && got[0].Level == "info" &&
			got[0].Time == "2025-11-27T14:59:28.123456789Z" && got[0].Source == "stalwart" &&
			got[0].Host == "mx1.example.com" && got[0].Message == "Authentication successful"},
		{"no host", got[1].Host == "" && !strings.Contains(lines[1], `"host"`)},
		{"uint", got[0].Data["accountId"] == 3.0},
		{"ip", got[0].Data["remoteIp"] == "2a12:bec4:1be0:a8f1::1"},
		{"string escaped", got[1].Data["from"] == "a\", spanId = 999, x = \"b\r\n\x1b\\"},
		{"first of repeated keys", got[1].Data["size"] == -1024.0},
		{"float", got[1].Data["ratio"] == 0.25 && got[1].Data["big"] == 1e21},
		{"nan as string", got[1].Data["nan"] == "NaN" && got[1].Data["inf"] == "-Inf"},
		{"bool", got[1].Data["tls"] == true && got[1].Data["plain"] == false},
		{"time", got[1].Data["expires"] == "2026-01-02T03:04:05Z" && got[1].Data["seen"] == "2026-01-02T03:04:05.5Z"},
		{"duration ms", got[1].Data["elapsed"] == 1534.0},
		{"bytes base64", got[1].Data["contents"] == "aGkhAP8="},
		{"list", len(got[1].Data["to"].([]any)) == 3 && got[1].Data["to"].([]any)[1] == "jürgen@例え.jp"},
		{"none is null", got[1].Data["none"] == nil && strings.Contains(lines[1], `"none":null`)},
		{"nested two deep", got[2].Data["causedBy"].(map[string]any)["data"].(map[string]any)["causedBy"].(map[string]any)["type"] == "store.ldap-error"},
		{"unknown type message", got[3].Message == "acme.brand-new-thing" && got[3].Data["weird\nkey"] == "v"},
		{"no fields", got[4].Data != nil && len(got[4].Data) == 0 && got[4].Level == "trace"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if !tc.ok {
				t.Errorf("check failed; lines:\n%s", out)
			}
		})
	}
}

func TestAppendJSONStringMatchesEncodingJSON(t *testing.T) {
	for _, s := range []string{"", "plain", "q\"b\\s", "\x00\x1f\x7f", "ü❤例", "bad \xff utf8", "\u2028"} {
		t.Run(s, func(t *testing.T) {
			var back string
			if err := json.Unmarshal(schema.AppendJSONString(nil, s), &back); err != nil {
				t.Fatal(err)
			}
			want := strings.ToValidUTF8(s, "\ufffd")
			if back != want {
				t.Errorf("round trip %q, want %q", back, want)
			}
		})
	}
}

func TestAppendBase64(t *testing.T) {
	for _, s := range []string{"", "f", "fo", "foo", "foob", "fooba", "foobar", "\x00\xff\xfe"} {
		t.Run(s, func(t *testing.T) {
			want := base64Std(s)
			if got := string(appendBase64(nil, s)); got != want {
				t.Errorf("got %q, want %q", got, want)
			}
		})
	}
}

func base64Std(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func BenchmarkFormatJSON(b *testing.B) { benchFormat(b, newJSONFormatter()) }
func BenchmarkFormatText(b *testing.B) { benchFormat(b, textFormatter{}) }

func benchFormat(b *testing.B, f formatter) {
	events := formatEvents()[:3]
	buf := make([]byte, 0, 64<<10)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		var err error
		if buf, err = f.appendEvent(buf[:0], events[i%len(events)]); err != nil {
			b.Fatal(err)
		}
	}
}
