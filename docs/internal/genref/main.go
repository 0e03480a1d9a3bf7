// Command genref writes mailtel's configuration reference (docs.Reference)
// to a file:
//
//	go run ./internal/genref -out config-reference.md
//
// go generate ./docs runs it. It exits non-zero, writing nothing, when a
// key lacks its doc tag or the reference cannot be made; an unchanged file
// is not rewritten.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"

	"github.com/mailtel/mailtel/docs"
)

func main() {
	out := flag.String("out", docs.ReferenceFile, "Markdown file to write")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "genref: unexpected arguments %q\n", flag.Args())
		flag.Usage()
		os.Exit(2)
	}
	if err := run(*out); err != nil {
		fmt.Fprintln(os.Stderr, "genref:", err)
		os.Exit(1)
	}
}

// run writes the reference to out.
func run(out string) error {
	ref, err := docs.Reference()
	if err != nil {
		return fmt.Errorf("configuration reference:\n%w", err)
	}
	if old, err := os.ReadFile(out); err == nil && bytes.Equal(old, ref) {
		return nil
	}
	tmp := out + ".tmp"
	if err := os.WriteFile(tmp, ref, 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp, out); err != nil {
		os.Remove(tmp)
		return err
	}
	fmt.Fprintf(os.Stderr, "genref: wrote %s\n", out)
	return nil
}
