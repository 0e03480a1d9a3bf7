package docs

import (
	"bytes"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/mailtel/mailtel/pipeline/config"
	"github.com/mailtel/mailtel/pipeline/sink"
)

// TestConfigReferenceCurrent: the committed config-reference.md is what
// Reference makes of the code as it is, so a key added, renamed or
// documented anew shows in the reference in the same commit.
func TestConfigReferenceCurrent(t *testing.T) {
	want, err := Reference()
	if err != nil {
		t.Fatalf("Reference: %v", err)
	}
	got, err := os.ReadFile(ReferenceFile)
	if err != nil {
		t.Fatalf("read the committed reference: %v (run go generate ./docs)", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("docs/%s is out of date with the configuration structs and the registered sink kinds: run go generate ./docs\n%s",
			ReferenceFile, firstDiff(got, want))
	}
	again, err := Reference()
	if err != nil || !bytes.Equal(again, want) {
		t.Fatalf("a second Reference differs (err %v): the generator is not deterministic", err)
	}
}

// firstDiff names the first line where the committed file and the
// generated one differ.
func firstDiff(got, want []byte) string {
	g, w := strings.Split(string(got), "\n"), strings.Split(string(want), "\n")
	for i := 0; i < len(g) || i < len(w); i++ {
		var gl, wl string
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if gl != wl {
			return fmt.Sprintf("first difference, line %d:\n  committed: %s\n  generated: %s", i+1, gl, wl)
		}
	}
	return ""
}

// TestReferenceNamesEveryKey: every key of mailtel's own sections and of
// every registered sink kind has a row in the reference, under its own
// section (for a typed section, under its own kind), found by a walk of
// the toml tags independent of the generator's.
func TestReferenceNamesEveryKey(t *testing.T) {
	ref, err := Reference()
	if err != nil {
		t.Fatal(err)
	}
	cfg := reflect.TypeFor[config.Config]()
	for i := 0; i < cfg.NumField(); i++ {
		f := cfg.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		if !f.IsExported() || name == "-" {
			continue
		}
		part := referencePart(t, ref, "## `["+name+"]`")
		for _, k := range tomlLeaves(f.Type, "") {
			checkRow(t, part, "["+name, k)
		}
	}
	for _, f := range sink.Factories() {
		var part string
		switch {
		case f.Typed:
			part = referencePart(t, ref, "### `type = \""+f.Kind+"\"`")
		case f.Single:
			part = referencePart(t, ref, "## `["+f.Section+"]`")
		default:
			part = referencePart(t, ref, "## `["+f.Section+".<id>]`")
		}
		for _, k := range tomlLeaves(reflect.TypeOf(f.NewConfig()), "") {
			checkRow(t, part, "["+f.Section, k)
		}
	}
}

// referencePart returns the reference from the heading line to the next
// heading.
func referencePart(t *testing.T, ref []byte, heading string) string {
	t.Helper()
	s := string(ref)
	i := strings.Index(s, "\n"+heading+"\n")
	if i < 0 {
		t.Fatalf("the reference has no heading %s", heading)
	}
	s = s[i+1+len(heading):]
	if j := strings.Index(s, "\n#"); j >= 0 {
		s = s[:j]
	}
	return s
}

// checkRow finds the row of key (dotted from its section, "tls.ca",
// "prometheus.auth.secret") in part: its header and key together name the
// key, as "[nats.tls] ca" or "[webhook.<id>] auth.secret" do.
func checkRow(t *testing.T, part, section, key string) {
	t.Helper()
	for _, line := range strings.Split(part, "\n") {
		if !strings.HasPrefix(line, "| `"+section) {
			continue
		}
		cellText, _, _ := strings.Cut(strings.TrimPrefix(line, "| `"), "`")
		head, k, ok := strings.Cut(cellText, "] ")
		if !ok {
			continue
		}
		path := strings.TrimPrefix(strings.TrimPrefix(head, section), ".<id>")
		path = strings.TrimPrefix(path, ".")
		if path != "" {
			path += "."
		}
		if path+k == key {
			return
		}
	}
	t.Errorf("the reference has no row for %s] %s", section, key)
}

// tomlLeaves returns the dotted keys of struct type t that hold values
// (not tables), by their toml tags; a type that decodes itself is one key.
func tomlLeaves(t reflect.Type, prefix string) []string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	var out []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		if !f.IsExported() || name == "-" {
			continue
		}
		if name == "" && f.Anonymous {
			out = append(out, tomlLeaves(f.Type, prefix)...)
			continue
		}
		if leaf(f.Type) {
			out = append(out, prefix+name)
		} else {
			out = append(out, tomlLeaves(f.Type, prefix+name+".")...)
		}
	}
	return out
}

// TestReferenceNeedsDoc: a key without a doc tag (here in a struct shaped
// like a sink kind's Config) is an error that names it, so a new kind
// cannot be registered undocumented without TestConfigReferenceCurrent
// and go generate failing.
func TestReferenceNeedsDoc(t *testing.T) {
	type auth struct {
		User string `toml:"user"`
	}
	type kind struct {
		URL    string `toml:"url" doc:"where"`
		Secret string `toml:"secret" secret:"true"`
		Auth   auth   `toml:"auth"`
		Odd    chan int
		Multi  string `toml:"multi" doc:"one\ntwo"`
	}
	_, err := keysOf(reflect.ValueOf(kind{}), "[x.<id>]")
	if err == nil {
		t.Fatal("keysOf: no error for undocumented keys")
	}
	for _, want := range []string{"[x.<id>] secret: no doc tag", "[x.<id>.auth] user: no doc tag", "[x.<id>] Odd: no toml tag", "[x.<id>] multi: the doc tag is one line"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "url") {
		t.Errorf("error %q names the documented key url", err)
	}
}

// TestReferenceRows: types, defaults and the secret marker as the
// reference writes them.
func TestReferenceRows(t *testing.T) {
	type kind struct {
		Enable  *bool             `toml:"enable" doc:"on"`
		Wait    config.Duration   `toml:"wait" doc:"w"`
		Zero    config.Duration   `toml:"zero" doc:"z"`
		Max     config.Size       `toml:"max" doc:"m"`
		List    []string          `toml:"list" doc:"l"`
		Headers map[string]string `toml:"headers" secret:"true" doc:"h"`
		Auth    config.BasicAuth  `toml:"auth" doc:"a"`
		Any     any               `toml:"any" doc:"ignored | <x> *"`
	}
	rows, err := keysOf(reflect.ValueOf(kind{Wait: config.Duration(90e9), Max: 8 << 20, List: []string{"*"}}), "[k]")
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	writeRows(&b, rows)
	want := "\n| key | type | default | doc |\n|---|---|---|---|\n" +
		"| `[k] enable` | boolean | `true` | on |\n" +
		"| `[k] wait` | duration | `1m30s` | w |\n" +
		"| `[k] zero` | duration | — | z |\n" +
		"| `[k] max` | size | `8MiB` | m |\n" +
		"| `[k] list` | list of strings | `[\"*\"]` | l |\n" +
		"| `[k] headers` | table of strings | — | h; *secret values*: each accepts `%{env:NAME}%` and `%{file:PATH}%` |\n" +
		"| `[k] auth` | table | — | a |\n" +
		"| `[k] auth.username` | string | — | user name of HTTP basic authentication |\n" +
		"| `[k] auth.secret` | string | — | its password; alone, a bearer token; *secret*: accepts `%{env:NAME}%` and `%{file:PATH}%` |\n" +
		"| `[k] any` | any | — | ignored \\| \\<x> \\* |\n"
	if b.String() != want {
		t.Errorf("rows:\n%s\nwant:\n%s", b.String(), want)
	}
}
