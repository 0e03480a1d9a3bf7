package config

import (
	"errors"
	"fmt"
	"strings"

	"github.com/BurntSushi/toml"
)

// keyLines returns the line of every key of a TOML document by its dotted
// path ("webhook.siem.url", "tracing.level.auth.success" for both the
// quoted and the dotted form), or nil when the document does not parse.
// A table the document opens only implicitly ([tracr.log] opens tracr)
// gets the first line of its keys.
//
// BurntSushi/toml keeps the position of every key but has no API for it;
// it gives it in the ParseError of a value whose UnmarshalTOML fails,
// which is what lineProbe is.
func keyLines(data []byte) map[string]int {
	var top map[string]toml.Primitive
	md, err := toml.Decode(string(data), &top)
	if err != nil {
		return nil
	}
	lines := map[string]int{}
	var walk func(path []string, m map[string]toml.Primitive) int
	walk = func(path []string, m map[string]toml.Primitive) int {
		first := 0
		for k, prim := range m {
			p := append(path[:len(path):len(path)], k)
			line := probeLine(&md, prim)
			// A table (which Type does not name when it is implicit).
			if t := md.Type(p...); t == "Hash" || t == "" {
				var sub map[string]toml.Primitive
				if md.PrimitiveDecode(prim, &sub) == nil {
					if l := walk(p, sub); line == 0 {
						line = l
					}
				}
			}
			if line > 0 {
				lines[strings.Join(p, ".")] = line
				if first == 0 || line < first {
					first = line
				}
			}
		}
		return first
	}
	walk(nil, top)
	return lines
}

// lineProbe fails to decode anything, so that the decoder says where the
// value it was given is.
type lineProbe struct{}

func (*lineProbe) UnmarshalTOML(any) error { return errors.New("probe") }

func probeLine(md *toml.MetaData, prim toml.Primitive) int {
	var pe toml.ParseError
	if errors.As(md.PrimitiveDecode(prim, &lineProbe{}), &pe) {
		return pe.Position.Line
	}
	return 0
}

// lineError is an error about a key of the file, with the line the key
// is on, put first as the TOML decoder's syntax errors put it:
// "line 7: webhook.siem.url: want an http:// or https:// URL".
type lineError struct {
	line int
	err  error
}

func (e *lineError) Error() string { return fmt.Sprintf("line %d: %s", e.line, e.err) }

func (e *lineError) Unwrap() error { return e.err }

// addLines gives the errors and the warnings that start with the key path
// of a key the document has ("path: ...") the line of that key: "line 7:
// webhook.siem.url: ...". The errors after the first n (Validate's) get
// none when adjusted (the keys adjust changed) has their key or a key
// under it: their value is not the file's. Errors that have a line
// already, or are about a key the file does not set (a default), stay as
// they are. A list element's path (events[2]) gets the line of its list.
// Joined errors are taken one by one.
func (c *Config) addLines(data []byte, errs []error, n int, adjusted map[string]bool) []error {
	if len(errs) == 0 && len(c.Warnings) == 0 {
		return errs
	}
	lines := keyLines(data)
	if lines == nil {
		return errs
	}
	lineOf := func(msg string, fromFile bool) int {
		path, _, ok := strings.Cut(msg, ": ")
		if !ok || strings.ContainsAny(path, " \n") {
			return 0 // "line 3: ...", or not about a key
		}
		if i := strings.IndexByte(path, '['); i > 0 && strings.HasSuffix(path, "]") {
			path = path[:i]
		}
		if !fromFile {
			for k := range adjusted {
				if k == path || strings.HasPrefix(k, path+".") {
					return 0
				}
			}
		}
		return lines[path]
	}
	var out []error
	var add func(error, bool)
	add = func(err error, fromFile bool) {
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				add(e, fromFile)
			}
			return
		}
		if line := lineOf(err.Error(), fromFile); line > 0 {
			err = &lineError{line, err}
		}
		out = append(out, err)
	}
	for i, err := range errs {
		add(err, i < n)
	}
	for i, w := range c.Warnings {
		if line := lineOf(w, false); line > 0 {
			c.Warnings[i] = fmt.Sprintf("line %d: %s", line, w)
		}
	}
	return out
}

// values returns every value of c by key path, unredacted, to see which
// ones a change touched.
func (c *Config) values() map[string]string {
	out := map[string]string{}
	var walk func(prefix string, t *table)
	walk = func(prefix string, t *table) {
		for _, e := range *t {
			if sub, ok := e.value.(*table); ok {
				walk(prefix+e.key+".", sub)
			} else {
				out[prefix+e.key] = fmt.Sprint(e.value)
			}
		}
	}
	b := effectiveBuilder{c: c, raw: true}
	walk("", b.tree())
	return out
}

// changedKeys returns the keys whose values differ between a and b.
func changedKeys(a, b map[string]string) map[string]bool {
	out := map[string]bool{}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			out[k] = true
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			out[k] = true
		}
	}
	return out
}
