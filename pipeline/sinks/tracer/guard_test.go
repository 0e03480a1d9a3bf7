package tracer_test

import (
	"github.com/mailtel/mailtel/pipeline"
	"github.com/mailtel/mailtel/pipeline/sinks/tracer"
)

// The log sink is a pipeline.Sink and a pipeline.WrittenChecker; the guard
// lives here so that the package itself does not import the engine.
var (
	_ pipeline.Sink           = (*tracer.Sink)(nil)
	_ pipeline.WrittenChecker = (*tracer.Sink)(nil)
)
