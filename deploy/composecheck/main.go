// Command composecheck loads a Compose file with compose-go, the loader of
// `docker compose` v2 (schema validation, interpolation, YAML merge keys,
// profiles), for machines without a Docker engine or the compose plugin. It
// is its own module so that mailtel's go.mod stays free of compose-go.
//
//	cd deploy/composecheck && go run . ../compose/docker-compose.yml
//
// It prints every service with its image, replicas and command, and exits 1
// when the file does not load.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/compose-spec/compose-go/v2/cli"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "composecheck:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) != 1 || strings.HasPrefix(args[0], "-") {
		return fmt.Errorf("usage: composecheck FILE\nexample: go run . ../compose/docker-compose.yml")
	}
	abs, err := filepath.Abs(args[0])
	if err != nil {
		return err
	}
	opts, err := cli.NewProjectOptions([]string{abs}, cli.WithOsEnv,
		cli.WithWorkingDirectory(filepath.Dir(abs)), cli.WithProfiles([]string{"*"}))
	if err != nil {
		return fmt.Errorf("compose options: %w", err)
	}
	p, err := opts.LoadProject(ctx)
	if err != nil {
		return fmt.Errorf("%s does not load: %w", args[0], err)
	}
	fmt.Fprintf(stdout, "%s: project %s, %d services\n", args[0], p.Name, len(p.Services))
	for _, name := range p.ServiceNames() {
		s := p.Services[name]
		replicas := 1
		if s.Deploy != nil && s.Deploy.Replicas != nil {
			replicas = *s.Deploy.Replicas
		}
		fmt.Fprintf(stdout, "  %-14s %-28s x%d  %s\n", name, s.Image, replicas, strings.Join(s.Command, " "))
	}
	return nil
}
