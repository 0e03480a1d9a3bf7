// Command gen generates catalog_gen.go of package catalog from the seed
// documents (see package catgen for the parsing rules):
//
//	go run ./internal/gen -seeds seeds -out catalog_gen.go
//
// It exits non-zero, writing nothing, if a seed has a row it cannot parse,
// an id is not two NATS subject tokens of [a-z0-9-], two events share an id
// (a Dovecot id colliding with a Stalwart id included) or the counts of
// parsed events disagree with the documents. The output is deterministic;
// an unchanged file is not rewritten.
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/mailtel/mailtel/catalog/internal/gen/catgen"
)

func main() {
	seeds := flag.String("seeds", "seeds", "directory holding "+catgen.StalwartFile+" and "+catgen.DovecotFile)
	out := flag.String("out", "catalog_gen.go", "Go file to write")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "gen: unexpected arguments %q\n", flag.Args())
		flag.Usage()
		os.Exit(2)
	}
	if err := run(*seeds, *out); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}

// run generates the catalog from the seeds in dir and writes it to out.
func run(dir, out string) error {
	c, err := catgen.Load(dir)
	if err != nil {
		return err
	}
	src, err := c.Render()
	if err != nil {
		return err
	}
	if err := writeFile(out, src); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "gen: %s: %d event types (%d Stalwart, %d Dovecot), %d Stalwart key types\n",
		out, len(c.Events), c.Stalwart, c.Dovecot, len(c.StalwartKeys))
	return nil
}

// writeFile replaces path with data atomically (a temporary file in the same
// directory, then a rename), leaving an identical file untouched.
func writeFile(path string, data []byte) (err error) {
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
		return nil
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("read %s: %w", path, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err := tmp.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", tmp.Name(), err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		return fmt.Errorf("chmod %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("rename %s to %s: %w", tmp.Name(), path, err)
	}
	return nil
}
