// Package overlord is the overlord's engine behind its CLI: the state
// directory (CA, identity, overlord.db), enrolment of minions and
// identities, and calls fanned out to minions and recorded as jobs.
package overlord

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"time"

	"github.com/overlordhq/overlord/certs"
	"github.com/overlordhq/overlord/job"
	"github.com/overlordhq/overlord/jobs"
	"github.com/overlordhq/overlord/metrics"
)

// Files in the overlord's state directory.
const (
	DBFile   = "overlord.db"
	CertFile = "overlord.crt"
	KeyFile  = "overlord.key"
)

// DefaultStateDir returns $XDG_STATE_HOME/overlord, else
// ~/.local/state/overlord.
func DefaultStateDir() string {
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "overlord")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return ".overlord"
	}
	return filepath.Join(home, ".local", "state", "overlord")
}

// Overlord is the state directory and what lives in it.
type Overlord struct {
	Dir string
	// IdentityFile, if set, is a bundle used as the client identity
	// instead of the state directory's own.
	IdentityFile string
	Store        *jobs.Store
	// Jobs owns the jobs' lives: records, driver locks and logs,
	// retention (over Store).
	Jobs   *job.Keeper
	Logger *slog.Logger
	// DriverCommand starts async job drivers (argv before the flags);
	// default: this executable.
	DriverCommand []string

	// service is the overlord service this process goes through, if one
	// answered (UseService); in the service itself, pool holds its warm
	// connections and sched drives its jobs (OpenService).
	service *ServiceConn
	pool    *pool
	sched   *scheduler
	// metrics are the service's (OpenService); nil elsewhere, and every
	// report to them is then a no-op.
	metrics *metrics.Metrics
	// driverTimings are the in-process drivers' waits (zero: the
	// defaults); only tests change them.
	driverTimings job.Timings
}

// as returns o working as identity (a bundle's path; "" for the state
// directory's own): a job's drivers and cancels act as the identity that
// submitted it.
func (o *Overlord) as(identity string) *Overlord {
	if identity == o.IdentityFile {
		return o
	}
	c := *o
	c.IdentityFile = identity
	return &c
}

// New returns an Overlord for dir. lockTimeout bounds waits for
// overlord.db's lock (zero: the default).
func New(dir, identityFile string, lockTimeout time.Duration, logger *slog.Logger) *Overlord {
	return NewWithStore(dir, identityFile, jobs.New(filepath.Join(dir, DBFile), lockTimeout), logger)
}

// NewWithStore returns an Overlord for dir whose store is store (see
// jobs.Open) instead of dir's overlord.db.
func NewWithStore(dir, identityFile string, store *jobs.Store, logger *slog.Logger) *Overlord {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Overlord{
		Dir:          dir,
		IdentityFile: identityFile,
		Store:        store,
		Jobs:         job.New(store, dir),
		Logger:       logger,
	}
}

// storeArgs are the global flags that give a process started for this
// state directory (a job's driver) the same store: none for the state
// directory's own overlord.db.
func (o *Overlord) storeArgs() []string {
	addr := o.Store.Address()
	if !o.Store.IsEtcd() {
		if addr == filepath.Join(o.Dir, DBFile) {
			return nil
		}
		addr = "bbolt:" + addr
	}
	args := []string{"--store", addr}
	opts := o.Store.Options()
	for _, f := range []struct{ flag, file string }{{"--etcd-cert", opts.EtcdCert}, {"--etcd-key", opts.EtcdKey}, {"--etcd-ca", opts.EtcdCA}} {
		if f.file != "" {
			args = append(args, f.flag, f.file)
		}
	}
	return args
}

func (o *Overlord) identityStore() certs.Store {
	return certs.Store{Dir: o.Dir, CertFile: CertFile, KeyFile: KeyFile}
}

// InitCA makes the CA and the overlord's own identity (named name) and
// creates overlord.db. It refuses to replace an existing CA.
func (o *Overlord) InitCA(name string, kt certs.KeyType) (*certs.Authority, error) {
	if _, err := os.Stat(filepath.Join(o.Dir, certs.CAKeyFile)); err == nil {
		return nil, fmt.Errorf("%s already holds a CA; not replacing it", o.Dir)
	}
	if name == "" {
		name = DefaultIdentityName()
	}
	if err := certs.CheckName(name); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(o.Dir, certs.DirMode); err != nil {
		return nil, err
	}
	if err := os.Chmod(o.Dir, certs.DirMode); err != nil {
		return nil, err
	}
	ca, err := certs.NewAuthority("overlord CA", kt)
	if err != nil {
		return nil, err
	}
	cert, key, err := ca.Issue(name, certs.RoleOverlord, kt)
	if err != nil {
		return nil, err
	}
	if err := ca.Save(o.Dir); err != nil {
		return nil, err
	}
	if err := o.identityStore().Install(&certs.Bundle{Cert: cert, Key: key, CA: ca.Cert}); err != nil {
		return nil, err
	}
	if err := o.Store.Init(); err != nil {
		return nil, err
	}
	return ca, o.Store.RecordCert(certRecord(cert, SourceCAInit, time.Now()))
}

// DefaultIdentityName is the name of the identity `overlord ca init`
// makes: "overlord-" and the user's name, or "overlord".
func DefaultIdentityName() string {
	if u, err := user.Current(); err == nil && certs.CheckName("overlord-"+u.Username) == nil {
		return "overlord-" + u.Username
	}
	return "overlord"
}

// Authority loads the CA.
func (o *Overlord) Authority() (*certs.Authority, error) {
	ca, err := certs.LoadAuthority(o.Dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("no CA in %s: run 'overlord ca init' first", o.Dir)
	}
	return ca, err
}

// Identity loads the client identity: IdentityFile if set, else the state
// directory's own.
func (o *Overlord) Identity() (*certs.Bundle, error) {
	var b *certs.Bundle
	var err error
	if o.IdentityFile != "" {
		if err = certs.CheckKeyFile(o.IdentityFile); err != nil {
			return nil, err
		}
		b, err = certs.ReadBundle(o.IdentityFile)
	} else {
		b, err = o.identityStore().Load()
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("no overlord identity in %s: run 'overlord ca init' first", o.Dir)
		}
	}
	if err != nil {
		return nil, err
	}
	if role := certs.RoleOf(b.Cert); role != certs.RoleOverlord {
		return nil, fmt.Errorf("identity %q has role %q, not overlord", b.Cert.Subject.CommonName, role)
	}
	return b, nil
}

// IssueClient makes one more overlord identity and writes it as a bundle.
// A name in use by another identity (whatever its case), this state
// directory's own included, is refused with jobs.ErrNameInUse until every
// certificate for it is revoked: minions tell identities apart by name.
func (o *Overlord) IssueClient(name, bundleOut string, kt certs.KeyType) (*certs.Bundle, error) {
	if _, err := os.Stat(bundleOut); err == nil {
		return nil, fmt.Errorf("%s already exists; not overwriting it", bundleOut)
	}
	ca, err := o.Authority()
	if err != nil {
		return nil, err
	}
	cert, key, err := ca.Issue(name, certs.RoleOverlord, kt)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	var own []jobs.Cert // this directory's identity, maybe made before certificates were recorded
	if c, err := certs.ReadCert(filepath.Join(o.Dir, CertFile)); err == nil {
		own = append(own, certRecord(c, SourceCAInit, c.NotBefore))
	}
	// Recorded first, so that it can be revoked by name.
	rec := certRecord(cert, SourceCAClient, now)
	if err := o.Store.RecordIdentity(rec, own...); err != nil {
		return nil, err
	}
	b := &certs.Bundle{Cert: cert, Key: key, CA: ca.Cert}
	if err := writeBundle(b, bundleOut); err != nil {
		// Its key was never written anywhere: nobody holds it, so the
		// name is not in use.
		if ferr := o.Store.ForgetCert(rec.Serial); ferr != nil {
			err = errors.Join(err, ferr)
		}
		return nil, err
	}
	return b, nil
}

func writeBundle(b *certs.Bundle, path string, preamble ...[]byte) error {
	data, err := b.Encode()
	if err != nil {
		return err
	}
	return certs.WriteNew(path, append(bytes.Join(preamble, nil), data...), certs.KeyMode)
}

// CheckAddr returns an error unless addr is HOST:PORT with a valid port.
func CheckAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("bad address %q: want HOST:PORT (%v)", addr, err)
	}
	if host == "" {
		return fmt.Errorf("bad address %q: no host", addr)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("bad address %q: port must be 1-65535", addr)
	}
	return nil
}

// AddMinion registers a minion at addr, issues its server certificate and
// writes its bundle to bundleOut. Nothing is registered if any step fails.
func (o *Overlord) AddMinion(name, addr, bundleOut string, kt certs.KeyType, via ...string) (jobs.Minion, error) {
	if err := certs.CheckName(name); err != nil {
		return jobs.Minion{}, err
	}
	if err := CheckAddr(addr); err != nil {
		return jobs.Minion{}, err
	}
	if _, err := os.Stat(bundleOut); err == nil {
		return jobs.Minion{}, fmt.Errorf("%s already exists; not overwriting it", bundleOut)
	}
	ca, err := o.Authority()
	if err != nil {
		return jobs.Minion{}, err
	}
	cert, key, err := ca.Issue(name, certs.RoleMinion, kt)
	if err != nil {
		return jobs.Minion{}, err
	}
	m := jobs.Minion{Name: name, Addr: addr, Fingerprint: certs.Fingerprint(cert), AddedAt: time.Now().UTC(), Via: via}
	if err := o.Store.AddMinionCert(m, certRecord(cert, SourceMinionAdd, m.AddedAt)); err != nil {
		return jobs.Minion{}, err
	}
	if err := writeBundle(&certs.Bundle{Cert: cert, Key: key, CA: ca.Cert}, bundleOut, certs.BundleAddrNote(addr)); err != nil {
		if rmErr := o.Store.RemoveMinion(name); rmErr != nil {
			err = errors.Join(err, rmErr)
		}
		return jobs.Minion{}, err
	}
	return m, nil
}
