// Package e2e holds the end-to-end tests: they build the real overlord and
// minion binaries, start minion processes on 127.0.0.1 and drive them with
// the overlord CLI, checking what a user sees (output, JSON, exit codes).
//
// Scripts live in testdata/*.txtar and run with testscript; the custom
// commands they may use are documented in script_test.go. Checks that are
// awkward in a script (raw TLS clients, signals) are plain Go tests.
//
// The tests build only on Linux (they read /proc/net/tcp to see calls in
// flight, and tie the processes they start to their own life with
// Pdeathsig); they need the go command.
package e2e
