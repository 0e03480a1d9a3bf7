package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestValidateTypos(t *testing.T) {
	for _, tc := range []struct {
		name, doc string
		ok        bool
		stdout    []string
		stderr    []string
	}{
		{
			name:   "misspelled section",
			doc:    "[tracr.log]\ntype = \"log\"\npath = \"/tmp/x\"\n",
			stderr: []string{"line 1: tracr: unknown section (did you mean tracer?)"},
		},
		{
			name:   "type errors and a bad level in one run",
			doc:    "[streams]\nmax-age = \"7 days\"\n[webhook.siem]\nurl = \"https://siem.example\"\nevents = [\"*\"]\nenable = \"yes\"\n[tracer.log]\ntype = \"log\"\npath = \"/tmp/x\"\nlevle = \"info\"\nlevel = \"loud\"\n",
			stderr: []string{`line 2: streams.max-age: invalid duration "7 days"`, "line 6: webhook.siem.enable: want true or false", "line 10: tracer.log.levle: unknown key (did you mean level?)", "line 11: tracer.log.level: unknown level"},
		},
		{
			name:   "misspelled event id is a warning",
			doc:    "[tracing.level]\n\"auth.sucess\" = \"debug\"\n[webhook.siem]\nurl = \"https://siem.example\"\nevents = [\"auth.bannd\", \"auth.*\"]\n",
			ok:     true,
			stdout: []string{"is valid: 1 sinks (siem:webhook)"},
			stderr: []string{
				`warning: line 2: tracing.level.auth.sucess: "auth.sucess" is not in the event catalog (did you mean auth.success?)`,
				`warning: line 5: webhook.siem.events[0]: "auth.bannd" is not in the event catalog (did you mean auth.banned?)`,
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "c.toml")
			if err := os.WriteFile(path, []byte(tc.doc), 0o644); err != nil {
				t.Fatal(err)
			}
			out, errOut, err := runCmd(t, "validate", "--config", path)
			if (err == nil) != tc.ok {
				t.Fatalf("validate: err = %v, want ok = %v\nstdout: %s\nstderr: %s", err, tc.ok, out, errOut)
			}
			for _, w := range tc.stdout {
				if !strings.Contains(out, w) {
					t.Errorf("stdout lacks %q:\n%s", w, out)
				}
			}
			for _, w := range tc.stderr {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr lacks %q:\n%s", w, errOut)
				}
			}
		})
	}
}
