package config

import (
	"encoding"
	"reflect"
	"sort"
	"strings"

	"github.com/BurntSushi/toml"
	"github.com/mailtel/mailtel/pipeline/sink"
)

// stalwartSections are the top-level sections of Stalwart's configuration
// that mailtel does not read. They are ignored, so that an operator can
// paste a whole Stalwart file; any other top-level section mailtel does not
// know is an error (a typo such as [tracr.log] would otherwise configure
// nothing).
var stalwartSections = map[string]bool{
	"account": true, "acme": true, "asn": true, "auth": true, "authentication": true,
	"autodiscover": true, "bayes": true, "cache": true, "caldav": true, "calendar": true,
	"carddav": true, "certificate": true, "changes": true, "cluster": true, "config": true,
	"contact": true, "contacts": true, "dav": true, "directory": true, "email": true,
	"enterprise": true, "file-storage": true, "form": true, "groupware": true, "http": true,
	"imap": true, "jmap": true, "lookup": true, "managesieve": true, "mta-sts": true,
	"oauth": true, "oidc": true, "pop3": true, "queue": true, "report": true, "resolver": true,
	"server": true, "session": true, "sharing": true, "sieve": true, "signature": true,
	"spam-filter": true, "storage": true, "store": true, "webadmin": true, "webdav": true,
}

// suggest returns " (did you mean X?)" naming the candidate closest to
// word, or "" when none is close enough: at most 2 edits, and fewer than
// half the letters of the shorter word.
func suggest(word string, candidates []string) string {
	best, bestD := "", 1<<30
	for _, c := range candidates {
		if c == word {
			continue
		}
		d := levenshtein(word, c)
		if d < bestD || (d == bestD && c < best) {
			best, bestD = c, d
		}
	}
	n := min(len(word), len(best))
	if best == "" || bestD > 2 || 2*bestD >= max(n, 2) {
		return ""
	}
	return " (did you mean " + best + "?)"
}

// levenshtein is the edit distance between a and b (bytes: keys and event
// ids are ASCII).
func levenshtein(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

var (
	unmarshalerType     = reflect.TypeFor[toml.Unmarshaler]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// isLeaf reports whether values of t are decoded whole (not walked key by
// key): anything but structs and maps of structs, and types that decode
// themselves (Duration, Size).
func isLeaf(t reflect.Type) bool {
	if reflect.PointerTo(t).Implements(unmarshalerType) || reflect.PointerTo(t).Implements(textUnmarshalerType) {
		return true
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Struct:
		return false
	case reflect.Map:
		e := t.Elem()
		for e.Kind() == reflect.Pointer {
			e = e.Elem()
		}
		return e.Kind() != reflect.Struct
	}
	return true
}

// tomlFields maps the TOML keys of struct type t to their field index
// paths; untagged embedded structs (Retry) lend theirs.
func tomlFields(t reflect.Type) map[string][]int {
	out := map[string][]int{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("toml")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if name == "" && f.Anonymous && f.Type.Kind() == reflect.Struct {
			for k, idx := range tomlFields(f.Type) {
				out[k] = append([]int{i}, idx...)
			}
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = []int{i}
	}
	return out
}

// knownKeys returns the keys the table at path may hold (nil when path is
// not a table mailtel reads key by key).
func knownKeys(path toml.Key) []string {
	t := reflect.TypeFor[Config]()
	for _, k := range path {
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		switch t.Kind() {
		case reflect.Struct:
			idx, ok := tomlFields(t)[k]
			if !ok {
				return nil
			}
			t = t.FieldByIndex(idx).Type
		case reflect.Map:
			t = t.Elem()
		default:
			return nil
		}
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || isLeaf(t) {
		return nil
	}
	ks := make([]string, 0)
	for k := range tomlFields(t) {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// topSections is every top-level section name mailtel or Stalwart uses.
func topSections() []string {
	var out []string
	for s := range sections {
		out = append(out, s)
	}
	for s := range stalwartSections {
		out = append(out, s)
	}
	for _, s := range sink.Sections() {
		out = append(out, s.Name)
	}
	sort.Strings(out)
	return out
}
