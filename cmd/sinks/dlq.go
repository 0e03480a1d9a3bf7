package main

import (
	"context"
	"errors"
	"io"
)

// runDLQ is a placeholder until the command is written.
func runDLQ(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return errors.New("not implemented yet")
}
