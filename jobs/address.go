package jobs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/overlordhq/overlord/jobs/internal/etcdkv"
	"github.com/overlordhq/overlord/jobs/internal/kv"
)

// A store address names a store:
//
//	PATH, bbolt:PATH                      the bbolt file at PATH (overlord.db)
//	etcd://HOST:PORT[,HOST:PORT...][/PREFIX]  an etcd cluster, the keys under /PREFIX/
//	                                      (default /overlord/)
//
// An empty address is the caller's default file.

// DefaultEtcdPrefix is the key prefix of an etcd store whose address
// names none.
const DefaultEtcdPrefix = "/overlord/"

// Options are how Open reaches a store.
type Options struct {
	// LockTimeout bounds each wait for overlord.db's lock, or for an
	// answer from etcd; zero means DefaultLockTimeout.
	LockTimeout time.Duration
	// EtcdCert and EtcdKey are a client certificate and its key for
	// etcd, EtcdCA the CA that issued the etcd servers' certificates
	// (PEM files): with any of them, etcd is reached over TLS.
	EtcdCert, EtcdKey, EtcdCA string
}

// Open returns the store at addr; an empty addr is the bbolt file at
// defaultPath. An etcd store is connected to at its first operation (an
// unreachable cluster is an error then, not here); Close lets it go.
func Open(addr, defaultPath string, opts Options) (*Store, error) {
	addr = strings.TrimSpace(addr)
	switch {
	case addr == "":
		if opts.EtcdCert != "" || opts.EtcdKey != "" || opts.EtcdCA != "" {
			return nil, errors.New("--etcd-cert, --etcd-key and --etcd-ca are for an etcd store (--store etcd://HOST:2379)")
		}
		return New(defaultPath, opts.LockTimeout), nil
	case strings.HasPrefix(addr, "bbolt:"):
		path := strings.TrimPrefix(addr, "bbolt:")
		if path == "" {
			return nil, fmt.Errorf("store address %q: bbolt:PATH needs a path", addr)
		}
		return New(path, opts.LockTimeout), nil
	case strings.HasPrefix(addr, "etcd:"):
		return openEtcd(addr, opts)
	case strings.Contains(addr, "://"):
		return nil, fmt.Errorf("store address %q: unknown kind (want PATH, bbolt:PATH or etcd://HOST:2379[,HOST:2379...][/PREFIX])", addr)
	}
	return New(addr, opts.LockTimeout), nil
}

// ParseEtcd splits an etcd store address into its endpoints (HOST:PORT)
// and key prefix.
func ParseEtcd(addr string) (hosts []string, prefix string, err error) {
	rest, ok := strings.CutPrefix(addr, "etcd://")
	if !ok {
		return nil, "", fmt.Errorf("store address %q: an etcd store is etcd://HOST:2379[,HOST:2379...][/PREFIX]", addr)
	}
	hostPart, path, _ := strings.Cut(rest, "/")
	for h := range strings.SplitSeq(hostPart, ",") {
		h = strings.TrimSpace(h)
		if h == "" {
			continue
		}
		host, port, err := net.SplitHostPort(h)
		if err != nil || host == "" || port == "" {
			return nil, "", fmt.Errorf("store address %q: %q is not HOST:PORT", addr, h)
		}
		hosts = append(hosts, h)
	}
	if len(hosts) == 0 {
		return nil, "", fmt.Errorf("store address %q names no etcd endpoint (etcd://HOST:2379)", addr)
	}
	path = strings.Trim(path, "/")
	if path == "" {
		return hosts, DefaultEtcdPrefix, nil
	}
	if strings.ContainsAny(path, "\x00\n") {
		return nil, "", fmt.Errorf("store address %q: a bad prefix", addr)
	}
	return hosts, "/" + path + "/", nil
}

func openEtcd(addr string, opts Options) (*Store, error) {
	hosts, prefix, err := ParseEtcd(addr)
	if err != nil {
		return nil, err
	}
	timeout := opts.LockTimeout
	if timeout <= 0 {
		timeout = DefaultLockTimeout
	}
	cfg := clientv3.Config{
		DialTimeout:        timeout,
		DialKeepAliveTime:  10 * time.Second,
		MaxCallSendMsgSize: 64 << 20, // let the server's --max-request-bytes decide
		Logger:             zap.NewNop(),
	}
	scheme := "http://"
	if opts.EtcdCert != "" || opts.EtcdKey != "" || opts.EtcdCA != "" {
		tc, err := etcdTLS(opts)
		if err != nil {
			return nil, err
		}
		cfg.TLS, scheme = tc, "https://"
	}
	for _, h := range hosts {
		cfg.Endpoints = append(cfg.Endpoints, scheme+h)
	}
	cli, err := clientv3.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("etcd at %s: %w", strings.Join(cfg.Endpoints, ","), err)
	}
	return &Store{addr: addr, timeout: timeout, opts: opts, etcd: etcdkv.New(cli, prefix, timeout)}, nil
}

func etcdTLS(opts Options) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if (opts.EtcdCert == "") != (opts.EtcdKey == "") {
		return nil, errors.New("--etcd-cert and --etcd-key go together")
	}
	if opts.EtcdCert != "" {
		pair, err := tls.LoadX509KeyPair(opts.EtcdCert, opts.EtcdKey)
		if err != nil {
			return nil, fmt.Errorf("etcd client certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{pair}
	}
	if opts.EtcdCA != "" {
		pem, err := os.ReadFile(opts.EtcdCA)
		if err != nil {
			return nil, fmt.Errorf("etcd CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("etcd CA: no PEM certificate in %s", opts.EtcdCA)
		}
		tc.RootCAs = pool
	}
	return tc, nil
}

// Address returns the store's address: etcd://... for etcd, the file's
// path for bbolt.
func (s *Store) Address() string {
	if s.etcd != nil {
		return s.addr
	}
	return s.path
}

// Options returns the options the store was opened with.
func (s *Store) Options() Options {
	o := s.opts
	o.LockTimeout = s.timeout
	return o
}

// IsEtcd reports whether the store is on etcd.
func (s *Store) IsEtcd() bool { return s.etcd != nil }

// Etcd returns an etcd store's client and key prefix (nil and "" for a
// bbolt store): for what shares the cluster with the store, such as
// leases on jobs. Its keys under the prefix are the store's: use keys
// outside prefix+"0/" ... prefix+"9/" for anything else.
func (s *Store) Etcd() (*clientv3.Client, string) {
	if s.etcd == nil {
		return nil, ""
	}
	return s.etcd.Client(), s.etcd.Prefix()
}

// Close lets an etcd store's connections go; a bbolt store holds none.
func (s *Store) Close() error {
	if s.etcd == nil {
		return nil
	}
	return s.etcd.Client().Close()
}

// describe names the store in messages.
func (s *Store) describe() string {
	if s.etcd != nil {
		return fmt.Sprintf("the store at %s", s.addr)
	}
	return s.path
}

// storeError is an error of an etcd store that stands for one of the
// package's errors (ErrNoStore, ErrLocked) with a message of its own.
type storeError struct {
	msg    string
	target error
	err    error
}

func (e *storeError) Error() string        { return e.msg }
func (e *storeError) Is(target error) bool { return target == e.target }
func (e *storeError) Unwrap() error        { return e.err }

func (s *Store) etcdCtx() (context.Context, context.CancelFunc) {
	return context.WithCancel(context.Background())
}

// etcdErr turns an error of etcdkv into the package's.
func (s *Store) etcdErr(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, kv.ErrBusy) || errors.Is(err, etcdkv.ErrConflict) {
		return &storeError{msg: err.Error(), target: ErrLocked, err: err}
	}
	return err
}

// etcdSchema checks an etcd store's meta bucket and schema.
func (s *Store) etcdSchema(tx kv.Tx) error {
	if tx.Bucket(bucketMeta) == nil {
		_, prefix := s.Etcd()
		return &storeError{
			msg: fmt.Sprintf("no overlord store under the prefix %s of etcd (%s): is the prefix right? "+
				"'overlord store migrate --to %s' copies a store there; 'overlord ca init' makes a new one", prefix, s.addr, s.addr),
			target: ErrNoStore,
		}
	}
	return checkSchemaOf(tx, s.describe())
}

func (s *Store) etcdView(fn func(tx kv.Tx) error) error {
	ctx, cancel := s.etcdCtx()
	defer cancel()
	return s.etcdErr(s.etcd.View(ctx, func(tx kv.Tx) error {
		if err := s.etcdSchema(tx); err != nil {
			return err
		}
		return fn(tx)
	}))
}

func (s *Store) etcdUpdate(fn func(tx kv.Tx) error) error {
	ctx, cancel := s.etcdCtx()
	defer cancel()
	return s.etcdErr(s.etcd.Update(ctx, func(tx kv.Tx) error {
		if err := s.etcdSchema(tx); err != nil {
			return err
		}
		if err := indexOpenJobs(tx); err != nil {
			return err
		}
		return fn(tx)
	}))
}

func (s *Store) etcdInit() error {
	ctx, cancel := s.etcdCtx()
	defer cancel()
	empty, err := s.etcd.Empty(ctx)
	if err != nil {
		return s.etcdErr(err)
	}
	return s.etcdErr(s.etcd.Update(ctx, func(tx kv.Tx) error {
		if !empty && tx.Bucket(bucketMeta) == nil {
			_, prefix := s.Etcd()
			return fmt.Errorf("the prefix %s of etcd (%s) holds keys that are not an overlord store's; not using it (choose another prefix: etcd://HOST:2379/PREFIX)", prefix, s.addr)
		}
		return initTx(tx, s.describe())
	}))
}
