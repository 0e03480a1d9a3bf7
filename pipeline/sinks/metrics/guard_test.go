package metrics_test

import (
	"github.com/mailtel/mailtel/pipeline/sink"
	"github.com/mailtel/mailtel/pipeline/sinks/metrics"
)

// The metrics sink is a sink.Sink; the guard lives here so that the
// package itself does not import the engine.
var _ sink.Sink = (*metrics.Sink)(nil)
