// Package docs reads the shell commands of the repository's README, so that
// a test can check them against the real commands (readme_test.go) and a
// script can run them as a new user would (scripts/new-user-session.sh,
// through scripts/readmecmds). It is the one place that knows how the
// README's commands are found, split and classified.
//
// The shell blocks are the fenced code blocks marked sh, bash or console
// (in a console block, only the lines starting with "$ " are commands; the
// others are output). Each block is parsed by a real shell parser
// (mvdan.cc/sh, bash dialect), so quoting, "\" continuations, comments,
// "&&", "|", ";", "$(...)" and variable prefixes (NATS_TOKEN=x cmd) mean
// what they mean to bash. A command is one top-level statement: what a
// user types and runs at once. A call is one simple command inside it (a
// pipeline "tail -F f | publisher file -" is one command of two calls).
//
// It also makes the configuration reference, config-reference.md
// (Reference, reference.go; go generate ./docs), from the configuration
// structs and the registered sink kinds.
package docs

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"

	"mvdan.cc/sh/v3/expand"
	"mvdan.cc/sh/v3/syntax"
)

// Programs are the mailtel commands whose calls Commands resolves, and the
// default subcommand of each ("" when it has none).
var Programs = map[string]string{"router": "run", "sinks": "run", "publisher": ""}

// Block is one shell block of the README.
type Block struct {
	// Lang is the info string of the fence: sh, bash or console.
	Lang string
	// Line is the README line of the block's first line (after the fence).
	Line int
	// Section is the title of the nearest heading above the block.
	Section string
	// Text is the block's shell source (for a console block, the commands
	// without their "$ " prompts; other lines blank).
	Text string
}

// Kind says how a command runs.
type Kind string

const (
	// Run ends by itself within seconds and must exit 0.
	Run Kind = "run"
	// Service runs until stopped: a pipeline process, a live tail, a
	// status --watch, a tail -f.
	Service Kind = "service"
	// Slow ends by itself but takes minutes: every test, benchmarks, fuzzing.
	Slow Kind = "slow"
)

// Command is one top-level statement of a shell block.
type Command struct {
	Block   int    // index of the block in Blocks' result
	Section string // the block's section
	Line    int    // README line of the command's first line
	// Text is the command as written, without its trailing comment; the
	// lines of a "\" continuation are joined with a space.
	Text  string
	Kind  Kind
	Calls []Call // the mailtel calls in the command, in order
	// Problems are mistakes of the command's shell text itself, such as an
	// unquoted subject wildcard.
	Problems []string
}

// Call is one call of router, sinks or publisher, written either by name
// ("router status") or through go run ("go run ./cmd/router status").
type Call struct {
	Line    int
	Program string   // router, sinks or publisher
	Args    []string // the arguments after expansion, without the program
	// Env are the NAME=value prefixes of the call, expanded.
	Env []string
	// Unexpandable is why Args could not be expanded ("" when they were):
	// a command substitution, or a variable the README never sets.
	Unexpandable string
}

// Subcommand returns the subcommand the call runs, as the program's
// dispatcher (app.Command) chooses it: its first argument unless that is
// a flag, else the program's default; for sinks dlq, "dlq list" and so on.
func (c Call) Subcommand() string {
	def := Programs[c.Program]
	if len(c.Args) == 0 || strings.HasPrefix(c.Args[0], "-") {
		return def
	}
	if c.Program == "sinks" && c.Args[0] == "dlq" && len(c.Args) > 1 && !strings.HasPrefix(c.Args[1], "-") {
		return "dlq " + c.Args[1]
	}
	return c.Args[0]
}

// Flag returns the value of the flag name in args (-name, --name, with
// "=value" or the next argument as its value) and whether it is there; a
// flag given without a value (last, or followed by another flag) has the
// value "".
func Flag(args []string, name string) (string, bool) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			break
		}
		if !strings.HasPrefix(a, "-") {
			continue
		}
		a = strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-")
		if n, v, ok := strings.Cut(a, "="); ok && n == name {
			return v, true
		}
		if a == name {
			if i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") {
				return args[i+1], true
			}
			return "", true
		}
	}
	return "", false
}

// Blocks returns the README's shell blocks, in order.
func Blocks(readme []byte) []Block {
	var (
		blocks  []Block
		section string
		cur     *Block
		text    strings.Builder
		fence   string
	)
	sc := bufio.NewScanner(bytes.NewReader(readme))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		if fence == "" {
			if strings.HasPrefix(line, "#") {
				section = strings.TrimSpace(strings.TrimLeft(line, "#"))
				continue
			}
			if !strings.HasPrefix(trimmed, "```") && !strings.HasPrefix(trimmed, "~~~") {
				continue
			}
			fence = trimmed[:3]
			lang, _, _ := strings.Cut(strings.TrimSpace(strings.TrimLeft(trimmed, fence[:1])), " ")
			switch lang {
			case "sh", "bash", "shell", "console":
				cur = &Block{Lang: lang, Line: n + 1, Section: section}
				text.Reset()
			default:
				cur = nil
			}
			continue
		}
		if strings.HasPrefix(trimmed, fence) {
			if cur != nil {
				cur.Text = text.String()
				blocks = append(blocks, *cur)
			}
			fence, cur = "", nil
			continue
		}
		if cur == nil {
			continue
		}
		if cur.Lang == "console" {
			cmd, ok := strings.CutPrefix(strings.TrimLeft(line, " "), "$ ")
			if !ok {
				cmd = ""
			}
			line = cmd
		}
		text.WriteString(line)
		text.WriteByte('\n')
	}
	return blocks
}

// Commands parses every shell block of the README and returns its
// commands in order. A block the shell cannot parse is an error that names
// its README line. Variables a command sets (NATS=..., export X=...) are
// known to the commands after it, as in one shell session; $PWD and $HOME
// expand to "/home/you/mailtel" and "/home/you".
func Commands(readme []byte) ([]Command, error) {
	var cmds []Command
	var errs []error
	vars := map[string]string{"PWD": "/home/you/mailtel", "HOME": "/home/you", "PATH": "/usr/bin:/bin"}
	for bi, b := range Blocks(readme) {
		f, err := syntax.NewParser(syntax.Variant(syntax.LangBash)).Parse(strings.NewReader(b.Text), "")
		if err != nil {
			var perr syntax.ParseError
			if errors.As(err, &perr) {
				errs = append(errs, fmt.Errorf("README.md:%d: shell syntax error: %s", b.Line+int(perr.Pos.Line())-1, perr.Text))
			} else {
				errs = append(errs, fmt.Errorf("README.md:%d: shell block: %w", b.Line, err))
			}
			continue
		}
		for _, st := range f.Stmts {
			c := Command{Block: bi, Section: b.Section, Line: b.Line + int(st.Pos().Line()) - 1,
				Text: strings.TrimRight(joinLines(b.Text[st.Pos().Offset():st.End().Offset()]), "; \t")}
			c.Calls, c.Problems = calls(b, st, vars)
			c.Kind = kindOf(st, c.Calls)
			record(st, vars)
			cmds = append(cmds, c)
		}
	}
	return cmds, errors.Join(errs...)
}

// joinLines joins "\" continuation lines with one space.
func joinLines(s string) string {
	lines := strings.Split(s, "\\\n")
	for i := range lines {
		if i > 0 {
			lines[i] = strings.TrimLeft(lines[i], " \t")
		}
		lines[i] = strings.TrimRight(lines[i], " \t")
	}
	return strings.Join(lines, " ")
}

// calls returns the mailtel calls in st, and the mistakes of its text:
// an unquoted glob character or a ">" glued to a word in a mailtel call
// (an unquoted subject wildcard, which the shell globs or takes for a
// redirection).
func calls(b Block, st *syntax.Stmt, vars map[string]string) ([]Call, []string) {
	var out []Call
	var problems []string
	line := func(p syntax.Pos) int { return b.Line + int(p.Line()) - 1 }
	syntax.Walk(st, func(n syntax.Node) bool {
		s, ok := n.(*syntax.Stmt)
		if !ok {
			return true
		}
		ce, ok := s.Cmd.(*syntax.CallExpr)
		if !ok || len(ce.Args) == 0 {
			return true
		}
		prog, args := program(ce.Args)
		if prog == "" {
			return true
		}
		c := Call{Line: line(ce.Pos()), Program: prog}
		cfg := &expand.Config{Env: environ(vars), NoUnset: true}
		var err error
		if c.Args, err = expand.Fields(cfg, args...); err != nil {
			c.Unexpandable = describe(err)
		}
		for _, a := range ce.Assigns {
			v := ""
			if a.Value != nil {
				if v, err = expand.Literal(cfg, a.Value); err != nil {
					c.Unexpandable = describe(err)
				}
			}
			c.Env = append(c.Env, a.Name.Value+"="+v)
		}
		for _, w := range args {
			if g := unquotedGlob(w); g != "" {
				problems = append(problems, fmt.Sprintf("README.md:%d: %s: %q has an unquoted %q: quote it ('%s'), or the shell expands it as a file name pattern",
					line(w.Pos()), prog, wordText(b, w), g, wordText(b, w)))
			}
		}
		for _, r := range s.Redirs {
			if r.Op != syntax.RdrOut && r.Op != syntax.AppOut {
				continue
			}
			for _, w := range args {
				if w.End().Offset() == r.OpPos.Offset() {
					problems = append(problems, fmt.Sprintf("README.md:%d: %s: %q is followed by an unquoted %q, which the shell takes for a redirection: quote the subject ('%s>')",
						line(w.Pos()), prog, wordText(b, w), r.Op.String(), wordText(b, w)))
				}
			}
		}
		out = append(out, c)
		return true
	})
	return out, problems
}

// program returns the mailtel program a call runs and the words of its
// arguments: "router ..." (or a path ending in /router), or
// "go run ./cmd/router ...".
func program(words []*syntax.Word) (string, []*syntax.Word) {
	first := words[0].Lit()
	if _, ok := Programs[path.Base(first)]; ok && first != "" {
		return path.Base(first), words[1:]
	}
	if first == "go" && len(words) >= 3 && words[1].Lit() == "run" {
		pkg := strings.TrimSuffix(words[2].Lit(), "/")
		if dir, name := path.Split(pkg); path.Clean(dir) == "cmd" || strings.HasSuffix(path.Clean(dir), "/cmd") {
			if _, ok := Programs[name]; ok {
				return name, words[3:]
			}
		}
	}
	return "", nil
}

// unquotedGlob returns the first glob character of w outside quotes.
func unquotedGlob(w *syntax.Word) string {
	for _, p := range w.Parts {
		if l, ok := p.(*syntax.Lit); ok {
			if i := strings.IndexAny(l.Value, "*?["); i >= 0 {
				return l.Value[i : i+1]
			}
		}
	}
	return ""
}

func wordText(b Block, w *syntax.Word) string {
	return b.Text[w.Pos().Offset():w.End().Offset()]
}

func describe(err error) string {
	var ce expand.UnexpectedCommandError
	if errors.As(err, &ce) {
		return "a command substitution $(...)"
	}
	return err.Error()
}

func environ(vars map[string]string) expand.Environ {
	pairs := make([]string, 0, len(vars))
	for k, v := range vars {
		pairs = append(pairs, k+"="+v)
	}
	return expand.ListEnviron(pairs...)
}

// record remembers the variables st sets: NAME=value alone on a line, or
// export NAME=value.
func record(st *syntax.Stmt, vars map[string]string) {
	set := func(as []*syntax.Assign) {
		cfg := &expand.Config{Env: environ(vars)}
		for _, a := range as {
			if a.Value == nil {
				continue
			}
			if v, err := expand.Literal(cfg, a.Value); err == nil {
				vars[a.Name.Value] = v
			}
		}
	}
	switch c := st.Cmd.(type) {
	case *syntax.CallExpr:
		if len(c.Args) == 0 {
			set(c.Assigns)
		}
	case *syntax.DeclClause:
		set(c.Args)
	case *syntax.BinaryCmd:
		for _, s := range []*syntax.Stmt{c.X, c.Y} {
			record(s, vars)
		}
	}
}

// kindOf classifies a command: a Service when any call in it runs until
// stopped, Slow when it runs the test suite, benchmarks or fuzzing.
func kindOf(st *syntax.Stmt, mailtel []Call) Kind {
	for _, c := range mailtel {
		if longRunning(c) {
			return Service
		}
	}
	kind := Run
	syntax.Walk(st, func(n syntax.Node) bool {
		ce, ok := n.(*syntax.CallExpr)
		if !ok || len(ce.Args) == 0 {
			return true
		}
		var w []string
		for _, a := range ce.Args {
			w = append(w, a.Lit())
		}
		switch {
		case w[0] == "tail" || w[0] == "watch":
			if w[0] == "watch" {
				kind = Service
			}
			for _, a := range w[1:] {
				if a == "--follow" || strings.HasPrefix(a, "-") && !strings.HasPrefix(a, "--") && strings.ContainsAny(a, "fF") {
					kind = Service
				}
			}
		case len(w) >= 3 && w[0] == "go" && w[1] == "tool" && w[2] == "task":
			switch task := taskName(w[3:]); task {
			case "up", "cluster-up":
				kind = Service
			case "test", "bench", "bench-micro", "bench-soak", "soak", "crash", "fuzz", "deploy-check", "lint", "first-hour":
				if kind != Service {
					kind = Slow
				}
			}
		case len(w) >= 3 && w[0] == "go" && w[1] == "run" && strings.TrimSuffix(w[2], "/") == "./cmd/cluster":
			kind = Service
		case len(w) >= 3 && w[0] == "go" && w[1] == "run" && strings.TrimSuffix(w[2], "/") == "./cmd/bench" && kind != Service:
			kind = Slow
		case len(w) >= 2 && w[0] == "go" && w[1] == "test" && kind != Service:
			if _, bench := Flag(w[2:], "bench"); bench || slices.Contains(w[2:], "./...") {
				kind = Slow
			}
		}
		return true
	})
	return kind
}

func taskName(args []string) string {
	for _, a := range args {
		if !strings.HasPrefix(a, "-") && !strings.Contains(a, "=") {
			return a
		}
		if a == "--" {
			break
		}
	}
	return ""
}

// longRunning reports whether a mailtel call runs until it is stopped.
func longRunning(c Call) bool {
	switch sub := c.Subcommand(); c.Program + " " + sub {
	case "router run", "router up", "sinks run", "publisher ingest":
		return true
	case "router status":
		_, watch := Flag(c.Args, "watch")
		return watch
	case "sinks tail":
		_, until := Flag(c.Args, "until")
		return !until
	case "publisher gen":
		n, ok := Flag(c.Args, "count")
		return ok && n == "0"
	}
	return false
}
