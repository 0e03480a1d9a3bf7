// Package secretstest checks that no secret of the configuration reaches
// an output of mailtel. It builds the real router, sinks and publisher
// binaries, writes a configuration with a distinct secret in every key
// that can hold one (NATS token and password, URL user info, the ingest
// token, password and signature key, the webhooks' URL query values,
// header values, auth secrets and signature keys, the metrics endpoint's
// secret; some given as %{env:NAME}% and %{file:PATH}%), runs the
// processes at trace level through normal work and through failures
// (webhooks that answer 400, redirect, time out, refuse connections or
// fail TLS; NATS unreachable or refusing the credentials; invalid
// configuration files), and searches every output for each secret and its
// trivial encodings: process logs (console and JSON), command output,
// --help, /metrics, /readyz and /healthz, the metrics sink's endpoint,
// ingest answers, every message and header of every stream (dead letters
// included), and the log sink's files.
//
//	go test ./pipeline/secretstest -count=1 -v
//
// A webhook receiver of course gets its credentials and signature: only
// what mailtel writes for people and machines other than the receiver is
// searched. The package has no API: everything is in its _test.go files.
package secretstest
