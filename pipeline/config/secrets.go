package config

import (
	"fmt"
	"os"
	"reflect"
	"strings"
)

// Secret values (passwords, tokens, signature keys) may be written as
// Stalwart writes them, so they need not sit in the file:
//
//	signature-key = "%{env:SIEM_KEY}%"          the environment variable SIEM_KEY
//	password      = "%{file:/run/secrets/nats}%" the file's content, trailing newline removed
//
// Expansion happens once at load, only in the secret keys listed by
// secretFields, and errors name the key, never the value.
func expandSecret(path string, v *string) error {
	s := *v
	if !strings.HasPrefix(s, "%{") || !strings.HasSuffix(s, "}%") {
		return nil
	}
	kind, arg, ok := strings.Cut(s[2:len(s)-2], ":")
	if !ok || arg == "" {
		return fmt.Errorf("%s: want %%{env:NAME}%% or %%{file:PATH}%%", path)
	}
	switch kind {
	case "env":
		val, ok := os.LookupEnv(arg)
		if !ok {
			return fmt.Errorf("%s: environment variable %s is not set", path, arg)
		}
		*v = val
	case "file":
		data, err := os.ReadFile(arg)
		if err != nil {
			return fmt.Errorf("%s: read secret file: %w", path, err)
		}
		*v = strings.TrimRight(string(data), "\r\n")
	default:
		return fmt.Errorf("%s: unknown macro %q (want env or file)", path, kind)
	}
	return nil
}

// secretRef reads and writes one secret value.
type secretRef struct {
	get func() string
	set func(string)
}

// secretFields lists every secret of the configuration by key path: each
// field tagged `secret:"true"` in mailtel's own sections and in every sink
// section (a string, or every value of a map of strings, such as a
// webhook's headers).
func (c *Config) secretFields() map[string]secretRef {
	m := map[string]secretRef{}
	walkSecrets(reflect.ValueOf(c).Elem(), nil, false, m)
	for _, s := range c.SinkSections {
		if s.Config != nil {
			walkSecrets(reflect.ValueOf(s.Config).Elem(), strings.Split(s.Path(), "."), false, m)
		}
	}
	return m
}

// walkSecrets adds the secrets of v, the value at path, to m; secret says
// v itself is tagged secret.
func walkSecrets(v reflect.Value, path []string, secret bool, m map[string]secretRef) {
	p := strings.Join(path, ".")
	switch v.Kind() {
	case reflect.String:
		if secret && v.CanSet() {
			m[p] = secretRef{get: v.String, set: v.SetString}
		}
	case reflect.Map:
		if !secret || v.Type().Elem().Kind() != reflect.String {
			return
		}
		for _, k := range v.MapKeys() {
			k := k
			m[p+"."+k.String()] = secretRef{
				get: func() string { return v.MapIndex(k).String() },
				set: func(s string) { v.SetMapIndex(k, reflect.ValueOf(s).Convert(v.Type().Elem())) },
			}
		}
	case reflect.Pointer:
		if !v.IsNil() {
			walkSecrets(v.Elem(), path, secret, m)
		}
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			f := v.Type().Field(i)
			tag, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
			if !f.IsExported() || tag == "-" {
				continue
			}
			sub := path
			if tag != "" || !f.Anonymous {
				if tag == "" {
					tag = f.Name
				}
				sub = append(path[:len(path):len(path)], tag)
			}
			walkSecrets(v.Field(i), sub, f.Tag.Get("secret") == "true", m)
		}
	}
}

// expandSecrets resolves the %{env:...}% and %{file:...}% macros of every
// secret.
func (c *Config) expandSecrets() []error {
	var errs []error
	fields := c.secretFields()
	for _, path := range sortedKeys(fields) {
		raw := fields[path].get()
		v := raw
		if err := expandSecret(path, &v); err != nil {
			errs = append(errs, err)
		} else if v != raw {
			fields[path].set(v)
			if c.refs == nil {
				c.refs = map[string]string{}
			}
			c.refs[path] = raw
		}
	}
	return errs
}
