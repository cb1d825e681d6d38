//go:build linux

package e2e

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// The flood: connections held open by one client from loopback, with no
// certificate, reopened as the server closes them.
const (
	floodIdle = 3000 // TCP connections that never send a byte
	floodHalf = 500  // connections that send half a TLS ClientHello, then nothing
	// legitCalls is how many legitimate requests are made under the flood.
	legitCalls = 10
	// maxFloodRSS bounds the memory of the server flooded.
	maxFloodRSS = 200 << 20
)

// TestConnectionFlood: one client from loopback holds 3,000 idle TCP
// connections and 500 half-sent TLS ClientHellos to a minion, reopening
// those the minion closes; 10 of 10 'overlord call' made meanwhile
// succeed within their usual timeouts, and the minion's memory stays
// bounded. Then the same flood against 'overlord serve': enrolments made
// meanwhile succeed.
func TestConnectionFlood(t *testing.T) {
	raiseFileLimit(t, floodIdle+floodHalf+500)
	hello := clientHello(t)
	// Race-built: the minion's and the service's accept loops and TLS
	// handshakes, thousands of connections at once.
	f := startRaceFleet(t, "web1")
	m := mustMinion(t, f, "web1")

	t.Run("minion", func(t *testing.T) {
		ping := func(ctx context.Context, i int) error {
			cmd := exec.CommandContext(ctx, f.path("overlord"), "--state-dir", f.stateDir, "call", "web1", "test.ping")
			cmd.Env, cmd.Dir = f.env, f.dir
			out, err := cmd.CombinedOutput()
			if err != nil || !strings.Contains(string(out), "web1: true") {
				return fmt.Errorf("%v: %s", err, strings.TrimSpace(string(out)))
			}
			return nil
		}
		_, before := legit(t, nil, ping)
		fl := startFlood(t, m.addr, hello)
		var maxRSS atomic.Int64
		stopRSS := sampleRSS(m.p.Pid(), &maxRSS)
		ok, took := legit(t, fl, ping)
		stats := fl.stop()
		stopRSS()
		t.Logf("flood: %s; legitimate calls: %d of %d ok, %s (without a flood: %s); minion RSS at most %d MiB",
			stats, ok, legitCalls, took, before, maxRSS.Load()>>20)
		if ok != legitCalls {
			t.Errorf("%d of %d calls got through the flood, want all", ok, legitCalls)
		}
		if maxRSS.Load() > maxFloodRSS {
			t.Errorf("the minion's RSS reached %d MiB under the flood, want less than %d", maxRSS.Load()>>20, maxFloodRSS>>20)
		}
		if m.p.exited() {
			t.Fatalf("the minion died: %s", m.p.logTail(20))
		}
	})

	t.Run("serve", func(t *testing.T) {
		p, addr := startServe(t, f)
		out, err := f.overlord("token", "create", "--uses", fmt.Sprint(legitCalls), "-o", "json")
		if err != nil {
			t.Fatal(err)
		}
		var tok struct{ Token string }
		if err := json.Unmarshal([]byte(out), &tok); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		fl := startFlood(t, addr, hello)
		var maxRSS atomic.Int64
		stopRSS := sampleRSS(p.Pid(), &maxRSS)
		ok, took := legit(t, fl, func(ctx context.Context, i int) error {
			name := fmt.Sprintf("e%d", i)
			cmd := exec.CommandContext(ctx, f.path("minion"), "--state-dir", filepath.Join(f.dir, name), "enroll",
				"--server", addr, "--name", name, "--addr", fmt.Sprintf("127.0.0.1:%d", 41000+i), "--token", tok.Token)
			cmd.Env, cmd.Dir = f.env, f.dir
			out, err := cmd.CombinedOutput()
			if err != nil || !strings.Contains(string(out), "enrolled") {
				return fmt.Errorf("%v: %s", err, strings.TrimSpace(string(out)))
			}
			return nil
		})
		stats := fl.stop()
		stopRSS()
		t.Logf("flood: %s; enrolments: %d of %d ok, %s; overlord serve RSS at most %d MiB",
			stats, ok, legitCalls, took, maxRSS.Load()>>20)
		if ok != legitCalls {
			t.Errorf("%d of %d enrolments got through the flood, want all", ok, legitCalls)
		}
		if maxRSS.Load() > maxFloodRSS {
			t.Errorf("overlord serve's RSS reached %d MiB under the flood, want less than %d", maxRSS.Load()>>20, maxFloodRSS>>20)
		}
		if p.exited() {
			t.Fatalf("overlord serve died: %s", p.logTail(20))
		}
	})
}

// floodMax bounds how long a flood lasts, whatever happens; binaries
// built with the race detector (TestConnectionFlood's fleet is, when the
// tests run with -race) accept several times slower.
func floodMax() time.Duration {
	if raceProduct {
		return time.Minute
	}
	return 25 * time.Second
}

// legit makes legitCalls requests at once with call, during flood fl if
// not nil, each bounded by the flood's end (the commands' own timeouts
// are shorter), logs each failure, and returns how many succeeded and
// how long they took.
func legit(t *testing.T, fl *flood, call func(ctx context.Context, i int) error) (ok int, took string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), floodMax())
	if fl != nil {
		// The flood must outlast the requests.
		ctx, cancel = context.WithCancel(fl.ctx)
	}
	defer cancel()
	var (
		mu    sync.Mutex
		times []time.Duration
		wg    sync.WaitGroup
	)
	for i := range legitCalls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			err := call(ctx, i)
			d := time.Since(start)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				t.Logf("request %d failed after %s: %v (%v)", i, d.Round(time.Millisecond), err, context.Cause(ctx))
				return
			}
			ok++
			times = append(times, d)
		}()
	}
	wg.Wait()
	if fl != nil && fl.ctx.Err() != nil {
		t.Errorf("the flood ended (after %s) before the requests did", floodMax())
	}
	var sum, longest time.Duration
	for _, d := range times {
		sum += d
		longest = max(longest, d)
	}
	if len(times) > 0 {
		took = fmt.Sprintf("%s on average, %s at most", (sum / time.Duration(len(times))).Round(time.Millisecond), longest.Round(time.Millisecond))
	}
	return ok, took
}

// flood is a running flood of connections to one address.
type flood struct {
	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	start    time.Time
	opened   atomic.Int64 // connections established
	closed   atomic.Int64 // closed by the server
	refused  atomic.Int64 // dials that failed
	holding  atomic.Int64 // connections open now
	maxHeld  atomic.Int64
	stopOnce sync.Once
	summary  string
}

// startFlood opens floodIdle idle connections and floodHalf connections
// that send the first half of hello, to addr, and reopens each the server
// closes, until stop or floodMax. It returns once as many connections
// have been opened, so that the flood is in place.
func startFlood(t *testing.T, addr string, hello []byte) *flood {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), floodMax())
	fl := &flood{cancel: cancel, start: time.Now()}
	t.Cleanup(func() { fl.stop() })
	half := hello[:len(hello)/2]
	for i := range floodIdle + floodHalf {
		fl.wg.Add(1)
		go func() {
			defer fl.wg.Done()
			d := net.Dialer{Timeout: 2 * time.Second}
			for ctx.Err() == nil {
				c, err := d.DialContext(ctx, "tcp", addr)
				if errors.Is(err, syscall.ECONNRESET) {
					// Accepted and closed at once, before the dial returned.
					fl.opened.Add(1)
					fl.closed.Add(1)
					continue
				}
				if err != nil {
					fl.refused.Add(1)
					// The server's backlog is full: try again soon.
					select {
					case <-ctx.Done():
					case <-time.After(20 * time.Millisecond):
					}
					continue
				}
				fl.opened.Add(1)
				n := fl.holding.Add(1)
				for old := fl.maxHeld.Load(); n > old && !fl.maxHeld.CompareAndSwap(old, n); old = fl.maxHeld.Load() {
				}
				if i >= floodIdle {
					c.Write(half)
				}
				stop := context.AfterFunc(ctx, func() { c.Close() })
				io.Copy(io.Discard, c) // until the server closes it
				stop()
				c.Close()
				fl.holding.Add(-1)
				if ctx.Err() == nil {
					fl.closed.Add(1)
				}
			}
		}()
	}
	for fl.opened.Load() < floodIdle+floodHalf {
		if ctx.Err() != nil {
			t.Fatalf("the flood could not open %d connections in %s: %s", floodIdle+floodHalf, floodMax(), fl.stop())
		}
		time.Sleep(pollEvery)
	}
	fl.ctx = ctx
	t.Logf("flood of %s in place after %s: %d connections open", addr, time.Since(fl.start).Round(time.Millisecond), fl.holding.Load())
	return fl
}

// stop ends the flood, closing its connections, and returns a summary.
func (fl *flood) stop() string {
	fl.stopOnce.Do(func() {
		fl.cancel()
		fl.wg.Wait()
		fl.summary = fmt.Sprintf("%d connections opened in %s, at most %d at once, %d closed by the server, %d dials failed",
			fl.opened.Load(), time.Since(fl.start).Round(time.Millisecond), fl.maxHeld.Load(), fl.closed.Load(), fl.refused.Load())
	})
	return fl.summary
}

// sampleRSS records the largest resident memory of process pid in max
// until the function it returns is called.
func sampleRSS(pid int, maxRSS *atomic.Int64) func() {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			if n, err := readRSS(pid); err == nil && n > maxRSS.Load() {
				maxRSS.Store(n)
			}
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

// clientHello returns the first record a TLS 1.3 client sends: its
// ClientHello.
func clientHello(t *testing.T) []byte {
	t.Helper()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	go tls.Client(a, &tls.Config{ServerName: "web1", MinVersion: tls.VersionTLS13}).Handshake()
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(b, hdr); err != nil {
		t.Fatal(err)
	}
	body := make([]byte, int(hdr[3])<<8|int(hdr[4]))
	if _, err := io.ReadFull(b, body); err != nil {
		t.Fatal(err)
	}
	return append(hdr, body...)
}

// raiseFileLimit raises the test process's limit of open files to what
// the flood needs, or fails the test if the hard limit is lower.
func raiseFileLimit(t *testing.T, need uint64) {
	t.Helper()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.Cur >= need {
		return
	}
	if lim.Max < need {
		t.Fatalf("the flood needs %d open files; the hard limit is %d (ulimit -Hn)", need, lim.Max)
	}
	lim.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
}

// readRSS returns a process's resident memory in bytes.
func readRSS(pid int) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}
