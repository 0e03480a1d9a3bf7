package metrics_test

import (
	"github.com/mailtel/mailtel/pipeline"
	"github.com/mailtel/mailtel/pipeline/sinks/metrics"
)

// The metrics sink is a pipeline.Sink; the guard lives here so that the
// package itself does not import the engine.
var _ pipeline.Sink = (*metrics.Sink)(nil)
