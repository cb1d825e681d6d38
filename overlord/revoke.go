package overlord

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net/http"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/overlordhq/overlord/certs"
	"github.com/overlordhq/overlord/jobs"
	"github.com/overlordhq/overlord/rpc"
)

// ErrAmbiguous is returned by Revoke for a name that both a minion and an
// overlord identity carry, when no role says which.
var ErrAmbiguous = errors.New("name of both a minion and an overlord identity: give --role")

// RevokeSpec says what to revoke: every certificate recorded for Name
// (in Role, if set), or the one certificate in CertFile.
type RevokeSpec struct {
	Name string
	Role certs.Role
	// CertFile is a certificate or bundle (the first certificate in it
	// counts), for certificates issued before overlord.db recorded them.
	CertFile string
}

// Revoked is what Revoke did.
type Revoked struct {
	Certs     []jobs.Cert
	CRLNumber int64
}

// Revoke revokes certificates: it records them revoked, drops a revoked
// minion from the registry and its groups, and signs a new revocation
// list (CRL) with a higher number, which calls then hand to every minion
// that holds an older one. It refuses to revoke the identity in use,
// which could then not deliver the list.
func (o *Overlord) Revoke(spec RevokeSpec, now time.Time) (*Revoked, error) {
	ca, err := o.Authority()
	if err != nil {
		return nil, err
	}
	var only string // a serial, with CertFile
	if spec.CertFile != "" {
		c, err := readFirstCert(spec.CertFile)
		if err != nil {
			return nil, err
		}
		if err := c.CheckSignatureFrom(ca.Cert); err != nil {
			return nil, fmt.Errorf("%s: the certificate is not of this CA: %w", spec.CertFile, err)
		}
		if spec.Name != "" && !certs.SameName(spec.Name, c.Subject.CommonName) {
			return nil, fmt.Errorf("%s holds a certificate for %q, not %q", spec.CertFile, c.Subject.CommonName, spec.Name)
		}
		spec.Name, only = c.Subject.CommonName, certs.Serial(c)
		if err := o.Store.RecordCert(certRecord(c, SourceCAFile, now)); err != nil && !errors.Is(err, jobs.ErrExists) {
			return nil, err
		}
	}
	all, err := o.Store.Certs()
	if err != nil {
		return nil, err
	}
	var (
		match   []jobs.Cert
		roles   []string
		already int
	)
	for _, c := range all {
		if !certs.SameName(c.Name, spec.Name) || (spec.Role != "" && c.Role != string(spec.Role)) || (only != "" && c.Serial != only) {
			continue
		}
		if c.RevokedAt != nil {
			already++
			continue
		}
		match = append(match, c)
		if !slices.Contains(roles, c.Role) {
			roles = append(roles, c.Role)
		}
	}
	switch {
	case len(match) == 0 && already > 0:
		return nil, fmt.Errorf("%s: every certificate recorded for it is revoked already", spec.Name)
	case len(match) == 0:
		return nil, fmt.Errorf("no certificate recorded for %s: %w (one issued before this overlord recorded certificates can be revoked with --cert FILE)", spec.Name, jobs.ErrNotFound)
	case len(roles) > 1:
		return nil, fmt.Errorf("%s: %w", spec.Name, ErrAmbiguous)
	}
	if id, err := o.Identity(); err == nil {
		for _, c := range match {
			if c.Serial == certs.Serial(id.Cert) {
				return nil, fmt.Errorf("%s is the identity this command runs as; revoke it as another identity (--identity FILE)", spec.Name)
			}
		}
	}
	serials := make([]string, len(match))
	for i, c := range match {
		serials[i] = c.Serial
	}
	revoked, number, err := o.Store.Revoke(serials, now, func(number int64, list []jobs.Cert) ([]byte, error) {
		entries := make([]certs.Revocation, 0, len(list))
		for _, c := range list {
			serial, ok := new(big.Int).SetString(c.Serial, 16)
			if !ok {
				return nil, fmt.Errorf("overlord.db: bad serial %q", c.Serial)
			}
			entries = append(entries, certs.Revocation{Serial: serial, At: *c.RevokedAt})
		}
		return ca.NewCRL(number, entries, now)
	})
	if err != nil {
		return nil, err
	}
	return &Revoked{Certs: revoked, CRLNumber: number}, nil
}

func readFirstCert(path string) (*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	for {
		var blk *pem.Block
		blk, data = pem.Decode(data)
		if blk == nil {
			return nil, fmt.Errorf("%s: no PEM certificate", path)
		}
		if blk.Type == "CERTIFICATE" {
			c, err := x509.ParseCertificate(blk.Bytes)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", path, err)
			}
			return c, nil
		}
	}
}

// CRL returns the current revocation list, checked against ca; nil if
// nothing was ever revoked.
func (o *Overlord) CRL(ca *x509.Certificate) (*certs.CRL, error) {
	n, der, err := o.Store.CRL()
	if err != nil || n == 0 {
		return nil, err
	}
	return certs.ParseCRL(der, ca)
}

// crlPusher hands the overlord's revocation list to every minion whose
// answer shows an older one (rpc.CRLHeader), once per minion per client,
// before the call that noticed returns. A failed push is logged and
// tried again at the next call.
type crlPusher struct {
	crl    *certs.CRL
	logger *slog.Logger
	mu     sync.Mutex
	done   map[string]bool // minions that hold the list now
	gws    map[string]bool // gateways that hold the list now
}

// pushTimeout bounds one Minion.UpdateCRL.
const pushTimeout = 10 * time.Second

func newCRLPusher(crl *certs.CRL, logger *slog.Logger) *crlPusher {
	return &crlPusher{crl: crl, logger: logger, done: map[string]bool{}, gws: map[string]bool{}}
}

// afterCall is the rpc.ClientConfig.AfterCall hook.
func (p *crlPusher) afterCall(ctx context.Context, c *rpc.Client, minion, method string, h http.Header) {
	if method == "Minion.UpdateCRL" {
		return
	}
	v := h.Get(rpc.CRLHeader)
	if v == "" {
		return // a minion that does not keep lists
	}
	have, err := strconv.ParseInt(v, 10, 64)
	if err != nil || have >= p.crl.Number {
		return
	}
	p.mu.Lock()
	if p.done[minion] {
		p.mu.Unlock()
		return
	}
	p.done[minion] = true // one push at a time per minion
	p.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), pushTimeout)
	defer cancel()
	var reply rpc.UpdateCRLReply
	if err := c.Call(ctx, minion, "Minion.UpdateCRL", rpc.UpdateCRLParams{CRL: p.crl.DER}, &reply); err != nil {
		p.logger.Warn("could not send the revocation list", "minion", minion, "crl", p.crl.Number, "err", err)
		p.mu.Lock()
		delete(p.done, minion)
		p.mu.Unlock()
		return
	}
	p.logger.Debug("sent the revocation list", "minion", minion, "crl", reply.Number, "had", have, "revoked", reply.Revoked)
}

// afterGateway is the rpc.ClientConfig.AfterGateway hook: the same for a
// gateway, which refuses the identities the list revokes.
func (p *crlPusher) afterGateway(ctx context.Context, c *rpc.Client, gw rpc.Gateway, h http.Header) {
	have, err := strconv.ParseInt(h.Get(rpc.CRLHeader), 10, 64)
	if err != nil || have >= p.crl.Number {
		return
	}
	p.mu.Lock()
	if p.gws[gw.Name] {
		p.mu.Unlock()
		return
	}
	p.gws[gw.Name] = true // one push at a time per gateway
	p.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), pushTimeout)
	defer cancel()
	reply, err := c.PushGatewayCRL(ctx, gw, p.crl.DER)
	if err != nil {
		p.logger.Warn("could not send the revocation list", "gateway", gw.Name, "crl", p.crl.Number, "err", err)
		p.mu.Lock()
		delete(p.gws, gw.Name)
		p.mu.Unlock()
		return
	}
	p.logger.Debug("sent the revocation list", "gateway", gw.Name, "crl", reply.Number, "had", have, "revoked", reply.Revoked)
}
