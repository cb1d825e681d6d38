// Command emulator serves N emulated minions in one process, for scale
// tests of the overlord (bench/scale.sh); it is never built into the
// shipped binaries.
//
// Each emulated minion has a certificate issued by the overlord's CA for
// its name (role minion, the name in its SAN), exactly as `overlord minion
// add` issues one, and is registered in the overlord's overlord.db with
// its address and certificate fingerprint. All of them share one TLS
// listener (or a few, --listen A,B): the overlord dials a minion with its
// name as the TLS server name, and the emulator answers with that name's
// certificate. They answer the minion's JSON-RPC (the rpc package's server
// and types): Minion.Call with the real test module (test.ping, test.echo,
// test.sleep, test.fail, test.add) and a stand-in for command.run that
// starts no process and returns a canned result of command.run's shape;
// Minion.Describe; Minion.UpdateCRL; and async jobs kept in memory
// (Submit, Status, Cancel, Adopt, List). No process, spool, store or
// audit log per minion: a minion costs a certificate, a key and, once
// called, a connection.
//
//	go run ./bench/emulator --state-dir DIR --count 10000 --listen 127.0.0.1:0
//
// It prints one line when it serves ("serving N minions at ADDR,...") and
// runs until SIGINT or SIGTERM. Every process holds a connection per
// minion called: keep --count within the open-files limit (ulimit -Hn),
// and run several emulators (--first) for more.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/overlordhq/overlord/certs"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "emulator:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("emulator", flag.ContinueOnError)
	fs.SetOutput(stderr)
	stateDir := fs.String("state-dir", os.Getenv("OVERLORD_STATE_DIR"), "the overlord's state directory (its CA and overlord.db)")
	count := fs.Int("count", 0, "how many minions to emulate")
	first := fs.Int("first", 0, "the number of the first minion (names are --name with the number)")
	format := fs.String("name", "em%05d", "printf format of the names, given the minion's number")
	listen := fs.String("listen", "127.0.0.1:0", "comma-separated addresses to listen on; minions are spread over them")
	via := fs.String("via", "", "comma-separated gateways to register the minions behind (the first preferred)")
	sharedKey := fs.Bool("shared-key", false, "one key for every minion (each still its own certificate)")
	keyType := fs.String("key-type", string(certs.ECDSA), "key type: ecdsa or ed25519")
	logLevel := fs.String("log-level", "warn", "debug, info, warn or error")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: emulator --state-dir DIR --count N [flags]\n\nServes N emulated minions on one listener (see the package doc).\n\nExample:\n  emulator --state-dir /tmp/ov --count 10000 --first 10000 --listen 127.0.0.1:0 --via gw1,gw2\n\nFlags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	switch {
	case *stateDir == "":
		return errors.New("no state directory: give --state-dir or set OVERLORD_STATE_DIR")
	case *count < 1:
		return errors.New("--count must be at least 1")
	case *first < 0:
		return errors.New("--first must not be negative")
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	names := make([]string, *count)
	for i := range names {
		names[i] = fmt.Sprintf(*format, *first+i)
		if err := certs.CheckName(names[i]); err != nil {
			return fmt.Errorf("--name %q: %w", *format, err)
		}
	}
	var gateways []string
	if *via != "" {
		gateways = strings.Split(*via, ",")
	}
	var listeners []net.Listener
	defer func() {
		for _, l := range listeners {
			l.Close()
		}
	}()
	for _, addr := range strings.Split(*listen, ",") {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return err
		}
		listeners = append(listeners, l)
	}
	start := time.Now()
	f, err := NewFleet(Config{
		StateDir: *stateDir, Names: names, Listeners: listeners, Via: gateways,
		Register: true, KeyType: certs.KeyType(*keyType), SharedKey: *sharedKey, Logger: logger,
	})
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := f.Serve(); err != nil {
		return err
	}
	addrs := make([]string, len(listeners))
	for i, l := range listeners {
		addrs[i] = l.Addr().String()
	}
	fmt.Fprintf(stdout, "serving %d minions (%s to %s) at %s; set up in %s\n", len(names), names[0], names[len(names)-1],
		strings.Join(addrs, ","), time.Since(start).Round(time.Millisecond))
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	listeners = nil // closed by the servers
	return f.Close(sctx)
}
