// Package reloadtest is the test of configuration reloads: it builds the
// real router, sinks and publisher binaries, runs them on the router's
// embedded NATS server while synthetic events flow, changes the
// configuration file under them, reloads it with SIGHUP and with --watch,
// and checks what the log sinks hold against what EVENTS stored: every
// event the rules want, exactly once, routed by the rules in force when
// it was routed, and the same processes throughout.
//
//	go test ./pipeline/reloadtest -count=1 -v
package reloadtest
