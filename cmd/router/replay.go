package main

import (
	"context"
	"errors"
	"io"
)

// runReplay is a placeholder until the command is written.
func runReplay(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return errors.New("not implemented yet")
}
