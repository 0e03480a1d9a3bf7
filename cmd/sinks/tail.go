package main

import (
	"context"
	"errors"
	"io"
)

// runTail is a placeholder until the command is written.
func runTail(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return errors.New("not implemented yet")
}
