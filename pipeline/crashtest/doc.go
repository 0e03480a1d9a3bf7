// Package crashtest is the crash test of the pipeline: it builds the real
// router, sinks and publisher binaries, runs them against a JetStream
// server started by the test, SIGKILLs and restarts the router and sinks
// processes at random moments while synthetic events flow, and then checks
// that every log sink holds every event it should, exactly once, and
// nothing else.
//
//	go test ./pipeline/crashtest -run TestCrash -count=1 -v                 # CI form (~200,000 events, router and server fan-out)
//	go test ./pipeline/crashtest -run TestCrash -count=1 -timeout 30m -crash.long   # soak (go tool task soak)
//
// Flags: -crash.seed (the event streams and the kill schedule; printed by
// the test), -crash.events, -crash.long (or MAILTEL_SOAK=1) and -crash.keep
// (keep the work directory: process logs and sink files). The package has
// no API: everything is in its _test.go files.
package crashtest
