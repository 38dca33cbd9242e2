package httpapi_test

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"rdev.dev/rdev/internal/httpapi"
	"rdev.dev/rdev/internal/rdev"
)

func TestPreview(t *testing.T) {
	if _, err := exec.LookPath("python3"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("python3 (the test's web server) is not installed (CI=true forbids skipping)")
		}
		t.Skip("python3 (the test's web server) is not installed")
	}
	h := newHarness(t)
	sid := startSession(t, h)
	base := "/api/v1/projects/web/sessions/" + sid
	// An app on $PORT in the session.
	h.do("POST", base+"/commands", h.admin, `{"command":"exec python3 -m http.server --bind 127.0.0.1 $PORT"}`).want(t, 201, "")

	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	get := func(path, host, token, cookie string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", h.srv.URL+path, nil)
		if host != "" {
			req.Host = host
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		if cookie != "" {
			req.Header.Set("Cookie", cookie)
		}
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, string(b)
	}
	host := sid + ".preview.localhost"
	waitFor(t, func() bool {
		resp, _ := get("/README", host, h.admin, "")
		return resp.StatusCode == 200
	})

	t.Run("HostFormWithKey", func(t *testing.T) {
		resp, body := get("/README", host, h.admin, "")
		if resp.StatusCode != 200 || body != "hello\n" {
			t.Fatalf("%d %q", resp.StatusCode, body)
		}
	})
	t.Run("PathFormOffByDefault", func(t *testing.T) {
		resp, body := get("/preview/"+sid+"/README", "", h.admin, "")
		if resp.StatusCode != 404 || !strings.Contains(body, "--preview-path-form") || !strings.Contains(body, host) {
			t.Fatalf("%d %q", resp.StatusCode, body)
		}
	})
	t.Run("PathFormWhenTurnedOn", func(t *testing.T) {
		on := httptest.NewServer(httpapi.New(httpapi.Config{Service: h.svc, Log: slog.New(slog.DiscardHandler), Registry: prometheus.NewRegistry(),
			PreviewDomain: "preview.localhost", PreviewPathForm: true}))
		defer on.Close()
		req, _ := http.NewRequest("GET", on.URL+"/preview/"+sid+"/README", nil)
		req.Header.Set("Authorization", "Bearer "+h.admin)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != "hello\n" {
			t.Fatalf("%d %q", resp.StatusCode, b)
		}
	})
	t.Run("Private", func(t *testing.T) {
		if resp, body := get("/README", host, "", ""); resp.StatusCode != 401 || !strings.Contains(body, "private") {
			t.Fatalf("no key: %d %q", resp.StatusCode, body)
		}
		if resp, _ := get("/README", host, "rdev_kaaaaaaaaaaaaaaaa_x", ""); resp.StatusCode != 401 {
			t.Fatalf("bad key: %d", resp.StatusCode)
		}
		if resp, _ := get("/README", host, h.key(nil, rdev.ScopeWorkersRead), ""); resp.StatusCode != 403 {
			t.Fatalf("key without session read: %d", resp.StatusCode)
		}
		if resp, _ := get("/README", host, h.key([]string{"other"}, rdev.ScopeSessionsRead), ""); resp.StatusCode != 404 {
			t.Fatalf("key of another project: %d", resp.StatusCode)
		}
		if resp, _ := get("/README", host, h.key(nil, rdev.ScopeSessionsRead), ""); resp.StatusCode != 200 {
			t.Fatalf("sessions:read key: %d", resp.StatusCode)
		}
	})
	t.Run("SignedLinkTradesForCookie", func(t *testing.T) {
		r := h.do("POST", base+"/preview-links", h.admin, `{"ttl":"10m"}`)
		r.want(t, 201, "")
		var link struct {
			URL       string    `json:"url"`
			ExpiresAt time.Time `json:"expires_at"`
		}
		mustJSON(t, r.Data, &link)
		if !strings.HasPrefix(link.URL, "http://"+host+":7420/?rdev_preview_token=") {
			t.Fatalf("link %s", link.URL)
		}
		tok := link.URL[strings.Index(link.URL, "?"):]
		resp, _ := get("/"+tok, host, "", "")
		if resp.StatusCode != 303 || resp.Header.Get("Location") != "/" {
			t.Fatalf("link: %d %v", resp.StatusCode, resp.Header)
		}
		var cookie *http.Cookie
		for _, c := range resp.Cookies() {
			if c.Name == "rdev_preview" {
				cookie = c
			}
		}
		if cookie == nil || !cookie.HttpOnly || cookie.Path != "/" {
			t.Fatalf("cookie: %+v", resp.Cookies())
		}
		if resp, body := get("/README", host, "", "rdev_preview="+cookie.Value); resp.StatusCode != 200 || body != "hello\n" {
			t.Fatalf("by cookie: %d %q", resp.StatusCode, body)
		}
		// The cookie is for this session only.
		if resp, _ := get("/README", "sother.preview.localhost", "", "rdev_preview="+cookie.Value); resp.StatusCode != 404 {
			t.Fatalf("another session: %d", resp.StatusCode)
		}
		if resp, _ := get("/?rdev_preview_token=1.forged", host, "", ""); resp.StatusCode != 401 {
			t.Fatalf("forged link: %d", resp.StatusCode)
		}
		h.do("POST", base+"/preview-links", h.admin, `{"ttl":"forever"}`).want(t, 400, "BAD_REQUEST")

		// The forward-auth endpoint decides the same way.
		auth := func(hdr map[string]string) int {
			req, _ := http.NewRequest("GET", h.srv.URL+"/api/v1/preview-auth", nil)
			req.Header.Set("X-Forwarded-Host", host)
			for k, v := range hdr {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			return resp.StatusCode
		}
		for name, tc := range map[string]struct {
			hdr  map[string]string
			want int
		}{
			"Nothing": {map[string]string{}, 401},
			// Never an API key: the app behind the ingress would receive it.
			"Key":        {map[string]string{"Authorization": "Bearer " + h.admin}, 401},
			"WrongScope": {map[string]string{"Authorization": "Bearer " + h.key(nil, rdev.ScopeWorkersRead)}, 401},
			"Cookie":     {map[string]string{"Cookie": "rdev_preview=" + cookie.Value}, 200},
			"Link":       {map[string]string{"X-Forwarded-Uri": "/" + tok}, 200},
			"BadLink":    {map[string]string{"X-Forwarded-Uri": "/?rdev_preview_token=1.x"}, 401},
			"OtherHost":  {map[string]string{"X-Forwarded-Host": "snosuch.preview.localhost", "Authorization": "Bearer " + h.admin}, 404},
			// As ingress-nginx asks: the original URL in one header.
			"NginxKey":       {map[string]string{"X-Forwarded-Host": "", "X-Original-URL": "https://" + host + "/app", "Authorization": "Bearer " + h.admin}, 401},
			"NginxNothing":   {map[string]string{"X-Forwarded-Host": "", "X-Original-URL": "https://" + host + "/app"}, 401},
			"NginxLink":      {map[string]string{"X-Forwarded-Host": "", "X-Original-URL": "https://" + host + "/" + tok}, 200},
			"NginxOtherHost": {map[string]string{"X-Forwarded-Host": "", "X-Original-URL": "https://snosuch.preview.localhost/", "Authorization": "Bearer " + h.admin}, 404},
		} {
			if got := auth(tc.hdr); got != tc.want {
				t.Errorf("forward-auth %s: %d, want %d", name, got, tc.want)
			}
		}

		// Gone with the session.
		h.do("POST", base+"/checkin", h.admin, `{"skip_review":true}`).want(t, 200, "")
		if resp, body := get("/README", host, h.admin, ""); resp.StatusCode != 404 || !strings.Contains(body, "has ended") {
			t.Fatalf("after check-in: %d %q", resp.StatusCode, body)
		}
		if resp, _ := get("/README", host, "", "rdev_preview="+cookie.Value); resp.StatusCode != 404 {
			t.Fatalf("cookie after check-in: %d", resp.StatusCode)
		}
		if got := auth(map[string]string{"Cookie": "rdev_preview=" + cookie.Value}); got != 404 {
			t.Fatalf("forward-auth after check-in: %d", got)
		}
	})
}
