package rpc

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"net/http"
)

// OnBehalfOf returns the value of OnBehalfOfHeader that names the
// overlord identity whose certificate is cert: the standard base64 of its
// DER.
func OnBehalfOf(cert *x509.Certificate) string {
	return base64.StdEncoding.EncodeToString(cert.Raw)
}

// onBehalfKey carries OnBehalfOfHeader's value in a context.
type onBehalfKey struct{}

// WithOnBehalfOf returns ctx whose calls (Client.Call, Client.Forward) to
// minions name the overlord identity whose certificate is cert, in
// OnBehalfOfHeader: a gateway calls so for the identity that sent it the
// call. Only a client with a gateway's certificate may: a minion refuses
// the header from anyone else.
func WithOnBehalfOf(ctx context.Context, cert *x509.Certificate) context.Context {
	return context.WithValue(ctx, onBehalfKey{}, OnBehalfOf(cert))
}

// setOnBehalfOf sets OnBehalfOfHeader on req if ctx names an identity
// (WithOnBehalfOf).
func setOnBehalfOf(ctx context.Context, req *http.Request) {
	if v, ok := ctx.Value(onBehalfKey{}).(string); ok {
		req.Header.Set(OnBehalfOfHeader, v)
	}
}
