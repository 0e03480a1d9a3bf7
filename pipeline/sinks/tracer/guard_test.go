package tracer_test

import (
	"github.com/mailtel/mailtel/pipeline/sink"
	"github.com/mailtel/mailtel/pipeline/sinks/tracer"
)

// The log sink is a sink.Sink and a sink.WrittenChecker; the guard
// lives here so that the package itself does not import the engine.
var (
	_ sink.Sink           = (*tracer.Sink)(nil)
	_ sink.WrittenChecker = (*tracer.Sink)(nil)
)
