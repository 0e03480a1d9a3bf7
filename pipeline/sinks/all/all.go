// Package all registers every sink kind mailtel ships (package sink's
// registry). The processes and the tests that load a configuration import
// it for its side effect; a new kind is one more line here.
package all

import (
	_ "github.com/mailtel/mailtel/pipeline/sinks/metrics"
	_ "github.com/mailtel/mailtel/pipeline/sinks/otel"
	_ "github.com/mailtel/mailtel/pipeline/sinks/tracer"
	_ "github.com/mailtel/mailtel/pipeline/sinks/webhook"
)
