// Package crashtest is the crash test of the pipeline: it builds the real
// router, sinks and publisher binaries, runs them against a JetStream
// server started by the test, SIGKILLs and restarts the router and sinks
// processes at random moments while synthetic events flow, and then checks
// that every log sink holds every event it should, exactly once, and
// nothing else.
//
//	go test ./pipeline/crashtest -run TestCrash -count=1 -v                 # CI form (~200,000 events, router and server fan-out)
//	go test ./pipeline/crashtest -run TestCrash -count=1 -timeout 30m -crash.long   # soak (go tool task soak)
//	go test ./pipeline/crashtest -run TestCrash -count=20 -timeout 160m -crash.seed=0  # hunt: 20 runs, a new seed each (go tool task crash N=20)
//	go test ./pipeline/crashtest -run TestCrash -count=20 -timeout 160m -crash.seed=0 -crash.stress -crash.nats-server=build
//
// Flags: -crash.seed (the event streams and the kill schedule; printed by
// the test; 0 draws a new one for every run), -crash.events, -crash.long
// (or MAILTEL_SOAK=1), -crash.keep (keep the work directory: process logs
// and sink files), -crash.nats-server (run the JetStream server as a
// nats-server process of its own instead of inside the test process: a
// path, or "build" to build the module's nats-server dependency),
// -crash.stress (two busy-loop processes beside the run, for CPU
// contention), -crash.together (every step kills router and sinks at
// once), -crash.nowait (start a successor at once, without waiting until
// the killed process is gone, as a supervisor does), -crash.ack-wait (5s;
// 0 runs with the configuration's defaults, 30s and 60s, as a deployment
// would) and -crash.watchdog.
//
// # Watchdog
//
// A run that stops making progress fails within -crash.watchdog (20s by
// default; 0 turns it off) instead of hanging until its deadlines or the
// go test timeout: when no sink's file changed for that long while work
// was left (a publisher running, messages pending or unacked, a stream
// source behind), or a consumer with messages pending kept its ack floor
// for that long (or a wait of the test timed out), the test writes a dump
// to its log and to watchdog.txt in the work directory, which is then
// kept: every stream's state and every consumer's info (pending, ack
// pending, redelivered, waiting pulls, delivered and ack floor sequences
// and how long ago they moved) twice, 3s apart; the server's client
// connections; the timeline; for every live router and sinks process its
// counters, its last 50 log lines and its goroutines (the test sends it
// SIGQUIT, on which Go prints them to the process's log and exits; the
// dump summarises them by stack); and the server's goroutines.
// -crash.freeze=sinks (or router) SIGSTOPs that process after the first
// kill, to see the watchdog at work.
//
// The package has no API: everything is in its _test.go files.
package crashtest
