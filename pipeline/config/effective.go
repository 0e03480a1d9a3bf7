package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/mailtel/mailtel/pipeline/config/value"
	"github.com/mailtel/mailtel/pipeline/sink"
)

// RedactedSecret is what EffectiveTOML and EffectiveJSON print for a
// secret the file gave as a literal value.
const RedactedSecret = "<redacted>"

// EffectiveTOML returns the configuration the processes run with as a
// configuration file: every section and key mailtel reads, in the names a
// file uses ([tracer.<id>], [webhook.<id>], [metrics.prometheus],
// [tracing.level], [nats], ...), each with its effective value, defaults
// filled in:
//
//   - durations as a file writes them ("30s", "1m30s", "24h", "7d": whole
//     days from two days up), sizes in the largest binary unit that divides
//     them ("10GiB", "8MiB"), else in bytes;
//   - a tracer's or webhook's discard-after and max-backoff resolved (its
//     own, else [sinks]'), enable = true where the file left it out;
//   - [tracing.level] flattened to quoted event ids ("auth.success" =
//     "debug") with the level names in lower case.
//
// Secrets never appear. A secret key (every key that accepts %{env:NAME}%
// and %{file:PATH}%: the passwords, tokens and signature keys of [nats],
// [publisher] and [webhook.<id>], auth.secret, every webhook header value)
// prints the reference the file gave, which is what the file already says
// and loads the same secret again, or, for a value written in the file,
// RedactedSecret. URLs (nats.url, webhook.<id>.url, any value with "://")
// print as value.RedactURL shows them: the password of their user info, a NATS
// token user and every query value replaced by "xxxxx". The output is
// therefore a valid configuration that loads and prints the same again,
// but where it holds "<redacted>" or "xxxxx" that placeholder is the
// secret it would use: put the real one back (better, a %{env:...}%
// reference) before running a process with it.
//
// Not printed: what mailtel accepts for Stalwart's sake and ignores (a
// tracer's buffered, [metrics.open-telemetry], the keys of a disabled
// tracer of a type mailtel does not run, Stalwart's own sections), and
// [sinks] max-deliver, which a valid file does not have.
func (c *Config) EffectiveTOML() []byte {
	var b bytes.Buffer
	b.WriteString(effectiveHeader)
	writeTOML(&b, c.effectiveTree(), nil)
	return b.Bytes()
}

// EffectiveJSON returns what EffectiveTOML does as one indented JSON
// object: a member per section, key names as in the file, durations and
// sizes as the strings a file writes, secrets as EffectiveTOML prints them.
func (c *Config) EffectiveJSON() []byte {
	var compact, out bytes.Buffer
	writeJSON(&compact, c.effectiveTree())
	if err := json.Indent(&out, compact.Bytes(), "", "  "); err != nil {
		panic("config: effective JSON: " + err.Error()) // writeJSON writes valid JSON
	}
	out.WriteByte('\n')
	return out.Bytes()
}

const effectiveHeader = `# mailtel's effective configuration: every key with the value the processes
# use, defaults filled in. Secrets show the %{env:...}% or %{file:...}%
# reference the file gave, else "` + RedactedSecret + `"; URLs show their password and
# query values as xxxxx. Put real secrets back before running with this file.
`

// entry is one key of a table: value is a string, int64, bool, []string
// or *table.
type entry struct {
	key   string
	value any
}

type table []entry

// effectiveTree builds the table EffectiveTOML and EffectiveJSON print.
func (c *Config) effectiveTree() *table {
	b := effectiveBuilder{c: c, secrets: map[string]bool{}}
	for path := range c.secretFields() {
		b.secrets[path] = true
	}
	return b.tree()
}

// tree is the whole configuration: mailtel's own sections, with the sink
// sections after [tracing], as a Stalwart file has them.
func (b *effectiveBuilder) tree() *table {
	core := b.value(reflect.ValueOf(b.c).Elem(), nil).(*table)
	out := table{}
	for _, e := range *core {
		out = append(out, e)
		if e.key == "tracing" {
			out = append(out, b.sinkTables()...)
		}
	}
	return &out
}

// sinkTables returns one entry per sink section of the registry, in
// Stalwart's order: a keyed section ([webhook]) is there even when empty.
// A sink's discard-after and max-backoff are resolved (its own, else
// [sinks]'); a disabled tracer of a type mailtel does not run prints only
// its type and enable = false.
func (b *effectiveBuilder) sinkTables() []entry {
	secs := sink.Sections()
	sort.SliceStable(secs, func(i, j int) bool { return sectionRank(secs[i].Name) < sectionRank(secs[j].Name) })
	var out []entry
	for _, sec := range secs {
		keyed := &table{}
		for _, s := range b.c.SinkSections {
			if s.Section != sec.Name {
				continue
			}
			t := &table{{"type", s.ForeignType}, {"enable", false}}
			if s.Config != nil {
				t = b.value(reflect.ValueOf(s.Config).Elem(), strings.Split(s.Path(), ".")).(*table)
				if _, ok := s.Config.(interface{ RetryOverride() sink.Retry }); ok {
					r := b.c.RetryOf(SinkSpec{Config: s.Config})
					for i := range *t {
						switch (*t)[i].key {
						case "discard-after":
							(*t)[i].value = value.FormatDuration(r.DiscardAfter.D())
						case "max-backoff":
							(*t)[i].value = value.FormatDuration(r.MaxBackoff.D())
						}
					}
				}
			}
			if sec.Single {
				out = append(out, entry{sec.Name, t})
			} else {
				*keyed = append(*keyed, entry{s.ID, t})
			}
		}
		if !sec.Single {
			out = append(out, entry{sec.Name, keyed})
		}
	}
	return out
}

type effectiveBuilder struct {
	c       *Config
	secrets map[string]bool // key paths of the secrets
	raw     bool            // values as they are: neither redacted nor resolved
}

var (
	durationType = reflect.TypeFor[Duration]()
	sizeType     = reflect.TypeFor[Size]()
)

// value returns what the value at path prints as, or nil to leave it out.
func (b *effectiveBuilder) value(v reflect.Value, path []string) any {
	p := strings.Join(path, ".")
	switch v.Type() {
	case durationType:
		return value.FormatDuration(time.Duration(v.Int()))
	case sizeType:
		return value.FormatSize(v.Int())
	}
	if p == "tracing.level" {
		levels := &table{}
		for _, id := range sortedKeys(b.c.Tracing.Overrides) {
			*levels = append(*levels, entry{id, b.c.Tracing.Overrides[id].String()})
		}
		return levels
	}
	if v.CanInterface() {
		if pr, ok := v.Interface().(sink.Printer); ok {
			return pr.Print()
		}
	}
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			if v.Type().Elem().Kind() == reflect.Bool {
				return true // enable: a section is enabled unless it says otherwise
			}
			return nil
		}
		return b.value(v.Elem(), path)
	case reflect.Interface:
		return nil // accepted for Stalwart's sake and ignored
	case reflect.Struct:
		t := &table{}
		b.fields(v, path, t)
		return t
	case reflect.Map:
		t := &table{}
		keys := make([]string, 0, v.Len())
		for _, k := range v.MapKeys() {
			keys = append(keys, k.String())
		}
		sort.Strings(keys)
		for _, k := range keys {
			kv := reflect.ValueOf(k).Convert(v.Type().Key())
			if x := b.value(v.MapIndex(kv), append(path[:len(path):len(path)], k)); x != nil {
				*t = append(*t, entry{k, x})
			}
		}
		return t
	case reflect.Slice:
		if v.Type().Elem().Kind() != reflect.String {
			break
		}
		out := make([]string, v.Len())
		for i := range out {
			out[i] = v.Index(i).String()
		}
		return out
	case reflect.String:
		s := v.String()
		if b.raw {
			return s
		}
		if ref, ok := b.c.refs[p]; ok && b.secrets[p] {
			return ref
		}
		if b.secrets[p] && s != "" {
			return RedactedSecret
		}
		if path[len(path)-1] == "url" || strings.Contains(s, "://") {
			return value.RedactURL(s)
		}
		return s
	case reflect.Bool:
		return v.Bool()
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return v.Int()
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return int64(v.Uint())
	}
	// A new kind of field: printing it unchecked could show a secret.
	panic(fmt.Sprintf("config: effective: %s has a type the printer does not know (%s)", p, v.Type()))
}

// fields appends the keys of struct v to t in field order; an untagged
// embedded struct (Retry) lends its keys.
func (b *effectiveBuilder) fields(v reflect.Value, path []string, t *table) {
	for i := 0; i < v.NumField(); i++ {
		f := v.Type().Field(i)
		tag := f.Tag.Get("toml")
		if !f.IsExported() || tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if name == "" && f.Anonymous && f.Type.Kind() == reflect.Struct {
			b.fields(v.Field(i), path, t)
			continue
		}
		if name == "" {
			name = f.Name
		}
		if x := b.value(v.Field(i), append(path[:len(path):len(path)], name)); x != nil {
			*t = append(*t, entry{name, x})
		}
	}
}

// writeTOML writes t, the table at path: its plain keys under its header,
// then its tables. A table holding only tables gets no header of its own
// ([tracer] before [tracer.log]); an empty one does, to show it is there.
func writeTOML(b *bytes.Buffer, t *table, path []string) {
	plain := len(*t) == 0
	for _, e := range *t {
		if _, ok := e.value.(*table); !ok {
			plain = true
		}
	}
	if len(path) > 0 && plain {
		keys := make([]string, len(path))
		for i, k := range path {
			keys[i] = tomlKey(k)
		}
		fmt.Fprintf(b, "\n[%s]\n", strings.Join(keys, "."))
	}
	for _, e := range *t {
		if _, ok := e.value.(*table); !ok {
			fmt.Fprintf(b, "%s = %s\n", tomlKey(e.key), tomlValue(e.value))
		}
	}
	for _, e := range *t {
		if sub, ok := e.value.(*table); ok {
			writeTOML(b, sub, append(path[:len(path):len(path)], e.key))
		}
	}
}

func tomlValue(v any) string {
	switch v := v.(type) {
	case string:
		return tomlString(v)
	case int64:
		return strconv.FormatInt(v, 10)
	case bool:
		return strconv.FormatBool(v)
	case []string:
		q := make([]string, len(v))
		for i, s := range v {
			q[i] = tomlString(s)
		}
		return "[" + strings.Join(q, ", ") + "]"
	}
	panic(fmt.Sprintf("config: effective: no TOML for %T", v))
}

// tomlKey returns k bare when TOML allows it, else quoted.
func tomlKey(k string) string {
	if k == "" {
		return `""`
	}
	for _, r := range k {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return tomlString(k)
		}
	}
	return k
}

// tomlString quotes s as a TOML basic string.
func tomlString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\n':
			b.WriteString(`\n`)
		case '\t':
			b.WriteString(`\t`)
		case '\r':
			b.WriteString(`\r`)
		default:
			if r < 0x20 || r == 0x7f {
				fmt.Fprintf(&b, `\u%04X`, r)
			} else {
				b.WriteRune(r)
			}
		}
	}
	b.WriteByte('"')
	return b.String()
}

// writeJSON writes v compactly, keys in table order.
func writeJSON(b *bytes.Buffer, v any) {
	switch v := v.(type) {
	case *table:
		b.WriteByte('{')
		for i, e := range *v {
			if i > 0 {
				b.WriteByte(',')
			}
			writeJSON(b, e.key)
			b.WriteByte(':')
			writeJSON(b, e.value)
		}
		b.WriteByte('}')
	case []string:
		b.WriteByte('[')
		for i, s := range v {
			if i > 0 {
				b.WriteByte(',')
			}
			writeJSON(b, s)
		}
		b.WriteByte(']')
	default:
		enc := json.NewEncoder(b)
		enc.SetEscapeHTML(false) // "<redacted>", not "\u003credacted\u003e"
		if err := enc.Encode(v); err != nil {
			panic("config: effective JSON: " + err.Error())
		}
		b.Truncate(b.Len() - 1) // Encode's newline
	}
}
