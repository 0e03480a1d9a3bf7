package pipelinetest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// binaries are cmd/router, cmd/sinks and cmd/publisher, built once per
// test binary run.
var binaries struct {
	once sync.Once
	dir  string
	err  error
}

// Binaries returns the directory holding the router, sinks and publisher
// executables, building them from this module on first use. A package
// whose tests use it removes them in TestMain with RemoveBinaries.
func Binaries(t testing.TB) string {
	t.Helper()
	binaries.once.Do(func() {
		goTool, err := exec.LookPath("go")
		if err != nil {
			goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
		}
		mod, err := exec.Command(goTool, "env", "GOMOD").Output()
		if err != nil || strings.TrimSpace(string(mod)) == "" {
			binaries.err = fmt.Errorf("find the module root (go env GOMOD): %v", err)
			return
		}
		if binaries.dir, binaries.err = os.MkdirTemp("", "mailtel-test-bin-*"); binaries.err != nil {
			return
		}
		cmd := exec.Command(goTool, "build", "-o", binaries.dir+string(filepath.Separator),
			"./cmd/router", "./cmd/sinks", "./cmd/publisher")
		cmd.Dir = filepath.Dir(strings.TrimSpace(string(mod)))
		if out, err := cmd.CombinedOutput(); err != nil {
			binaries.err = fmt.Errorf("go build the commands: %w\n%s", err, out)
		}
	})
	if binaries.err != nil {
		t.Fatal(binaries.err)
	}
	return binaries.dir
}

// RemoveBinaries removes what Binaries built, if anything.
func RemoveBinaries() {
	if binaries.dir != "" {
		os.RemoveAll(binaries.dir)
	}
}
