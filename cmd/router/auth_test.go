package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailtel/mailtel/pipeline/config"
	"github.com/mailtel/mailtel/pipeline/config/value"
)

func TestValidateRefusesAnOpenNATSListen(t *testing.T) {
	dir := t.TempDir()
	open := filepath.Join(dir, "open.toml")
	os.WriteFile(open, []byte("[nats]\nlisten = \"192.0.2.1:4222\"\n[publisher]\nuser = \"stalwart\"\n"), 0o644)
	_, errOut, err := runCmd(t, "validate", "--config", open)
	if err == nil {
		t.Fatal("validate accepted an embedded server beyond loopback without authentication")
	}
	for _, want := range []string{"nats.listen: 192.0.2.1:4222 is reachable from other hosts", "publisher.password: required with publisher.user"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("validate output lacks %q:\n%s", want, errOut)
		}
	}
	if _, _, err := runCmd(t, "run", "--config", open); err == nil || !strings.Contains(err.Error(), "nats.listen") {
		t.Errorf("router run with an open [nats] listen: %v", err)
	}

	closed := filepath.Join(dir, "closed.toml")
	os.WriteFile(closed, []byte("[nats]\nlisten = \"192.0.2.1:4222\"\ntoken = \"%{env:MAILTEL_TEST_NATS_TOKEN}%\"\n"), 0o644)
	t.Setenv("MAILTEL_TEST_NATS_TOKEN", "s3cret")
	if out, errOut, err := runCmd(t, "validate", "--config", closed); err != nil {
		t.Errorf("validate with a token: %v\n%s%s", err, out, errOut)
	}
}

// router up on its defaults needs nothing: loopback, no credentials.
func TestUpDefaultsNeedNoCredentials(t *testing.T) {
	c, err := config.Parse(demoConfig)
	if err != nil {
		t.Fatal(err)
	}
	if !c.NATS.Embedded() || !value.IsLoopbackHost(strings.Split(c.NATS.Listen, ":")[0]) {
		t.Errorf("demo [nats]: url %q listen %q, want the embedded server on loopback", c.NATS.URL, c.NATS.Listen)
	}
	if err := c.NATS.ValidateEmbedded(); err != nil {
		t.Error(err)
	}
}

// router up with a token: the embedded server takes it and the router,
// sinks and publisher inside the process connect with it.
func TestUpWithAToken(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "up.toml")
	os.WriteFile(file, []byte(`[nats]
listen = "127.0.0.1:0"
token = "s3cret-token"
store-dir = "`+filepath.Join(dir, "nats")+`"
[router]
http = "127.0.0.1:0"
[tracer.out]
type = "log"
path = "`+filepath.Join(dir, "logs")+`"
`), 0o644)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
	defer cancel()
	var out, errOut strings.Builder
	err := run(ctx, []string{"up", "--config", file, "--rate", "100", "--count", "20"}, &out, &errOut)
	if err != nil {
		t.Fatalf("up: %v\n%s", err, errOut.String())
	}
	if !strings.Contains(out.String(), "sink out") {
		t.Errorf("output:\n%s", out.String())
	}
	if strings.Contains(out.String()+errOut.String(), "s3cret") {
		t.Errorf("the token reached the output")
	}
	files, _ := filepath.Glob(filepath.Join(dir, "logs", "mailtel.*"))
	written := 0
	for _, f := range files {
		data, _ := os.ReadFile(f)
		written += strings.Count(string(data), "\n")
	}
	if written == 0 {
		t.Errorf("no event reached the log sink through the authenticated server (files %v)", files)
	}
}
