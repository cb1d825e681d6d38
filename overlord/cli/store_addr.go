package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/overlordhq/overlord/internal/atomicfile"
	"github.com/overlordhq/overlord/jobs"
	"github.com/overlordhq/overlord/overlord"
	"github.com/overlordhq/overlord/status"
)

// StoreFile, in the state directory, records the store 'overlord serve
// --store' was given, so that every command on that state directory uses
// the same store without being told (--store and OVERLORD_STORE still
// override it).
const StoreFile = "store.json"

// storeConfig is StoreFile's content.
type storeConfig struct {
	Store    string `json:"store"`
	EtcdCert string `json:"etcd_cert,omitempty"`
	EtcdKey  string `json:"etcd_key,omitempty"`
	EtcdCA   string `json:"etcd_ca,omitempty"`
}

// openStore opens the store --store names, else OVERLORD_STORE, else the
// state directory's StoreFile, else the state directory's overlord.db:
// the one place a command parses a store address.
func (a *App) openStore() error {
	if a.store != nil {
		return nil
	}
	for _, f := range []struct {
		v   *string
		env string
	}{{&a.etcdOpts.EtcdCert, "OVERLORD_ETCD_CERT"}, {&a.etcdOpts.EtcdKey, "OVERLORD_ETCD_KEY"}, {&a.etcdOpts.EtcdCA, "OVERLORD_ETCD_CA"}} {
		if *f.v == "" {
			*f.v = a.Getenv(f.env)
		}
	}
	s, addr, from, opts, err := a.storeAt(a.stateDir, a.lockTimeout)
	if err != nil {
		return &ExitError{Code: status.ExitUsage, Err: err}
	}
	a.store, a.storeAddr, a.storeFrom, a.etcdOpts = s, addr, from, opts
	return nil
}

// storeAt opens the store of state directory dir as openStore would,
// with lock timeout timeout, and returns it with its address, where the
// address came from and the etcd options.
func (a *App) storeAt(dir string, timeout time.Duration) (s *jobs.Store, addr, from string, opts jobs.Options, err error) {
	addr, from, opts = a.storeAddr, "--store", a.etcdOpts
	if addr == "" {
		addr, from = a.Getenv("OVERLORD_STORE"), "OVERLORD_STORE"
	}
	if addr == "" {
		from = ""
		path := filepath.Join(dir, StoreFile)
		data, rerr := os.ReadFile(path)
		switch {
		case errors.Is(rerr, os.ErrNotExist):
		case rerr != nil:
			return nil, "", "", opts, rerr
		default:
			var c storeConfig
			if err := json.Unmarshal(data, &c); err != nil || c.Store == "" {
				return nil, "", "", opts, fmt.Errorf("%s: not a store address record (%v); remove it to use overlord.db", path, err)
			}
			addr, from = c.Store, path
			if opts == (jobs.Options{}) {
				opts = jobs.Options{EtcdCert: c.EtcdCert, EtcdKey: c.EtcdKey, EtcdCA: c.EtcdCA}
			}
		}
	}
	o := opts
	o.LockTimeout = timeout
	s, err = jobs.Open(addr, filepath.Join(dir, overlord.DBFile), o)
	if err != nil && from != "" {
		err = fmt.Errorf("%w (from %s)", err, from)
	}
	return s, addr, from, opts, err
}

// recordStore writes the store --store or OVERLORD_STORE gave to the
// state directory's StoreFile ('overlord serve'), or removes the file if
// the store given is the state directory's overlord.db.
func (a *App) recordStore() error {
	if a.storeFrom != "--store" && a.storeFrom != "OVERLORD_STORE" {
		return nil
	}
	path := filepath.Join(a.stateDir, StoreFile)
	if !a.store.IsEtcd() && a.store.Address() == filepath.Join(a.stateDir, overlord.DBFile) {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		return nil
	}
	c := storeConfig{Store: a.storeAddr}
	for _, f := range []struct {
		dst *string
		src string
	}{{&c.EtcdCert, a.etcdOpts.EtcdCert}, {&c.EtcdKey, a.etcdOpts.EtcdKey}, {&c.EtcdCA, a.etcdOpts.EtcdCA}} {
		if f.src != "" {
			abs, err := filepath.Abs(f.src)
			if err != nil {
				return err
			}
			*f.dst = abs
		}
	}
	data, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(a.stateDir, 0o700); err != nil {
		return err
	}
	return atomicfile.WriteFile(path, append(data, '\n'), atomicfile.Options{Mode: 0o600})
}
