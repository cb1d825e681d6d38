package modules

import (
	"context"
	"io"
)

type ctxKey int

const (
	outputKey ctxKey = iota
	groupKey
	startedKey
)

// WithOutput returns a context whose methods also write their output, as
// it is produced, to w. An async job's runner uses it to make the output
// readable while the job runs.
func WithOutput(ctx context.Context, w io.Writer) context.Context {
	return context.WithValue(ctx, outputKey, w)
}

// Output returns the writer set by WithOutput, or nil.
func Output(ctx context.Context) io.Writer {
	w, _ := ctx.Value(outputKey).(io.Writer)
	return w
}

// InJobProcessGroup returns a context that tells methods they already run
// in a process group of their own (an async job's runner), so the
// processes they start stay in it and are killed with it.
func InJobProcessGroup(ctx context.Context) context.Context {
	return context.WithValue(ctx, groupKey, true)
}

// JobProcessGroup reports whether ctx came from InJobProcessGroup.
func JobProcessGroup(ctx context.Context) bool {
	b, _ := ctx.Value(groupKey).(bool)
	return b
}

// WithProcessStarted returns a context whose methods call started with
// the pid of each process they start (the leader of its own process
// group), once it runs. A minion running a call in the daemon uses it to
// record the group, so that after a crash the daemon that comes back can
// take down what the call left running.
func WithProcessStarted(ctx context.Context, started func(pid int)) context.Context {
	return context.WithValue(ctx, startedKey, started)
}

// ProcessStarted returns the function set by WithProcessStarted, or nil.
func ProcessStarted(ctx context.Context) func(pid int) {
	f, _ := ctx.Value(startedKey).(func(pid int))
	return f
}
