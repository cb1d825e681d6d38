package process

import (
	"encoding/json"
	"math"
	"strconv"
	"strings"
	"syscall"

	"github.com/overlordhq/overlord/status"
)

// maxSignal is SIGRTMAX on Linux.
const maxSignal = 64

// signals are the signals known by name, without the SIG prefix.
var signals = map[string]syscall.Signal{
	"HUP": syscall.SIGHUP, "INT": syscall.SIGINT, "QUIT": syscall.SIGQUIT,
	"ILL": syscall.SIGILL, "TRAP": syscall.SIGTRAP, "ABRT": syscall.SIGABRT,
	"BUS": syscall.SIGBUS, "FPE": syscall.SIGFPE, "KILL": syscall.SIGKILL,
	"USR1": syscall.SIGUSR1, "SEGV": syscall.SIGSEGV, "USR2": syscall.SIGUSR2,
	"PIPE": syscall.SIGPIPE, "ALRM": syscall.SIGALRM, "TERM": syscall.SIGTERM,
	"CHLD": syscall.SIGCHLD, "CONT": syscall.SIGCONT, "STOP": syscall.SIGSTOP,
	"TSTP": syscall.SIGTSTP, "TTIN": syscall.SIGTTIN, "TTOU": syscall.SIGTTOU,
	"URG": syscall.SIGURG, "XCPU": syscall.SIGXCPU, "XFSZ": syscall.SIGXFSZ,
	"VTALRM": syscall.SIGVTALRM, "PROF": syscall.SIGPROF, "WINCH": syscall.SIGWINCH,
	"IO": syscall.SIGIO, "SYS": syscall.SIGSYS,
}

// signalName returns the name of sig without SIG, or its number.
func signalName(sig syscall.Signal) string {
	for name, s := range signals {
		if s == sig {
			return name
		}
	}
	return strconv.Itoa(int(sig))
}

// parseSignal reads a signal argument: a name with or without SIG in any
// case, a number, or a number in a string. It returns the signal and its
// name as results report it.
func parseSignal(method string, v any) (syscall.Signal, string, error) {
	bad := func(got string) (syscall.Signal, string, error) {
		return 0, "", status.Errorf(status.KindBadArgs, "%s: parameter signal: want a name such as TERM, KILL or HUP, or a number from 0 to %d; got %s", method, maxSignal, got)
	}
	switch x := v.(type) {
	case string:
		if n, err := strconv.Atoi(x); err == nil {
			return number(n, strconv.Quote(x), bad)
		}
		name := strings.TrimPrefix(strings.ToUpper(strings.TrimSpace(x)), "SIG")
		if sig, ok := signals[name]; ok {
			return sig, name, nil
		}
		return bad(strconv.Quote(x))
	case float64:
		if x != math.Trunc(x) || x < 0 || x > maxSignal {
			return bad(strconv.FormatFloat(x, 'g', -1, 64))
		}
		return number(int(x), strconv.FormatFloat(x, 'g', -1, 64), bad)
	case int:
		return number(x, strconv.Itoa(x), bad)
	case int64:
		return number(int(x), strconv.FormatInt(x, 10), bad)
	case json.Number:
		f, err := x.Float64()
		if err != nil {
			return bad(x.String())
		}
		return parseSignal(method, f)
	}
	return bad("another type")
}

func number(n int, got string, bad func(string) (syscall.Signal, string, error)) (syscall.Signal, string, error) {
	if n < 0 || n > maxSignal {
		return bad(got)
	}
	sig := syscall.Signal(n)
	return sig, signalName(sig), nil
}
