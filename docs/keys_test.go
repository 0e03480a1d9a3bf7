package docs

import (
	"os"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/mailtel/mailtel/pipeline/config"
)

// configKeys returns the key of every field of t that a configuration file
// can set, by its toml tag, walking into sections.
func configKeys(t reflect.Type, seen map[string]bool) {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Map || t.Kind() == reflect.Slice {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return
	}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		if tag == "-" {
			continue
		}
		if tag != "" {
			seen[tag] = true
		}
		configKeys(f.Type, seen)
	}
}

// TestReadmeNamesEveryKey: every key mailtel reads from its configuration
// file is named in the README (as `key` or key = in an example), so that
// the README stays the reference of the file. `router config` prints every
// key with its effective value.
func TestReadmeNamesEveryKey(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]bool{}
	configKeys(reflect.TypeOf(config.Config{}), keys)
	var missing []string
	for k := range keys {
		named := false
		for _, form := range []string{"`" + k + "`", "\n" + k + " = ", "# " + k + " = ", "[" + k + "]", "[" + k + ".", "." + k + "]", "." + k + "`", "`" + k + "."} {
			named = named || strings.Contains(string(readme), form)
		}
		if !named {
			missing = append(missing, k)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("configuration keys the README does not name: %s", strings.Join(missing, ", "))
	}
}
