package crashtest

import (
	"os/exec"
	"syscall"
)

// setDeathSignal makes the kernel kill cmd when the test process dies,
// however it dies (a go test timeout, a panic), so that no router, sinks,
// nats-server or busy loop outlives it.
func setDeathSignal(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
