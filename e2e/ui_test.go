//go:build linux

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// chromiumPath is where Debian's chromium package puts the browser.
const chromiumPath = "/usr/bin/chromium"

// uiWait bounds each wait for the dashboard to show something: a
// deadline, not a speed assertion.
const uiWait = 60 * time.Second

// startServeUI starts 'overlord serve --no-enrol --ui 127.0.0.1:PORT' for
// f's state directory and returns it with the dashboard's base URL; it is
// stopped when the test ends.
func startServeUI(t *testing.T, f *fleet) (*proc, string) {
	t.Helper()
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	p, err := startProc(f.dir, filepath.Join(f.dir, "serve.log"), f.env, filepath.Join(binDir, "overlord"),
		"--state-dir", f.stateDir, "serve", "--no-enrol", "--ui", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.terminate(stopTimeout); err != nil {
			t.Errorf("overlord serve: %v\n%s", err, p.logTail(20))
		}
	})
	if err := waitPort(addr, true, readyTimeout, p); err != nil {
		t.Fatalf("%v\n%s", err, p.logTail(20))
	}
	return p, "http://" + addr
}

// uiURL runs 'overlord ui url' until it prints the login URL (the service
// opens its socket a moment before the dashboard).
func uiURL(t *testing.T, f *fleet, p *proc) string {
	t.Helper()
	for deadline := time.Now().Add(readyTimeout); ; time.Sleep(100 * time.Millisecond) {
		cmd, stdout, stderr := overlordCmd(f, "ui", "url")
		if exitCode(t, cmd) == 0 {
			return strings.TrimSpace(stdout.String())
		}
		if time.Now().After(deadline) || p.exited() {
			t.Fatalf("overlord ui url: %s\n%s", stderr, p.logTail(20))
		}
	}
}

// browser starts headless Chromium for the test; it is stopped when the
// test ends. Without Chromium the test fails, saying how to install it.
func browser(t *testing.T) context.Context {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("the dashboard's browser test needs Debian's chromium at %s (%v): apt-get install -y chromium (.ci/run installs it)", chromiumPath, err)
	}
	profile := t.TempDir() // removed after the browser has stopped (cleanups run last first)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless,
		chromedp.NoSandbox, // root in CI
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(1280, 900),
	)
	ctx, cancel := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		t.Fatalf("starting %s: %v", chromiumPath, err)
	}
	return ctx
}

// page is the browser's tab in a test, with where to save screenshots.
type page struct {
	t     *testing.T
	ctx   context.Context
	shots string
	serve *proc
}

// do runs browser actions, failing the test (with the page's text and a
// screenshot) if one fails.
func (p *page) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, uiWait+10*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		p.fail(what, err)
	}
}

// until waits for a JavaScript condition on the page to hold, asking
// again while the page navigates.
func (p *page) until(what, cond string) {
	p.t.Helper()
	deadline := time.Now().Add(uiWait)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		ctx, cancel := context.WithTimeout(p.ctx, 10*time.Second)
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](cond))
		cancel()
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			if err == nil {
				err = fmt.Errorf("not after %s", uiWait)
			}
			p.fail(what, err)
		}
		<-tick.C
	}
}

// text returns the text of the page's main part.
func (p *page) text() string {
	ctx, cancel := context.WithTimeout(p.ctx, 10*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ''`))
	if err != nil {
		return fmt.Sprintf("(no text: %v)", err)
	}
	return s
}

func (p *page) fail(what string, err error) {
	p.t.Helper()
	p.shot("failure.png")
	p.t.Fatalf("%s: %v\npage text:\n%s\nserve log:\n%s", what, err, p.text(), p.serve.logTail(30))
}

// shot saves a PNG of the whole page.
func (p *page) shot(name string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 20*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		p.t.Errorf("screenshot %s: %v", name, err)
		return
	}
	if err := os.WriteFile(filepath.Join(p.shots, name), png, 0o644); err != nil {
		p.t.Error(err)
	}
}

// fillCall fills the call form and starts the call; it waits for the job's
// page.
func (p *page) fillCall(base, target, method, args, shot string) string {
	p.t.Helper()
	p.do("the call form", chromedp.Navigate(base+"/call"), chromedp.WaitVisible(`#target`))
	p.until("the built-in methods", `document.querySelectorAll('#methods option').length > 0`)
	p.do("typing the call", chromedp.SendKeys(`#target`, target), chromedp.SendKeys(`#method`, method),
		chromedp.SendKeys(`#args`, args), chromedp.SetValue(`#timeout`, "5m"))
	p.until("the target's matches", `document.querySelector('#matches').textContent.startsWith('Matches 2: web1, web2')`)
	p.until("the call checked", `(() => {
		const c = document.querySelector('#check').textContent;
		return c.startsWith('Ready: command.run on 2 minions') && c.includes('done');
	})()`)
	if shot != "" {
		p.shot(shot)
	}
	p.do("starting the call", chromedp.Click(`#start`))
	p.until("the job's page", `location.pathname.startsWith('/jobs/') && document.querySelectorAll('#results [data-minion]').length === 2`)
	loc, err := chromedp.Run(p.ctx, chromedp.Location())
	if err != nil {
		p.fail("the job's URL", err)
	}
	return loc[strings.LastIndex(loc, "/")+1:]
}

// TestUI drives the dashboard in headless Chromium against a real service
// and real minions: the login page, the login URL 'overlord ui url'
// prints, a call started from the form whose output shows live on the
// job's page, a running job cancelled with the button, the jobs and the
// fleet. Screenshots go to $OVERLORD_UI_SHOTS (else a temporary
// directory).
func TestUI(t *testing.T) {
	t.Parallel()
	ctx := browser(t)
	f := startFleet(t, "web1", "web2")
	serve, base := startServeUI(t, f)
	waitService(t, f, serve)
	login := uiURL(t, f, serve)
	if !strings.HasPrefix(login, base+"/login?token=") {
		t.Fatalf("overlord ui url printed %q, want %s/login?token=...", login, base)
	}
	shots := os.Getenv("OVERLORD_UI_SHOTS")
	if shots == "" {
		shots = t.TempDir()
	} else if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}
	p := &page{t: t, ctx: ctx, shots: shots, serve: serve}

	// Without a session: the login page, for any page.
	p.do("a page before the login", chromedp.Navigate(base+"/jobs"), chromedp.WaitVisible(`#token`))
	p.shot("login.png")
	// The login URL: the fleet.
	p.do("the login URL", chromedp.Navigate(login))
	p.until("the fleet after the login", `location.pathname === '/' && document.querySelectorAll('#minions tbody tr').length === 2`)

	// A call from the form: its output shows while it runs. The job runs
	// until the test creates its stop file.
	stop := filepath.Join(f.dir, "stop-live")
	id := p.fillCall(base, "web*", "command.run",
		fmt.Sprintf(`cmd=i=0; while [ ! -e %s ]; do i=$((i+1)); echo line$i; sleep 0.2; done; echo done`, stop), "call.png")
	p.until("live output while the job runs", `(() => {
		const outs = [...document.querySelectorAll('#results pre.live-output')];
		const state = document.querySelector('#summary dd').textContent;
		return state !== 'FINISHED' && outs.length === 2 && outs.every((o) => o.textContent.includes('line2'));
	})()`)
	p.shot("job-live.png")
	if got := p.text(); !strings.Contains(got, "Live: following the job") {
		t.Errorf("the job's page does not say it follows the job:\n%s", got)
	}
	if err := os.WriteFile(stop, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	p.until("the job finished, with its output", `(() => {
		const state = document.querySelector('#summary dd').textContent;
		const outs = [...document.querySelectorAll('#results pre.stdout')];
		return state === 'FINISHED' && outs.length === 2 && outs.every((o) => o.textContent.includes('line1') && o.textContent.endsWith('done\n'));
	})()`)
	p.shot("job-finished.png")
	j, code, _ := jobStatus(t, f, id)
	if code != 0 || j.State != "FINISHED" || !strings.HasSuffix(j.Minions["web1"].stdout(), "done\n") {
		t.Errorf("job %s as the CLI sees it: exit %d\n%s", id, code, j)
	}

	// A running job cancelled with the button.
	id2 := p.fillCall(base, "web*", "command.run", `cmd=while :; do echo tick; sleep 0.2; done`, "")
	p.until("the job running", `document.querySelectorAll('#results pre.live-output').length === 2`)
	p.do("cancel", chromedp.Click(`#cancel`), chromedp.WaitVisible(`#cancel-yes`))
	p.do("cancel: yes", chromedp.Click(`#cancel-yes`))
	p.until("the job cancelled", `(() => {
		const state = document.querySelector('#summary dd').textContent;
		const badges = [...document.querySelectorAll('#results [data-minion] h3 .badge')].map((b) => b.textContent);
		return state === 'FINISHED' && badges.length === 2 && badges.every((b) => b === 'cancelled');
	})()`)
	p.shot("job-cancelled.png")
	if j, _, _ := jobStatus(t, f, id2); j.State != "FINISHED" || j.Minions["web1"].Error == nil || j.Minions["web1"].Error.Kind != "cancelled" {
		t.Errorf("job %s as the CLI sees it after the cancel:\n%s", id2, j)
	}

	// The jobs, newest first; a filter by state.
	p.do("the jobs", chromedp.Navigate(base+"/jobs"))
	p.until("both jobs listed, newest first", fmt.Sprintf(`(() => {
		const links = [...document.querySelectorAll('#jobs tbody tr td:last-child a')].map((a) => a.getAttribute('href'));
		return links.length === 2 && links[0] === '/jobs/%s' && links[1] === '/jobs/%s';
	})()`, id2, id))
	p.shot("jobs.png")
	p.do("the jobs still running", chromedp.Navigate(base+"/jobs?state=RUNNING"))
	p.until("no job running", `document.querySelector('#count').textContent === 'No jobs match.'`)

	// The fleet: both minions, reachable now that the service has called
	// them, with their cached facts; the filter by name.
	if out, err := f.overlord("minion", "facts", "*"); err != nil {
		t.Fatalf("minion facts: %v\n%s", err, out)
	}
	if out, err := f.overlord("group", "add", "web", "web1", "web2"); err != nil {
		t.Fatalf("group add: %v\n%s", err, out)
	}
	// Two inventory versions, a plugin added on web2 between them: the
	// fleet page shows the latest and what changed, web2's page its
	// modules and its change.
	if out, err := f.overlord("inventory", "snapshot"); err != nil {
		t.Fatalf("inventory snapshot: %v\n%s", err, out)
	}
	mods := filepath.Join(mustMinion(t, f, "web2").dir, "modules.d")
	if err := os.MkdirAll(mods, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(mods, "hello"), []byte(inventoryPlugin), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := f.overlord("inventory", "snapshot"); err != nil {
		t.Fatalf("inventory snapshot: %v\n%s", err, out)
	}
	p.do("the fleet", chromedp.Navigate(base+"/"))
	p.until("the inventory", `!document.querySelector('#inventory').hidden && document.querySelector('#inventory-body').innerText.includes('Version 2')`)
	p.do("what changed", chromedp.Click(`#inventory-diff`))
	p.until("web2's new plugin", `document.querySelector('#inventory-body').innerText.includes('web2: module hello added (0.3)')`)
	p.shot("inventory.png")
	p.do("web2's page", chromedp.Navigate(base+"/minions/web2"))
	p.until("web2's modules and change", `(() => {
		const t = document.querySelector('#minion').innerText;
		return t.includes('hello (plugin 0.3): greet') && t.includes('module hello added (0.3)');
	})()`)
	p.do("the fleet", chromedp.Navigate(base+"/"))
	p.until("the minions, reachable", `(() => {
		const rows = [...document.querySelectorAll('#minions tbody tr')].map((r) => r.innerText);
		return rows.length === 2 && rows[0].startsWith('web1') && rows[1].startsWith('web2') &&
			rows.every((r) => r.includes('reachable') && r.includes('iB'));
	})()`)
	p.until("the group", `document.querySelector('#groups').innerText.includes('@web: web1, web2')`)
	p.shot("fleet.png")
	p.do("filtering by name", chromedp.SendKeys(`#q`, "web2"))
	p.until("one minion shown", `document.querySelectorAll('#minions tbody tr').length === 1 && location.search === '?q=web2'`)

	// The same on a phone's screen.
	p.do("a phone's screen", chromedp.EmulateViewport(390, 844), chromedp.Navigate(base+"/jobs/"+id))
	p.until("the job on a phone", `document.querySelectorAll('#results pre.stdout').length === 2`)
	p.shot("job-phone.png")

	// /metrics on the dashboard's address needs no session.
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(metrics), "overlord_results_total{") {
		t.Errorf("GET %s/metrics without a session: %s\n%.500s", base, resp.Status, metrics)
	}

	// The jobs record the dashboard as who submitted them.
	for _, jid := range []string{id, id2} {
		cmd, stdout, stderr := overlordCmd(f, "job", "status", jid, "-o", "json")
		code := exitCode(t, cmd)
		var rec struct {
			SubmittedBy string `json:"submitted_by"`
		}
		if err := json.Unmarshal(stdout.Bytes(), &rec); err != nil || rec.SubmittedBy != "ui:dashboard" {
			t.Errorf("job %s: submitted_by %q, want ui:dashboard (exit %d, %v)\n%s", jid, rec.SubmittedBy, code, err, stderr)
		}
	}
	t.Logf("screenshots in %s", shots)
}
