package cli

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/vbauerster/cupwriter"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
	"golang.org/x/term"

	"github.com/overlordhq/overlord/status"
)

// progressSink is what a progress display is fed while a run is shown:
// each minion's result (again as it changes: the last one counts) and,
// with rolling batches, the batch that started.
type progressSink interface {
	Result(name string, r status.Result)
	Batch(k, n, started int)
}

// progressLine is the live line on stderr while a call, cp, fetch or
// `job status --wait` runs:
//
//	12/40 done: 10 ok, 2 failed, 28 running, 5s, batch 2/4, job 0193... [=====>     ]
//
// drawn by mpb. Text printed to the same terminal while it is shown goes
// through Write, which mpb prints above the line, so the two never mix.
// Stop removes the line.
type progressLine struct {
	p   *mpb.Progress
	bar *mpb.Bar

	mu       sync.Mutex
	total    int
	results  map[string]status.Result
	ok, fail int
	batchK   int
	batchN   int
	started  int // the minions of the batches started (with batches)
	jobID    string
	start    time.Time
	stopped  bool
}

var _ progressSink = (*progressLine)(nil)

// progressRefresh is how often the line is redrawn on a terminal, and
// forcedRefresh how often a line is added when --progress forces it onto
// something that is not one (a log file gets a line a second).
const (
	progressRefresh = 150 * time.Millisecond
	forcedRefresh   = time.Second
)

// newProgressLine starts a line on w for a job of total minions started
// at start. tty says whether w is a terminal; if not (--progress), the
// line is written anew at each refresh.
func newProgressLine(w io.Writer, tty bool, jobID string, total int, start time.Time) *progressLine {
	l := &progressLine{total: total, results: map[string]status.Result{}, jobID: jobID, start: start}
	// The width is a real terminal's own; 120 columns for anything else.
	opts := []mpb.ContainerOption{mpb.WithOutput(w), mpb.WithRefreshRate(progressRefresh), mpb.WithWidth(120)}
	if tty {
		// w may wrap the terminal (or be a test's): mpb needs telling.
		opts = append(opts, mpb.WithConsoleWriter(&termWriter{Writer: cupwriter.New(w, true), out: w}), mpb.WithAutoRefresh())
	} else {
		opts = append(opts, mpb.WithAutoRefresh(), mpb.WithRefreshRate(forcedRefresh))
	}
	l.p = mpb.New(opts...)
	l.bar = l.p.New(int64(total), mpb.BarStyle(),
		mpb.PrependDecorators(decor.Any(func(decor.Statistics) string { return l.text() })),
		mpb.BarRemoveOnComplete(),
	)
	return l
}

// termWriter is mpb's terminal writer (cupwriter, as mpb.ForceTTY makes
// it) with two fixes for real terminals:
//   - each redraw begins at the start of the line: the terminal echoes a
//     typed ^C where the cursor is, two columns into the line that the
//     redraw then clears from there up, which left "0/" of the old line
//     on the screen;
//   - a terminal that reports no size (a pseudo-terminal nobody sized:
//     script(1), some CI and editor shells) counts as 120 columns, where
//     mpb would draw nothing at all on a 0-row screen.
type termWriter struct {
	*cupwriter.Writer
	out io.Writer
}

// Flush starts the redraw (cursor up, erase, the line) at column 0.
func (w *termWriter) Flush(lines int) error {
	if _, err := io.WriteString(w.out, "\r"); err != nil {
		return err
	}
	return w.Writer.Flush(lines)
}

// GetTermSize is the terminal's size, or 120 columns if it has none.
func (w *termWriter) GetTermSize() (width, height int, err error) {
	width, height, err = w.Writer.GetTermSize()
	if err != nil || width <= 0 || height <= 0 {
		return 120, 50, nil
	}
	return width, height, nil
}

// text is the line without its bar.
func (l *progressLine) text() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	done := l.ok + l.fail
	running := l.total - done
	if l.batchN > 0 {
		running = max(l.started-done, 0)
	}
	s := fmt.Sprintf("%d/%d done: %d ok, %d failed, %d running, %s", done, l.total, l.ok, l.fail, running,
		time.Since(l.start).Round(time.Second))
	if l.batchN > 0 {
		s += fmt.Sprintf(", batch %d/%d", l.batchK, l.batchN)
	}
	return s + ", job " + l.jobID
}

// Result counts a minion's result: ok or failed once FINISHED, running
// until then. A minion seen before is counted again as it is now.
func (l *progressLine) Result(name string, r status.Result) {
	l.mu.Lock()
	if old, ok := l.results[name]; ok && old.State == status.Finished {
		if old.OK {
			l.ok--
		} else {
			l.fail--
		}
	}
	l.results[name] = status.Result{State: r.State, OK: r.OK}
	if r.State == status.Finished {
		if r.OK {
			l.ok++
		} else {
			l.fail++
		}
	}
	l.total = max(l.total, len(l.results))
	done, stopped := l.ok+l.fail, l.stopped
	l.mu.Unlock()
	if !stopped {
		l.bar.SetCurrent(int64(done))
	}
}

// Batch shows that batch k of n started, started minions in all so far:
// the others are not running yet.
func (l *progressLine) Batch(k, n, started int) {
	l.mu.Lock()
	l.batchK, l.batchN, l.started = k, n, started
	l.mu.Unlock()
}

// Write prints p above the line.
func (l *progressLine) Write(p []byte) (int, error) {
	return l.p.Write(p)
}

// Stop removes the line and returns once it is gone from the terminal
// and what was written above it is out. Calling it twice is harmless.
func (l *progressLine) Stop() {
	l.mu.Lock()
	stopped := l.stopped
	l.stopped = true
	l.mu.Unlock()
	if stopped {
		return
	}
	l.bar.Abort(true)
	l.p.Wait()
}

// isTerminal reports whether w is a terminal, through App.IsTerminal if
// set (tests), else for an *os.File.
func (a *App) isTerminal(w io.Writer) bool {
	if a.IsTerminal != nil {
		return a.IsTerminal(w)
	}
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// startProgress starts the progress line on stderr if d and the terminal
// ask for one, and returns it with the writer for stdout while it is
// shown: through the line when stdout is the same terminal, else stdout
// itself. It returns a nil line when none is shown.
func (a *App) startProgress(d *display, jobID string, total int, start time.Time) (*progressLine, io.Writer) {
	if d == nil || d.noProgress {
		return nil, a.Stdout
	}
	// A terminal that cannot move its cursor (TERM=dumb) gets none either.
	tty := a.isTerminal(a.Stderr) && (a.Getenv == nil || a.Getenv("TERM") != "dumb")
	if !tty && !d.progress {
		return nil, a.Stdout
	}
	l := newProgressLine(a.Stderr, tty, jobID, total, start)
	d.live = l
	if tty && a.isTerminal(a.Stdout) {
		return l, l
	}
	return l, a.Stdout
}

// stopProgress removes the line started by startProgress, if any.
func stopProgress(d *display, l *progressLine) {
	if l == nil {
		return
	}
	l.Stop()
	d.live = nil
}
