package overlord

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/google/uuid"

	"github.com/overlordhq/overlord/internal/buildinfo"
	"github.com/overlordhq/overlord/internal/gate"
	"github.com/overlordhq/overlord/job"
	"github.com/overlordhq/overlord/jobs"
	"github.com/overlordhq/overlord/metrics"
	"github.com/overlordhq/overlord/modules/builtin"
	"github.com/overlordhq/overlord/rpc"
	"github.com/overlordhq/overlord/status"
)

// Files of the overlord service in the state directory.
const (
	// SocketFile is the service's local socket: mode 0600, and a
	// connection from any user but the state directory's owner is
	// refused.
	SocketFile = "overlord.sock"
	// serviceLockFile is held by the running service, so that a second
	// one refuses to start rather than take the socket away.
	serviceLockFile = "serve.lock"
)

// The local protocol's other paths (rpc.ServicePath forwards calls), and
// its version: a CLI and a service that differ (an upgrade with the old
// service still running) do not talk; the CLI works directly.
const (
	serviceProtocol  = 1
	servicePingPath  = "/local/ping"
	serviceDrivePath = "/local/drive/"
	// MetricsPath serves the service's Prometheus metrics
	// (docs/metrics.md), on the socket as on any listener that mounts
	// Service.Metrics.
	MetricsPath = "/metrics"
)

// DefaultScanInterval is how often the service looks for open jobs that no
// process drives (their detached driver died) and carries them on.
// DefaultReconcileInterval is how often it reconciles late results
// (ReconcileDue) of the jobs finished within its reconcile window.
const (
	DefaultScanInterval      = 10 * time.Second
	DefaultReconcileInterval = time.Minute
)

// SocketPath returns the service's socket in state directory dir.
func SocketPath(dir string) string { return filepath.Join(dir, SocketFile) }

// maxSocketPath is the longest path a unix socket may have on Linux
// (sun_path, 108 bytes with its NUL).
const maxSocketPath = 107

// checkSocketPath says so if the socket's path is too long to be one.
func checkSocketPath(sock string) error {
	if len(sock) > maxSocketPath {
		return fmt.Errorf("the service's socket %s would be %d bytes long, more than a unix socket's %d: use a state directory with a shorter path (--state-dir)", sock, len(sock), maxSocketPath)
	}
	return nil
}

// ServiceConfig configures the service.
type ServiceConfig struct {
	// ScanInterval is how often open jobs without a driver are adopted
	// (DefaultScanInterval if 0).
	ScanInterval time.Duration
	// ReconcileInterval is how often entries that ended unreachable or
	// timeout get their minions' late results (DefaultReconcileInterval
	// if 0), for the jobs finished within ReconcileWindow
	// (DefaultReconcileWindow if 0).
	ReconcileInterval time.Duration
	ReconcileWindow   time.Duration
	// InventoryEvery, if positive, is how often an inventory snapshot of
	// every minion is taken (inventory.go), keeping the newest
	// InventoryKeep versions (SnapshotOptions.Keep: if 0, the number
	// overlord.db remembers).
	InventoryEvery time.Duration
	InventoryKeep  int
}

// Service is the overlord's long-lived service (`overlord serve`): a local
// socket through which the CLI's calls reach minions on warm connections
// (the pool), and the scheduler that drives every async job in this one
// process. OpenService, then Close.
type Service struct {
	o      *Overlord
	cfg    ServiceConfig
	logger *slog.Logger
	lock   *os.File // serviceLockFile, held while the service runs
	sock   string
	srv    *gate.Server
	pool   *pool
	sched  *scheduler
	stop   context.CancelFunc
	scans  sync.WaitGroup
	calls  runningCalls           // the synchronous calls fanned out now
	uiURL  atomic.Pointer[string] // the dashboard's login URL (SetUI)
}

// OpenService starts the service on o's state directory: it takes the
// service's lock (a second service refuses to start), listens on the
// socket and adopts every open job whose driver is gone. o's calls and
// drivers then go through the service's pool.
func (o *Overlord) OpenService(ctx context.Context, cfg ServiceConfig) (*Service, error) {
	if cfg.ScanInterval <= 0 {
		cfg.ScanInterval = DefaultScanInterval
	}
	if cfg.ReconcileInterval <= 0 {
		cfg.ReconcileInterval = DefaultReconcileInterval
	}
	if cfg.ReconcileWindow <= 0 {
		cfg.ReconcileWindow = DefaultReconcileWindow
	}
	if err := checkSocketPath(SocketPath(o.Dir)); err != nil {
		return nil, err
	}
	owner, err := dirOwner(o.Dir)
	if err != nil {
		return nil, err
	}
	if euid := os.Geteuid(); euid != owner {
		return nil, fmt.Errorf("%s belongs to uid %d: run overlord serve as that user, not as uid %d", o.Dir, owner, euid)
	}
	lock, err := os.OpenFile(filepath.Join(o.Dir, serviceLockFile), os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("another overlord serve is running on %s", o.Dir)
		}
		return nil, err
	}
	s := &Service{o: o, cfg: cfg, logger: o.Logger.With("component", "service"), lock: lock, sock: SocketPath(o.Dir)}
	if s.pool, err = o.newPool(); err != nil {
		lock.Close()
		return nil, err
	}
	// The lock says no service owns a socket left here: a crashed one's.
	if err := os.Remove(s.sock); err != nil && !errors.Is(err, os.ErrNotExist) {
		lock.Close()
		return nil, err
	}
	ln, err := (&net.ListenConfig{}).Listen(ctx, "unix", s.sock)
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("listen on %s: %w", s.sock, err)
	}
	// The directory is the owner's alone (0700) while the mode is set.
	if err := os.Chmod(s.sock, 0o600); err != nil {
		ln.Close()
		lock.Close()
		return nil, err
	}
	dctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	s.stop = stop
	s.sched = &scheduler{o: o, ctx: dctx, logger: s.logger, running: map[string]bool{}}
	o.metrics = s.newMetrics()
	o.pool, o.sched = s.pool, s.sched
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+servicePingPath, s.ping)
	mux.HandleFunc("GET "+serviceUIPath, s.ui)
	mux.Handle("GET "+MetricsPath, o.metrics.Handler())
	mux.HandleFunc("POST "+rpc.ServicePath+"{name}", s.forward)
	mux.HandleFunc("POST "+serviceDrivePath+"{id}", s.drive)
	mux.HandleFunc("POST "+serviceCallPath, s.call)
	mux.HandleFunc("POST "+serviceStopPath+"{id}", s.stopCall)
	s.srv = gate.Serve(&http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(s.logger.Handler(), slog.LevelDebug),
	}, &ownerOnly{Listener: ln, uid: owner, logger: s.logger})
	s.logger.Info("service listening", "socket", s.sock)
	s.scans.Add(2)
	go s.scanLoop(dctx)
	go s.reconcileLoop(dctx)
	if l, ok := o.Jobs.Locks.(*job.EtcdLocker); ok {
		// Replicas on one etcd: a job whose lock goes (its replica let
		// it go, died or was cut off) is adopted within moments, not at
		// the next scan.
		s.scans.Add(1)
		go func() {
			defer s.scans.Done()
			l.Watch(dctx, s.adoptFreed)
		}()
	}
	if cfg.InventoryEvery > 0 {
		s.scans.Add(1)
		go s.inventoryLoop(dctx)
	}
	return s, nil
}

// newMetrics makes the service's metrics, reading the pool, the
// scheduler and overlord.db when scraped.
func (s *Service) newMetrics() *metrics.Metrics {
	builtins := builtin.Registry()
	return metrics.New(metrics.Config{
		Version: buildinfo.Version(),
		Census:  s.o.Store.Census,
		Conns:   s.pool.client.Conns,
		Driving: s.sched.count,
		Reach:   s.pool.reach.counts,
		Known: func(module, method string) bool {
			if _, err := builtins.Lookup(module, method); err == nil {
				return true
			}
			ok, err := s.o.Store.DescribesMethod(module, method)
			return err == nil && ok
		},
		Logger: s.logger,
	})
}

// Metrics returns the handler of the service's Prometheus metrics (GET
// MetricsPath), for any listener that serves them.
func (s *Service) Metrics() http.Handler { return s.o.metrics.Handler() }

// MetricsHandler returns the handler of the service's metrics, or nil
// outside the service (before OpenService).
func (o *Overlord) MetricsHandler() http.Handler {
	if o.metrics == nil {
		return nil
	}
	return o.metrics.Handler()
}

// Socket returns the path of the service's socket.
func (s *Service) Socket() string { return s.sock }

// Done is closed when the service has stopped serving.
func (s *Service) Done() <-chan struct{} { return s.srv.Done() }

// Close stops accepting, lets calls in flight finish until ctx is done,
// tells every driver to stop (each records what it knows and leaves its
// job open for the next driver: this service restarted, or `job status`),
// and removes the socket.
func (s *Service) Close(ctx context.Context) error {
	err := s.srv.Close(ctx)
	s.stop()
	s.scans.Wait()
	s.sched.stop(ctx)
	s.pool.client.Close()
	os.Remove(s.sock)
	s.lock.Close()
	return err
}

// scanLoop adopts, now and every ScanInterval, the open jobs no process
// drives.
func (s *Service) scanLoop(ctx context.Context) {
	defer s.scans.Done()
	t := time.NewTicker(s.cfg.ScanInterval)
	defer t.Stop()
	for {
		s.adoptOpen()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// reconcileLoop gives entries that ended unreachable or timeout their
// minions' late results, now and every ReconcileInterval.
func (s *Service) reconcileLoop(ctx context.Context) {
	defer s.scans.Done()
	t := time.NewTicker(s.cfg.ReconcileInterval)
	defer t.Stop()
	for {
		n, err := s.o.ReconcileDue(ctx, s.cfg.ReconcileWindow, time.Now())
		switch {
		case err != nil && ctx.Err() == nil && !errors.Is(err, jobs.ErrLocked):
			s.logger.Warn("reconciling late results", "err", err)
		case n > 0:
			s.logger.Info("reconciled late results", "entries", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// adoptOpen carries on every open job whose driver is gone.
func (s *Service) adoptOpen() {
	var open []jobs.Record
	for _, st := range []status.State{status.Running, status.Partial} {
		recs, err := s.o.Store.ListJobs(jobs.ListOptions{State: st})
		if err != nil {
			if !errors.Is(err, jobs.ErrLocked) {
				s.logger.Warn("could not list open jobs", "err", err)
			}
			return
		}
		open = append(open, recs...)
	}
	var held map[string]bool // with etcd: the locks held, read at once
	if l, ok := s.o.Jobs.Locks.(*job.EtcdLocker); ok && len(open) > 0 {
		var err error
		if held, err = l.HeldAll(); err != nil {
			s.logger.Warn("could not read the job locks", "err", err)
			return
		}
	}
	for _, rec := range open {
		if s.sched.driving(rec.ID) || held[rec.ID] {
			continue
		}
		if started, err := s.o.EnsureDriver(rec); err != nil {
			s.logger.Warn("could not carry an open job on", "job", rec.ID, "err", err)
		} else if started {
			s.logger.Info("adopted a job whose driver was gone", "job", rec.ID)
		}
	}
}

// adoptFreed carries on job id, whose driver lock just went, if it is
// open; "" means any job may have: look at them all.
func (s *Service) adoptFreed(id string) {
	if id == "" {
		s.adoptOpen()
		return
	}
	if s.sched.driving(id) {
		return
	}
	rec, err := s.o.Store.Header(id)
	if err != nil {
		if !errors.Is(err, jobs.ErrNotFound) {
			s.logger.Warn("could not read a job whose driver lock went", "job", id, "err", err)
		}
		return
	}
	if started, err := s.o.EnsureDriver(rec); err != nil {
		s.logger.Warn("could not carry an open job on", "job", rec.ID, "err", err)
	} else if started {
		s.logger.Info("adopted a job whose driver lock went", "job", rec.ID)
	}
}

func (s *Service) ping(w http.ResponseWriter, _ *http.Request) {
	driving := s.sched.count()
	writeJSONReply(w, http.StatusOK, servicePing{PID: os.Getpid(), Version: buildinfo.Version(), Protocol: serviceProtocol,
		Socket: s.sock, Goroutines: runtime.NumGoroutine(), Driving: driving})
}

// servicePing is the answer to a ping: who answers, and how busy it is.
type servicePing struct {
	PID        int    `json:"pid"`
	Version    string `json:"version"`
	Protocol   int    `json:"protocol"`
	Socket     string `json:"socket"`
	Goroutines int    `json:"goroutines"`
	Driving    int    `json:"driving"` // async jobs it drives now
}

// forward passes one JSON-RPC call to a minion on the pool's connection
// and its answer back as it comes. A failure to get an answer is HTTP 502
// with its kind (rpc.ServiceErrorHeader), as the caller would have
// classified it. A caller that goes away cancels the call: the minion
// sees its caller gone, as with a direct call.
func (s *Service) forward(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	ctx := r.Context()
	if d, err := time.ParseDuration(r.Header.Get(rpc.ConnectTimeoutHeader)); err == nil && d > 0 {
		ctx = rpc.WithConnectTimeout(ctx, d)
	}
	if addr, fp := r.Header.Get(rpc.AddrHeader), r.Header.Get(rpc.FingerprintHeader); addr != "" && fp != "" {
		// The caller read the registry moments ago.
		var via []string
		if v := r.Header.Get(rpc.ViaHeader); v != "" {
			via = strings.Split(v, ",")
		}
		s.pool.learn([]jobs.Minion{{Name: name, Addr: addr, Fingerprint: fp, Via: via}}, false)
	}
	if _, ok := s.pool.lookup(name); !ok {
		serviceError(w, status.Errorf(status.KindUnreachable, "minion %s has no registered address", name))
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, rpc.MaxRequestBytes))
	if err != nil {
		serviceError(w, status.Errorf(status.KindBadArgs, "request: %v", err))
		return
	}
	resp, err := s.pool.client.Forward(ctx, name, body)
	if err != nil && ctx.Err() == nil && s.pool.changed(name) {
		// Added again with a new address or certificate since the pool
		// last read the registry: nothing reached the old one's place.
		resp, err = s.pool.client.Forward(ctx, name, body)
	}
	if err != nil {
		se := rpc.Classify(ctx, err)
		s.pool.reach.note(name, se)
		serviceError(w, se)
		return
	}
	s.pool.reach.note(name, nil)
	defer resp.Body.Close()
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	rc := http.NewResponseController(w)
	buf := make([]byte, 32<<10)
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return
			}
			_ = rc.Flush()
		}
		if rerr != nil {
			return
		}
	}
}

func serviceError(w http.ResponseWriter, se *status.Error) {
	w.Header().Set(rpc.ServiceErrorHeader, string(se.Kind))
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusBadGateway)
	io.WriteString(w, se.Message)
}

// drive makes the service the driver of a job the caller recorded: 202 if
// it now drives it, 409 if another process does.
func (s *Service) drive(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if u, err := uuid.Parse(id); err != nil || u.String() != id {
		writeJSONReply(w, http.StatusBadRequest, map[string]string{"error": fmt.Sprintf("%q is not a job ID", id)})
		return
	}
	ok, err := s.sched.start(id)
	switch {
	case err != nil:
		writeJSONReply(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
	case !ok:
		writeJSONReply(w, http.StatusConflict, map[string]string{"error": "another process drives job " + id})
	default:
		writeJSONReply(w, http.StatusAccepted, map[string]bool{"driving": true})
	}
}

// ownerOnly accepts connections from the state directory's owner only.
// Refused ones are answered by at most maxRefusing goroutines at once
// (more are closed at once), and logged at most once a second.
type ownerOnly struct {
	net.Listener
	uid      int
	logger   *slog.Logger
	refusing atomic.Int32
	mu       sync.Mutex
	loggedAt time.Time
	unlogged int
}

const maxRefusing = 16

func (l *ownerOnly) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		uid, err := peerUID(c)
		if err == nil && uid == l.uid {
			return c, nil
		}
		l.logRefusal(uid, err)
		if l.refusing.Add(1) > maxRefusing {
			l.refusing.Add(-1)
			c.Close()
			continue
		}
		go func() {
			defer l.refusing.Add(-1)
			refuse(c, l.uid)
		}()
	}
}

// logRefusal logs a refused connection, at most once a second, with how
// many were not logged since.
func (l *ownerOnly) logRefusal(uid int, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if time.Since(l.loggedAt) < time.Second {
		l.unlogged++
		return
	}
	l.logger.Warn("refused a connection to the local socket: not the state directory's owner", "uid", uid, "owner", l.uid, "err", err, "more_refused", l.unlogged)
	l.loggedAt, l.unlogged = time.Now(), 0
}

// refuse answers a refused connection's first request head (read for at
// most a second, at most 4 KiB) with HTTP 403, so that the client says why,
// and closes it.
func refuse(c net.Conn, owner int) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	head := make([]byte, 0, 4<<10)
	buf := make([]byte, 1<<10)
	for len(head) < cap(head) && !bytes.Contains(head, []byte("\r\n\r\n")) {
		n, err := c.Read(buf[:min(len(buf), cap(head)-len(head))])
		head = append(head, buf[:n]...)
		if err != nil {
			return
		}
	}
	msg := fmt.Sprintf("the overlord service serves only uid %d, the owner of its state directory\n", owner)
	fmt.Fprintf(c, "HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s", len(msg), msg)
}

// peerUID returns the user ID of the process at the other end of a unix
// socket connection (SO_PEERCRED).
func peerUID(c net.Conn) (int, error) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return -1, fmt.Errorf("not a unix socket connection: %T", c)
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return -1, err
	}
	var cred *syscall.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil {
		return -1, err
	}
	if cerr != nil {
		return -1, cerr
	}
	return int(cred.Uid), nil
}

// scheduler drives async jobs in the service: one goroutine per open job,
// each holding the job's driver lock as a detached driver would, all
// sharing the pool's connections (and its bound of calls in flight per
// minion).
type scheduler struct {
	o       *Overlord
	ctx     context.Context
	logger  *slog.Logger
	wg      sync.WaitGroup
	mu      sync.Mutex
	running map[string]bool // the jobs driven now
	closed  bool
}

// count returns how many jobs the scheduler drives now.
func (s *scheduler) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.running)
}

// driving reports whether the scheduler drives job id now.
func (s *scheduler) driving(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.running[id]
}

// start drives job id, unless another process holds its lock (false).
func (s *scheduler) start(id string) (bool, error) {
	lock, ok, err := s.o.Jobs.Lock(id)
	if err != nil || !ok {
		return false, err
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		lock.Close()
		return false, errors.New("the service is stopping")
	}
	s.running[id] = true
	s.wg.Add(1)
	s.mu.Unlock()
	notDriving := func() {
		s.mu.Lock()
		delete(s.running, id)
		s.mu.Unlock()
	}
	exited := make(chan struct{})
	go func() {
		// A lost lock (an etcd lease given up) ends the driving at once:
		// the driver is fenced from then on (no minion call, no store
		// write), even if it is still waiting out a request to a store
		// it is cut off from. This process cannot start the job again
		// meanwhile: the lock stays taken here until the driver ends.
		select {
		case <-lock.Lost():
			notDriving()
		case <-exited:
		}
	}()
	go func() {
		defer s.wg.Done()
		defer notDriving()
		defer close(exited)
		if err := s.o.Drive(s.ctx, id, lock); err != nil && s.ctx.Err() == nil {
			s.logger.Warn("driver stopped with its job open", "job", id, "err", err)
		}
	}()
	return true, nil
}

// stop waits for the drivers, told to stop by the service's context, to
// record what they know, until ctx is done.
func (s *scheduler) stop(ctx context.Context) {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		s.logger.Warn("drivers still stopping at the end of the grace period")
	}
}

// ServiceConn is this process's link to a running service, when it goes
// through one (UseService).
type ServiceConn struct {
	http   *http.Client
	dial   func(ctx context.Context) (net.Conn, error) // connects, checking who serves
	logger *slog.Logger
}

// UseService makes o's calls and drivers go through the service on o's
// state directory if one answers there, and returns how o will work, for
// -v. A process using another identity than the state directory's own
// works directly: the service calls minions as that identity.
func (o *Overlord) UseService(ctx context.Context) (string, bool) {
	sock := SocketPath(o.Dir)
	if o.IdentityFile != "" {
		return "direct: --identity names another identity than the service's", false
	}
	if err := checkSocketPath(sock); err != nil {
		return "direct: " + err.Error(), false
	}
	if _, err := os.Stat(sock); err != nil {
		return fmt.Sprintf("direct: no service (no socket at %s)", sock), false
	}
	owner, err := dirOwner(o.Dir)
	if err != nil {
		return "direct: " + err.Error(), false
	}
	// Only a service run by the state directory's owner is used: a
	// socket someone else serves is not the overlord's.
	dialer := &net.Dialer{Timeout: 2 * time.Second}
	dial := func(ctx context.Context) (net.Conn, error) {
		c, err := dialer.DialContext(ctx, "unix", sock)
		if err != nil {
			return nil, err
		}
		if uid, err := peerUID(c); err != nil || uid != owner {
			c.Close()
			return nil, fmt.Errorf("%s is served by uid %d, not by the state directory's owner (uid %d) (%v)", sock, uid, owner, err)
		}
		return c, nil
	}
	hc := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) { return dial(ctx) },
	}}
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var ping servicePing
	if err := serviceDo(pctx, hc, http.MethodGet, servicePingPath, http.StatusOK, &ping); err != nil {
		return fmt.Sprintf("direct: the service at %s does not answer: %v", sock, err), false
	}
	if ping.Protocol != serviceProtocol {
		return fmt.Sprintf("direct: the service at %s (pid %d, version %s) speaks protocol %d, this overlord %d: restart it with this version (systemctl restart overlord)",
			sock, ping.PID, ping.Version, ping.Protocol, serviceProtocol), false
	}
	o.service = &ServiceConn{http: hc, dial: dial, logger: o.Logger}
	return fmt.Sprintf("via the service at %s (pid %d)", sock, ping.PID), true
}

// dirOwner returns the user ID that owns directory dir.
func dirOwner(dir string) (int, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return -1, err
	}
	return int(st.Sys().(*syscall.Stat_t).Uid), nil
}

// drive asks the service to drive job id; false if another process does.
func (c *ServiceConn) drive(id string) (bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := serviceDo(ctx, c.http, http.MethodPost, serviceDrivePath+id, http.StatusAccepted, nil)
	var se *serviceStatusError
	if errors.As(err, &se) && se.code == http.StatusConflict {
		return false, nil
	}
	return err == nil, err
}

// serviceStatusError is an answer of the service other than the one
// expected.
type serviceStatusError struct {
	code int
	msg  string
}

func (e *serviceStatusError) Error() string {
	return fmt.Sprintf("the service answered HTTP %d: %s", e.code, strings.TrimSpace(e.msg))
}

// serviceDo makes one request of the local protocol and decodes the
// answer into out (if not nil).
func serviceDo(ctx context.Context, hc *http.Client, method, path string, want int, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, "http://overlord"+path, nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != want {
		return &serviceStatusError{code: resp.StatusCode, msg: string(body)}
	}
	if out != nil {
		return json.Unmarshal(body, out)
	}
	return nil
}
