package overlord

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"

	"github.com/overlordhq/overlord/jobs"
	"github.com/overlordhq/overlord/modules"
	"github.com/overlordhq/overlord/modules/builtin"
	"github.com/overlordhq/overlord/rpc"
	"github.com/overlordhq/overlord/status"
)

// MaxStdin is the most standard input a call sends as its method's stdin
// parameter, in bytes.
const MaxStdin = rpc.MaxOutput

// requestRoom is what a request needs besides its arguments (the
// envelope, module and method names, timeout).
const requestRoom = 64 << 10

// method returns the method a call names as the overlord knows it, to
// parse its command line: a built-in (bound says its arguments are bound
// and checked here), else a plugin as described by the targeted minions'
// cached descriptions (see Describe) if those that have one agree. It
// returns nil for a method it does not know: the minions bind its
// arguments. A misspelt built-in is an error.
func (o *Overlord) method(spec CallSpec, minions []jobs.Minion) (m *modules.Method, bound bool, err error) {
	reg := builtin.Registry()
	if m, err := reg.Lookup(spec.Module, spec.Method); err == nil {
		return m, true, nil
	}
	// A name the overlord does not know is sent (a plugin, a newer
	// minion's method), unless it is a misspelling of one it knows.
	if want, ok := reg.Typo(spec.Module, spec.Method); ok {
		return nil, false, status.Errorf(status.KindBadArgs, "did you mean %s?", want)
	}
	names := make([]string, len(minions))
	for i, mn := range minions {
		names[i] = mn.Name
	}
	cached, err := o.Store.CachedModules(names)
	if err != nil {
		o.Logger.Debug("plugin descriptions not read; arguments left untyped", "err", err)
		return nil, false, nil
	}
	var agreed []byte
	var info modules.MethodInfo
	for _, mn := range minions {
		d, ok := cached[mn.Name]
		if !ok || d.Fingerprint != mn.Fingerprint {
			continue
		}
		mi, ok := findMethod(d.Modules, spec.Module, spec.Method)
		if !ok {
			continue
		}
		data, _ := json.Marshal(mi)
		if agreed != nil && !bytes.Equal(agreed, data) {
			o.Logger.Debug("minions describe the method differently; arguments left untyped", "method", spec.Module+"."+spec.Method)
			return nil, false, nil
		}
		agreed, info = data, mi
	}
	if agreed == nil {
		return nil, false, nil
	}
	return modules.MethodFromInfo(info), false, nil
}

func findMethod(mods []modules.ModuleInfo, module, method string) (modules.MethodInfo, bool) {
	for _, mod := range mods {
		if mod.Name != module {
			continue
		}
		for _, mi := range mod.Methods {
			if mi.Name == method {
				return mi, true
			}
		}
	}
	return modules.MethodInfo{}, false
}

// withStdin adds what r holds as the stdin argument of m when m takes
// one as a string and the command line did not give it, and r holds
// something. It reads at most MaxStdin bytes; more, or bytes that are
// not UTF-8 (a JSON string cannot carry them), is an error.
func withStdin(r io.Reader, m *modules.Method, named map[string]any, positional []any) (map[string]any, error) {
	if r == nil || m == nil {
		return named, nil
	}
	i := -1
	for j, p := range m.Params {
		if p.Name == "stdin" && p.Type == modules.String {
			i = j
		}
	}
	if _, given := named["stdin"]; i < 0 || given || i < len(positional) {
		return named, nil
	}
	data, err := io.ReadAll(io.LimitReader(r, MaxStdin+1))
	if err != nil {
		return nil, fmt.Errorf("reading standard input: %w", err)
	}
	switch {
	case len(data) == 0:
		return named, nil
	case len(data) > MaxStdin:
		return nil, fmt.Errorf("standard input is more than %d bytes (4 MiB), more than a call sends: "+
			"copy it to the minions with 'overlord cp' and redirect the command's input from the copy, "+
			"or give -n to send none", MaxStdin)
	case !utf8.Valid(data):
		return nil, errors.New("standard input is not UTF-8 text, which a call cannot carry: " +
			"copy it to the minions with 'overlord cp' and redirect the command's input from the copy, " +
			"or give -n to send none")
	}
	if named == nil {
		named = map[string]any{}
	}
	named["stdin"] = string(data)
	return named, nil
}

// checkSize refuses a call whose arguments are more than a minion
// accepts in a request.
func checkSize(p *Prepared) error {
	data, err := json.Marshal(struct {
		Args       map[string]any `json:"args"`
		Positional []any          `json:"positional"`
	}{p.Args, p.Positional})
	if err != nil {
		return fmt.Errorf("arguments: %w", err)
	}
	if limit := rpc.MaxRequestBytes - requestRoom; len(data) > limit {
		return fmt.Errorf("the arguments are %d bytes as JSON, more than the %d a call to a minion carries", len(data), limit)
	}
	return nil
}
