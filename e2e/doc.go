// Package e2e holds the end-to-end tests: they build the real overlord and
// minion binaries, start minion processes on 127.0.0.1 and drive them with
// the overlord CLI, checking what a user sees (output, JSON, exit codes).
//
// Scripts live in testdata/*.txtar and run with testscript; the custom
// commands they may use are documented in script_test.go. Checks that are
// awkward in a script (raw TLS clients, signals, processes found in /proc,
// waiting on a job's state) are plain Go tests: async_test.go for async
// jobs, with the helpers in jobs_test.go and detached_test.go.
//
// Async jobs run in detached processes (drivers, runners) that no test
// starts itself; they are found by their command lines, which hold the
// test's own directory, and killed when the test's fleet is closed. A
// command that must wait for the test waits on a gate file, not a sleep.
//
// There is no way to keep a test of a known bug as a skip: a test asserts,
// and a bug it finds fails it until the bug is fixed.
//
// The tests build only on Linux (they read /proc/net/tcp to see calls in
// flight, and tie the processes they start to their own life with
// Pdeathsig); they need the go command.
package e2e
