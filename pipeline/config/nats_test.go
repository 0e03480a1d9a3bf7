package config

import (
	"strings"
	"testing"
)

func TestNATSAndPublisherAuthValidation(t *testing.T) {
	for _, tc := range []struct {
		name string
		toml string
		want []string // substrings of the error; none means valid
	}{
		{"defaults: loopback, no auth", "", nil},
		{"loopback without auth", "[nats]\nlisten = \"127.0.0.1:4333\"\n", nil},
		{"localhost without auth", "[nats]\nlisten = \"localhost:4222\"\n", nil},
		{"ipv6 loopback without auth", "[nats]\nlisten = \"[::1]:4222\"\n", nil},
		{"every interface without auth", "[nats]\nlisten = \"0.0.0.0:4222\"\n",
			[]string{"nats.listen: 0.0.0.0:4222 is reachable from other hosts", "nats.token or nats.user/password"}},
		{"empty host without auth", "[nats]\nlisten = \":4222\"\n", []string{"nats.listen: :4222 is reachable"}},
		{"lan address without auth", "[nats]\nlisten = \"10.1.2.3:4222\"\n", []string{"nats.listen: 10.1.2.3:4222 is reachable"}},
		{"every interface with a token", "[nats]\nlisten = \"0.0.0.0:4222\"\ntoken = \"t0k\"\n", nil},
		{"every interface with user/password", "[nats]\nlisten = \"0.0.0.0:4222\"\nuser = \"mailtel\"\npassword = \"pw\"\n", nil},
		{"every interface with client certificates", "[nats]\nlisten = \"0.0.0.0:4222\"\n[nats.tls]\ncert = \"s.pem\"\nkey = \"s.key\"\nca = \"ca.pem\"\nverify = true\n", nil},
		{"every interface with TLS but no client verification", "[nats]\nlisten = \"0.0.0.0:4222\"\n[nats.tls]\ncert = \"s.pem\"\nkey = \"s.key\"\n",
			[]string{"nats.listen: 0.0.0.0:4222 is reachable"}},
		{"external server: listen is not used", "[nats]\nurl = \"nats://n1:4222\"\nlisten = \"0.0.0.0:4222\"\n", nil},
		{"nats user without password", "[nats]\nuser = \"mailtel\"\n", []string{"nats.password: required with nats.user"}},
		{"nats user without password beyond loopback", "[nats]\nlisten = \"0.0.0.0:4222\"\nuser = \"mailtel\"\n",
			[]string{"nats.password: required with nats.user", "nats.listen: 0.0.0.0:4222 is reachable"}},
		{"nats user without password, external server", "[nats]\nurl = \"nats://n1:4222\"\nuser = \"mailtel\"\n", []string{"nats.password: required with nats.user"}},
		{"nats password without user", "[nats]\npassword = \"pw\"\n", []string{"nats.user: required with nats.password"}},
		{"publisher user without password", "[publisher]\nlisten = \"0.0.0.0:8025\"\nuser = \"stalwart\"\n", []string{"publisher.password: required with publisher.user"}},
		{"publisher user with an empty password", "[publisher]\nuser = \"stalwart\"\npassword = \"\"\n", []string{"publisher.password: required with publisher.user"}},
		{"publisher password without user", "[publisher]\npassword = \"pw\"\n", []string{"publisher.user: required with publisher.password"}},
		{"publisher user and password", "[publisher]\nlisten = \"0.0.0.0:8025\"\nuser = \"stalwart\"\npassword = \"pw\"\n", nil},
		{"credentials with the embedded server", "[nats]\ncredentials = \"/etc/mailtel/nats.creds\"\n",
			[]string{"nats.credentials: a .creds file authenticates to an external NATS server with JWT auth (set nats.url)"}},
		{"credentials with an external server", "[nats]\nurl = \"nats://n1:4222\"\ncredentials = \"/etc/mailtel/nats.creds\"\n", nil},
		{"token and user on the embedded server", "[nats]\ntoken = \"t\"\nuser = \"u\"\npassword = \"p\"\n", []string{"nats.token: the embedded server takes a token or a user/password, not both"}},
		{"verify without ca", "[nats.tls]\ncert = \"s.pem\"\nkey = \"s.key\"\nverify = true\n", []string{"nats.tls.verify: needs nats.tls.ca"}},
		{"ca without a server certificate", "[nats.tls]\nca = \"ca.pem\"\n", []string{"nats.tls.cert: required with nats.tls.ca or verify"}},
		{"ca alone against an external server", "[nats]\nurl = \"tls://n1:4222\"\n[nats.tls]\nca = \"ca.pem\"\n", nil},
		{"cert without key", "[nats.tls]\ncert = \"s.pem\"\n", []string{"nats.tls: cert and key go together"}},
		{"listen without port", "[nats]\nlisten = \"0.0.0.0\"\n", []string{"nats.listen: want host:port"}},
		{"listen with a bad port", "[nats]\nlisten = \"127.0.0.1:http\"\n", []string{"nats.listen: bad port"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.toml))
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("rejected: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\nlacks %q", err, w)
				}
			}
			for _, secret := range []string{"t0k", "\"pw\""} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error shows a secret: %v", err)
				}
			}
		})
	}
}

// The --nats flag turns the embedded server's settings into a client's:
// LoadWith validates the file with it applied.
func TestParseWithAdjustsBeforeValidation(t *testing.T) {
	doc := []byte("[nats]\ncredentials = \"/etc/mailtel/nats.creds\"\nlisten = \"0.0.0.0:4222\"\n")
	if _, err := Parse(doc); err == nil {
		t.Fatal("credentials and an open listen accepted for the embedded server")
	}
	c, err := ParseWith(doc, func(c *Config) { c.NATS.URL = "nats://n1:4222" })
	if err != nil {
		t.Fatalf("with a server URL: %v", err)
	}
	if c.NATS.URL != "nats://n1:4222" {
		t.Errorf("url %q", c.NATS.URL)
	}
	if _, err := LoadWith("", func(c *Config) { c.NATS.Listen = "0.0.0.0:4222" }); err == nil ||
		!strings.Contains(err.Error(), "nats.listen") {
		t.Errorf("LoadWith(\"\") with an open listen: %v", err)
	}
}

func TestValidateEmbedded(t *testing.T) {
	if err := (NATS{Listen: "127.0.0.1:0"}).ValidateEmbedded(); err != nil {
		t.Errorf("loopback: %v", err)
	}
	err := (NATS{Listen: "0.0.0.0:4222", Credentials: "x.creds"}).ValidateEmbedded()
	if err == nil || !strings.Contains(err.Error(), "nats.listen") || !strings.Contains(err.Error(), "nats.credentials") {
		t.Errorf("open listen with credentials: %v", err)
	}
}
