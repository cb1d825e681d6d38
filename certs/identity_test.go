package certs_test

import (
	"crypto/x509"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/overlordhq/overlord/certs"
	"github.com/overlordhq/overlord/certs/certstest"
)

func TestVerifyOverlord(t *testing.T) {
	ca := certstest.NewCA(t)
	other := certstest.NewCA(t)
	now := time.Now()
	signed := func(name string, role certs.Role, usage x509.ExtKeyUsage, from, to time.Time) []byte {
		return ca.Sign(&x509.Certificate{Subject: certstest.Subject(name, role), ExtKeyUsage: []x509.ExtKeyUsage{usage},
			NotBefore: from, NotAfter: to}).Cert.Raw
	}
	tests := []struct {
		name string
		der  []byte
		msg  string // "" for valid
	}{
		{"an overlord identity", ca.Overlord("op").Cert.Raw, ""},
		{"nothing", nil, "no certificate"},
		{"garbage", []byte("garbage"), "not a certificate"},
		{"too big", make([]byte, certs.MaxIdentityBytes+1), "more than"},
		{"trailing data", append(ca.Overlord("op").Cert.Raw, 0), "not a certificate"},
		{"a minion", ca.Minion("web1").Cert.Raw, "role minion"},
		{"a gateway", ca.Gateway("gw").Cert.Raw, "role gateway"},
		{"the CA", ca.Cert.Raw, "role ca"},
		{"no role", signed("nobody", "", x509.ExtKeyUsageClientAuth, time.Time{}, time.Time{}), "role none"},
		{"another CA's", other.Overlord("op").Cert.Raw, "unknown authority"},
		{"expired", signed("old", certs.RoleOverlord, x509.ExtKeyUsageClientAuth, now.Add(-2*time.Hour), now.Add(-time.Hour)), "expired"},
		{"server auth only", signed("srv", certs.RoleOverlord, x509.ExtKeyUsageServerAuth, time.Time{}, time.Time{}), "client authentication"},
		{"a bad name", signed("-x", certs.RoleOverlord, x509.ExtKeyUsageClientAuth, time.Time{}, time.Time{}), "bad name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cert, err := certs.VerifyOverlord(tt.der, ca.Pool(), now)
			if tt.msg == "" {
				if err != nil || cert == nil {
					t.Fatalf("VerifyOverlord: %v", err)
				}
				return
			}
			if err == nil || !errors.Is(err, certs.ErrNotIdentity) || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("VerifyOverlord: %v; want ErrNotIdentity saying %q", err, tt.msg)
			}
		})
	}
}
