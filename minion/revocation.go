package minion

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/gorilla/rpc/v2/json2"

	"github.com/overlordhq/overlord/certs"
	"github.com/overlordhq/overlord/rpc"
	"github.com/overlordhq/overlord/status"
)

// CRLFile is the revocation list in the minion's state directory: the
// newest the overlord sent (Minion.UpdateCRL), PEM, signed by the CA.
const CRLFile = "crl.pem"

// revocation is the minion's revocation list: loaded from CRLFile at
// start, replaced by a newer one through Minion.UpdateCRL, and checked
// in every TLS handshake and every request. Its number goes out in
// every answer (rpc.CRLHeader), so an overlord holding a newer list
// knows to send it.
type revocation struct {
	dir    string // where CRLFile lives; "" keeps the list in memory only
	ca     *x509.Certificate
	logger *slog.Logger
	mu     sync.Mutex // serialises updates
	cur    atomic.Pointer[certs.CRL]
}

// loadRevocation reads the list in dir, if there is one. A list that
// does not verify against ca stops the minion from starting: it would
// rather not serve than serve with revoked identities accepted.
func loadRevocation(dir string, ca *x509.Certificate, logger *slog.Logger) (*revocation, error) {
	r := &revocation{dir: dir, ca: ca, logger: logger}
	if dir == "" {
		return r, nil
	}
	path := filepath.Join(dir, CRLFile)
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return r, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, 2*certs.MaxCRLBytes))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	der, err := certs.DecodeCRL(data)
	if err == nil {
		var crl *certs.CRL
		if crl, err = certs.ParseCRL(der, ca); err == nil {
			r.cur.Store(crl)
			return r, nil
		}
	}
	return nil, fmt.Errorf("%s: %w (remove it to start without one; the overlord sends its list again at its next call)", path, err)
}

// current returns the list in force, or nil.
func (r *revocation) current() *certs.CRL {
	if r == nil {
		return nil
	}
	return r.cur.Load()
}

// tlsConfig makes cfg refuse client certificates the list revokes.
func (r *revocation) tlsConfig(cfg *tls.Config) *tls.Config {
	if r == nil {
		return cfg
	}
	cfg = certs.RefuseRevoked(cfg, r.current)
	verify := cfg.VerifyConnection
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		err := verify(cs)
		if errors.Is(err, certs.ErrRevoked) {
			r.logger.Warn("refused a revoked identity", "err", err)
		}
		return err
	}
	// A resumed TLS session carries the client certificate over from the
	// ticket. Refusing it then comes after the client has finished its
	// side of the handshake, and the client may see a broken connection
	// rather than the alert. So tickets record the certificate's serial,
	// and a ticket of a revoked certificate is not resumed: the client
	// makes a full handshake and is refused in it.
	cfg.WrapSession = func(cs tls.ConnectionState, ss *tls.SessionState) ([]byte, error) {
		if len(cs.PeerCertificates) > 0 {
			ss.Extra = append(ss.Extra, append([]byte(ticketSerialPrefix), cs.PeerCertificates[0].SerialNumber.Bytes()...))
		}
		return cfg.EncryptTicket(cs, ss)
	}
	cfg.UnwrapSession = func(identity []byte, cs tls.ConnectionState) (*tls.SessionState, error) {
		ss, err := cfg.DecryptTicket(identity, cs)
		if err != nil || ss == nil {
			return ss, err
		}
		crl := r.current()
		for _, e := range ss.Extra {
			if serial, ok := bytes.CutPrefix(e, []byte(ticketSerialPrefix)); ok && crl.RevokesSerial(new(big.Int).SetBytes(serial)) {
				return nil, nil
			}
		}
		return ss, nil
	}
	return cfg
}

// ticketSerialPrefix marks the client certificate's serial number in a
// session ticket's extra data.
const ticketSerialPrefix = "overlord/client-serial/1:"

// handler tells the list's number in every answer and refuses requests
// on connections whose client certificate was revoked after the
// handshake (a keep-alive connection that outlived the revocation).
func (r *revocation) handler(next http.Handler) http.Handler {
	if r == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		cw := &crlWriter{ResponseWriter: w, rev: r}
		if req.TLS != nil && len(req.TLS.PeerCertificates) > 0 {
			if err := certs.CheckRevoked(r.current(), req.TLS.PeerCertificates[0]); err != nil {
				writeRPCError(cw, http.StatusForbidden, rpc.NewError(status.Errorf(status.KindDenied, "%v", err), nil))
				return
			}
		}
		next.ServeHTTP(cw, req)
	})
}

// crlWriter sets rpc.CRLHeader as the answer's header goes out, so that
// it tells the list in force then: after a Minion.UpdateCRL, the new one.
type crlWriter struct {
	http.ResponseWriter
	rev     *revocation
	stamped bool
}

func (w *crlWriter) stamp() {
	if !w.stamped {
		w.stamped = true
		w.Header().Set(rpc.CRLHeader, strconv.FormatInt(w.rev.current().NumberOf(), 10))
	}
}

func (w *crlWriter) WriteHeader(code int) {
	w.stamp()
	w.ResponseWriter.WriteHeader(code)
}

func (w *crlWriter) Write(b []byte) (int, error) {
	w.stamp()
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (w *crlWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func writeRPCError(w http.ResponseWriter, code int, e *json2.Error) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]any{"jsonrpc": "2.0", "error": e, "id": nil})
}

// update installs der if it is a list of the CA newer than the one in
// force, writing it to CRLFile first (writeFileAtomic), so that a
// restart keeps it.
func (r *revocation) update(der []byte, from who) (rpc.UpdateCRLReply, error) {
	crl, err := certs.ParseCRL(der, r.ca)
	if err != nil {
		return rpc.UpdateCRLReply{}, status.Errorf(status.KindBadArgs, "%v", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if cur := r.current(); cur != nil && crl.Number <= cur.Number {
		return rpc.UpdateCRLReply{Number: cur.Number, Revoked: cur.Len()}, nil
	}
	if r.dir != "" {
		if err := writeFileAtomic(filepath.Join(r.dir, CRLFile), certs.EncodeCRL(der)); err != nil {
			return rpc.UpdateCRLReply{}, status.Errorf(status.KindInternal, "save the revocation list: %v", err)
		}
	}
	r.cur.Store(crl)
	r.logger.Info("revocation list updated", "number", crl.Number, "revoked", crl.Len(), "identity", from.identity, "via", from.via)
	return rpc.UpdateCRLReply{Number: crl.Number, Updated: true, Revoked: crl.Len()}, nil
}

// UpdateCRL replaces the minion's revocation list with a newer one
// signed by its CA. Any overlord identity may send one, directly or
// through a gateway: the CA's signature, not the sender, is what makes
// it good. An older or equal list changes nothing.
func (s *Service) UpdateCRL(r *http.Request, p *rpc.UpdateCRLParams, reply *rpc.UpdateCRLReply) error {
	if s.rev == nil {
		return rpc.NewError(status.Errorf(status.KindInternal, "this minion keeps no revocation list"), nil)
	}
	out, err := s.rev.update(p.CRL, callerOf(r))
	sum := sha256.Sum256(p.CRL)
	e := AuditEntry{RPC: "Minion.UpdateCRL", ArgsSHA256: hex.EncodeToString(sum[:])}
	if err == nil {
		e.Message = fmt.Sprintf("revocation list %d held (updated: %v), revoking %d", out.Number, out.Updated, out.Revoked)
	}
	s.record(r, e, err)
	if err != nil {
		return rpc.NewError(err, nil)
	}
	*reply = out
	return nil
}
