//go:build !linux

package crashtest

import "os/exec"

// setDeathSignal does nothing where the kernel has no parent-death signal;
// the processes are still killed when the test ends normally.
func setDeathSignal(*exec.Cmd) {}
