package sysctl_test

import (
	"context"
	"strings"
	"testing"

	"github.com/overlordhq/overlord/modules/sysctl"
	"github.com/overlordhq/overlord/status"
)

// FuzzGet checks that no key reads anything outside /proc/sys: the fake
// root holds a secret beside it.
func FuzzGet(f *testing.F) {
	for _, seed := range []string{
		"net.ipv4.ip_forward", "net.ipv4.conf.eth0.100.rp_filter", "..", "../etc/secret", "etc.secret",
		"net/../../etc/secret", "net.ipv4.", ".", "", "a\x00b", "kernel.hostname/..", "...etc.secret",
	} {
		f.Add(seed)
	}
	root := fakeRoot(f, map[string]file{"etc/secret": {data: "s3cret"}, "proc/sys/kernel/ok": {data: "ok"}})
	f.Fuzz(func(t *testing.T, key string) {
		got, err := call(t, sysctl.Module{FS: root}, context.Background(), "get", key)
		if err == nil {
			if got != "ok" {
				t.Fatalf("get %q = %#v", key, got)
			}
			return
		}
		if k := status.KindOf(err); k != status.KindBadArgs && k != status.KindModuleError {
			t.Fatalf("get %q: error %v of kind %s", key, err, k)
		}
		if strings.Contains(err.Error(), "s3cret") {
			t.Fatalf("get %q: error shows the secret: %v", key, err)
		}
	})
}
