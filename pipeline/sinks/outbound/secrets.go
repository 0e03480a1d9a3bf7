package outbound

import (
	"encoding/base64"
	"net/url"
	"sort"
	"strings"

	"github.com/mailtel/mailtel/pipeline/config/value"
)

// MinSecret is the length below which a configured value is not looked
// for in answers: a shorter one would mangle them, and hides nothing.
const MinSecret = 4

// Secrets are the configured values of a sink that must not reach an
// error, a log or a dead letter: receivers like to repeat what they were
// sent ("invalid api key ..."). Build it with the Add methods before use;
// Scrub is then safe for concurrent use.
type Secrets struct {
	list []string // longest first, so that a secret containing another goes whole
}

// Add adds v as written and as a URL's query and path encode it.
func (s *Secrets) Add(v string) {
	for _, x := range []string{v, url.QueryEscape(v), url.PathEscape(v)} {
		if len(x) < MinSecret {
			continue
		}
		i := sort.Search(len(s.list), func(i int) bool { return len(s.list[i]) <= len(x) })
		if j := i; j < len(s.list) && s.contains(j, x) {
			continue
		}
		s.list = append(s.list, "")
		copy(s.list[i+1:], s.list[i:])
		s.list[i] = x
	}
}

// contains reports whether x is in the run of secrets of its length that
// starts at i.
func (s *Secrets) contains(i int, x string) bool {
	for ; i < len(s.list) && len(s.list[i]) == len(x); i++ {
		if s.list[i] == x {
			return true
		}
	}
	return false
}

// AddBasic adds the Authorization value of HTTP basic auth for user and
// password, as net/http builds it.
func (s *Secrets) AddBasic(user, password string) {
	s.Add(base64.StdEncoding.EncodeToString([]byte(user + ":" + password)))
}

// AddURL adds what of a URL is secret: the password (and the basic auth a
// client builds from the user info) or a user name alone, which may be a
// token; the user info as raw writes it, escapes and all; and the query
// values, as written and decoded. u is raw parsed.
func (s *Secrets) AddURL(raw string, u *url.URL) {
	if u == nil {
		return
	}
	if u.User != nil {
		if p, ok := u.User.Password(); ok {
			s.Add(p)
			s.AddBasic(u.User.Username(), p)
		} else {
			s.Add(u.User.Username())
		}
		_, rest, _ := strings.Cut(raw, "://")
		if end := strings.IndexAny(rest, "/?#"); end >= 0 {
			rest = rest[:end]
		}
		if at := strings.LastIndexByte(rest, '@'); at >= 0 {
			user, pass, ok := strings.Cut(rest[:at], ":")
			if !ok {
				pass = user
			}
			s.Add(pass)
		}
	}
	for _, kv := range strings.Split(u.RawQuery, "&") {
		if _, v, ok := strings.Cut(kv, "="); ok {
			s.Add(v)
			if dv, err := url.QueryUnescape(v); err == nil {
				s.Add(dv)
			}
		} else {
			s.Add(kv)
		}
	}
}

// AddHeader adds a header value, and the credential of a value such as
// "Bearer abc", which a receiver may repeat without its scheme.
func (s *Secrets) AddHeader(v string) {
	s.Add(v)
	if _, cred, ok := strings.Cut(v, " "); ok {
		s.Add(strings.TrimSpace(cred))
	}
}

// Scrub returns text with every secret replaced by value.Redacted. When
// text was cut at limit bytes, a secret cut at its end goes too.
func (s *Secrets) Scrub(text string, limit int) string {
	for _, v := range s.list {
		text = strings.ReplaceAll(text, v, value.Redacted)
	}
	if len(text) < limit {
		return text
	}
	for _, v := range s.list {
		for n := len(v) - 1; n >= MinSecret; n-- {
			if strings.HasSuffix(text, v[:n]) {
				return text[:len(text)-n] + value.Redacted
			}
		}
	}
	return text
}
