package dovecot_test

import (
	"testing"

	"github.com/mailtel/mailtel/pipeline/ingest/dovecot"
	"github.com/mailtel/mailtel/pipeline/ingest/format"
)

func TestRegistered(t *testing.T) {
	f, ok := format.Lookup(dovecot.Name)
	if !ok || f.Name != "dovecot" || f.Split != nil || f.Fallback || f.Doc == "" {
		t.Fatalf("registered as %+v, %v", f, ok)
	}
}

func TestDetect(t *testing.T) {
	for _, tc := range []struct {
		line string
		want bool
	}{
		{`{"event" : "imap_command_finished","fields":{}}`, true},
		{`{"id":"1","type":"auth.success","data":{"event":"x"}}`, false},
		{`{"fields":{"type":"x"},"event":"imap_command_finished"}`, false}, // ambiguous: Stalwart's
		{`garbage`, false},
	} {
		if got := dovecot.Detect([]byte(tc.line)); got != tc.want {
			t.Errorf("Detect(%s) = %v, want %v", tc.line, got, tc.want)
		}
	}
}
