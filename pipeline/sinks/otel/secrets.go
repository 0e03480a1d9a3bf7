package otel

import (
	"net/url"

	"github.com/mailtel/mailtel/pipeline/sinks/outbound"
)

// secrets returns what of the configuration must not appear in an error or
// a log: the endpoint's user info (and the Basic credentials net/http
// builds from it) and query values, and every header value, as written
// (raw) and as sent (headers).
func secrets(endpoint string, u *url.URL, raw, headers map[string]string) *outbound.Secrets {
	var s outbound.Secrets
	s.AddURL(endpoint, u)
	for _, m := range []map[string]string{raw, headers} {
		for _, v := range m {
			s.AddHeader(v)
		}
	}
	return &s
}
