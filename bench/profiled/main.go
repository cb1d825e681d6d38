// Command profiled is the overlord command with Go's profiler on a
// loopback HTTP port, for bench/scale.sh (PROFILE=1): with
// OVERLORD_PPROF=127.0.0.1:PORT set, /debug/pprof/ is served there for
// the life of the process (`overlord serve`, say), and
// `go tool pprof http://127.0.0.1:PORT/debug/pprof/profile?seconds=5`
// takes a CPU profile. It is never built into the shipped binaries.
package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	_ "net/http/pprof" // registers /debug/pprof/ on http.DefaultServeMux
	"os"
	"os/signal"
	"syscall"

	"github.com/overlordhq/overlord/overlord/cli"
)

func main() {
	if addr := os.Getenv("OVERLORD_PPROF"); addr != "" {
		host, _, err := net.SplitHostPort(addr)
		if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
			fmt.Fprintf(os.Stderr, "OVERLORD_PPROF=%q: want a loopback HOST:PORT\n", addr)
			os.Exit(2)
		}
		l, err := net.Listen("tcp", addr)
		if err != nil {
			fmt.Fprintln(os.Stderr, "OVERLORD_PPROF:", err)
			os.Exit(2)
		}
		go func() { _ = http.Serve(l, nil) }()
	}
	// As cmd/overlord.
	signal.Ignore(syscall.SIGPIPE)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop()
	}()
	code := cli.Main(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
