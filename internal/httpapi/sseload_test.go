package httpapi_test

import (
	"bufio"
	"net/http"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

func openFiles() int {
	es, _ := os.ReadDir("/proc/self/fd")
	return len(es)
}

// TestThousandSSEClientsDropping opens 1,000 event streams on a running
// command, reads from each, drops them all mid-stream, and requires the
// server's goroutines and open files to return to their baseline.
func TestThousandSSEClientsDropping(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	h := newHarness(t)
	sid := startSession(t, h)
	base := "/api/v1/projects/web/sessions/" + sid + "/commands"
	r := h.do("POST", base, h.admin, `{"command":"while true; do echo tick; sleep 0.05; done"}`)
	r.want(t, 201, "")
	var c struct {
		ID string `json:"id"`
	}
	mustJSON(t, r.Data, &c)
	tr := &http.Transport{MaxIdleConnsPerHost: 2000, MaxConnsPerHost: 2000, DisableKeepAlives: true}
	client := &http.Client{Transport: tr}
	// Settle, then take the baseline.
	time.Sleep(200 * time.Millisecond)
	baseG, baseF := runtime.NumGoroutine(), openFiles()

	const n = 1000
	var wg sync.WaitGroup
	errs := make(chan error, n)
	resps := make(chan *http.Response, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("GET", h.srv.URL+base+"/"+c.ID+"/events", nil)
			req.Header.Set("Authorization", "Bearer "+h.admin)
			resp, err := client.Do(req)
			if err != nil {
				errs <- err
				return
			}
			br := bufio.NewReader(resp.Body)
			// Read up to the first stdout event: the stream is live.
			for {
				line, err := br.ReadString('\n')
				if err != nil {
					errs <- err
					resp.Body.Close()
					return
				}
				if strings.HasPrefix(line, "event: stdout") {
					break
				}
			}
			resps <- resp
		}()
	}
	wg.Wait()
	close(errs)
	close(resps)
	for err := range errs {
		t.Fatal(err)
	}
	peakG := runtime.NumGoroutine()
	for resp := range resps {
		resp.Body.Close() // drop mid-stream
	}
	tr.CloseIdleConnections()
	deadline := time.Now().Add(30 * time.Second)
	for {
		g, f := runtime.NumGoroutine(), openFiles()
		if g <= baseG+10 && f <= baseF+10 {
			t.Logf("goroutines %d → %d → %d; open files %d → %d", baseG, peakG, g, baseF, f)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after dropping %d streams: goroutines %d (baseline %d), open files %d (baseline %d)", n, g, baseG, f, baseF)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
