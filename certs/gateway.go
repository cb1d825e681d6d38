package certs

import (
	"crypto/tls"
	"crypto/x509"
)

// GatewayClientConfig is the overlord's TLS configuration towards a
// gateway: TLS 1.3, the gateway's certificate must be of the CA and carry
// the gateway role (the caller pins its fingerprint, and checks the name
// dialled: tls.Config.ServerName).
func GatewayClientConfig(id tls.Certificate, ca *x509.CertPool) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{id},
		RootCAs:      ca,
		VerifyConnection: func(cs tls.ConnectionState) error {
			return requireRole(cs, RoleGateway)
		},
	}
}

// GatewayServerConfig is a gateway's TLS configuration for its API: TLS
// 1.3, a client certificate of the CA required, of the overlord role.
func GatewayServerConfig(id tls.Certificate, ca *x509.CertPool) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{id},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    ca,
		VerifyConnection: func(cs tls.ConnectionState) error {
			return requireRole(cs, RoleOverlord)
		},
	}
}
