package config

import "github.com/mailtel/mailtel/pipeline/config/value"

// The value types of the file, defined in package value so that sink
// packages share them without importing this one.
type (
	Duration  = value.Duration
	Size      = value.Size
	BasicAuth = value.BasicAuth
)
