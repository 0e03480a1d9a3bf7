// Command readmecmds prints the commands of the README's shell blocks, one
// per line, for scripts/new-user-session.sh:
//
//	<block>\t<README line>\t<kind>\t<section>\t<command>
//
// kind is run, service (runs until stopped) or slow (minutes: every test,
// benchmarks, fuzzing); see package docs, which finds and classifies them
// (the README test reads them the same way). It exits 1, naming the line,
// when a block is not valid shell or a command has a mistake of its own
// (an unquoted subject wildcard).
//
//	go run ./scripts/readmecmds [README.md]
package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/mailtel/mailtel/docs"
)

func main() {
	path := "README.md"
	if len(os.Args) > 1 {
		path = os.Args[1]
	}
	readme, err := os.ReadFile(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "readmecmds:", err)
		os.Exit(1)
	}
	cmds, err := docs.Commands(readme)
	if err != nil {
		fmt.Fprintln(os.Stderr, "readmecmds:", err)
		os.Exit(1)
	}
	bad := false
	for _, c := range cmds {
		for _, p := range c.Problems {
			fmt.Fprintln(os.Stderr, "readmecmds:", p)
			bad = true
		}
		fmt.Printf("%d\t%d\t%s\t%s\t%s\n", c.Block, c.Line, c.Kind, strings.ReplaceAll(c.Section, "\t", " "), c.Text)
	}
	if bad {
		os.Exit(1)
	}
}
