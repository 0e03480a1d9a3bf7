package config

import (
	"fmt"
	"os"
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

// secretFields lists every secret of the configuration with its key path.
func (c *Config) secretFields() map[string]*string {
	m := map[string]*string{
		"nats.password":                  &c.NATS.Password,
		"nats.token":                     &c.NATS.Token,
		"publisher.token":                &c.Publisher.Token,
		"publisher.password":             &c.Publisher.Password,
		"publisher.signature-key":        &c.Publisher.SignatureKey,
		"metrics.prometheus.auth.secret": &c.Metrics.Prometheus.Auth.Secret,
	}
	for id, w := range c.Webhooks {
		if w == nil {
			continue
		}
		m["webhook."+id+".signature-key"] = &w.SignatureKey
		m["webhook."+id+".auth.secret"] = &w.Auth.Secret
		for k, v := range w.Headers {
			m["webhook."+id+".headers."+k] = &v
		}
	}
	return m
}

// expandSecrets resolves the %{env:...}% and %{file:...}% macros of every
// secret.
func (c *Config) expandSecrets() []error {
	var errs []error
	fields := c.secretFields()
	for _, path := range sortedKeys(fields) {
		raw := *fields[path]
		if err := expandSecret(path, fields[path]); err != nil {
			errs = append(errs, err)
		} else if *fields[path] != raw {
			if c.refs == nil {
				c.refs = map[string]string{}
			}
			c.refs[path] = raw
		}
	}
	c.syncHeaders(fields)
	return errs
}

// syncHeaders writes expanded header values back into the webhook maps.
func (c *Config) syncHeaders(fields map[string]*string) {
	for id, w := range c.Webhooks {
		if w == nil {
			continue
		}
		for k := range w.Headers {
			if p, ok := fields["webhook."+id+".headers."+k]; ok {
				w.Headers[k] = *p
			}
		}
	}
}
