package minion

import (
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// One identity cannot take every request slot or all the body memory:
// past its own caps it is refused, while another identity is served.
func TestLimitConcurrencyPerIdentity(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{}, 1000)
	h := limitConcurrency(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-release
	}), MaxConcurrentRequests)
	var wg sync.WaitGroup
	defer func() { close(release); wg.Wait() }()

	// try sends a request and returns 200 once it is being served (it is
	// held until the test ends), or the code it was refused with.
	try := func(identity string, size int64) int {
		r := asIdentity(identity)
		r.ContentLength = size
		rec := httptest.NewRecorder()
		done := make(chan struct{})
		wg.Add(1)
		go func() {
			defer wg.Done()
			h.ServeHTTP(rec, r)
			close(done)
		}()
		select {
		case <-done:
			return rec.Code
		case <-entered:
			return http.StatusOK
		case <-time.After(10 * time.Second):
			t.Fatal("a request neither served nor refused")
			return 0
		}
	}

	for i := range MaxRequestsPerIdentity {
		if code := try("greedy", 10); code != http.StatusOK {
			t.Fatalf("request %d of one identity: HTTP %d, want served", i+1, code)
		}
	}
	if code := try("greedy", 10); code != http.StatusServiceUnavailable {
		t.Errorf("request %d of one identity: HTTP %d, want 503", MaxRequestsPerIdentity+1, code)
	}
	if code := try("other", 10); code != http.StatusOK {
		t.Errorf("another identity beside it: HTTP %d, want served", code)
	}
	// Bodies: 16 MiB in flight per identity.
	for range 2 {
		if code := try("big", 8<<20); code != http.StatusOK {
			t.Fatalf("an 8 MiB body: HTTP %d, want served", code)
		}
	}
	if code := try("big", 1); code != http.StatusServiceUnavailable {
		t.Errorf("a body past 16 MiB in flight for one identity: HTTP %d, want 503", code)
	}
	if code := try("small", 8<<20); code != http.StatusOK {
		t.Errorf("another identity's body: HTTP %d, want served", code)
	}
}
