package tracer

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

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

// The tests below read text lines back with textReader, a tokenizer that
// knows the text format's quoting the way a careful log parser would:
//
//	line   = time " " level " " header " " fields "\n"
//	header = (quoted | description) " (" name ")"
//	fields = [ name " = " value { ", " name " = " value } ]
//	name   = quoted | identifier          (ASCII letters, digits, . - _)
//	value  = quoted | bare | "[" [ value { ", " value } ] "]"
//	       | header [ " { " fields " }" ]  (a nested event)
//
// A description without quotes is a catalog description (no "(", ",",
// "[", "]", "{", "}", "=" or quote in it: TestTextCatalogNamesArePlain) or
// an unknown type that is an identifier; a bare value has no space, ","
// or "]".

// tval is a value read back: a quoted string (str, quoted), a bare token
// (str), a list (isList, list) or a nested event (ev).
type tval struct {
	str    string
	quoted bool
	isList bool
	list   []tval
	ev     *tevent
}

type tfield struct {
	key string
	val tval
}

type tevent struct {
	desc, typ string
	fields    []tfield
}

type tline struct {
	time, level string
	tevent
}

type textReader struct {
	s string
	p int
}

func (r *textReader) errf(format string, args ...any) error {
	return fmt.Errorf("at byte %d (%q): %s", r.p, r.s[r.p:min(len(r.s), r.p+24)], fmt.Sprintf(format, args...))
}

func (r *textReader) at(lit string) bool { return strings.HasPrefix(r.s[r.p:], lit) }

func (r *textReader) eat(lit string) bool {
	if r.at(lit) {
		r.p += len(lit)
		return true
	}
	return false
}

func (r *textReader) expect(lit string) error {
	if !r.eat(lit) {
		return r.errf("want %q", lit)
	}
	return nil
}

// parseTextLine reads one line of the single-line text format.
func parseTextLine(line string) (tline, error) {
	var l tline
	body, ok := strings.CutSuffix(line, "\n")
	if !ok || strings.Contains(body, "\n") {
		return l, fmt.Errorf("not exactly one line: %q", line)
	}
	r := &textReader{s: body}
	var err error
	if l.time, err = r.word(); err != nil {
		return l, err
	}
	if l.level, err = r.word(); err != nil {
		return l, err
	}
	ev, err := r.header()
	if err != nil {
		return l, err
	}
	l.tevent = *ev
	if err := r.expect(" "); err != nil {
		return l, err
	}
	if l.fields, err = r.fields(""); err != nil {
		return l, err
	}
	if r.p != len(r.s) {
		return l, r.errf("trailing bytes")
	}
	return l, nil
}

// word reads up to and past the next space.
func (r *textReader) word() (string, error) {
	i := strings.IndexByte(r.s[r.p:], ' ')
	if i <= 0 {
		return "", r.errf("want a word and a space")
	}
	w := r.s[r.p : r.p+i]
	r.p += i + 1
	return w, nil
}

// header reads `description (type)`.
func (r *textReader) header() (*tevent, error) {
	ev := new(tevent)
	var err error
	if r.at(`"`) {
		if ev.desc, err = r.quoted(); err != nil {
			return nil, err
		}
	} else {
		i := strings.Index(r.s[r.p:], " (")
		if i < 0 {
			return nil, r.errf("no type after the description")
		}
		ev.desc = r.s[r.p : r.p+i]
		r.p += i
	}
	return ev, r.typeTail(ev)
}

// typeTail reads ` (type)` after a description.
func (r *textReader) typeTail(ev *tevent) error {
	if err := r.expect(" ("); err != nil {
		return err
	}
	var err error
	if ev.typ, err = r.name(); err != nil {
		return err
	}
	return r.expect(")")
}

func isIdentByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '-' || c == '_'
}

// name reads a key or a type: quoted, or a non-empty identifier.
func (r *textReader) name() (string, error) {
	if r.at(`"`) {
		return r.quoted()
	}
	start := r.p
	for r.p < len(r.s) && isIdentByte(r.s[r.p]) {
		r.p++
	}
	if r.p == start {
		return "", r.errf("want a name")
	}
	return r.s[start:r.p], nil
}

// fields reads fields up to end (not consumed), or to the end of the line
// if end is "".
func (r *textReader) fields(end string) ([]tfield, error) {
	atEnd := func() bool {
		if end == "" {
			return r.p == len(r.s)
		}
		return r.at(end)
	}
	var fs []tfield
	if atEnd() {
		return nil, nil
	}
	for {
		k, err := r.name()
		if err != nil {
			return nil, err
		}
		if err := r.expect(" = "); err != nil {
			return nil, err
		}
		v, err := r.value()
		if err != nil {
			return nil, err
		}
		fs = append(fs, tfield{k, v})
		if atEnd() {
			return fs, nil
		}
		if err := r.expect(", "); err != nil {
			return nil, err
		}
	}
}

func (r *textReader) value() (tval, error) {
	switch {
	case r.at(`"`):
		s, err := r.quoted()
		if err != nil {
			return tval{}, err
		}
		if r.at(" (") { // the quoted description of a nested event
			return r.event(s)
		}
		return tval{str: s, quoted: true}, nil
	case r.eat("["):
		v := tval{isList: true}
		if r.eat("]") {
			return v, nil
		}
		for {
			e, err := r.value()
			if err != nil {
				return tval{}, err
			}
			v.list = append(v.list, e)
			if r.eat("]") {
				return v, nil
			}
			if err := r.expect(", "); err != nil {
				return tval{}, err
			}
		}
	}
	end := r.p
	for end < len(r.s) && r.s[end] != ' ' && r.s[end] != ',' && r.s[end] != ']' {
		end++
	}
	if end < len(r.s) && r.s[end] == ' ' && !strings.HasPrefix(r.s[end:], " }") {
		// Not a scalar: the description of a nested event.
		i := strings.Index(r.s[r.p:], " (")
		if i < 0 {
			return tval{}, r.errf("no type after a description")
		}
		desc := r.s[r.p : r.p+i]
		r.p += i
		return r.event(desc)
	}
	if end == r.p {
		return tval{}, r.errf("want a value")
	}
	v := tval{str: r.s[r.p:end]}
	r.p = end
	return v, nil
}

// event reads the rest of a nested event after its description.
func (r *textReader) event(desc string) (tval, error) {
	ev := &tevent{desc: desc}
	if err := r.typeTail(ev); err != nil {
		return tval{}, err
	}
	if r.eat(" { ") {
		var err error
		if ev.fields, err = r.fields(" }"); err != nil {
			return tval{}, err
		}
		if err := r.expect(" }"); err != nil {
			return tval{}, err
		}
	}
	return tval{ev: ev}, nil
}

// quoted reads a quoted string and undoes its escapes.
func (r *textReader) quoted() (string, error) {
	if err := r.expect(`"`); err != nil {
		return "", err
	}
	var b []byte
	for r.p < len(r.s) {
		c := r.s[r.p]
		switch {
		case c == '"':
			r.p++
			return string(b), nil
		case c < 0x20 || c == 0x7f:
			return "", r.errf("raw control byte %#x in a quoted string", c)
		case c != '\\':
			b = append(b, c)
			r.p++
			continue
		}
		if r.p+1 >= len(r.s) {
			return "", r.errf("unfinished escape")
		}
		e := r.s[r.p+1]
		r.p += 2
		switch e {
		case 'r':
			b = append(b, '\r')
		case 'n':
			b = append(b, '\n')
		case 't':
			b = append(b, '\t')
		case '\\', '"':
			b = append(b, e)
		case 'x':
			if r.p+2 > len(r.s) {
				return "", r.errf(`short \x escape`)
			}
			n, err := strconv.ParseUint(r.s[r.p:r.p+2], 16, 8)
			if err != nil {
				return "", r.errf(`bad \x escape: %v`, err)
			}
			b = append(b, byte(n))
			r.p += 2
		case 'u':
			hexEnd := strings.IndexByte(r.s[r.p:], '}')
			if !r.at("{") || hexEnd < 2 {
				return "", r.errf(`bad \u escape`)
			}
			n, err := strconv.ParseUint(r.s[r.p+1:r.p+hexEnd], 16, 21)
			if err != nil {
				return "", r.errf(`bad \u escape: %v`, err)
			}
			b = utf8.AppendRune(b, rune(n))
			r.p += hexEnd + 1
		default:
			return "", r.errf("unknown escape \\%c", e)
		}
	}
	return "", r.errf("unterminated quoted string")
}

// wantFields is what textReader should read back from fields: spanId left
// out, strings quoted, other scalars bare.
func wantFields(t testing.TB, fs []schema.Field) []tfield {
	t.Helper()
	var out []tfield
	for _, f := range fs {
		if f.Key == "spanId" {
			continue
		}
		out = append(out, tfield{f.Key, wantValue(t, f.Value)})
	}
	return out
}

func wantValue(t testing.TB, v schema.Value) tval {
	t.Helper()
	switch v.Kind() {
	case schema.KindString:
		return tval{str: v.Str(), quoted: true}
	case schema.KindInt:
		return tval{str: strconv.FormatInt(v.Int(), 10)}
	case schema.KindUint:
		return tval{str: strconv.FormatUint(v.Uint(), 10)}
	case schema.KindIP:
		return tval{str: v.IP().String()}
	case schema.KindList:
		w := tval{isList: true}
		for _, e := range v.List() {
			w.list = append(w.list, wantValue(t, e))
		}
		return w
	case schema.KindEvent:
		ev := v.Event()
		return tval{ev: &tevent{desc: description(ev.Type), typ: ev.Type, fields: wantFields(t, ev.Fields)}}
	}
	t.Fatalf("wantValue: kind %v not supported by the test", v.Kind())
	return tval{}
}

// lineBreakProblem describes what makes out other than one line of valid
// UTF-8 without control bytes (after ANSI colour codes are removed), or
// returns "".
func lineBreakProblem(out string) string {
	body, ok := strings.CutSuffix(ansiCode.ReplaceAllString(out, ""), "\n")
	if !ok {
		return "no final newline"
	}
	if !utf8.ValidString(body) {
		return "not valid UTF-8"
	}
	for i, r := range body {
		switch {
		case r < 0x20 || r == 0x7f:
			return fmt.Sprintf("control character %U at byte %d", r, i)
		case r == 0x85 || r == 0x2028 || r == 0x2029:
			return fmt.Sprintf("line separator %U at byte %d", r, i)
		}
	}
	return ""
}

var ansiCode = regexp.MustCompile(`\x1b\[[0-9;]*m`)

func formatText(t testing.TB, f textFormatter, e *schema.Event) string {
	t.Helper()
	b, err := f.appendEvent(nil, e)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// forgedKey is a key that, written raw, would read as three fields and
// give the line an accountName the sender never sent.
const forgedKey = `x = 1, accountName = "admin", remoteIp`

func TestTextUntrustedKeys(t *testing.T) {
	tests := []struct {
		name string
		key  string
		want string // the field as written
	}{
		{"forged fields", forgedKey, `"x = 1, accountName = \"admin\", remoteIp" = "v"`},
		{"space", "a b", `"a b" = "v"`},
		{"equals", "a=b", `"a=b" = "v"`},
		{"spaced equals", "a = b", `"a = b" = "v"`},
		{"comma", "a, b", `"a, b" = "v"`},
		{"quote", `say "hi"`, `"say \"hi\"" = "v"`},
		{"lone quote", `"`, `"\"" = "v"`},
		{"backslash", `a\b`, `"a\\b" = "v"`},
		{"newline", "a\nb", `"a\nb" = "v"`},
		{"carriage return", "a\rb", `"a\rb" = "v"`},
		{"vertical tab and form feed", "a\vb\fc", `"a\x0bb\x0cc" = "v"`},
		{"line separator", "a\u2028b", `"a\u{2028}b" = "v"`},
		{"paragraph separator", "a\u2029b", `"a\u{2029}b" = "v"`},
		{"next line", "a\u0085b", `"a\u{85}b" = "v"`},
		{"latin-1 next line byte", "a\x85b", `"a\x85b" = "v"`},
		{"escape byte", "\x1b[31mred", `"\x1b[31mred" = "v"`},
		{"empty", "", `"" = "v"`},
		{"braces", "a } b { c", `"a } b { c" = "v"`},
		{"brackets", "[a]", `"[a]" = "v"`},
		{"parens", "(null)", `"(null)" = "v"`},
		{"unicode letters", "grüße", `"grüße" = "v"`},
		{"looks like a type", "auth.failed) remoteIp", `"auth.failed) remoteIp" = "v"`},
		{"camelCase", "accountName", `accountName = "v"`},
		{"dovecot snake_case", "remote_ip", `remote_ip = "v"`},
		{"dots and dashes", "a.b-c_d9", `a.b-c_d9 = "v"`},
		{"quoted spanId is not spanId", "spanId ", `"spanId " = "v"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := &schema.Event{
				Type: "auth.failed", Time: t0, Level: catalog.LevelInfo,
				Fields: []schema.Field{
					{Key: tc.key, Value: schema.String("v")},
					{Key: "accountName", Value: schema.String("alice")},
				},
			}
			got := formatText(t, textFormatter{}, e)
			want := "2025-11-27T14:59:28Z INFO Authentication failed (auth.failed) " + tc.want + `, accountName = "alice"` + "\n"
			if got != want {
				t.Errorf("got  %q\nwant %q", got, want)
			}
			checkTextLine(t, got, e)
		})
	}
}

// checkTextLine checks that out is one line that reads back as e.
func checkTextLine(t testing.TB, out string, e *schema.Event) {
	t.Helper()
	if p := lineBreakProblem(out); p != "" {
		t.Fatalf("%s in %q", p, out)
	}
	l, err := parseTextLine(ansiCode.ReplaceAllString(out, ""))
	if err != nil {
		t.Fatalf("read back %q: %v", out, err)
	}
	if l.typ != e.Type || l.desc != description(e.Type) {
		t.Errorf("read back description %q and type %q, want %q and %q", l.desc, l.typ, description(e.Type), e.Type)
	}
	if want := wantFields(t, e.Fields); !reflect.DeepEqual(l.fields, want) {
		t.Errorf("read back fields\n%#v\nwant\n%#v\nfrom %q", l.fields, want, out)
	}
}

// TestTextForgedEvent sends every kind of hostile key at once, at the top
// level, in a nested causedBy event and next to real Stalwart keys, and
// reads exactly the sent fields back.
func TestTextForgedEvent(t *testing.T) {
	hostile := []string{forgedKey, "a b", "a=b", `"`, `a"b`, "a\nb", "a\r\nb", "a\u2028b", "a\u2029b", "a\u0085b", ""}
	var fields, nested []schema.Field
	for i, k := range hostile {
		fields = append(fields, schema.Field{Key: k, Value: schema.Uint(uint64(i))})
		nested = append(nested, schema.Field{Key: k, Value: schema.String(k)})
	}
	fields = append(fields,
		schema.Field{Key: "accountName", Value: schema.String("alice")},
		schema.Field{Key: "remoteIp", Value: schema.IP(netip.MustParseAddr("192.0.2.1"))},
		schema.Field{Key: "list", Value: schema.List(schema.String("a\u2028b"), schema.Nested(&schema.Event{
			Type: "auth.failed", Fields: []schema.Field{{Key: forgedKey, Value: schema.String("x")}},
		}))},
		schema.Field{Key: "causedBy", Value: schema.Nested(&schema.Event{Type: "store.data-corruption", Fields: nested})},
		schema.Field{Key: "spanId", Value: schema.Uint(1)},
	)
	e := &schema.Event{Type: "auth.failed", Time: t0, Level: catalog.LevelWarn, Fields: fields}
	for _, tc := range []struct {
		name string
		f    textFormatter
	}{{"plain", textFormatter{}}, {"ansi", textFormatter{ansi: true}}} {
		t.Run(tc.name, func(t *testing.T) {
			out := formatText(t, tc.f, e)
			checkTextLine(t, out, e)
			if strings.Contains(out, `accountName = "admin"`) {
				t.Errorf("the forged field is readable in %q", out)
			}
		})
	}
	t.Run("multiline", func(t *testing.T) {
		out := formatText(t, textFormatter{multiline: true}, e)
		// header, the top-level fields but spanId, the nested event's fields
		// and the list's event's field, its "]" going on a line of its own.
		want := 1 + (len(fields) - 1) + len(nested) + 2
		if n := strings.Count(out, "\n"); n != want {
			t.Errorf("%d lines, want %d:\n%s", n, want, out)
		}
		for _, l := range strings.SplitAfter(out, "\n") {
			if l == "" {
				continue
			}
			if p := lineBreakProblem(strings.TrimLeft(l, "\t")); p != "" {
				t.Errorf("%s in %q", p, l)
			}
		}
	})
}

func TestTextUntrustedTypes(t *testing.T) {
	tests := []struct {
		name   string
		typ    string
		header string // description and type as written
	}{
		{"catalog", "auth.failed", "Authentication failed (auth.failed)"},
		{"dovecot catalog", "auth.request-finished", "Authentication Server: auth request finished (auth.request-finished)"},
		{"unknown identifier", "acme.brand-new_thing2", "acme.brand-new_thing2 (acme.brand-new_thing2)"},
		{"forged type", `x) accountName = "admin`, `"x) accountName = \"admin" ("x) accountName = \"admin")`},
		{"space", "auth failed", `"auth failed" ("auth failed")`},
		{"newline", "a\nb", `"a\nb" ("a\nb")`},
		{"line separator", "a\u2028b", `"a\u{2028}b" ("a\u{2028}b")`},
		{"not UTF-8", "a\xffb", `"a\xffb" ("a\xffb")`},
		{"empty", "", `"" ("")`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := &schema.Event{
				Type: tc.typ, Time: t0, Level: catalog.LevelInfo,
				Fields: []schema.Field{
					{Key: "accountName", Value: schema.String("alice")},
					{Key: "causedBy", Value: schema.Nested(&schema.Event{
						Type: tc.typ, Fields: []schema.Field{{Key: "k", Value: schema.Int(-1)}},
					})},
				},
			}
			got := formatText(t, textFormatter{}, e)
			want := "2025-11-27T14:59:28Z INFO " + tc.header + ` accountName = "alice", causedBy = ` + tc.header + " { k = -1 }\n"
			if got != want {
				t.Errorf("got  %q\nwant %q", got, want)
			}
			checkTextLine(t, got, e)
		})
	}
}

func TestTextEscapesLineBreaks(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"line separator", "a\u2028b", `a\u{2028}b`},
		{"paragraph separator", "a\u2029b", `a\u{2029}b`},
		{"next line", "a\u0085b", `a\u{85}b`},
		{"carriage return", "a\rb", `a\rb`},
		{"newline", "a\nb", `a\nb`},
		{"vertical tab", "a\vb", `a\x0bb`},
		{"form feed", "a\fb", `a\x0cb`},
		{"file, group and record separators", "\x1c\x1d\x1e", `\x1c\x1d\x1e`},
		{"delete", "\x7f", `\x7f`},
		{"lone continuation byte", "a\x85b", `a\x85b`},
		{"truncated sequence", "a\xe2\x80", `a\xe2\x80`},
		{"encoded surrogate", "\xed\xa0\x80", `\xed\xa0\x80`},
		{"replacement character passes", "\ufffd", "\ufffd"},
		{"other separators pass", "a\u2027\u202a…b", "a\u2027\u202a…b"},
		{"letters pass", "Grüße ❤ 例え", "Grüße ❤ 例え"},
		{"escapes in order", "\u2028\"\\\n\u2029", `\u{2028}\"\\\n\u{2029}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := string(appendEscaped(nil, tc.in)); got != tc.want {
				t.Errorf("appendEscaped(%q) = %q, want %q", tc.in, got, tc.want)
			}
			e := &schema.Event{Type: "auth.failed", Time: t0, Level: catalog.LevelInfo,
				Fields: []schema.Field{{Key: "v", Value: schema.String(tc.in)}}}
			out := formatText(t, textFormatter{}, e)
			if want := `(auth.failed) v = "` + tc.want + "\"\n"; !strings.HasSuffix(out, want) {
				t.Errorf("line %q does not end with %q", out, want)
			}
			checkTextLine(t, out, e)
		})
	}
}

// TestTextCatalogNamesArePlain checks that Stalwart's keys and every
// catalog id are written without quotes, as Stalwart writes them, and that
// no catalog description holds what the header's readers rely on not
// finding there.
func TestTextCatalogNamesArePlain(t *testing.T) {
	for _, k := range catalog.StalwartKeys() {
		if !isPlain(k.Name) {
			t.Errorf("key %q would be quoted", k.Name)
		}
	}
	for _, et := range catalog.All() {
		if !isPlain(et.ID) {
			t.Errorf("type %q would be quoted", et.ID)
		}
		if strings.ContainsAny(et.Description, "()[]{}=,\"\\") || lineBreakProblem(et.Description+"\n") != "" {
			t.Errorf("type %s: description %q", et.ID, et.Description)
		}
	}
}

func TestTextHostileAllocs(t *testing.T) {
	e := hostileEvent()
	buf := make([]byte, 0, 64<<10)
	allocs := testing.AllocsPerRun(100, func() {
		buf, _ = textFormatter{}.appendEvent(buf[:0], e)
	})
	if allocs != 0 {
		t.Errorf("%v allocations per event, want 0", allocs)
	}
}

// hostileEvent has quoted keys, an unknown quoted type and values with
// line separators.
func hostileEvent() *schema.Event {
	return &schema.Event{
		Type: "acme.new thing", Time: t0, Level: catalog.LevelWarn,
		Fields: []schema.Field{
			{Key: forgedKey, Value: schema.String("a\u2028b\u2029c\u0085d")},
			{Key: "accountName", Value: schema.String("Grüße ❤ \xff\"quoted\"\r\n")},
			{Key: "remote ip", Value: schema.IP(netip.MustParseAddr("192.0.2.1"))},
			{Key: "causedBy", Value: schema.Nested(&schema.Event{
				Type: "x) (y", Fields: []schema.Field{{Key: "a\nb", Value: schema.Uint(1)}},
			})},
		},
	}
}

func BenchmarkFormatTextHostile(b *testing.B) {
	e := hostileEvent()
	buf := make([]byte, 0, 64<<10)
	b.ReportAllocs()
	for b.Loop() {
		buf, _ = textFormatter{}.appendEvent(buf[:0], e)
	}
}

// FuzzTextLine formats events with arbitrary types, keys and string values
// and checks that each is one line that reads back as the event (in the
// multiline layouts: one line per field).
func FuzzTextLine(f *testing.F) {
	f.Add("auth.failed", forgedKey, "admin", "remoteIp", "a\u2028b", "store.data-corruption", "reason", "bad", uint8(0))
	f.Add("x) (y", "", "", "a b", "\r\n\v\f", "\u0085", "spanId", "\xff\x85", uint8(1))
	f.Add("acme.new", "k\u2029", "\x85", `"`, `\`, "", "=", ", ", uint8(2))
	f.Add("a\nb", "spanId", "x", "c, d = e", "} ] )", `"q"`, "\x1b[31m", "\x00", uint8(3))
	f.Fuzz(func(t *testing.T, typ, k1, v1, k2, v2, ntyp, nk, nv string, mode uint8) {
		e := &schema.Event{
			Type: typ, Time: t0, Level: catalog.LevelInfo,
			Fields: []schema.Field{
				{Key: k1, Value: schema.String(v1)},
				{Key: k2, Value: schema.List(schema.String(v2), schema.Uint(7))},
				{Key: "causedBy", Value: schema.Nested(&schema.Event{
					Type: ntyp, Fields: []schema.Field{{Key: nk, Value: schema.String(nv)}},
				})},
			},
		}
		tf := textFormatter{ansi: mode&1 != 0, multiline: mode&2 != 0}
		out := formatText(t, tf, e)
		if !tf.multiline {
			checkTextLine(t, out, e)
			return
		}
		// Multiline: the header, then one line per field, nested fields
		// one tab further in.
		type line struct {
			depth int
			f     schema.Field
		}
		var want []line
		for _, fl := range e.Fields {
			if fl.Key == "spanId" {
				continue
			}
			want = append(want, line{1, fl})
			if fl.Value.Kind() == schema.KindEvent {
				for _, nf := range fl.Value.Event().Fields {
					if nf.Key != "spanId" {
						want = append(want, line{2, nf})
					}
				}
			}
		}
		lines := strings.SplitAfter(out, "\n")
		if lines[len(lines)-1] != "" || len(lines)-2 != len(want) {
			t.Fatalf("%d lines, want %d:\n%q", len(lines)-1, len(want)+1, out)
		}
		lines = lines[:len(lines)-1]
		if p := lineBreakProblem(lines[0]); p != "" {
			t.Fatalf("header: %s in %q", p, lines[0])
		}
		for i, l := range lines[1:] {
			w := want[i]
			body := strings.TrimLeft(l, "\t")
			if depth := len(l) - len(body); depth != w.depth {
				t.Errorf("line %q: indent %d, want %d", l, depth, w.depth)
			}
			if p := lineBreakProblem(body); p != "" {
				t.Fatalf("%s in %q", p, l)
			}
			r := &textReader{s: strings.TrimSuffix(ansiCode.ReplaceAllString(body, ""), "\n")}
			k, err := r.name()
			if err == nil {
				err = r.expect(" = ")
			}
			var v tval
			if err == nil {
				v, err = r.value()
			}
			if err == nil && r.p != len(r.s) {
				err = r.errf("trailing bytes")
			}
			if err != nil {
				t.Fatalf("read back %q: %v", l, err)
			}
			wv := wantValue(t, w.f.Value)
			if wv.ev != nil {
				wv.ev.fields = nil // on the following lines
			}
			if k != w.f.Key || !reflect.DeepEqual(v, wv) {
				t.Errorf("read back %q = %#v from %q, want %q = %#v", k, v, l, w.f.Key, wv)
			}
		}
	})
}
