package cli_test

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/overlordhq/overlord/status"
)

type minionLine struct {
	Name        string  `json:"name"`
	Addr        string  `json:"addr"`
	Fingerprint string  `json:"fingerprint"`
	AddedAt     string  `json:"added_at"`
	LastSeen    *string `json:"last_seen"`
}

func listMinions(t *testing.T, h *harness) []minionLine {
	t.Helper()
	var ms []minionLine
	out := h.must("minion", "list", "-o", "json")
	if err := json.Unmarshal([]byte(out), &ms); err != nil {
		t.Fatalf("minion list -o json: %v\n%s", err, out)
	}
	return ms
}

func listGroups(t *testing.T, h *harness) map[string][]string {
	t.Helper()
	var gs map[string][]string
	out := h.must("group", "list", "-o", "json")
	if err := json.Unmarshal([]byte(out), &gs); err != nil {
		t.Fatalf("group list -o json: %v\n%s", err, out)
	}
	return gs
}

// TestSession walks an operator's first session: CA, minions, groups,
// calls in every output format, jobs, removal.
func TestSession(t *testing.T) {
	h := newHarness(t)
	h.must("ca", "init", "--name", "op")

	// An empty registry lists as [] and {}, not null.
	if out := h.must("minion", "list", "-o", "json"); strings.TrimSpace(out) != "[]" {
		t.Errorf("empty minion list -o json = %q", out)
	}
	if out := h.must("group", "list", "-o", "json"); strings.TrimSpace(out) != "{}" {
		t.Errorf("empty group list -o json = %q", out)
	}

	bundle := h.addMinion("web1")
	if fi, err := os.Stat(bundle); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("bundle %s: %v %v", bundle, fi, err)
	}
	h.addMinion("web2")
	h.addDeadMinion("web3")
	h.addMinion("db1")

	ms := listMinions(t, h)
	var names []string
	for _, m := range ms {
		names = append(names, m.Name)
		if m.Addr == "" || len(m.Fingerprint) != 64 || m.AddedAt == "" || m.LastSeen != nil {
			t.Errorf("minion %+v", m)
		}
	}
	if !reflect.DeepEqual(names, []string{"db1", "web1", "web2", "web3"}) {
		t.Errorf("minion list names %v", names)
	}
	text := h.must("minion", "list")
	if !strings.HasPrefix(text, "NAME") || !strings.Contains(text, "LAST SEEN") || strings.Count(text, "never") != 4 {
		t.Errorf("minion list text:\n%s", text)
	}

	// Groups.
	if out := h.must("group", "add", "web", "web1", "web2", "web3"); out != "group web: added web1 web2 web3\n" {
		t.Errorf("group add: %q", out)
	}
	h.must("group", "add", "db", "db1")
	if got, want := listGroups(t, h), map[string][]string{"web": {"web1", "web2", "web3"}, "db": {"db1"}}; !reflect.DeepEqual(got, want) {
		t.Errorf("groups %v, want %v", got, want)
	}
	if text := h.must("group", "list"); !strings.Contains(text, "web    web1 web2 web3") {
		t.Errorf("group list text:\n%s", text)
	}

	// A call over a group with one dead minion: exit 1, one valid JSON
	// document.
	r := h.run("call", "@web", "test.ping", "-o", "json")
	if r.code != 1 {
		t.Errorf("call @web: exit %d, want 1 (%v)", r.code, r.err)
	}
	var job status.Job
	if err := json.Unmarshal([]byte(r.stdout), &job); err != nil {
		t.Fatalf("call -o json is not one JSON document: %v\n%s", err, r.stdout)
	}
	if job.State != status.Finished || job.Target != "@web" || job.Module != "test" || job.Method != "ping" ||
		job.Summary != (status.Summary{Total: 3, OK: 2, Failed: 1}) {
		t.Errorf("job %+v", job)
	}
	if !job.Minions["web1"].OK || string(job.Minions["web1"].Result) != "true" ||
		job.Minions["web3"].Error == nil || job.Minions["web3"].Error.Kind != status.KindUnreachable {
		t.Errorf("minions %+v", job.Minions)
	}
	firstJob := job.JobID

	// Text: one line per minion, then the summary.
	r = h.run("call", "web1", "test.ping")
	if r.code != 0 {
		t.Fatalf("call web1 test.ping: exit %d %v", r.code, r.err)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 2 || lines[0] != "web1: true" || !strings.HasPrefix(lines[1], "1 minion: 1 ok, 0 failed (job ") ||
		!strings.HasSuffix(lines[1], ", FINISHED)") {
		t.Errorf("text output:\n%s", r.stdout)
	}

	// A command line with an assignment in front stays one argument.
	r = h.run("call", "web1", "command.run", "FOO=1 printenv FOO", "-o", "json")
	if r.code != 0 {
		t.Fatalf("call command.run: exit %d %v\n%s", r.code, r.err, r.stdout)
	}
	var cmdJob struct {
		Args    map[string]any `json:"args"`
		Minions map[string]struct {
			Result struct {
				Stdout string `json:"stdout"`
			} `json:"result"`
		} `json:"minions"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &cmdJob); err != nil {
		t.Fatal(err)
	}
	if cmdJob.Minions["web1"].Result.Stdout != "1\n" || cmdJob.Args["cmd"] != "FOO=1 printenv FOO" {
		t.Errorf("command.run 'FOO=1 printenv FOO': %s", r.stdout)
	}

	// A failing command: exit 1, output and error in the text.
	r = h.run("call", "db1", "command.run", "echo partial; echo oops >&2; exit 3")
	if r.code != 1 {
		t.Errorf("failing command: exit %d", r.code)
	}
	for _, want := range []string{"db1: ERROR module_error: command exit status 3 (exit 3)", "\npartial\ndb1 stderr:\noops\n", "0 ok, 1 failed"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("text output lacks %q:\n%s", want, r.stdout)
		}
	}

	// ndjson: one result line per minion, then one summary line.
	r = h.run("call", "web*", "test.echo", `{"n":1}`, "-o", "ndjson")
	if r.code != 1 {
		t.Errorf("ndjson call: exit %d", r.code)
	}
	sc := bufio.NewScanner(strings.NewReader(r.stdout))
	var results, summaries int
	var summary map[string]any
	for sc.Scan() {
		var line map[string]any
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("ndjson line %q: %v", sc.Text(), err)
		}
		switch line["type"] {
		case "result":
			results++
			if line["minion"] == "" || line["state"] != "FINISHED" {
				t.Errorf("result line %s", sc.Text())
			}
			if line["minion"] != "web3" && !reflect.DeepEqual(line["result"], map[string]any{"n": 1.0}) {
				t.Errorf("result line %s", sc.Text())
			}
		case "summary":
			summaries++
			summary = line
		default:
			t.Errorf("line of type %v: %s", line["type"], sc.Text())
		}
	}
	if results != 3 || summaries != 1 {
		t.Errorf("%d result lines and %d summary lines:\n%s", results, summaries, r.stdout)
	}
	if summary["job_id"] == "" || summary["minions"] != nil || summary["state"] != "FINISHED" {
		t.Errorf("summary line %v", summary)
	}
	if !strings.HasSuffix(strings.TrimSpace(r.stdout), "}") || strings.Count(r.stdout, "\n") != 4 {
		t.Errorf("ndjson layout:\n%s", r.stdout)
	}

	// yaml.
	r = h.run("call", "web2", "test.add", "1", "2", "-o", "yaml")
	var y map[string]any
	if err := yaml.Unmarshal([]byte(r.stdout), &y); err != nil || r.code != 0 {
		t.Fatalf("yaml output (exit %d): %v\n%s", r.code, err, r.stdout)
	}
	if y["state"] != "FINISHED" || y["minions"].(map[string]any)["web2"].(map[string]any)["result"] != 3 {
		t.Errorf("yaml:\n%s", r.stdout)
	}

	// Jobs: listed newest first, found by prefix.
	var jl []struct {
		JobID   string         `json:"job_id"`
		State   string         `json:"state"`
		Target  string         `json:"target"`
		Summary status.Summary `json:"summary"`
	}
	if err := json.Unmarshal([]byte(h.must("job", "list", "-o", "json")), &jl); err != nil {
		t.Fatal(err)
	}
	if len(jl) != 6 || jl[5].JobID != firstJob || jl[0].Target != "web2" || jl[5].Summary.Failed != 1 {
		t.Errorf("job list %+v", jl)
	}
	if out := h.must("job", "list", "--limit", "2", "-o", "ndjson"); strings.Count(out, "\n") != 2 {
		t.Errorf("job list --limit 2 -o ndjson:\n%s", out)
	}
	if out := h.must("job", "list", "--state", "running", "-o", "json"); strings.TrimSpace(out) != "[]" {
		t.Errorf("no job is running: %s", out)
	}
	text = h.must("job", "list")
	if !strings.HasPrefix(text, "JOB") || strings.Count(text, "\n") != 7 || !strings.Contains(text, "test.ping") {
		t.Errorf("job list text:\n%s", text)
	}
	r = h.run("job", "status", firstJob[:13])
	if r.code != 1 || !strings.Contains(r.stdout, "web3: ERROR unreachable:") || !strings.Contains(r.stdout, "(job "+firstJob+", FINISHED)") {
		t.Errorf("job status by prefix: exit %d\n%s", r.code, r.stdout)
	}
	if r := h.run("job", "status", jl[0].JobID); r.code != 0 {
		t.Errorf("job status of an ok job: exit %d", r.code)
	}
	if r := h.run("job", "status", "ffff"); r.code != 2 || !strings.Contains(r.err.Error(), "not found") {
		t.Errorf("job status ffff: exit %d %v", r.code, r.err)
	}

	// Minions that answered are marked as seen.
	for _, m := range listMinions(t, h) {
		if (m.LastSeen != nil) != (m.Name != "web3") {
			t.Errorf("%s last seen %v", m.Name, m.LastSeen)
		}
	}

	// Removal: a member from a group, then a minion from everything.
	if out := h.must("group", "remove", "web", "web3"); out != "group web: removed web3\n" {
		t.Errorf("group remove member: %q", out)
	}
	if out := h.must("minion", "remove", "web1"); out != "minion web1 removed\n" {
		t.Errorf("minion remove: %q", out)
	}
	if got, want := listGroups(t, h), map[string][]string{"web": {"web2"}, "db": {"db1"}}; !reflect.DeepEqual(got, want) {
		t.Errorf("groups after removals %v, want %v", got, want)
	}
	if r := h.run("call", "web1", "test.ping"); r.code != 3 {
		t.Errorf("call of a removed minion: exit %d, want 3", r.code)
	}
	if out := h.must("group", "remove", "db"); out != "group db removed\n" {
		t.Errorf("group remove: %q", out)
	}
	if r := h.run("call", "@db", "test.ping"); r.code != 2 || !strings.Contains(r.err.Error(), "unknown group") {
		t.Errorf("call of a removed group: exit %d %v", r.code, r.err)
	}
}

func TestMinionAddErrors(t *testing.T) {
	h := newHarness(t)
	h.must("ca", "init", "--name", "op")
	h.addDeadMinion("web1")
	tests := []struct {
		name string
		args []string
		msg  string
	}{
		{"no addr", []string{"minion", "add", "web2"}, "--addr HOST:PORT is required"},
		{"bad addr", []string{"minion", "add", "web2", "--addr", "web2"}, "bad address"},
		{"bad name", []string{"minion", "add", "web_2", "--addr", "h:1", "--bundle-out", filepath.Join(h.out, "x.pem")}, "bad name"},
		{"taken", []string{"minion", "add", "web1", "--addr", "h:1", "--bundle-out", filepath.Join(h.out, "y.pem")}, "already exists"},
		{"bundle exists", []string{"minion", "add", "web2", "--addr", "h:1", "--bundle-out", filepath.Join(h.out, "web1.pem")}, "already exists"},
		{"bad key type", []string{"minion", "add", "web2", "--addr", "h:1", "--key-type", "dsa"}, "--key-type"},
		{"no name", []string{"minion", "add", "--addr", "h:1"}, "accepts 1 arg"},
		{"remove unknown", []string{"minion", "remove", "web9"}, "not found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := h.run(tt.args...)
			if r.code != 2 || r.err == nil || !strings.Contains(r.err.Error(), tt.msg) {
				t.Errorf("exit %d, error %v; want 2 saying %q", r.code, r.err, tt.msg)
			}
		})
	}
	if ms := listMinions(t, h); len(ms) != 1 {
		t.Errorf("refused adds changed the registry: %+v", ms)
	}
}

func TestGroupErrors(t *testing.T) {
	h := newHarness(t)
	h.must("ca", "init", "--name", "op")
	h.addDeadMinion("web1")
	h.must("group", "add", "web", "web1")
	tests := []struct {
		name string
		args []string
		msg  string
	}{
		{"bad group name", []string{"group", "add", "web*", "web1"}, "group name"},
		{"group name with @", []string{"group", "add", "@web", "web1"}, "group name"},
		{"unknown minion", []string{"group", "add", "web", "web9"}, "not found"},
		{"no members", []string{"group", "add", "web"}, "requires at least 2 arg"},
		{"remove unknown group", []string{"group", "remove", "db"}, "not found"},
		{"remove non-member", []string{"group", "remove", "web", "web9"}, "no member web9"},
		{"ndjson not offered", []string{"group", "list", "-o", "ndjson"}, "unknown output format"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := h.run(tt.args...)
			if r.code != 2 || r.err == nil || !strings.Contains(r.err.Error(), tt.msg) {
				t.Errorf("exit %d, error %v; want 2 saying %q", r.code, r.err, tt.msg)
			}
		})
	}
	if got := listGroups(t, h); !reflect.DeepEqual(got, map[string][]string{"web": {"web1"}}) {
		t.Errorf("groups changed: %v", got)
	}
}
