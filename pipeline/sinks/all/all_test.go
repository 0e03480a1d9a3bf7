package all_test

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/mailtel/mailtel/pipeline/sink"
)

// TestSinkPackagesStayOffTheEngine: no sink package, nor the contract,
// depends on the engine (package pipeline and what it runs), the config
// package or the NATS server: `go list -deps` of this package (which
// imports every registered kind) and of the contract has none of them.
func TestSinkPackagesStayOffTheEngine(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/mailtel/mailtel/pipeline/sinks/all", "github.com/mailtel/mailtel/pipeline/sink").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	forbidden := []string{"github.com/nats-io/", "github.com/mailtel/mailtel/pipeline", "github.com/mailtel/mailtel/pipeline/config",
		"github.com/mailtel/mailtel/pipeline/app", "github.com/mailtel/mailtel/pipeline/sinks", "github.com/mailtel/mailtel/pipeline/delivery"}
	for _, dep := range strings.Fields(string(out)) {
		for _, f := range forbidden {
			if dep == f || (strings.HasSuffix(f, "/") && strings.HasPrefix(dep, f)) {
				t.Errorf("a sink package depends on %s", dep)
			}
		}
	}
	if len(sink.Factories()) < 6 {
		t.Errorf("%d kinds registered, want the six mailtel ships", len(sink.Factories()))
	}
}
