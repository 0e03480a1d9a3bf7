package config

// The sink kinds mailtel ships, registered in package sink's registry, so
// that every process and test that loads a file knows their sections.
import _ "github.com/mailtel/mailtel/pipeline/sinks/all"
