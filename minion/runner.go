package minion

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/overlordhq/overlord/modules"
	"github.com/overlordhq/overlord/rpc"
	"github.com/overlordhq/overlord/status"
)

// RunJob is the body of an async job's runner: the minion binary
// re-executed by the daemon (`minion run-job DIR`) in a session and
// process group of its own. It runs the job spooled in dir, with its
// output appended to the spool as it is produced, and leaves the outcome
// in result.json. SIGTERM cancels the job.
func RunJob(dir string, reg *modules.Registry) error {
	return runJob(dir, reg, runOptions{})
}

// runOptions are what tests change in a runner.
type runOptions struct {
	// output, if set, wraps the writer of the job's output file (a test
	// makes it fail as a full disk would).
	output func(io.Writer) io.Writer
}

func runJob(dir string, reg *modules.Registry, opts runOptions) error {
	if fd, err := strconv.Atoi(os.Getenv(RunnerLockEnv)); err == nil && fd > 2 {
		// The lock stays with this runner: what the job starts does not
		// inherit it, and does not keep the job alive in the daemon's
		// eyes once the runner is gone.
		syscall.CloseOnExec(fd)
		os.Unsetenv(RunnerLockEnv)
	}
	start := time.Now()
	// A job that cannot even start (a full disk, a spec that does not
	// decode) still leaves an outcome saying why.
	fail := func(err error) error {
		o := outcome{Error: status.Errorf(status.KindInternal, "the job's runner could not start it: %v", err), FinishedAt: time.Now().UTC()}
		if raw, mErr := json.Marshal(o); mErr == nil {
			if sErr := saveResult(dir, raw); sErr != nil {
				return errors.Join(err, sErr)
			}
		}
		return err
	}
	if err := writeFileAtomic(filepath.Join(dir, pidFile), []byte(strconv.Itoa(os.Getpid())+"\n")); err != nil {
		// The pid file is for people; the daemon knows the pid and
		// judges the runner by its lock.
		fmt.Fprintf(os.Stderr, "write pid file: %v\n", err)
	}
	data, err := os.ReadFile(filepath.Join(dir, specFile))
	if err != nil {
		return fail(err)
	}
	var sp spec
	if err := json.Unmarshal(data, &sp); err != nil {
		return fail(fmt.Errorf("%s: %w", specFile, err))
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var cancelled atomic.Bool
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)
	go func() {
		if _, ok := <-sigs; ok {
			cancelled.Store(true)
			cancel()
		}
	}()
	if sp.TimeoutMS > 0 {
		var cancelT context.CancelFunc
		ctx, cancelT = context.WithTimeout(ctx, time.Duration(sp.TimeoutMS)*time.Millisecond)
		defer cancelT()
	}
	out, err := os.OpenFile(filepath.Join(dir, outputFile), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fail(err)
	}
	defer out.Close()
	leader := syscall.Getpgrp() == os.Getpid()
	if leader {
		ctx = modules.InJobProcessGroup(ctx)
	}
	var outW io.Writer = out
	if opts.output != nil {
		outW = opts.output(out)
	}
	spoolOut := &spoolWriter{w: outW, room: MaxSpoolOutput}
	ctx = modules.WithOutput(ctx, spoolOut)

	res, callErr := reg.Call(ctx, sp.Module, sp.Method, sp.Args, nil)
	o := callOutcome(res, callErr, ctx, cancelled.Load(), time.Since(start))
	if err := spoolOut.Err(); err != nil {
		// The job ran, but what it wrote is not all in the spool (a full
		// disk): the outcome says so, whatever the job's own.
		msg := fmt.Sprintf("the job's output could not be kept in the spool: %v", err)
		if o.Error == nil {
			o.OK, o.Error = false, status.Errorf(status.KindInternal, "%s", msg)
		} else {
			o.Error.Message += "; and " + msg
		}
	}
	raw, err := json.Marshal(o)
	if err != nil {
		return err
	}
	if err := saveResult(dir, raw); err != nil {
		return err
	}
	if callErr != nil && leader && ctx.Err() != nil {
		// The outcome is safe; take down whatever the job left behind in
		// its process group, this runner included.
		out.Close()
		_ = syscall.Kill(0, syscall.SIGKILL)
	}
	return nil
}

// callOutcome is the outcome of a method that returned res and callErr
// after took, run on ctx; cancelled says whether it was cancelled.
func callOutcome(res any, callErr error, ctx context.Context, cancelled bool, took time.Duration) outcome {
	o := outcome{OK: callErr == nil, DurationMS: took.Milliseconds(), FinishedAt: time.Now().UTC()}
	if res != nil {
		if raw, err := rpc.EncodeResult(res); err == nil {
			o.Result = raw
		} else if callErr == nil {
			callErr = err
			o.OK = false
		}
	}
	if callErr != nil {
		o.Error = &status.Error{Kind: status.KindOf(callErr), Message: callErr.Error()}
		var se *status.Error
		if errors.As(callErr, &se) {
			o.Error.Message = se.Message
		}
		// A timeout comes first: the command's own kill on a deadline
		// signals a runner's group, the runner included.
		switch {
		case errors.Is(ctx.Err(), context.DeadlineExceeded):
			o.Error.Kind = status.KindTimeout
		case cancelled:
			o.Error = status.Errorf(status.KindCancelled, "job cancelled")
		}
	}
	return o
}

// MaxSpoolOutput caps the output an async job keeps in its spool; its
// result has a cap of its own (command.run's max_output).
const MaxSpoolOutput = 64 << 20

// spoolWriter appends to a job's output file until room runs out, then
// notes the truncation once and drops the rest. It never fails the
// job's own writes: the first error writing the file (a full disk) is
// kept for Err, and the rest of the output dropped.
type spoolWriter struct {
	mu   sync.Mutex
	w    io.Writer
	room int64
	full bool
	err  error
}

func (s *spoolWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var err error
	switch {
	case s.full || s.err != nil:
	case int64(len(p)) <= s.room:
		var n int
		n, err = s.w.Write(p)
		s.room -= int64(n)
	default:
		if _, err = s.w.Write(p[:s.room]); err == nil {
			_, err = fmt.Fprintf(s.w, "\n[output truncated: the spool keeps %d MiB]\n", MaxSpoolOutput>>20)
		}
		s.room, s.full = 0, true
	}
	if err != nil && s.err == nil {
		s.err = fmt.Errorf("write %s: %w", outputFile, err)
	}
	return len(p), nil
}

// Err returns the first error writing the output file, if any.
func (s *spoolWriter) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}
