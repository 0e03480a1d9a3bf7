//go:build !linux

package main

import "os/exec"

// setDeathSignal does nothing where the kernel has no parent-death signal;
// the router is still stopped when the benchmark ends or is interrupted.
func setDeathSignal(*exec.Cmd) {}
