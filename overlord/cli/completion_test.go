package cli_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/overlordhq/overlord/jobs"
	"github.com/overlordhq/overlord/modules"
	"github.com/overlordhq/overlord/overlord"
)

// complete runs cobra's hidden `__complete` command, which the shells'
// completion scripts call, and returns the candidates (each "value" or
// "value\tdescription") and the directive line.
func (h *harness) complete(args ...string) (candidates []string, directive string) {
	h.t.Helper()
	r := h.run(append([]string{"__complete"}, args...)...)
	if r.code != 0 {
		h.t.Fatalf("__complete %q: exit %d: %v\n%s", args, r.code, r.err, r.stderr)
	}
	for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		if strings.HasPrefix(line, ":") {
			directive = line
			continue
		}
		if line != "" && !strings.HasPrefix(line, "Completion ended") {
			candidates = append(candidates, line)
		}
	}
	return candidates, directive
}

// values strips the descriptions.
func values(cands []string) []string {
	out := make([]string, len(cands))
	for i, c := range cands {
		out[i], _, _ = strings.Cut(c, "\t")
	}
	return out
}

func completionFleet(t *testing.T) *harness {
	h := newHarness(t)
	h.must("ca", "init")
	for _, n := range []string{"web1", "web2", "db1"} {
		h.addDeadMinion(n)
	}
	h.must("group", "add", "front", "web1", "web2")
	h.must("group", "add", "data", "db1")
	return h
}

func TestCompleteTarget(t *testing.T) {
	h := completionFleet(t)
	tests := []struct {
		args []string
		want []string
	}{
		{[]string{"call", ""}, []string{"@data", "@front", "db1", "web1", "web2"}},
		{[]string{"call", "w"}, []string{"web1", "web2"}},
		{[]string{"call", "@f"}, []string{"@front"}},
		{[]string{"call", "web1,"}, []string{"web1,@data", "web1,@front", "web1,db1", "web1,web1", "web1,web2"}},
		{[]string{"call", "web*,!w"}, []string{"web*,!web1", "web*,!web2"}},
		{[]string{"call", "@front,!@"}, []string{"@front,!@data", "@front,!@front"}},
		{[]string{"minion", "list", "d"}, []string{"db1"}},
		{[]string{"minion", "facts", "@d"}, []string{"@data"}},
		{[]string{"modules", "web"}, []string{"web1", "web2"}},
		{[]string{"call", "nosuch"}, nil},
	}
	for _, tt := range tests {
		got, dir := h.complete(tt.args...)
		if !slices.Equal(values(got), tt.want) {
			t.Errorf("complete %q = %q, want %q", tt.args, values(got), tt.want)
		}
		if dir != ":4" { // ShellCompDirectiveNoFileComp: never files for a target
			t.Errorf("complete %q: directive %s, want :4", tt.args, dir)
		}
	}
	// A minion's description is its address.
	got, _ := h.complete("call", "db")
	if len(got) != 1 || !strings.HasPrefix(got[0], "db1\t127.0.0.1:") {
		t.Errorf("complete call db = %q, want db1 with its address", got)
	}
}

// cp and fetch take TARGET:PATH: a target's candidates end in ':' with
// no space after; LOCAL, LOCALDIR and a script's FILE are local files.
func TestCompleteTargetPath(t *testing.T) {
	h := completionFleet(t)
	tests := []struct {
		args []string
		want []string
		dir  string
	}{
		{[]string{"fetch", "w"}, []string{"web1:", "web2:"}, ":6"}, // NoSpace|NoFileComp
		{[]string{"fetch", "web1,@"}, []string{"web1,@data:", "web1,@front:"}, ":6"},
		{[]string{"fetch", "web1:/etc/"}, nil, ":4"},
		{[]string{"fetch", "web1:/etc/motd", ""}, nil, ":16"}, // FilterDirs
		{[]string{"cp", ""}, nil, ":0"},                       // files
		{[]string{"cp", "./conf", "d"}, []string{"db1:"}, ":6"},
		{[]string{"script", "@f"}, []string{"@front"}, ":4"},
		{[]string{"script", "web1", ""}, nil, ":0"},
	}
	for _, tt := range tests {
		got, dir := h.complete(tt.args...)
		if !slices.Equal(values(got), tt.want) || dir != tt.dir {
			t.Errorf("complete %q = %q %s, want %q %s", tt.args, values(got), dir, tt.want, tt.dir)
		}
	}
}

func TestCompleteMethodAndParams(t *testing.T) {
	h := completionFleet(t)
	got, _ := h.complete("call", "web1", "command.")
	if !slices.Contains(values(got), "command.run") {
		t.Errorf("complete call web1 command. = %q, want command.run", got)
	}
	for _, c := range values(got) {
		if !strings.HasPrefix(c, "command.") {
			t.Errorf("complete call web1 command. offers %q", c)
		}
	}
	got, _ = h.complete("call", "web1", "te")
	if !slices.Contains(values(got), "test.ping") {
		t.Errorf("complete call web1 te = %q, want test.ping", got)
	}

	got, dir := h.complete("call", "web1", "command.run", "uptime", "")
	want := []string{"cmd=", "cwd=", "env=", "stdin=", "timeout=", "max_output="}
	for _, w := range want {
		if !slices.Contains(values(got), w) {
			t.Errorf("complete call web1 command.run uptime '' = %q, want %s among them", values(got), w)
		}
	}
	if dir != ":6" { // NoFileComp | NoSpace: the value follows the =
		t.Errorf("parameter completion directive %s, want :6", dir)
	}
	got, _ = h.complete("call", "web1", "command.run", "uptime", "timeout=5s", "t")
	if slices.Contains(values(got), "timeout=") {
		t.Errorf("a parameter already given is offered again: %q", got)
	}
	got, _ = h.complete("call", "web1", "command.run", "cw")
	if !slices.Equal(values(got), []string{"cwd="}) {
		t.Errorf("complete call web1 command.run cw = %q, want [cwd=]", got)
	}
	if got, _ = h.complete("call", "web1", "command.run", "cwd=/t"); len(got) != 0 {
		t.Errorf("a value is completed: %q", got)
	}
	if got, _ = h.complete("call", "web1", "nosuch.thing", ""); len(got) != 0 {
		t.Errorf("parameters of an unknown method: %q", got)
	}
}

func TestCompleteJobIDs(t *testing.T) {
	h := completionFleet(t)
	var ids []string
	for range 3 {
		// web1 is not running: the call fails at once, and is recorded.
		r := h.run("call", "web1", "test.ping", "-o", "json")
		ids = append([]string{jobIDOf(t, r.stdout)}, ids...) // newest first
	}
	for _, sub := range []string{"status", "cancel"} {
		got, dir := h.complete("job", sub, "")
		if !slices.Equal(values(got), ids) {
			t.Errorf("complete job %s = %q, want the jobs newest first %q", sub, values(got), ids)
		}
		if len(got) > 0 && !strings.Contains(got[0], "\ttest.ping web1, finished, ") {
			t.Errorf("complete job %s: %q has no description of the job", sub, got[0])
		}
		if dir != ":36" { // NoFileComp | KeepOrder
			t.Errorf("complete job %s: directive %s, want :36", sub, dir)
		}
	}
	got, _ := h.complete("job", "status", ids[1][:len(ids[1])-4])
	if !slices.Equal(values(got), []string{ids[1]}) {
		t.Errorf("complete by prefix = %q, want %q", values(got), ids[1])
	}
}

// Completion never waits for a busy overlord.db: it offers nothing.
func TestCompleteBusyStore(t *testing.T) {
	h := completionFleet(t)
	f, err := os.OpenFile(filepath.Join(h.dir, overlord.DBFile), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// What a writer holds while it writes.
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	// How long it gives the lock is completionStore's (TestCompletionLockTimeout).
	got, _ := h.complete("call", "w")
	if len(got) != 0 {
		t.Errorf("completion with the store busy = %q, want nothing", got)
	}
	syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	if got, _ := h.complete("call", "w"); len(got) != 2 {
		t.Errorf("completion after the store is free = %q", got)
	}
}

// No state directory: nothing to offer, and no error.
func TestCompleteNoStore(t *testing.T) {
	h := newHarness(t)
	if got, _ := h.complete("call", ""); len(got) != 0 {
		t.Errorf("completion without overlord.db = %q", got)
	}
	// Methods come from the overlord itself.
	if got, _ := h.complete("call", "x", "test.p"); !slices.Contains(values(got), "test.ping") {
		t.Errorf("complete call x test.p = %q", got)
	}
}

// The plugins minions described to 'overlord modules', cached in
// overlord.db, complete as built-ins do: MODULE.METHOD, then key=.
func TestCompletePluginMethods(t *testing.T) {
	h := completionFleet(t)
	st := jobs.New(filepath.Join(h.dir, overlord.DBFile), time.Second)
	err := st.CacheModules(map[string]jobs.Described{"web1": {Modules: []modules.ModuleInfo{{
		Name: "greet", Doc: "Greets.", Plugin: true,
		Methods: []modules.MethodInfo{{Name: "hello", Doc: "Says hello.", Params: []modules.Param{{Name: "who", Type: modules.String}}}},
	}}}})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := h.complete("call", "web1", "gre"); !slices.Equal(values(got), []string{"greet.hello"}) {
		t.Errorf("complete a cached plugin's method: %q", got)
	}
	if got, _ := h.complete("call", "web1", "greet.hello", ""); !slices.Equal(values(got), []string{"who="}) {
		t.Errorf("complete a cached plugin's parameters: %q", got)
	}
}
