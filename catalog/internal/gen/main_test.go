package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/mailtel/mailtel/catalog/internal/gen/catgen"
)

func TestRun(t *testing.T) {
	want, err := catgen.Generate("../../seeds")
	if err != nil {
		t.Fatalf("generate: %v", err)
	}
	tests := []struct {
		name    string
		seeds   string
		before  []byte // content of out before run; nil for none
		wantErr bool
		after   []byte // content of out after run; nil for none
	}{
		{"new file", "../../seeds", nil, false, want},
		{"replace stale file", "../../seeds", []byte("stale"), false, want},
		{"missing seeds leave no file", "no-such-dir", nil, true, nil},
		{"missing seeds keep old file", "no-such-dir", []byte("old"), true, []byte("old")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			out := filepath.Join(dir, "catalog_gen.go")
			if tt.before != nil {
				if err := os.WriteFile(out, tt.before, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			err := run(tt.seeds, out)
			if (err != nil) != tt.wantErr {
				t.Fatalf("run: err = %v, wantErr %v", err, tt.wantErr)
			}
			got, rerr := os.ReadFile(out)
			switch {
			case tt.after == nil && rerr == nil:
				t.Errorf("out file exists, want none")
			case tt.after != nil && !bytes.Equal(got, tt.after):
				t.Errorf("out file has %d bytes (err %v), want %d", len(got), rerr, len(tt.after))
			}
			entries, _ := os.ReadDir(dir)
			if n := len(entries); n > 1 {
				t.Errorf("%d files left in the output directory, want at most 1", n)
			}
		})
	}
}
