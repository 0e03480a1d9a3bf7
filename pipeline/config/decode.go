package config

import (
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
)

// decode fills c from the document key by key, so that one value of the
// wrong type does not hide the rest of the file: it returns every type
// error and unknown key or section, each with its key path and, where the
// TOML decoder knows it, its line. A syntax error stops it (nothing else can
// be read) and is returned alone, redacted.
func decode(data string, c *Config) ([]error, error) {
	var top map[string]toml.Primitive
	md, err := toml.Decode(data, &top)
	if err != nil {
		return nil, redactParseError(err)
	}
	var errs []error
	fields := tomlFields(reflect.TypeFor[Config]())
	rv := reflect.ValueOf(c).Elem()
	seen := map[string]bool{}
	for _, k := range md.Keys() { // file order
		if len(k) == 0 || seen[k[0]] {
			continue
		}
		name := k[0]
		seen[name] = true
		sinkSec, isSink := isSinkSection(name)
		switch {
		case isSink:
			decodeSinks(&md, top[name], sinkSec, c, &errs)
		case sections[name]:
			decodeValue(&md, top[name], rv.FieldByIndex(fields[name]), toml.Key{name}, &errs)
		case stalwartSections[name]:
			// Stalwart's, not mailtel's: ignored so that a whole file pastes.
		default:
			errs = append(errs, fmt.Errorf("%s: unknown section%s", name, suggest(name, topSections())))
		}
	}
	return errs, nil
}

// decodeValue decodes prim into fv: key by key for tables that map to
// structs (or maps of structs), whole for anything else.
func decodeValue(md *toml.MetaData, prim toml.Primitive, fv reflect.Value, path toml.Key, errs *[]error) {
	t := fv.Type()
	if k := deref(t).Kind(); (k == reflect.Map || k == reflect.Struct) && !implementsUnmarshal(t) {
		// The decoder leaves a map alone when the value is not a table.
		if got := md.Type(path...); got != "" && got != "Hash" {
			*errs = append(*errs, fmt.Errorf("%s: want a table, not %s", path, tomlTypeName(got)))
			return
		}
	}
	if isLeaf(t) {
		tmp := reflect.New(t)
		if err := md.PrimitiveDecode(prim, tmp.Interface()); err != nil {
			*errs = append(*errs, decodeError(path, err))
			return
		}
		fv.Set(tmp.Elem())
		return
	}
	switch t.Kind() {
	case reflect.Pointer:
		n := reflect.New(t.Elem())
		decodeValue(md, prim, n.Elem(), path, errs)
		fv.Set(n)
	case reflect.Struct:
		var m map[string]toml.Primitive
		if err := md.PrimitiveDecode(prim, &m); err != nil {
			*errs = append(*errs, decodeError(path, err))
			return
		}
		fields := tomlFields(t)
		for _, k := range sortedKeys(m) {
			p := append(path[:len(path):len(path)], k)
			idx, ok := fields[k]
			if !ok {
				*errs = append(*errs, &unknownKeyError{p, suggest(k, sortedKeys(fields))})
				continue
			}
			decodeValue(md, m[k], fv.FieldByIndex(idx), p, errs)
		}
	case reflect.Map:
		var m map[string]toml.Primitive
		if err := md.PrimitiveDecode(prim, &m); err != nil {
			*errs = append(*errs, decodeError(path, err))
			return
		}
		if fv.IsNil() {
			fv.Set(reflect.MakeMap(t))
		}
		for _, k := range sortedKeys(m) {
			ev := reflect.New(t.Elem()).Elem()
			decodeValue(md, m[k], ev, append(path[:len(path):len(path)], k), errs)
			fv.SetMapIndex(reflect.ValueOf(k).Convert(t.Key()), ev)
		}
	}
}

var (
	// tomlPrefix is what BurntSushi puts before a decode error: the line
	// and the key, which decodeError says its own way.
	tomlPrefix = regexp.MustCompile(`^toml: (?:line (\d+) )?(?:\(last key .*?\): )?`)
	badType    = regexp.MustCompile(`^incompatible types: TOML value has type (\S+); destination has type (\S+)$`)
)

// decodeError says what is wrong with the value at path, and on which line
// ("line 2: streams.max-age: invalid duration ..."), without repeating the
// value unless it is a duration or a size.
func decodeError(path toml.Key, err error) error {
	var pe toml.ParseError
	if errors.As(err, &pe) {
		return atLine(pe.Position.Line, fmt.Errorf("%s: %s", path, redactMessage(pe.Message)))
	}
	msg := err.Error()
	line := 0
	if m := tomlPrefix.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = msg[len(m[0]):]
	}
	if m := badType.FindStringSubmatch(msg); m != nil {
		msg = fmt.Sprintf("want %s, not %s", typeName(m[2]), typeName(m[1]))
	}
	return atLine(line, fmt.Errorf("%s: %s", path, redactMessage(msg)))
}

// atLine puts the line first, when known.
func atLine(line int, err error) error {
	if line > 0 {
		return &lineError{line, err}
	}
	return err
}

func typeName(s string) string {
	switch strings.ToLower(s) {
	case "integer", "int", "int64":
		return "an integer"
	case "float", "float64":
		return "a number"
	case "boolean", "bool":
		return "true or false"
	case "string":
		return "a string"
	case "slice", "array":
		return "a list"
	case "map", "table", "hash", "struct":
		return "a table"
	}
	if strings.HasPrefix(s, "[]") {
		return "a list"
	}
	if strings.HasPrefix(s, "map[") {
		return "a table"
	}
	return s
}

// redactMessage hides what a message quotes from the file, except in the
// errors of durations and sizes (units.go), which are never secrets and
// whose value helps.
func redactMessage(msg string) string {
	if strings.HasPrefix(msg, "invalid duration ") || strings.HasPrefix(msg, "invalid size ") ||
		strings.HasPrefix(msg, "want a duration ") {
		return msg
	}
	return quoted.ReplaceAllString(msg, `"..."`)
}

// tomlTypeName names a type as MetaData.Type gives it.
func tomlTypeName(s string) string {
	switch s {
	case "Integer":
		return "an integer"
	case "Float":
		return "a number"
	case "Bool":
		return "true or false"
	case "String":
		return "a string"
	case "Array", "ArrayHash":
		return "a list"
	case "Datetime", "DatetimeLocal", "DateLocal", "TimeLocal":
		return "a date or time"
	}
	return strings.ToLower(s)
}

func deref(t reflect.Type) reflect.Type {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t
}

func implementsUnmarshal(t reflect.Type) bool {
	p := reflect.PointerTo(t)
	return p.Implements(unmarshalerType) || p.Implements(textUnmarshalerType)
}

// unknownKeyError is a key mailtel does not know inside a section it does.
type unknownKeyError struct {
	path toml.Key
	hint string
}

func (e *unknownKeyError) Error() string { return e.path.String() + ": unknown key" + e.hint }
