// Package formats links every built-in ingest format into a program:
// import it for its side effect,
//
//	import _ "github.com/mailtel/mailtel/pipeline/ingest/formats"
//
// A new format is one package (see package format) plus one import line
// here.
package formats

import (
	_ "github.com/mailtel/mailtel/pipeline/ingest/dovecot"
	_ "github.com/mailtel/mailtel/pipeline/ingest/stalwart"
)
