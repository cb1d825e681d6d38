package enrolment

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/overlordhq/overlord/certs"
)

// Client talks to an enrolment endpoint it verifies by the CA's
// fingerprint.
type Client struct {
	server string // HOST:PORT
	fp     string
	http   *http.Client
}

// DefaultTimeout bounds one request, connection included.
const DefaultTimeout = 30 * time.Second

// ServerAddr returns server as HOST:PORT, adding DefaultPort when it has
// no port.
func ServerAddr(server string) (string, error) {
	if server == "" {
		return "", errors.New("no server address")
	}
	host, port, err := net.SplitHostPort(server)
	if err != nil {
		// No port: the whole is the host.
		if _, _, err2 := net.SplitHostPort(server + ":0"); err2 != nil {
			return "", fmt.Errorf("bad server address %q: want HOST[:PORT]", server)
		}
		return net.JoinHostPort(strings.TrimSuffix(strings.TrimPrefix(server, "["), "]"), strconv.Itoa(DefaultPort)), nil
	}
	if host == "" {
		return "", fmt.Errorf("bad server address %q: no host", server)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return "", fmt.Errorf("bad server address %q: port must be 1-65535", server)
	}
	return server, nil
}

// NewClient returns a client for the endpoint at server (HOST[:PORT])
// that accepts it only if it proves to be of the CA whose certificate has
// SHA-256 fingerprint caFingerprint.
func NewClient(server, caFingerprint string) (*Client, error) {
	addr, err := ServerAddr(server)
	if err != nil {
		return nil, err
	}
	fp, err := NormalizeFingerprint(caFingerprint)
	if err != nil {
		return nil, err
	}
	tr := &http.Transport{
		TLSClientConfig:       endpointTLS(fp, nil),
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: DefaultTimeout,
		MaxIdleConns:          1,
		IdleConnTimeout:       30 * time.Second,
		Proxy:                 nil,
	}
	return &Client{server: addr, fp: fp, http: &http.Client{Transport: tr, Timeout: DefaultTimeout}}, nil
}

// Close closes idle connections.
func (c *Client) Close() { c.http.CloseIdleConnections() }

// endpointTLS is the TLS configuration of a client of the endpoint: the
// standard verification is replaced by the check against the pinned CA
// fingerprint (see the package documentation). If seen is set, it is
// told the fingerprints of every self-signed CA certificate presented,
// and fp may be empty: then every endpoint is refused after that.
func endpointTLS(fp string, seen func(caFingerprint string)) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		// The chain is verified in VerifyConnection, against the CA with
		// the pinned fingerprint rather than the system's roots.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			err := verifyEndpoint(cs.PeerCertificates, fp, seen)
			if err != nil {
				return &tls.CertificateVerificationError{UnverifiedCertificates: cs.PeerCertificates, Err: err}
			}
			return nil
		},
	}
}

// ErrUnverified is returned when the endpoint presented no CA with the
// expected fingerprint.
var ErrUnverified = errors.New("the endpoint is not of the expected CA")

func verifyEndpoint(chain []*x509.Certificate, fp string, seen func(string)) error {
	if len(chain) == 0 {
		return errors.New("the endpoint presented no certificate")
	}
	var ca *x509.Certificate
	var presented []string
	for _, c := range chain[1:] {
		if !c.IsCA || c.CheckSignatureFrom(c) != nil {
			continue
		}
		got := certs.Fingerprint(c)
		presented = append(presented, got)
		if seen != nil {
			seen(got)
		}
		if fp != "" && got == fp {
			ca = c
		}
	}
	if ca == nil {
		if len(presented) == 0 {
			return fmt.Errorf("%w: it presented no CA certificate", ErrUnverified)
		}
		return fmt.Errorf("%w: it presented CA %s, not %s", ErrUnverified, presented[0], fp)
	}
	leaf := chain[0]
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		return fmt.Errorf("the endpoint's certificate: %w", err)
	}
	if role := certs.RoleOf(leaf); role != certs.RoleEndpoint {
		return fmt.Errorf("the endpoint's certificate %q has role %q, not %s", leaf.Subject.CommonName, role, certs.RoleEndpoint)
	}
	return nil
}

// PresentedCA connects to the endpoint at server without trusting it,
// and returns the fingerprint of the CA certificate it presents, for an
// operator to compare with the real one. Nothing is sent.
func PresentedCA(ctx context.Context, server string) (string, error) {
	addr, err := ServerAddr(server)
	if err != nil {
		return "", err
	}
	var fp string
	cfg := endpointTLS("", func(s string) {
		if fp == "" {
			fp = s
		}
	})
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 10 * time.Second}, Config: cfg}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := d.DialContext(ctx, "tcp", addr)
	if conn != nil {
		conn.Close()
	}
	if fp != "" {
		return fp, nil
	}
	if err == nil {
		err = errors.New("no CA certificate presented")
	}
	return "", fmt.Errorf("enrolment endpoint %s: %w", addr, err)
}

// Submit sends a request. A reply (signed or pending) comes back as is;
// a refusal as an *Error; anything else (network, TLS, an answer that is
// not the endpoint's) as another error. A signed reply's CA certificate
// is checked to be the pinned one.
func (c *Client) Submit(ctx context.Context, req Request) (*Reply, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	u := url.URL{Scheme: "https", Host: c.server, Path: Path}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	hreq.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(hreq)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return nil, fmt.Errorf("enrolment endpoint %s: %w", c.server, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, MaxReplyBytes))
	if err != nil {
		return nil, fmt.Errorf("enrolment endpoint %s: %w", c.server, err)
	}
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusAccepted {
		var er ErrorReply
		if json.Unmarshal(data, &er) == nil && er.Error != nil && er.Error.Kind != "" {
			return nil, er.Error
		}
		return nil, fmt.Errorf("enrolment endpoint %s answered HTTP %s: %.200s", c.server, resp.Status, bytes.TrimSpace(data))
	}
	var reply Reply
	if err := json.Unmarshal(data, &reply); err != nil {
		return nil, fmt.Errorf("enrolment endpoint %s: unreadable answer: %w", c.server, err)
	}
	switch reply.State {
	case StatePending:
	case StateSigned:
		ca, err := parsePEMCert(reply.CA)
		if err != nil {
			return nil, fmt.Errorf("enrolment endpoint %s: CA certificate: %w", c.server, err)
		}
		if got := certs.Fingerprint(ca); got != c.fp {
			return nil, fmt.Errorf("enrolment endpoint %s sent CA %s, not %s", c.server, got, c.fp)
		}
	default:
		return nil, fmt.Errorf("enrolment endpoint %s: unknown state %q", c.server, reply.State)
	}
	return &reply, nil
}

// ParseReply returns the certificate and CA certificate of a signed
// reply.
func ParseReply(r *Reply) (cert, ca *x509.Certificate, err error) {
	if cert, err = parsePEMCert(r.Certificate); err != nil {
		return nil, nil, fmt.Errorf("certificate: %w", err)
	}
	if ca, err = parsePEMCert(r.CA); err != nil {
		return nil, nil, fmt.Errorf("CA certificate: %w", err)
	}
	return cert, ca, nil
}

func parsePEMCert(s string) (*x509.Certificate, error) {
	blk, _ := pem.Decode([]byte(s))
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM certificate")
	}
	return x509.ParseCertificate(blk.Bytes)
}
