package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"rdev.dev/rdev/internal/rdev"
	"rdev.dev/rdev/internal/service"
)

// Run longer with, e.g.:
//   go test ./internal/httpapi -run '^$' -fuzz '^FuzzDecodeProjectRequest$' -fuzztime 5m

var projectSeeds = []string{
	`{"id":"web","name":"Web"}`,
	`{"id":"web","name":"Web","default_branch":"trunk","protected_branches":["release/*","v?"],"review_command":"make test",
	  "components":[{"name":"app","command":"npm start","port":3000,"env":{"A":"1"},"image":"node:22"}]}`,
	`{"id":"-x","name":""}`, `{"id":"a","name":"a","components":[{"name":"x","command":"c","port":-1}]}`,
	`{"id":"a","name":"a","extra":1}`, `{"id":"a"`, `[]`, `null`, `""`, `{"id":"a","name":"a"}{}`,
	`{"id":"a","name":"a","components":[{"name":"x","command":"c"},{"name":"x","command":"d"}]}`,
	"{\"id\":\"a\",\"name\":\"\\u0000\"}", `{"id":"a","name":"a","default_branch":"a/.lock"}`,
}

// checkDecodeError asserts that a refused body got a client error, never an
// unexpected one.
func checkDecodeError(t *testing.T, err error) {
	if !rdev.IsInvalid(err) && !errors.Is(err, errBodyTooLarge) {
		t.Fatalf("decode error of unexpected kind %T: %v", err, err)
	}
	if msg := err.Error(); msg == "" || strings.Contains(msg, "json: ") && !strings.Contains(msg, "malformed") {
		t.Fatalf("unclear message %q", msg)
	}
}

// roundTrip re-encodes an accepted value and requires the same value back.
func roundTrip[T any](t *testing.T, v *T, validate func(*T) error) {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var w T
	if err := decodeJSON(bytes.NewReader(b), &w); err != nil {
		t.Fatalf("re-decoding %s: %v", b, err)
	}
	if err := validate(&w); err != nil {
		t.Fatalf("accepted value fails validation after a round trip: %v", err)
	}
	if !reflect.DeepEqual(normalize(v), normalize(&w)) {
		t.Fatalf("round trip changed the value: %+v → %+v", v, w)
	}
}

func normalize(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func FuzzDecodeProjectRequest(f *testing.F) {
	for _, s := range projectSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var r service.ProjectRequest
		if err := decodeJSON(bytes.NewReader(body), &r); err != nil {
			checkDecodeError(t, err)
			return
		}
		if err := r.Validate(); err != nil {
			if !rdev.IsInvalid(err) {
				t.Fatalf("validation error of unexpected kind: %v", err)
			}
			return
		}
		p := r.Project()
		if rdev.ValidateProjectID(p.ID) != nil || p.Name == "" || p.DefaultBranch == "" {
			t.Fatalf("accepted an invalid project: %+v", p)
		}
		roundTrip(t, &r, (*service.ProjectRequest).Validate)
	})
}

func FuzzDecodeProjectPatch(f *testing.F) {
	for _, s := range []string{`{}`, `{"name":"x"}`, `{"default_branch":"dev","protected_branches":[]}`,
		`{"components":[{"name":"a","command":"b","port":1}]}`, `{"id":"x"}`, `{"name":null}`, `{"components":null}`} {
		f.Add([]byte(s))
	}
	base := rdev.Project{ID: "web", Name: "Web", DefaultBranch: "main"}
	base.Normalize()
	f.Fuzz(func(t *testing.T, body []byte) {
		var patch rdev.ProjectPatch
		if err := decodeJSON(bytes.NewReader(body), &patch); err != nil {
			checkDecodeError(t, err)
			return
		}
		p := patch.Apply(base)
		p.Normalize()
		if err := p.Validate(); err != nil {
			if !rdev.IsInvalid(err) {
				t.Fatalf("validation error of unexpected kind: %v", err)
			}
			return
		}
		if p.ID != "web" {
			t.Fatal("a patch changed the id")
		}
		roundTrip(t, &patch, func(pp *rdev.ProjectPatch) error { q := pp.Apply(base); q.Normalize(); return q.Validate() })
	})
}

func FuzzDecodeKeyRequest(f *testing.F) {
	for _, s := range []string{`{"name":"ci","scopes":["projects:read"]}`,
		`{"name":"ci","scopes":["admin"],"projects":["web","api"],"expires_in":"30d"}`,
		`{"name":"ci","scopes":["projects:read"],"expires_in":"90m"}`, `{"name":"ci","scopes":["root"]}`,
		`{"name":"ci","scopes":[],"expires_in":"0d"}`, `{"name":"ci","scopes":["admin"],"expires_in":"366d"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var r service.KeyRequest
		if err := decodeJSON(bytes.NewReader(body), &r); err != nil {
			checkDecodeError(t, err)
			return
		}
		if err := r.Validate(); err != nil {
			if !rdev.IsInvalid(err) {
				t.Fatalf("validation error of unexpected kind: %v", err)
			}
			return
		}
		for _, s := range r.Scopes {
			k := rdev.APIKey{Scopes: []rdev.Scope{s}}
			if !k.HasScope(s) {
				t.Fatalf("accepted scope %q is not usable", s)
			}
		}
		roundTrip(t, &r, (*service.KeyRequest).Validate)
	})
}

func FuzzDecodeCheckoutRequest(f *testing.F) {
	for _, s := range []string{`{"branch":"feature/x"}`, `{"new_branch":"agent/1","from_ref":"main","feature_slug":"t-1","expires_in":"7d"}`,
		`{"new_branch":"a..b"}`, `{"new_branch":"-x"}`, `{"branch":"x.lock"}`, `{"branch":"a@{1}"}`, `{"new_branch":"a\u0001"}`,
		`{"new_branch":"n","from_ref":"--upload-pack=x"}`, `{"new_branch":"n","from_ref":"refs/tags/v1"}`, `{"new_branch":"n","from_ref":"0123abcd"}`,
		`{"branch":"b","expires_in":"31d"}`, `{}`, `{"branch":"a","new_branch":"b"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var r service.CheckoutRequest
		if err := decodeJSON(bytes.NewReader(body), &r); err != nil {
			checkDecodeError(t, err)
			return
		}
		if err := r.Validate(); err != nil {
			if !rdev.IsInvalid(err) {
				t.Fatalf("validation error of unexpected kind: %v", err)
			}
			return
		}
		branch := r.Branch + r.NewBranch
		for _, name := range []string{branch, strings.TrimPrefix(strings.TrimPrefix(r.FromRef, "refs/heads/"), "refs/tags/")} {
			if name == "" {
				continue
			}
			if strings.HasPrefix(name, "-") || strings.Contains(name, "..") || strings.Contains(name, "@{") ||
				strings.HasSuffix(name, ".lock") || len(name) > rdev.MaxBranchLen ||
				strings.ContainsFunc(name, func(c rune) bool { return c < 0x20 || c == 0x7f }) {
				t.Fatalf("accepted %q", name)
			}
		}
		roundTrip(t, &r, (*service.CheckoutRequest).Validate)
	})
}

func FuzzDecodeSessionRequest(f *testing.F) {
	for _, s := range []string{`{"branch":"feature/x"}`, `{"new_branch":"agent/1","expires_in":"7d","preview_port":3000}`,
		`{"new_branch":"a..b"}`, `{"branch":"a","new_branch":"b"}`, `{"new_branch":"n","expires_in":"31d"}`,
		`{"new_branch":"n","preview_port":0}`, `{"new_branch":"n","preview_port":70000}`, `{}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var r service.SessionRequest
		if err := decodeJSON(bytes.NewReader(body), &r); err != nil {
			checkDecodeError(t, err)
			return
		}
		if err := r.Validate(); err != nil {
			if !rdev.IsInvalid(err) {
				t.Fatalf("validation error of unexpected kind: %v", err)
			}
			return
		}
		if (r.Branch == "") == (r.NewBranch == "") || (r.PreviewPort != nil && (*r.PreviewPort < 1 || *r.PreviewPort > 65535)) {
			t.Fatalf("accepted %+v", r)
		}
		if rdev.ValidateBranchName(r.Branch+r.NewBranch) != nil {
			t.Fatalf("accepted an invalid branch in %+v", r)
		}
		roundTrip(t, &r, (*service.SessionRequest).Validate)
	})
}

func FuzzDecodeCommandRequest(f *testing.F) {
	for _, s := range []string{`{"command":"echo hi"}`, `{"argv":["ls","-l"],"env":{"A":"1"},"cwd":"sub","timeout":"30s","stdin":true}`,
		`{"command":"x","argv":["y"]}`, `{"argv":[""]}`, `{"command":"a\u0000b"}`, `{"command":"x","timeout":"-1s"}`,
		`{"command":"x","env":{"1A":"x"}}`, `{}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var r service.CommandRequest
		if err := decodeJSON(bytes.NewReader(body), &r); err != nil {
			checkDecodeError(t, err)
			return
		}
		d, err := service.ValidateCommand(&r)
		if err != nil {
			if !rdev.IsInvalid(err) {
				t.Fatalf("validation error of unexpected kind: %v", err)
			}
			return
		}
		if (r.Command == "") == (len(r.Argv) == 0) || d < 0 || strings.ContainsRune(r.Command, 0) {
			t.Fatalf("accepted %+v", r)
		}
		roundTrip(t, &r, func(c *service.CommandRequest) error { _, err := service.ValidateCommand(c); return err })
	})
}
