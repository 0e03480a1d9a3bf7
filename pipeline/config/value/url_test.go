package value

import (
	"strings"
	"testing"
)

func TestRedactURL(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"nats://127.0.0.1:4222", "nats://127.0.0.1:4222"},
		{"nats://mailtel:s3cret@n1:4222", "nats://mailtel:xxxxx@n1:4222"},
		{"tls://mailtel:s3cret@n1:4222", "tls://mailtel:xxxxx@n1:4222"},
		{"nats://mailtel:p%40ss%2Fw0rd@n1:4222", "nats://mailtel:xxxxx@n1:4222"},
		{"nats://mailtel:p@ss@n1:4222", "nats://mailtel:xxxxx@n1:4222"},
		{"nats://s3cretToken@n1:4222", "nats://xxxxx@n1:4222"},
		{"nats://a:s3cret@n1:4222,nats://a:s3cret@n2:4222", "nats://a:xxxxx@n1:4222,nats://a:xxxxx@n2:4222"},
		{"nats://a:s3cret@n1:4222, nats://n2:4222", "nats://a:xxxxx@n1:4222, nats://n2:4222"},
		{"https://siem.example.net/hook?key=s3cret&v=2", "https://siem.example.net/hook?key=xxxxx&v=xxxxx"},
		{"https://siem.example.net/hook?s3cret", "https://siem.example.net/hook?xxxxx"},
		{"https://h/hook?key=s3cret,more", "https://h/hook?key=xxxxx"},
		{"https://u:s3cret@h/hook?key=s3cret#frag", "https://u:xxxxx@h/hook?key=xxxxx#frag"},
		{"http://h/path", "http://h/path"},
		// What url.Parse does not take: no scheme, or a bad host.
		{"mailtel:s3cret@n1:4222", "mailtel:xxxxx@n1:4222"},
		{"s3cretToken@n1:4222", "xxxxx@n1:4222"},
		{"nats://mailtel:s3cret@n 1:4222", "nats://mailtel:xxxxx@n 1:4222"},
		{"nats://mailtel:s3cret@[::1", "nats://mailtel:xxxxx@[::1"},
		{"nats://mailtel:s3/cret@n1:4222", "nats://mailtel:xxxxx@n1:4222"},
		{"n1:4222?key=s3cret", "n1:4222?xxxxx"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got := RedactURL(tc.in)
			if got != tc.want {
				t.Errorf("RedactURL(%q) = %q, want %q", tc.in, got, tc.want)
			}
			if strings.Contains(got, "s3cret") || strings.Contains(got, "s3/cret") {
				t.Errorf("RedactURL(%q) = %q shows the secret", tc.in, got)
			}
		})
	}
}

func TestIsLoopbackHost(t *testing.T) {
	for host, want := range map[string]bool{
		"127.0.0.1": true, "127.3.4.5": true, "::1": true, "localhost": true, "LocalHost": true,
		"": false, "0.0.0.0": false, "::": false, "10.0.0.5": false, "192.168.1.1": false,
		"mail.example.net": false, "128.0.0.1": false, "::ffff:10.0.0.1": false,
	} {
		if got := IsLoopbackHost(host); got != want {
			t.Errorf("IsLoopbackHost(%q) = %v, want %v", host, got, want)
		}
	}
}

func TestParseURLErrorRepeatsNothing(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"https://u:s3cret%zz@h/hook", "%-escape"},
		{"https://u:s3/cret@h/hook?key=s3cret", "bad port"},
		{"https://h:s3cret/hook", "bad port"},
		{"https://u:s3cret@h o/hook", "character in the host"},
		{"http://u s3cret@h/", "invalid userinfo"},
		{"https://u:s3cret\x7f@h/", "control character"},
		{"://s3cret", "missing protocol scheme"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			_, err := ParseURL(tc.in)
			if err == nil {
				t.Fatalf("ParseURL(%q) succeeded", tc.in)
			}
			if strings.Contains(err.Error(), "s3") || strings.Contains(err.Error(), "cret") {
				t.Errorf("ParseURL(%q): %v repeats the URL", tc.in, err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("ParseURL(%q): %v, want it to say %q", tc.in, err, tc.want)
			}
		})
	}
	if u, err := ParseURL("https://u:s3cret@h/hook?key=v"); err != nil || u.Host != "h" {
		t.Errorf("ParseURL of a good URL = %v, %v", u, err)
	}
}
