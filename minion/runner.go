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
	if err := writeFileAtomic(filepath.Join(dir, pidFile), []byte(strconv.Itoa(os.Getpid())+"\n")); err != nil {
		return err
	}
	data, err := os.ReadFile(filepath.Join(dir, specFile))
	if err != nil {
		return err
	}
	var sp spec
	if err := json.Unmarshal(data, &sp); err != nil {
		return fmt.Errorf("%s: %w", specFile, err)
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
		return err
	}
	defer out.Close()
	leader := syscall.Getpgrp() == os.Getpid()
	if leader {
		ctx = modules.InJobProcessGroup(ctx)
	}
	ctx = modules.WithOutput(ctx, &spoolWriter{w: out, room: MaxSpoolOutput})

	start := time.Now()
	res, callErr := reg.Call(ctx, sp.Module, sp.Method, sp.Args, nil)
	o := outcome{OK: callErr == nil, DurationMS: time.Since(start).Milliseconds(), FinishedAt: time.Now().UTC()}
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
		// signals this runner's group, this runner included.
		switch {
		case errors.Is(ctx.Err(), context.DeadlineExceeded):
			o.Error.Kind = status.KindTimeout
		case cancelled.Load():
			o.Error = status.Errorf(status.KindCancelled, "job cancelled")
		}
	}
	raw, err := json.Marshal(o)
	if err != nil {
		return err
	}
	if err := writeFileAtomic(filepath.Join(dir, resultFile), raw); err != nil {
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

// MaxSpoolOutput caps the output an async job keeps in its spool; its
// result has a cap of its own (command.run's max_output).
const MaxSpoolOutput = 64 << 20

// spoolWriter appends to a job's output file until room runs out, then
// notes the truncation once and drops the rest. It never fails the
// job's own writes.
type spoolWriter struct {
	mu   sync.Mutex
	w    io.Writer
	room int64
	full bool
}

func (s *spoolWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.full:
	case int64(len(p)) <= s.room:
		n, _ := s.w.Write(p)
		s.room -= int64(n)
	default:
		s.w.Write(p[:s.room])
		fmt.Fprintf(s.w, "\n[output truncated: the spool keeps %d MiB]\n", MaxSpoolOutput>>20)
		s.room, s.full = 0, true
	}
	return len(p), nil
}
