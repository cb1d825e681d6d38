package minion

import (
	"bytes"
	"context"
	"crypto"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/overlordhq/overlord/certs"
	"github.com/overlordhq/overlord/enrolment"
)

// EnrolKeyFile holds the key of an enrolment in progress, in the state
// directory. It becomes minion.key once the certificate is installed.
const EnrolKeyFile = "enrol.key"

// Polling of an enrolment that waits for an operator.
const (
	DefaultPollInterval = 5 * time.Second
	maxRetryBackoff     = time.Minute
)

// ErrPending is returned by Enrol, without Wait, for a request that waits
// for an operator.
var ErrPending = errors.New("certificate request pending")

// EnrolConfig is an online enrolment.
type EnrolConfig struct {
	StateDir string
	Server   string // the enrolment endpoint, HOST[:PORT]
	Name     string
	Addr     string // HOST:PORT the overlord will call the minion at
	// Token is a join token; it carries the CA fingerprint and has the
	// request signed at once.
	Token string
	// CAFingerprint verifies the endpoint when there is no token; with a
	// token it must agree with the token's.
	CAFingerprint string
	// Wait keeps polling a pending request until it is signed or
	// rejected, or ctx ends.
	Wait         bool
	PollInterval time.Duration
	KeyType      certs.KeyType
	// Logf, if set, is told of progress (the request pending, retries).
	Logf func(format string, args ...any)
}

// EnrolResult is the outcome of an enrolment.
type EnrolResult struct {
	Name           string
	KeyFingerprint string // SHA-256 of the public key: compare with 'overlord certs list'
	CAFingerprint  string
	Bundle         *certs.Bundle // set once signed and installed
}

// Enrol enrols a minion online. The key is made here and never leaves
// the host: it waits in EnrolKeyFile (0600) while the request is pending,
// so running Enrol again resumes with the same key. Once the endpoint
// signs the request, the certificate, key and CA certificate are
// installed in the state directory as Init would, and `minion serve`
// can start. A pending request without Wait returns ErrPending with the
// result; a refusal is an *enrolment.Error.
func Enrol(ctx context.Context, cfg EnrolConfig) (*EnrolResult, error) {
	if err := certs.CheckName(cfg.Name); err != nil {
		return nil, err
	}
	if cfg.Addr == "" {
		return nil, errors.New("no address: give HOST:PORT where the overlord will reach this minion")
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = DefaultPollInterval
	}
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	fp, err := enrolFingerprint(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(cfg.StateDir, CertFile)); err == nil {
		return nil, fmt.Errorf("%s already holds a minion identity (%s); remove it first to enrol again", cfg.StateDir, CertFile)
	}
	if err := os.MkdirAll(cfg.StateDir, certs.DirMode); err != nil {
		return nil, err
	}
	if err := os.Chmod(cfg.StateDir, certs.DirMode); err != nil {
		return nil, err
	}
	key, err := enrolKey(cfg.StateDir, cfg.KeyType)
	if err != nil {
		return nil, err
	}
	csr, err := certs.NewCSR(key, cfg.Name)
	if err != nil {
		return nil, err
	}
	res := &EnrolResult{Name: cfg.Name, KeyFingerprint: certs.KeyFingerprint(key.Public()), CAFingerprint: fp}
	client, err := enrolment.NewClient(cfg.Server, fp)
	if err != nil {
		return nil, err
	}
	defer client.Close()
	req := enrolment.Request{Name: cfg.Name, Addr: cfg.Addr, CSR: string(certs.EncodeCSR(csr)), Token: cfg.Token}

	backoff := cfg.PollInterval
	told := false
	for {
		reply, err := client.Submit(ctx, req)
		var refusal *enrolment.Error
		switch {
		case err == nil:
		case errors.As(err, &refusal) && refusal.Kind != enrolment.KindBusy && refusal.Kind != enrolment.KindInternal:
			return res, err
		case !cfg.Wait || ctx.Err() != nil:
			return res, err
		default:
			// The endpoint is down or busy: try again, backing off.
			cfg.Logf("%v; trying again in %s", err, backoff)
			if err := sleep(ctx, backoff); err != nil {
				return res, err
			}
			backoff = min(2*backoff, maxRetryBackoff)
			continue
		}
		backoff = cfg.PollInterval
		if reply.State == enrolment.StateSigned {
			b, err := install(cfg.StateDir, cfg.Name, key, reply)
			if err != nil {
				return res, err
			}
			res.Bundle = b
			return res, nil
		}
		if !cfg.Wait {
			return res, ErrPending
		}
		if !told {
			cfg.Logf("certificate request for %s pending (key fingerprint %s); waiting for an operator to run 'overlord certs sign %s'",
				cfg.Name, res.KeyFingerprint, cfg.Name)
			told = true
		}
		if err := sleep(ctx, cfg.PollInterval); err != nil {
			return res, err
		}
	}
}

// enrolFingerprint returns the CA fingerprint to verify the endpoint by:
// the token's, or the one given. With neither, it asks the endpoint for
// the CA it presents, trusting nothing, and says so in the error, for an
// operator to compare and give with --ca-fingerprint.
func enrolFingerprint(ctx context.Context, cfg EnrolConfig) (string, error) {
	var fromToken, given string
	if cfg.Token != "" {
		t, err := enrolment.ParseToken(cfg.Token)
		if err != nil {
			return "", err
		}
		fromToken = t.CAFingerprint
	}
	if cfg.CAFingerprint != "" {
		var err error
		if given, err = enrolment.NormalizeFingerprint(cfg.CAFingerprint); err != nil {
			return "", err
		}
	}
	switch {
	case fromToken != "" && given != "" && fromToken != given:
		return "", fmt.Errorf("the token is for CA %s, not the CA fingerprint given (%s)", fromToken, given)
	case fromToken != "":
		return fromToken, nil
	case given != "":
		return given, nil
	}
	presented, err := enrolment.PresentedCA(ctx, cfg.Server)
	if err != nil {
		return "", fmt.Errorf("without a token, the endpoint can only be verified by --ca-fingerprint, and asking it for its CA failed: %w", err)
	}
	return "", fmt.Errorf("without a token, the endpoint can only be verified by --ca-fingerprint. It presents a CA with fingerprint %s: "+
		"if that is the one 'overlord ca init' (or 'overlord serve') printed on the overlord, run again with --ca-fingerprint %s", presented, presented)
}

// enrolKey loads the key of an enrolment in progress, or makes one.
func enrolKey(dir string, kt certs.KeyType) (crypto.Signer, error) {
	path := filepath.Join(dir, EnrolKeyFile)
	key, err := certs.ReadKey(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return key, err
	}
	if key, err = certs.NewKey(kt); err != nil {
		return nil, err
	}
	data, err := certs.EncodeKey(key)
	if err != nil {
		return nil, err
	}
	if err := certs.WriteNew(path, data, certs.KeyMode); err != nil {
		return nil, err
	}
	return key, nil
}

// install checks a signed reply against the request and installs the
// identity, then removes the enrolment key.
func install(dir, name string, key crypto.Signer, reply *enrolment.Reply) (*certs.Bundle, error) {
	cert, ca, err := enrolment.ParseReply(reply)
	if err != nil {
		return nil, err
	}
	b := &certs.Bundle{Cert: cert, Key: key, CA: ca}
	if _, err := b.TLS(); err != nil {
		return nil, fmt.Errorf("the certificate the endpoint sent is not for this minion's key: %w", err)
	}
	if err := cert.CheckSignatureFrom(ca); err != nil {
		return nil, fmt.Errorf("the certificate the endpoint sent is not signed by its CA: %w", err)
	}
	if role := certs.RoleOf(cert); role != certs.RoleMinion || cert.Subject.CommonName != name {
		return nil, fmt.Errorf("the endpoint sent a certificate for %q with role %q, not for minion %s", cert.Subject.CommonName, role, name)
	}
	if err := Identity(dir).Install(b); err != nil {
		return nil, err
	}
	// Installed: the enrolment key is now minion.key.
	if have, err := os.ReadFile(filepath.Join(dir, KeyFile)); err == nil {
		if want, err := certs.EncodeKey(key); err == nil && bytes.Equal(have, want) {
			os.Remove(filepath.Join(dir, EnrolKeyFile))
		}
	}
	return b, nil
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
