package config

import (
	"strings"
	"testing"
	"time"
)

func TestPublisherDefaults(t *testing.T) {
	p := Default().Publisher
	if p.ReadTimeout.D() != 30*time.Second || p.WriteTimeout.D() != 2*time.Minute || p.IdleTimeout.D() != time.Minute ||
		p.MaxInFlightBytes != 64<<20 || p.MaxBody != 8<<20 {
		t.Errorf("defaults %+v", p)
	}
	c, err := Parse([]byte("[publisher]\nread-timeout = \"5s\"\nwrite-timeout = \"20s\"\nidle-timeout = \"10s\"\nmax-in-flight-bytes = \"16MiB\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if p := c.Publisher; p.ReadTimeout.D() != 5*time.Second || p.WriteTimeout.D() != 20*time.Second ||
		p.IdleTimeout.D() != 10*time.Second || p.MaxInFlightBytes != 16<<20 {
		t.Errorf("parsed %+v", p)
	}
}

// TestPublisherValidation: what `router validate` (or any process) reports
// about [publisher], with its key path.
func TestPublisherValidation(t *testing.T) {
	for _, tc := range []struct {
		name string
		toml string
		want []string // substrings of the error; none means valid
	}{
		{"defaults", "", nil},
		{"loopback without auth", "[publisher]\nlisten = \"127.0.0.1:8025\"\n", nil},
		{"localhost without auth", "[publisher]\nlisten = \"localhost:8025\"\n", nil},
		{"ipv6 loopback without auth", "[publisher]\nlisten = \"[::1]:8025\"\n", nil},
		{"every interface without auth", "[publisher]\nlisten = \"0.0.0.0:8025\"\n",
			[]string{"publisher.listen: 0.0.0.0:8025 is reachable from other hosts", "publisher.token, publisher.user/password or publisher.signature-key"}},
		{"empty host without auth", "[publisher]\nlisten = \":8025\"\n", []string{"publisher.listen: :8025 is reachable"}},
		{"lan address without auth", "[publisher]\nlisten = \"10.1.2.3:8025\"\n", []string{"publisher.listen: 10.1.2.3:8025 is reachable"}},
		{"every interface with a token", "[publisher]\nlisten = \"0.0.0.0:8025\"\ntoken = \"t0k\"\n", nil},
		{"every interface with a signature key", "[publisher]\nlisten = \"0.0.0.0:8025\"\nsignature-key = \"k\"\n", nil},
		{"every interface with user/password", "[publisher]\nlisten = \"0.0.0.0:8025\"\nuser = \"s\"\npassword = \"p\"\n", nil},
		{"every interface with a user only", "[publisher]\nlisten = \"0.0.0.0:8025\"\nuser = \"s\"\n",
			[]string{"publisher.password: required", "publisher.listen: 0.0.0.0:8025 is reachable"}},
		{"listen without port", "[publisher]\nlisten = \"127.0.0.1\"\n", []string{"publisher.listen: want host:port"}},
		{"listen with a bad port", "[publisher]\nlisten = \"127.0.0.1:smtp\"\n", []string{"publisher.listen: bad port"}},
		{"write timeout not longer than read timeout", "[publisher]\nread-timeout = \"1m\"\nwrite-timeout = \"1m\"\n",
			[]string{"publisher.write-timeout: 1m0s is not longer than publisher.read-timeout (1m0s)"}},
		{"in-flight cap under max-body", "[publisher]\nmax-body = \"8MiB\"\nmax-in-flight-bytes = \"4MiB\"\n",
			[]string{"publisher.max-in-flight-bytes: 4194304 bytes is less than publisher.max-body (8388608 bytes)"}},
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
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

// TestPublisherListenOverride: a --listen given on the command line is
// validated like the file's.
func TestPublisherListenOverride(t *testing.T) {
	_, err := ParseWith([]byte("[publisher]\nlisten = \"127.0.0.1:8025\"\n"), func(c *Config) { c.Publisher.Listen = "0.0.0.0:8025" })
	if err == nil || !strings.Contains(err.Error(), "publisher.listen: 0.0.0.0:8025 is reachable") {
		t.Errorf("err = %v", err)
	}
	if _, err := LoadWith("", func(c *Config) { c.Publisher.Listen = "0.0.0.0:8025" }); err == nil {
		t.Error("--listen beyond loopback without auth accepted with no file")
	}
}
