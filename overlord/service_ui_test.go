package overlord_test

import (
	"context"
	"errors"
	"testing"

	"github.com/overlordhq/overlord/overlord"
)

// TestServiceUI: ui url's question to the service: no service, a service
// without a dashboard, then one with.
func TestServiceUI(t *testing.T) {
	o := newOverlord(t)
	ctx := context.Background()
	if _, err := o.ServiceUI(ctx); !errors.Is(err, overlord.ErrNoService) {
		t.Fatalf("no service: %v, want ErrNoService", err)
	}
	svc := openService(t, o)
	if _, err := o.ServiceUI(ctx); !errors.Is(err, overlord.ErrNoUI) {
		t.Fatalf("a service without --ui: %v, want ErrNoUI", err)
	}
	const url = "http://127.0.0.1:8080/login?token=T"
	svc.SetUI(url)
	if got, err := o.ServiceUI(ctx); err != nil || got != url {
		t.Fatalf("ServiceUI = %q, %v; want %q", got, err, url)
	}
}
