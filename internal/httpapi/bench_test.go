package httpapi_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"

	"rdev.dev/rdev/internal/rdev"
	"rdev.dev/rdev/internal/store/postgres"
	"rdev.dev/rdev/internal/store/postgres/pgtest"
	"rdev.dev/rdev/internal/store/sqlite"
)

// BenchmarkGetProject measures authenticated GET /api/v1/projects/{id} at 64
// concurrent keep-alive connections against a bare chi handler that encodes
// the same JSON. Each sub-benchmark alternates five rounds of the bare
// handler and of rdev on one store, so both see the same machine; it reports
// rdev's median req/s, p50 and p99, the bare handler's median req/s, and
// the ratio of the medians. See docs/BENCHMARKS.md.
//
//	go test ./internal/httpapi -run '^$' -bench GetProject -benchtime 200000x
func BenchmarkGetProject(b *testing.B) {
	b.Run("sqlite", func(b *testing.B) {
		st, err := sqlite.Open(context.Background(), filepath.Join(b.TempDir(), "rdev.db"))
		if err != nil {
			b.Fatal(err)
		}
		defer st.Close()
		benchStore(b, st)
	})
	b.Run("postgres", func(b *testing.B) {
		st, err := postgres.Open(context.Background(), pgtest.URL(b))
		if err != nil {
			b.Fatal(err)
		}
		defer st.Close()
		benchStore(b, st)
	})
}

const benchConns = 64

func benchStore(b *testing.B, st rdev.Store) {
	proj := benchProject()
	if err := st.CreateProject(context.Background(), proj); err != nil {
		b.Fatal(err)
	}
	r := chi.NewRouter()
	r.Get("/api/v1/projects/{id}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"data": proj, "meta": map[string]string{"request_id": "0123456789abcdef01234567"}})
	})
	bare := httptest.NewServer(r)
	defer bare.Close()
	h := newHarnessOn(b, st)
	tok := h.key(nil, rdev.ScopeProjectsRead) // a read-only key, as an agent would hold

	const rounds = 5
	per := max(b.N/rounds, 1)
	var bareRPS, rdevRPS []float64
	var lat []time.Duration
	b.ResetTimer()
	for range rounds {
		rps, _ := load(b, bare.URL+"/api/v1/projects/web", "", per)
		bareRPS = append(bareRPS, rps)
		rps, l := load(b, h.srv.URL+"/api/v1/projects/web", tok, per)
		rdevRPS = append(rdevRPS, rps)
		lat = append(lat, l...)
	}
	b.StopTimer()
	slices.Sort(lat)
	slices.Sort(bareRPS)
	slices.Sort(rdevRPS)
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(rdevRPS[rounds/2], "req/s")
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	b.ReportMetric(bareRPS[rounds/2], "bare-req/s")
	b.ReportMetric(rdevRPS[rounds/2]/bareRPS[rounds/2], "x_bare")
}

func benchProject() *rdev.Project {
	port := 3000
	now := rdev.Timestamp(time.Now())
	return &rdev.Project{ID: "web", Name: "Web", DefaultBranch: "main", ProtectedBranches: []string{"release/*"},
		ReviewCommand: "go test ./...", Components: []rdev.Component{{Name: "app", Command: "npm start", Port: &port}},
		CreatedAt: now, UpdatedAt: now}
}

// load sends n GETs over benchConns concurrent keep-alive connections and
// returns the requests per second and every latency. The client is a minimal HTTP/1.1 reader and writer, so that as
// little of the two cores as possible goes to making the load.
func load(b *testing.B, rawURL, token string, n int) (float64, []time.Duration) {
	conns := benchConns
	u, err := url.Parse(rawURL)
	if err != nil {
		b.Fatal(err)
	}
	req := "GET " + u.RequestURI() + " HTTP/1.1\r\nHost: " + u.Host + "\r\n"
	if token != "" {
		req += "Authorization: Bearer " + token + "\r\n"
	}
	reqBytes := []byte(req + "\r\n")
	lat := make([][]time.Duration, conns)
	var wg sync.WaitGroup
	next := make(chan struct{}, conns)
	var errOnce sync.Once
	fail := func(err error) { errOnce.Do(func() { b.Error(err) }) }
	start := time.Now()
	go func() {
		for range n {
			next <- struct{}{}
		}
		close(next)
	}()
	for w := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := net.Dial("tcp", u.Host)
			if err != nil {
				fail(err)
				for range next {
				}
				return
			}
			defer conn.Close()
			br := bufio.NewReaderSize(conn, 16<<10)
			for range next {
				t0 := time.Now()
				if _, err := conn.Write(reqBytes); err != nil {
					fail(err)
					return
				}
				status, err := readResponse(br)
				if err != nil {
					fail(err)
					return
				}
				if status != 200 {
					fail(fmt.Errorf("status %d", status))
				}
				lat[w] = append(lat[w], time.Since(t0))
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	all := slices.Concat(lat...)
	return float64(len(all)) / elapsed.Seconds(), all
}

// readResponse reads one response with a Content-Length body and returns
// its status code.
func readResponse(br *bufio.Reader) (int, error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		return 0, err
	}
	if len(line) < 12 {
		return 0, fmt.Errorf("bad status line %q", line)
	}
	status, err := strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, err
	}
	length := -1
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return 0, err
		}
		if len(line) <= 2 {
			break
		}
		if len(line) > 16 && (line[0] == 'C' || line[0] == 'c') && strings.EqualFold(string(line[:15]), "content-length:") {
			length, err = strconv.Atoi(strings.TrimSpace(string(line[15:])))
			if err != nil {
				return 0, err
			}
		}
	}
	if length < 0 {
		return 0, fmt.Errorf("response without Content-Length")
	}
	_, err = br.Discard(length)
	return status, err
}
