package rpc

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/rpc/v2/json2"

	"github.com/overlordhq/overlord/status"
)

// ClientConfig configures a Client.
type ClientConfig struct {
	// TLS is the client's TLS configuration (certs.ClientConfig). The
	// server name checked is the minion's name.
	TLS *tls.Config
	// Resolve returns the network address of a minion by name.
	Resolve func(name string) (addr string, ok bool)
	// ConnectTimeout bounds the TCP connect and the TLS handshake.
	ConnectTimeout time.Duration
	// MaxIdleConns bounds idle keep-alive connections kept for reuse.
	MaxIdleConns int
	// AfterCall, if set, is called after every call that got an HTTP
	// answer, with the minion's name, the method and the answer's
	// header, before Call returns. It may call the minion again with c.
	AfterCall func(ctx context.Context, c *Client, minion, method string, h http.Header)
	// AfterGateway, if set, is called after every answer from a gateway
	// (a forwarded call, a bundle), with the gateway and the answer's
	// header (CRLHeader: the revocation list it holds), before the call
	// returns. It may post to the gateway with c (PushGatewayCRL).
	AfterGateway func(ctx context.Context, c *Client, gw Gateway, h http.Header)
	// Observe, if set, is told after every call whether the minion
	// answered (err nil: an HTTP answer, whatever it said) or not (the
	// call's error: unreachable, tls, timeout...).
	Observe func(ctx context.Context, minion string, err error)
	// Service, if set, connects to the overlord service's local socket
	// (`overlord serve`): every call goes through the service, which
	// holds the connections to the minions, and TLS and Resolve are not
	// used. See ServicePath. View, if set, gives the caller's view of a
	// minion (address and certificate fingerprint), sent with each call
	// so that the service reaches the minion the caller means.
	Service func(ctx context.Context) (net.Conn, error)
	View    func(name string) (addr, fingerprint string, ok bool)
	// IdleTimeout closes a connection unused for this long (90 s if 0).
	IdleTimeout time.Duration
	// MaxPerMinion, if positive, bounds the calls in flight to one minion
	// at once; more wait for a place (the service shares one identity's
	// budget on each minion among all its callers). Such a client keeps
	// up to maxIdlePerMinion idle connections to each minion.
	MaxPerMinion int
	// MaxConns, if positive, with MaxPerMinion, bounds the connections
	// to minions the client holds open at once (the service sets it from
	// its open-files limit). It keeps up to 7/8 of them for reuse; past
	// that, a minion with no idle connection is called on a connection
	// closed after the answer, and a dial that would pass MaxConns waits
	// for a place, closing the idle connections every 100 ms meanwhile.
	MaxConns int
	// Route, if set, returns the gateways that reach a minion, the first
	// preferred; none: the minion is called directly. GatewayTLS is the
	// TLS configuration for gateways (certs.GatewayClientConfig): see
	// gateway.go. With Service, the names are passed to the service
	// (ViaHeader), which routes the call.
	Route      func(name string) []Gateway
	GatewayTLS *tls.Config
}

// maxIdlePerMinion is how many idle connections to one minion a client
// with MaxPerMinion keeps: one for calls, one for a long poll, and room
// for a burst.
const maxIdlePerMinion = 4

// The overlord service's local protocol (plain HTTP on its socket, which
// only its owner may use): ServicePath + the minion's name forwards one
// JSON-RPC call to that minion.
const (
	ServicePath = "/local/minion/"
	// ServiceErrorHeader carries the kind of a failure the service met
	// reaching a minion (HTTP 502, the message as the body), so the
	// caller classifies it as it would have classified its own.
	ServiceErrorHeader = "Overlord-Error-Kind"
	// ConnectTimeoutHeader passes the caller's connect timeout (a Go
	// duration) to the service; AddrHeader and FingerprintHeader its
	// view of the minion (ClientConfig.View).
	ConnectTimeoutHeader = "Overlord-Connect-Timeout"
	AddrHeader           = "Overlord-Minion-Addr"
	FingerprintHeader    = "Overlord-Minion-Fingerprint"
	// ViaHeader carries the caller's view of the gateways that reach a
	// minion (jobs.Minion.Via), comma-separated, the first preferred.
	ViaHeader = "Overlord-Minion-Via"
)

// OnBehalfOfHeader is set by a gateway (certs.RoleGateway) on each call
// it makes to a minion: the standard base64 of the DER certificate of the
// overlord identity that sent it the call. The minion accepts it only
// from a gateway's certificate, checks it as it would check that
// identity's own connection (of the CA, overlord role, not revoked), and
// applies its ACL to that identity; the audit log records both.
const OnBehalfOfHeader = "Overlord-On-Behalf-Of"

// Client calls minions by name. One Client (one HTTP transport, with
// keep-alive and TLS session reuse) serves a whole run.
type Client struct {
	http      *http.Client
	afterCall func(ctx context.Context, c *Client, minion, method string, h http.Header)
	// afterGateway is ClientConfig.AfterGateway.
	afterGateway func(ctx context.Context, c *Client, gw Gateway, h http.Header)
	observe      func(ctx context.Context, minion string, err error)
	// maxResponse is MaxResponseBytes, but for tests.
	maxResponse int64
	service     bool // calls go through the service's socket
	view        func(name string) (addr, fingerprint string, ok bool)
	connect     time.Duration // the connect timeout, passed to the service
	shared      bool          // Close leaves the connections open (Shared)
	perMinion   int           // MaxPerMinion
	slots       *sync.Map     // minion name -> chan struct{}, with perMinion
	conns       *connCounter  // the open connections, with perMinion
	gw          *gateways     // the way to gateways (Route), or nil
	route       func(name string) []Gateway
}

// DefaultConnectTimeout is used when ClientConfig.ConnectTimeout is zero.
const DefaultConnectTimeout = 5 * time.Second

// NewClient returns a Client.
func NewClient(cfg ClientConfig) *Client {
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = DefaultConnectTimeout
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 90 * time.Second
	}
	c := &Client{afterCall: cfg.AfterCall, afterGateway: cfg.AfterGateway, observe: cfg.Observe, maxResponse: MaxResponseBytes, connect: cfg.ConnectTimeout,
		perMinion: cfg.MaxPerMinion, slots: new(sync.Map), view: cfg.View, route: cfg.Route}
	if cfg.Route != nil && cfg.Service == nil && cfg.GatewayTLS != nil {
		c.gw = newGateways(cfg)
	}
	dialer := &net.Dialer{Timeout: cfg.ConnectTimeout, KeepAlive: 30 * time.Second}
	if cfg.Service != nil {
		// Every call is to the service, one host: keep as many
		// connections as calls may run at once.
		c.service = true
		c.http = &http.Client{Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return cfg.Service(ctx)
			},
			MaxIdleConns:        max(cfg.MaxIdleConns, 2),
			MaxIdleConnsPerHost: max(cfg.MaxIdleConns, 2),
			IdleConnTimeout:     cfg.IdleTimeout,
		}}
		return c
	}
	tr := &http.Transport{
		// The URL's host is the minion's name, so TLS checks the name
		// whatever the address; the dialer looks the address up.
		DialContext: func(ctx context.Context, network, hostport string) (net.Conn, error) {
			name, _, err := net.SplitHostPort(hostport)
			if err != nil {
				return nil, err
			}
			addr, ok := cfg.Resolve(name)
			if !ok {
				return nil, &net.OpError{Op: "dial", Net: network, Err: fmt.Errorf("minion %s has no registered address", name)}
			}
			if d, ok := ctx.Value(connectTimeoutKey{}).(time.Duration); ok && d > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, d)
				defer cancel()
			}
			return dialer.DialContext(ctx, network, addr)
		},
		TLSClientConfig:     cfg.TLS,
		TLSHandshakeTimeout: cfg.ConnectTimeout,
		MaxIdleConns:        cfg.MaxIdleConns,
		MaxIdleConnsPerHost: 2,
		IdleConnTimeout:     cfg.IdleTimeout,
	}
	if cfg.MaxPerMinion > 0 {
		// The service's pool: each call may bring its own connect
		// timeout (WithConnectTimeout), for the TCP connect and the TLS
		// handshake together, as a CLI's own connect would take.
		tr.MaxIdleConnsPerHost = maxIdlePerMinion
		c.conns = newConnCounter(cfg.MaxConns, tr.CloseIdleConnections)
		dial := tr.DialContext
		tr.DialContext = nil
		tr.DialTLSContext = func(ctx context.Context, network, hostport string) (net.Conn, error) {
			d := cfg.ConnectTimeout
			if v, ok := ctx.Value(connectTimeoutKey{}).(time.Duration); ok && v > 0 {
				d = v
			}
			ctx, cancel := context.WithTimeout(ctx, d)
			defer cancel()
			if err := c.conns.reserve(ctx); err != nil {
				return nil, err
			}
			raw, err := dial(context.WithValue(ctx, connectTimeoutKey{}, time.Duration(0)), network, hostport)
			if err != nil {
				c.conns.unreserve()
				return nil, err
			}
			name, _, _ := net.SplitHostPort(hostport)
			tcfg := cfg.TLS.Clone()
			tcfg.ServerName = name
			conn := tls.Client(raw, tcfg)
			if err := conn.HandshakeContext(ctx); err != nil {
				raw.Close()
				c.conns.unreserve()
				return nil, err
			}
			return c.conns.opened(name, conn), nil
		}
		dialer.Timeout = 0 // the context bounds it
	}
	c.http = &http.Client{Transport: tr}
	return c
}

// Shared returns a Client that makes the same calls on the same
// connections, and whose Close leaves them open: the service's pool
// handed to code that closes its client when done.
func (c *Client) Shared() *Client {
	return &Client{http: c.http, afterCall: c.afterCall, afterGateway: c.afterGateway, observe: c.observe, maxResponse: c.maxResponse, service: c.service, view: c.view,
		connect: c.connect, shared: true, perMinion: c.perMinion, slots: c.slots, conns: c.conns, gw: c.gw, route: c.route}
}

// Close closes idle connections, unless the Client is Shared.
func (c *Client) Close() {
	if !c.shared {
		c.http.CloseIdleConnections()
		if c.gw != nil {
			c.gw.http.CloseIdleConnections()
		}
	}
}

// connectTimeoutKey carries a call's own connect timeout in its context
// (WithConnectTimeout).
type connectTimeoutKey struct{}

// WithConnectTimeout returns ctx with a connect timeout for the calls made
// with it, in place of the Client's: the service dials minions with the
// timeout its caller asked for.
func WithConnectTimeout(ctx context.Context, d time.Duration) context.Context {
	return context.WithValue(ctx, connectTimeoutKey{}, d)
}

// acquire waits for a place among the calls in flight to minion, when
// MaxPerMinion bounds them; release gives it back.
func (c *Client) acquire(ctx context.Context, minion string) (release func(), err error) {
	if c.perMinion <= 0 {
		return func() {}, nil
	}
	v, _ := c.slots.LoadOrStore(minion, make(chan struct{}, c.perMinion))
	ch := v.(chan struct{})
	select {
	case ch <- struct{}{}:
		var once sync.Once
		return func() { once.Do(func() { <-ch }) }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Forward sends body, a JSON-RPC request, to the named minion as it is,
// and returns the minion's answer as it comes, for the service to pass on
// to its caller; the caller closes its Body. An error is a failure to get
// an answer, to be classified (Classify).
func (c *Client) Forward(ctx context.Context, minion string, body []byte) (*http.Response, error) {
	release, err := c.acquire(ctx, minion)
	if err != nil {
		return nil, err
	}
	var resp *http.Response
	if gws := c.gw.via(minion); len(gws) > 0 {
		var gw string
		resp, gw, err = c.gw.send(ctx, gws, minion, forwardMethod(body), body, c.gatewayHeader(ctx, minion))
		if gw != "" {
			noteVia(ctx, gw)
		}
		if err == nil {
			c.afterGatewayAnswer(ctx, gw, resp.Header)
			if gerr := gatewayAnswer(resp, gw); gerr != nil {
				resp.Body.Close()
				err = gerr
			}
		}
	} else {
		u := url.URL{Scheme: "https", Host: minion, Path: Path}
		var req *http.Request
		req, err = http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(body))
		if err != nil {
			release()
			return nil, err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Close = c.oneOff(minion)
		setOnBehalfOf(ctx, req)
		resp, err = c.http.Do(req)
	}
	if err != nil {
		release()
		return nil, err
	}
	resp.Body = &releasingBody{ReadCloser: resp.Body, release: release}
	return resp, nil
}

// forwardMethod returns the method a JSON-RPC request names, for the
// gateway's rule on what may be sent again ("" if unreadable: treated as
// any method but Minion.Call).
func forwardMethod(body []byte) string {
	var m struct {
		Method string `json:"method"`
	}
	_ = json.Unmarshal(body, &m)
	return m.Method
}

// gatewayHeader is what a request through a gateway carries besides its
// body: the minion's address and pin, and the connect timeout.
func (c *Client) gatewayHeader(ctx context.Context, minion string) http.Header {
	h := http.Header{"Content-Type": {"application/json"}}
	d := c.connect
	if v, ok := ctx.Value(connectTimeoutKey{}).(time.Duration); ok && v > 0 {
		d = v
	}
	h.Set(ConnectTimeoutHeader, d.String())
	if c.view != nil {
		if addr, fp, ok := c.view(minion); ok {
			h.Set(AddrHeader, addr)
			h.Set(FingerprintHeader, fp)
		}
	}
	return h
}

// releasingBody gives a minion's place back when its answer is closed.
type releasingBody struct {
	io.ReadCloser
	release func()
}

func (b *releasingBody) Close() error {
	err := b.ReadCloser.Close()
	b.release()
	return err
}

// ResultError is a remote failure that came with a result, such as a
// command's output when it exited non-zero.
type ResultError struct {
	Err    *status.Error
	Result json.RawMessage
}

func (e *ResultError) Error() string { return e.Err.Error() }

// Unwrap returns the *status.Error, and ErrRemote.
func (e *ResultError) Unwrap() []error { return []error{e.Err, ErrRemote} }

// ErrRemote is matched (errors.Is) by every error a minion sent as its
// answer, as opposed to a failure to get one (network, deadline, Ctrl-C).
var ErrRemote = errors.New("the minion answered with an error")

// remoteErr is an error a minion sent: a *status.Error and ErrRemote.
type remoteErr struct{ se *status.Error }

func (e remoteErr) Error() string   { return e.se.Error() }
func (e remoteErr) Unwrap() []error { return []error{e.se, ErrRemote} }

// Call calls method on the named minion and decodes the reply. Every
// error is, or wraps, a *status.Error with the failure's kind; a remote
// failure that carried a result is a *ResultError.
func (c *Client) Call(ctx context.Context, minion, method string, params, reply any) error {
	h, err := c.call(ctx, minion, method, params, reply)
	if c.observe != nil {
		if h != nil {
			c.observe(ctx, minion, nil)
		} else {
			c.observe(ctx, minion, err)
		}
	}
	if h != nil && c.afterCall != nil {
		c.afterCall(ctx, c, minion, method, h)
	}
	return err
}

// call makes one call; it returns the answer's header if there was an
// HTTP answer.
func (c *Client) call(ctx context.Context, minion, method string, params, reply any) (http.Header, error) {
	body, err := json2.EncodeClientRequest(method, params)
	if err != nil {
		return nil, status.Errorf(status.KindInternal, "encode %s request: %v", method, err)
	}
	u := url.URL{Scheme: "https", Host: minion, Path: Path}
	if c.service {
		u = url.URL{Scheme: "http", Host: "overlord", Path: ServicePath + minion}
	} else {
		release, err := c.acquire(ctx, minion)
		if err != nil {
			return nil, Classify(ctx, err)
		}
		defer release()
	}
	// ctx's deadline bounds the wait for the answer; an answer that has
	// started is read on past it while it keeps coming (see watchAnswer).
	reqCtx, cancelReq := context.WithCancelCause(context.WithoutCancel(ctx))
	defer cancelReq(nil)
	var started atomic.Bool
	var got atomic.Int64 // bytes of the answer read
	stop := context.AfterFunc(ctx, func() {
		if !started.Load() || !errors.Is(ctx.Err(), context.DeadlineExceeded) {
			cancelReq(context.Cause(ctx))
			return
		}
		go watchAnswer(reqCtx, cancelReq, &got)
	})
	defer stop()
	req, err := http.NewRequestWithContext(reqCtx, http.MethodPost, u.String(), bytes.NewReader(body))
	if err != nil {
		return nil, status.Errorf(status.KindInternal, "%v", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Close = !c.service && c.oneOff(minion)
	if c.service {
		req.Header.Set(ConnectTimeoutHeader, c.connect.String())
		if c.view != nil {
			if addr, fp, ok := c.view(minion); ok {
				req.Header.Set(AddrHeader, addr)
				req.Header.Set(FingerprintHeader, fp)
			}
		}
		if c.route != nil {
			if gws := c.route(minion); len(gws) > 0 {
				names := make([]string, len(gws))
				for i, g := range gws {
					names[i] = g.Name
				}
				req.Header.Set(ViaHeader, strings.Join(names, ","))
			}
		}
	} else {
		setOnBehalfOf(ctx, req)
	}
	var resp *http.Response
	if gws := c.gw.via(minion); !c.service && len(gws) > 0 {
		var gw string
		resp, gw, err = c.gw.send(reqCtx, gws, minion, method, body, c.gatewayHeader(ctx, minion))
		if gw != "" {
			noteVia(ctx, gw)
		}
		if err == nil {
			c.afterGatewayAnswer(ctx, gw, resp.Header)
		}
		if err != nil {
			var se *status.Error
			if errors.As(err, &se) {
				return nil, err
			}
			return nil, Classify(ctx, err)
		}
		if gerr := gatewayAnswer(resp, gw); gerr != nil {
			resp.Body.Close()
			return nil, gerr
		}
	} else if resp, err = c.http.Do(req); err != nil {
		return nil, Classify(ctx, err)
	}
	defer resp.Body.Close()
	started.Store(true)
	if kind := resp.Header.Get(ServiceErrorHeader); c.service && kind != "" && resp.StatusCode == http.StatusBadGateway {
		// The service could not get an answer from the minion: its
		// classification, as if the failure had been this process's.
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		return nil, status.Errorf(status.Kind(kind), "%s", bytes.TrimSpace(msg))
	}
	if ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return resp.Header, Classify(ctx, ctx.Err())
	}
	h := resp.Header
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != http.StatusOK && !isJSON(ct) {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		se := status.Errorf(status.KindInternal, "minion answered HTTP %s: %s", resp.Status, bytes.TrimSpace(msg))
		if resp.StatusCode == http.StatusServiceUnavailable {
			return h, busyError{se}
		}
		return h, se
	}
	var msg struct {
		Result json.RawMessage `json:"result"`
		Error  *struct {
			Code    json2.ErrorCode `json:"code"`
			Message string          `json:"message"`
			Data    json.RawMessage `json:"data"`
		} `json:"error"`
	}
	if err := json.NewDecoder(&limitedBody{r: resp.Body, left: c.maxResponse, got: &got}).Decode(&msg); err != nil {
		if errors.Is(context.Cause(reqCtx), errSlowAnswer) {
			return h, status.Errorf(status.KindTimeout, "the answer to %s stopped coming in time: %d bytes read, less than %d in the last %s", method, got.Load(), minAnswerRate, answerWindow)
		}
		if ctx.Err() != nil {
			return h, Classify(ctx, ctx.Err())
		}
		if err == io.EOF {
			// The answer ended cleanly with no body: the minion was
			// reached and said nothing a client can read.
			return h, status.Errorf(status.KindInternal, "empty answer to %s", method)
		}
		if errors.Is(err, errReplyTooBig) {
			// The minion is up and answered; what it sent is more
			// than a reply may carry (a minion of another version?).
			return h, status.Errorf(status.KindInternal, "the answer to %s is over the %d bytes a reply may carry", method, c.maxResponse)
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return h, Classify(ctx, err)
		}
		return h, status.Errorf(status.KindInternal, "unreadable answer to %s: %v", method, err)
	}
	if msg.Error != nil {
		return h, remoteError(msg.Error.Code, msg.Error.Message, msg.Error.Data)
	}
	if len(msg.Result) == 0 || string(msg.Result) == "null" {
		return h, status.Errorf(status.KindInternal, "%s answered with neither a result nor an error", method)
	}
	if err := json.Unmarshal(msg.Result, reply); err != nil {
		return h, status.Errorf(status.KindInternal, "unexpected answer to %s: %v", method, err)
	}
	return h, nil
}

// limitedBody reads r until left runs out, then fails with
// errReplyTooBig: unlike io.LimitReader, the cut cannot pass for the
// end of the answer.
type limitedBody struct {
	r    io.Reader
	left int64
	got  *atomic.Int64 // bytes read so far
}

func (l *limitedBody) Read(p []byte) (int, error) {
	if l.left <= 0 {
		// One byte more tells a body of exactly the limit from a longer one.
		var one [1]byte
		if n, err := l.r.Read(one[:]); n == 0 {
			return 0, err
		}
		return 0, errReplyTooBig
	}
	if int64(len(p)) > l.left {
		p = p[:l.left]
	}
	n, err := l.r.Read(p)
	l.left -= int64(n)
	l.got.Add(int64(n))
	return n, err
}

// An answer that has started when its call's deadline passes is read on
// while at least minAnswerRate bytes arrive in every answerWindow, for
// at most answerGrace past the deadline (a minion gives itself as long
// to write an answer): a big answer on a slow link or a busy machine is
// not lost to the deadline, and one that stalls is a timeout.
const (
	minAnswerRate = 1 << 20
	answerWindow  = 2 * time.Second
	answerGrace   = 2 * time.Minute
)

// errSlowAnswer is the cause of a call whose answer stopped coming after
// its deadline.
var errSlowAnswer = errors.New("the answer stopped coming")

// watchAnswer cancels the reading of an answer past its call's deadline
// (with errSlowAnswer) when fewer than minAnswerRate bytes arrived in the
// last answerWindow, or answerGrace has passed; it returns when ctx ends.
func watchAnswer(ctx context.Context, cancel context.CancelCauseFunc, got *atomic.Int64) {
	tick := time.NewTicker(answerWindow)
	defer tick.Stop()
	grace := time.NewTimer(answerGrace)
	defer grace.Stop()
	last := got.Load()
	for {
		select {
		case <-ctx.Done():
			return
		case <-grace.C:
			cancel(errSlowAnswer)
			return
		case <-tick.C:
		}
		n := got.Load()
		if n-last < minAnswerRate {
			cancel(errSlowAnswer)
			return
		}
		last = n
	}
}

func isJSON(ct string) bool { return strings.HasPrefix(ct, "application/json") }

// remoteError turns a minion's JSON-RPC error into a *status.Error (or a
// *ResultError when it carried a result), keeping the result's bytes as
// the minion wrote them.
func remoteError(code json2.ErrorCode, message string, rawData json.RawMessage) error {
	var data ErrorData
	_ = json.Unmarshal(rawData, &data) // absent or foreign data: fall back on the code
	if data.Kind == "" {
		data.Kind = status.KindInternal
		for k, c := range kindCodes {
			if c == code {
				data.Kind = k
			}
		}
	}
	se := &status.Error{Kind: data.Kind, Message: message}
	if data.Busy {
		return busyError{se}
	}
	if len(data.Result) > 0 && string(data.Result) != "null" {
		return &ResultError{Err: se, Result: data.Result}
	}
	return remoteErr{se}
}

// Classify turns a local failure to call a minion into a *status.Error:
// a call past its deadline is timeout, a failed handshake or identity
// check is tls, anything else on the network is unreachable.
func Classify(ctx context.Context, err error) *status.Error {
	var se *status.Error
	if errors.As(err, &se) {
		return se
	}
	msg := err.Error()
	var uerr *url.Error
	if errors.As(err, &uerr) {
		msg = uerr.Err.Error()
	}
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		// The call's own deadline. A connect or handshake that times
		// out before it means the minion could not be reached.
		return status.Errorf(status.KindTimeout, "no answer in time: %s", msg)
	case errors.Is(err, context.Canceled):
		return status.Errorf(status.KindCancelled, "%s", msg)
	case isTLS(err):
		return status.Errorf(status.KindTLS, "%s", msg)
	}
	return status.Errorf(status.KindUnreachable, "%s", msg)
}

func isTLS(err error) bool {
	var (
		verr  *tls.CertificateVerificationError
		alert tls.AlertError
		rec   tls.RecordHeaderError
		host  x509.HostnameError
		auth  x509.UnknownAuthorityError
		inval x509.CertificateInvalidError
	)
	return errors.As(err, &verr) || errors.As(err, &alert) || errors.As(err, &rec) ||
		errors.As(err, &host) || errors.As(err, &auth) || errors.As(err, &inval) ||
		isRemoteAlert(err)
}

// isRemoteAlert catches TLS alerts that reach the client as plain errors
// ("remote error: tls: ..."), as when a TLS 1.3 server refuses the
// client's certificate after the client's side of the handshake is done.
func isRemoteAlert(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "remote error" {
		return true
	}
	return strings.Contains(err.Error(), "remote error: tls:")
}

// ErrBusy is wrapped by the error of a call the minion refused for now
// (HTTP 503: too many requests at once; or a JSON-RPC error whose data
// says busy: too many async jobs running): the same call may succeed
// later.
var ErrBusy = errors.New("minion busy")

// busyError is a refusal for now: the *status.Error as it always was, and
// ErrBusy.
type busyError struct{ se *status.Error }

func (e busyError) Error() string   { return e.se.Error() }
func (e busyError) Unwrap() []error { return []error{e.se, ErrBusy, ErrRemote} }
