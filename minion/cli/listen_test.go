package cli

import (
	"strings"
	"testing"
)

func TestListenAddr(t *testing.T) {
	for _, tc := range []struct{ in, want, err string }{
		{"41015", ":41015", ""},
		{":41015", ":41015", ""},
		{"127.0.0.1:41015", "127.0.0.1:41015", ""},
		{"[::1]:41015", "[::1]:41015", ""},
		{"70000", "", "a port is 0 to 65535"},
		{"localhost", "", "give HOST:PORT, :PORT or a port number"},
		{"127.0.0.1:", "", "give HOST:PORT"},
	} {
		got, err := listenAddr(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("listenAddr(%q) = %q, %v; want an error with %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("listenAddr(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}
