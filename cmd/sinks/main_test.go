package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestHelpListsCommands: --help shows every command with a line each;
// --version prints the version.
func TestHelpListsCommands(t *testing.T) {
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"--help"}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	for _, cmd := range []string{"run", "replay", "tail", "dlq"} {
		if !strings.Contains(out.String(), "\n  "+cmd+" ") {
			t.Errorf("--help does not list %s:\n%s", cmd, out.String())
		}
	}
	out.Reset()
	if err := run(context.Background(), []string{"--version"}, &out, &out); err != nil || !strings.HasPrefix(out.String(), "sinks ") {
		t.Errorf("--version: %q, %v", out.String(), err)
	}
}
