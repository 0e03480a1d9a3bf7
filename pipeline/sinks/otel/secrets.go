package otel

import (
	"encoding/base64"
	"net/url"
	"sort"
	"strings"

	"github.com/mailtel/mailtel/pipeline/config"
)

// minSecret is the length below which a configured value is not looked
// for in answers: a shorter one would mangle them, and hides nothing.
const minSecret = 4

// secrets returns what of the configuration must not appear in an error or
// a log: the endpoint's password (or a user name alone, which may be a
// token), its query values, the Basic credentials net/http builds from its
// user info, and every header value, each as written and as decoded and
// escaped. Longest first, so that a secret containing another goes whole.
// headers are the values as sent.
func secrets(u *url.URL, raw map[string]string, headers map[string]string) []string {
	seen := map[string]bool{}
	var out []string
	add := func(v string) {
		for _, x := range []string{v, url.QueryEscape(v), url.PathEscape(v)} {
			if len(x) >= minSecret && !seen[x] {
				seen[x] = true
				out = append(out, x)
			}
		}
	}
	if u != nil {
		if u.User != nil {
			user := u.User.Username()
			if p, ok := u.User.Password(); ok {
				add(p)
				add(base64.StdEncoding.EncodeToString([]byte(user + ":" + p)))
			} else {
				add(user)
			}
		}
		for _, vs := range u.Query() {
			for _, v := range vs {
				add(v)
			}
		}
		for _, kv := range strings.Split(u.RawQuery, "&") {
			_, v, _ := strings.Cut(kv, "=")
			add(v)
		}
	}
	for _, m := range []map[string]string{raw, headers} {
		for _, v := range m {
			add(v)
			// "Bearer abc": the credential alone, which a collector may
			// repeat without its scheme.
			if _, cred, ok := strings.Cut(v, " "); ok {
				add(strings.TrimSpace(cred))
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out
}

// scrub returns text with every secret replaced by config.Redacted. When
// text was cut at limit bytes, a secret cut at its end goes too.
func scrub(secrets []string, text string, limit int) string {
	for _, v := range secrets {
		text = strings.ReplaceAll(text, v, config.Redacted)
	}
	if len(text) < limit {
		return text
	}
	for _, v := range secrets {
		for n := len(v) - 1; n >= minSecret; n-- {
			if strings.HasSuffix(text, v[:n]) {
				return text[:len(text)-n] + config.Redacted
			}
		}
	}
	return text
}
