package value

import (
	"errors"
	"net"
	"net/url"
	"strings"
)

// IsLoopbackHost reports whether host (the host part of a listen address,
// without port) can only be reached from this machine: "localhost", or an
// address of 127.0.0.0/8 or ::1. An empty host, 0.0.0.0 and :: listen on
// every interface and are not loopback.
func IsLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Redacted replaces a password or a query value in RedactURL's output.
const Redacted = "xxxxx"

// RedactURL returns s, a URL or a comma-separated list of URLs (a NATS
// server list), with what may be a secret replaced by "xxxxx": the password
// of its userinfo (the user name is kept; a user name alone, which is how a
// NATS URL carries a token, is replaced) and every query value (the names
// are kept). Use it wherever a configured URL reaches a log, an error, a
// header or a metric. Safe for concurrent use.
//
//	nats://mailtel:s3cret@n1:4222  ->  nats://mailtel:xxxxx@n1:4222
//	https://h/hook?key=abc&v=2     ->  https://h/hook?key=xxxxx&v=xxxxx
func RedactURL(s string) string {
	if !strings.ContainsAny(s, "@?") {
		return s
	}
	if parts := strings.Split(s, ","); len(parts) > 1 && allURLs(parts[1:]) {
		for i, p := range parts {
			parts[i] = redactOne(p)
		}
		return strings.Join(parts, ",")
	}
	return redactOne(s)
}

// allURLs reports whether every part looks like a URL of a list rather than
// the rest of a query value that held a comma.
func allURLs(parts []string) bool {
	for _, p := range parts {
		if !strings.Contains(p, "://") {
			return false
		}
	}
	return true
}

func redactOne(s string) string {
	lead := len(s) - len(strings.TrimLeft(s, " \t"))
	u, err := url.Parse(strings.TrimSpace(s))
	if err != nil || u.Opaque != "" || (u.Scheme == "" && u.Host == "") {
		return redactRough(s)
	}
	if u.User != nil {
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), Redacted)
		} else {
			// nats://TOKEN@host: a user name without a password is how a
			// NATS URL carries a token.
			u.User = url.User(Redacted)
		}
	}
	if u.RawQuery != "" {
		pairs := strings.Split(u.RawQuery, "&")
		for i, kv := range pairs {
			if k, _, ok := strings.Cut(kv, "="); ok {
				pairs[i] = k + "=" + Redacted
			} else if kv != "" {
				pairs[i] = Redacted
			}
		}
		u.RawQuery = strings.Join(pairs, "&")
	}
	return s[:lead] + u.String()
}

// ParseURL parses s as url.Parse does, but its error never repeats any
// part of s: url.Parse's quotes s whole, password and query included, and
// its reasons quote what they stumbled on, which may be a piece of a
// password ("https://u:pa/ss@host" is read as host "u" with port "pa"). The
// error says what is wrong: a bad %-escape, a bad port, a bad character in
// the host, bad user info, a control character.
func ParseURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err == nil {
		return u, nil
	}
	var (
		ee url.EscapeError
		he url.InvalidHostError
		ue *url.Error
	)
	reason := "not a valid URL"
	switch {
	case errors.As(err, &ee):
		reason += ": a bad %-escape (write % as %25)"
	case errors.As(err, &he):
		reason += ": a bad character in the host"
	case errors.As(err, &ue) && strings.HasPrefix(ue.Err.Error(), "invalid port "):
		reason += ": a bad port (or a '/' in the user info: write it as %2F)"
	case errors.As(err, &ue) && !strings.ContainsAny(ue.Err.Error(), "\"'`"):
		// The other reasons of net/url quote nothing ("net/url: invalid
		// userinfo", "missing protocol scheme").
		reason += ": " + strings.TrimPrefix(ue.Err.Error(), "net/url: ")
	}
	return nil, errors.New(reason)
}

// redactRough redacts what url.Parse does not understand (a URL without a
// scheme, such as "user:pass@host:4222", or one it rejects): everything
// between the first ':' after the scheme and the last '@' (all of it
// without a ':'), and everything after the first '?' that follows.
func redactRough(s string) string {
	out := s
	at := strings.LastIndexByte(out, '@')
	if at >= 0 {
		start := 0
		if i := strings.Index(out[:at], "://"); i >= 0 {
			start = i + 3
		}
		keep := start // a lone user name may be a token
		if c := strings.IndexByte(out[start:at], ':'); c >= 0 {
			keep = start + c + 1
		}
		out = out[:keep] + Redacted + out[at:]
		at = keep + len(Redacted)
	}
	if q := strings.IndexByte(out[max(at, 0):], '?'); q >= 0 {
		out = out[:max(at, 0)+q+1] + Redacted
	}
	return out
}
