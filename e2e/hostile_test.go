package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestHostileRequests sends a real minion a barrage of bad input, from an
// authenticated overlord and from strangers, and checks that every bad
// request gets a JSON-RPC error or a refused connection, that the minion
// keeps answering, and that its memory stays bounded.
func TestHostileRequests(t *testing.T) {
	t.Parallel()
	f := startFleet(t, "web1")
	m := mustMinion(t, f, "web1")
	pool := caPool(t, f.stateDir)
	id := loadPair(t, filepath.Join(f.stateDir, "overlord.crt"), filepath.Join(f.stateDir, "overlord.key"))
	ping := func(when string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if res, err := rawPing(ctx, m.addr, "web1", pool, id); err != nil || string(res) != `{"result":true,"duration_ms":0}` && !strings.Contains(string(res), `"result":true`) {
			t.Fatalf("%s: the minion no longer answers a ping: %s %v", when, res, err)
		}
	}
	ping("before")
	rssBefore := rss(t, m.p.Pid())
	var afterFirst int64
	for round := 1; round <= 2; round++ {

		tr := &http.Transport{TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: pool, ServerName: "web1", Certificates: []tls.Certificate{id}}}
		defer tr.CloseIdleConnections()
		client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
		post := func(body io.Reader, ctype string) (int, string, error) {
			req, _ := http.NewRequest(http.MethodPost, "https://"+m.addr+"/rpc", body)
			req.Header.Set("Content-Type", ctype)
			resp, err := client.Do(req)
			if err != nil {
				return 0, "", err
			}
			defer resp.Body.Close()
			data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
			return resp.StatusCode, string(data), nil
		}
		deep := strings.Repeat(`{"a":`, 5000) + "1" + strings.Repeat("}", 5000)
		garbage := make([]byte, 64<<10)
		for i := range garbage {
			garbage[i] = byte(i*7 + 13)
		}
		cases := []struct{ name, body string }{
			{"malformed JSON", `{"jsonrpc":"2.0","method":`},
			{"truncated", `{"jsonrpc":"2.0","id":1,"method":"Minion.Call","params":{"module":"te`},
			{"not JSON-RPC 2.0", `{"jsonrpc":"1.0","id":1,"method":"Minion.Call","params":{}}`},
			{"unknown method", `{"jsonrpc":"2.0","id":1,"method":"Minion.Explode","params":{}}`},
			{"unknown service", `{"jsonrpc":"2.0","id":1,"method":"Root.Shell","params":{}}`},
			{"wrong types", `{"jsonrpc":"2.0","id":1,"method":"Minion.Call","params":{"module":42,"method":["x"]}}`},
			{"bad args", `{"jsonrpc":"2.0","id":1,"method":"Minion.Call","params":{"module":"test","method":"sleep","args":{"seconds":"forever"}}}`},
			{"unknown field", `{"jsonrpc":"2.0","id":1,"method":"Minion.Call","params":{"module":"test","method":"ping","sudo":true}}`},
			{"params as a list", `{"jsonrpc":"2.0","id":1,"method":"Minion.Call","params":[1,2,3]}`},
			{"deep nesting", `{"jsonrpc":"2.0","id":1,"method":"Minion.Call","params":` + deep + `}`},
			{"binary garbage", string(garbage)},
			{"path traversal in a chunk", `{"jsonrpc":"2.0","id":1,"method":"Minion.ReadChunk","params":{"path":"../../etc/passwd","offset":0,"length":10}}`},
			{"huge job list", `{"jsonrpc":"2.0","id":1,"method":"Minion.Status","params":{"job_ids":[` + strings.TrimSuffix(strings.Repeat(`"x",`, 20000), ",") + `]}}`},
		}
		for _, c := range cases {
			code, body, err := post(strings.NewReader(c.body), "application/json")
			switch {
			case err != nil:
				t.Errorf("%s: %v (want a JSON-RPC error, not a broken connection)", c.name, err)
			case code == http.StatusOK && strings.Contains(body, `"result"`) && !strings.Contains(body, `"error":{`):
				t.Errorf("%s: served as if fine: %s", c.name, body)
			case code == http.StatusOK && !strings.Contains(body, `"kind":`):
				t.Errorf("%s: an error without a kind: %s", c.name, body)
			}
		}

		// A 60 MB request is cut off at the size limit, never read whole.
		big := io.MultiReader(strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"Minion.Call","params":{"module":"test","method":"echo","args":{"message":"`),
			io.LimitReader(zeros{}, 60<<20), strings.NewReader(`"}}}`))
		if code, body, err := post(big, "application/json"); err == nil && code == http.StatusOK && !strings.Contains(body, `"error"`) {
			t.Errorf("a 60 MB request was served: HTTP %d %.200s", code, body)
		}

		// Strangers: plain TCP garbage, plain HTTP, a TLS client with no
		// certificate; many at once.
		var wg sync.WaitGroup
		for i := range 50 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				conn, err := net.DialTimeout("tcp", m.addr, 5*time.Second)
				if err != nil {
					return
				}
				defer conn.Close()
				conn.SetDeadline(time.Now().Add(5 * time.Second))
				switch i % 3 {
				case 0:
					conn.Write(garbage[:4096])
				case 1:
					fmt.Fprintf(conn, "POST /rpc HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
				default:
					tc := tls.Client(conn, &tls.Config{InsecureSkipVerify: true})
					tc.Handshake()
					tc.Write([]byte("GET / HTTP/1.1\r\n\r\n"))
				}
				io.Copy(io.Discard, io.LimitReader(conn, 1<<16))
			}()
		}
		wg.Wait()

		// A burst of authenticated requests at once.
		for range 200 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				post(bytes.NewReader(garbage[:1024]), "application/json")
			}()
		}
		wg.Wait()

		ping(fmt.Sprintf("after barrage %d", round))
		after := rss(t, m.p.Pid())
		t.Logf("rss before %d MiB, after barrage %d: %d MiB", rssBefore>>20, round, after>>20)
		if round == 1 {
			afterFirst = after
		} else if after > afterFirst+afterFirst/2+20<<20 {
			// The same barrage again must not take as much again: memory is
			// bounded, not leaking.
			t.Errorf("the minion's memory keeps growing: %d MiB before, %d after one barrage, %d after two",
				rssBefore>>20, afterFirst>>20, after>>20)
		}
	}
	if m.p.exited() {
		t.Fatalf("the minion died: %s", m.p.logTail(20))
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'a'
	}
	return len(p), nil
}

// rss returns a process's resident memory in bytes.
func rss(t *testing.T, pid int) int64 {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}
	t.Fatal("no VmRSS")
	return 0
}
