package rpc

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/overlordhq/overlord/status"
)

// Gateways: a minion behind gateways (jobs.Minion.Via) is called through
// the first of them that can be reached. The request goes to the gateway's
// API, GatewayMinionPath + the minion's name, over mutual TLS (the
// gateway's certificate has the gateway role and is pinned by its
// fingerprint), with the minion's address and fingerprint in AddrHeader
// and FingerprintHeader; the gateway forwards it on its own connection to
// the minion, on behalf of this client's identity (OnBehalfOfHeader), and
// passes the answer back as it comes. A gateway that cannot be connected
// to is skipped for the next; one that fails after the request was sent
// is skipped too, except for Minion.Call, which may have reached the
// minion: its error matches ErrGatewayLost, and the caller must not send
// the call again (a driver adopts what the minion kept).

// The gateway's routes (on its HTTPS listener).
const (
	GatewayMinionPath = "/v1/gateway/minion/"
	GatewayCallPath   = "/v1/gateway/call"
)

// Gateway is a gateway as the overlord's registry has it.
type Gateway struct {
	Name        string
	Addr        string
	Fingerprint string
}

// ErrGatewayLost is matched by the error of a Minion.Call whose gateway
// failed after the call was sent to it: the minion may be running it.
var ErrGatewayLost = errors.New("the gateway was lost after the call was sent")

// gatewayLostErr is such an error: unreachable, naming the gateway.
type gatewayLostErr struct{ se *status.Error }

func (e gatewayLostErr) Error() string   { return e.se.Error() }
func (e gatewayLostErr) Unwrap() []error { return []error{e.se, ErrGatewayLost} }

// gatewayDialErr is a failure to connect to a gateway: nothing was sent.
type gatewayDialErr struct{ err error }

func (e gatewayDialErr) Error() string { return e.err.Error() }
func (e gatewayDialErr) Unwrap() error { return e.err }

// viaKey carries a *string that a call through a gateway sets to the
// gateway's name (TrackVia).
type viaKey struct{}

// TrackVia returns ctx and a function that tells, once a call made with
// ctx has returned, the gateway it went through ("" if none).
func TrackVia(ctx context.Context) (context.Context, func() string) {
	var mu sync.Mutex
	var name string
	set := func(n string) { mu.Lock(); name = n; mu.Unlock() }
	return context.WithValue(ctx, viaKey{}, set), func() string { mu.Lock(); defer mu.Unlock(); return name }
}

func noteVia(ctx context.Context, gw string) {
	if set, ok := ctx.Value(viaKey{}).(func(string)); ok {
		set(gw)
	}
}

// gateways is a Client's way to its gateways: a transport of their own,
// whose dialer finds each by name in book.
type gateways struct {
	route func(name string) []Gateway
	book  sync.Map // gateway name -> Gateway, as route last gave it
	http  *http.Client
}

func newGateways(cfg ClientConfig) *gateways {
	g := &gateways{route: cfg.Route}
	dialer := &net.Dialer{KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		DialTLSContext: func(ctx context.Context, network, hostport string) (net.Conn, error) {
			name, _, err := net.SplitHostPort(hostport)
			if err != nil {
				return nil, gatewayDialErr{err}
			}
			v, ok := g.book.Load(name)
			if !ok || v.(Gateway).Addr == "" {
				return nil, gatewayDialErr{fmt.Errorf("gateway %s is not registered (see 'overlord gateway list')", name)}
			}
			gw := v.(Gateway)
			d := cfg.ConnectTimeout
			if v, ok := ctx.Value(connectTimeoutKey{}).(time.Duration); ok && v > 0 {
				d = v
			}
			ctx, cancel := context.WithTimeout(ctx, d)
			defer cancel()
			raw, err := dialer.DialContext(ctx, network, gw.Addr)
			if err != nil {
				return nil, gatewayDialErr{err}
			}
			tcfg := cfg.GatewayTLS.Clone()
			tcfg.ServerName = name
			conn := tls.Client(raw, tcfg)
			if err := conn.HandshakeContext(ctx); err != nil {
				raw.Close()
				return nil, gatewayDialErr{err}
			}
			peer := conn.ConnectionState().PeerCertificates
			sum := sha256.Sum256(peer[0].Raw)
			if got := hex.EncodeToString(sum[:]); gw.Fingerprint != "" && got != gw.Fingerprint {
				conn.Close()
				return nil, gatewayDialErr{&tls.CertificateVerificationError{UnverifiedCertificates: peer,
					Err: fmt.Errorf("gateway %s presented certificate %s..., not the one issued to it (%s...)", name, got[:16], gw.Fingerprint[:min(16, len(gw.Fingerprint))])}}
			}
			return conn, nil
		},
		MaxIdleConns:        max(cfg.MaxIdleConns, 64),
		MaxIdleConnsPerHost: max(cfg.MaxIdleConns, 64),
		IdleConnTimeout:     cfg.IdleTimeout,
	}
	g.http = &http.Client{Transport: tr}
	return g
}

// via returns the gateways of minion, noting their addresses for the
// dialer.
func (g *gateways) via(minion string) []Gateway {
	if g == nil || g.route == nil {
		return nil
	}
	gws := g.route(minion)
	for _, gw := range gws {
		g.book.Store(gw.Name, gw)
	}
	return gws
}

// send posts body, a JSON-RPC request for minion, through the first of
// gws that takes it. header is what the request carries besides; method
// says whether a failure after sending may be tried on the next gateway.
func (g *gateways) send(ctx context.Context, gws []Gateway, minion, method string, body []byte, header http.Header) (*http.Response, string, error) {
	var errs []string
	for _, gw := range gws {
		u := url.URL{Scheme: "https", Host: gw.Name, Path: GatewayMinionPath + minion}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(body))
		if err != nil {
			return nil, "", status.Errorf(status.KindInternal, "%v", err)
		}
		for k, v := range header {
			req.Header[k] = v
		}
		resp, err := g.http.Do(req)
		if err == nil {
			return resp, gw.Name, nil
		}
		if ctx.Err() != nil {
			return nil, gw.Name, err
		}
		var de gatewayDialErr
		if !errors.As(err, &de) && method == "Minion.Call" {
			se := Classify(ctx, err)
			return nil, gw.Name, gatewayLostErr{status.Errorf(status.KindUnreachable, "via gateway %s, lost after the call was sent: %s", gw.Name, se.Message)}
		}
		errs = append(errs, fmt.Sprintf("via gateway %s: %s", gw.Name, Classify(ctx, err).Message))
	}
	return nil, "", status.Errorf(status.KindUnreachable, noGatewayPrefix+"%s could be reached: %s", minion, strings.Join(errs, "; "))
}

// noGatewayPrefix begins the message of a call none of whose minion's
// gateways could be reached.
const noGatewayPrefix = "no gateway of "

// IsNoGateway reports whether se is the error of a call that no gateway
// of its minion could be reached for: the gateways, not the minion, were
// down (the message names each and why).
func IsNoGateway(se *status.Error) bool {
	return se != nil && se.Kind == status.KindUnreachable && strings.HasPrefix(se.Message, noGatewayPrefix)
}

// gatewayAnswer turns a gateway's HTTP 502 (it could not reach the
// minion: ServiceErrorHeader has the kind) into that error, naming the
// gateway; any other answer is the minion's, returned as it is (nil).
func gatewayAnswer(resp *http.Response, gw string) error {
	kind := resp.Header.Get(ServiceErrorHeader)
	if kind == "" || resp.StatusCode != http.StatusBadGateway {
		if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
			msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
			return status.Errorf(status.KindDenied, "gateway %s refused the call: %s", gw, bytes.TrimSpace(msg))
		}
		return nil
	}
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	return status.Errorf(status.Kind(kind), "via gateway %s: %s", gw, bytes.TrimSpace(msg))
}

// Gateways returns the gateways that reach minion, the first preferred,
// or none if the client calls it directly (or goes through the service,
// which routes it).
func (c *Client) Gateways(minion string) []Gateway { return c.gw.via(minion) }

// PostGateway posts body to path on the gateway gw (one the client has
// been told of by Gateways) and returns its answer; the caller closes its
// Body. An error for which IsGatewayDialError holds sent nothing.
func (c *Client) PostGateway(ctx context.Context, gw Gateway, path string, body []byte) (*http.Response, error) {
	if c.gw == nil {
		return nil, gatewayDialErr{errors.New("this client has no gateways")}
	}
	c.gw.book.Store(gw.Name, gw)
	u := url.URL{Scheme: "https", Host: gw.Name, Path: path}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(body))
	if err != nil {
		return nil, gatewayDialErr{err}
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.gw.http.Do(req)
	if err == nil && path != GatewayCRLPath {
		c.afterGatewayAnswer(ctx, gw.Name, resp.Header)
	}
	return resp, err
}

// GatewayCRLPath is where an overlord posts its revocation list to a
// gateway whose answers (CRLHeader) show an older one: the body is
// UpdateCRLParams, the answer UpdateCRLReply.
const GatewayCRLPath = "/v1/gateway/crl"

// afterGatewayAnswer calls the AfterGateway hook for an answer of the
// gateway named gw.
func (c *Client) afterGatewayAnswer(ctx context.Context, gw string, h http.Header) {
	if c.afterGateway == nil || c.gw == nil {
		return
	}
	if v, ok := c.gw.book.Load(gw); ok {
		c.afterGateway(ctx, c, v.(Gateway), h)
	}
}

// PushGatewayCRL sends the revocation list der (signed by the CA) to the
// gateway gw, which keeps it if it is newer than its own and refuses
// every identity it revokes from then on.
func (c *Client) PushGatewayCRL(ctx context.Context, gw Gateway, der []byte) (UpdateCRLReply, error) {
	body, err := json.Marshal(UpdateCRLParams{CRL: der})
	if err != nil {
		return UpdateCRLReply{}, err
	}
	resp, err := c.PostGateway(ctx, gw, GatewayCRLPath, body)
	if err != nil {
		return UpdateCRLReply{}, Classify(ctx, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return UpdateCRLReply{}, Classify(ctx, err)
	}
	if resp.StatusCode != http.StatusOK {
		return UpdateCRLReply{}, status.Errorf(status.KindInternal, "gateway %s turned the revocation list down: %s %s", gw.Name, resp.Status, strings.TrimSpace(string(data)))
	}
	var reply UpdateCRLReply
	if err := json.Unmarshal(data, &reply); err != nil {
		return UpdateCRLReply{}, status.Errorf(status.KindInternal, "gateway %s: bad answer to the revocation list: %v", gw.Name, err)
	}
	return reply, nil
}

// IsGatewayDialError reports whether err is a failure to connect to a
// gateway: nothing was sent.
func IsGatewayDialError(err error) bool {
	var de gatewayDialErr
	return errors.As(err, &de)
}
