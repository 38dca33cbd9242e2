package rdev

import (
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// projectIDByHand is an independent statement of the id rule.
func projectIDByHand(id string) bool {
	if len(id) < 1 || len(id) > 40 || id[0] == '-' || id[len(id)-1] == '-' {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

func TestProjectID(t *testing.T) {
	for id, ok := range map[string]bool{
		"web": true, "a": true, "0": true, "a-b": true, "a--b": true, strings.Repeat("a", 40): true,
		"": false, "-a": false, "a-": false, "A": false, "a_b": false, "a.b": false, strings.Repeat("a", 41): false,
		"a b": false, "é": false, "../x": false,
	} {
		if got := ValidateProjectID(id) == nil; got != ok {
			t.Errorf("ValidateProjectID(%q) ok=%v, want %v", id, got, ok)
		}
	}
}

func FuzzProjectID(f *testing.F) {
	for _, s := range []string{"web", "-a", "a-", "A", strings.Repeat("b", 41), "a\x00", "x/../y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		if got, want := ValidateProjectID(id) == nil, projectIDByHand(id); got != want {
			t.Fatalf("ValidateProjectID(%q) ok=%v, the rule says %v", id, got, want)
		}
	})
}

var branchCases = map[string]bool{
	"main": true, "feature/x": true, "release/1.2": true, "a-b_c": true, "user/alice/fix-1": true, "v1.0": true,
	"": false, "..": false, "a..b": false, "a@{b": false, "@": false, "-x": false, "x.lock": false, "a/b.lock": false,
	"a/": false, "/a": false, "a//b": false, "a.": false, ".a": false, "a/.b": false, "a b": false, "a~b": false,
	"a^b": false, "a:b": false, "a?b": false, "a*b": false, "a[b": false, "a\\b": false, "a\x01b": false, "a\x7fb": false,
	strings.Repeat("x", 201): false, strings.Repeat("x", 200): true,
}

func TestBranchName(t *testing.T) {
	for name, ok := range branchCases {
		if got := ValidateBranchName(name) == nil; got != ok {
			t.Errorf("ValidateBranchName(%q) ok=%v, want %v", name, got, ok)
		}
	}
}

// TestBranchNameAgreesWithGit checks every accepted case against git itself:
// rdev may be stricter than git (length, leading '-'), never looser.
func TestBranchNameAgreesWithGit(t *testing.T) {
	git, err := exec.LookPath("git")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("git is not installed (CI=true forbids skipping)")
		}
		t.Skip("git not installed")
	}
	for name := range branchCases {
		if ValidateBranchName(name) != nil {
			continue
		}
		if out, err := exec.Command(git, "check-ref-format", "--branch", name).CombinedOutput(); err != nil {
			t.Errorf("rdev accepts %q, git refuses it: %s", name, out)
		}
	}
}

func FuzzBranchName(f *testing.F) {
	for name := range branchCases {
		f.Add(name)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if ValidateBranchName(name) != nil {
			return
		}
		// Independent statements of what an accepted name never holds.
		for _, bad := range []string{"..", "@{", "//", " ", "~", "^", ":", "?", "*", "[", "\\"} {
			if strings.Contains(name, bad) {
				t.Fatalf("accepted %q containing %q", name, bad)
			}
		}
		for _, c := range []byte(name) {
			if c < 0x20 || c == 0x7f {
				t.Fatalf("accepted %q with a control character", name)
			}
		}
		if name == "" || len(name) > MaxBranchLen || name[0] == '-' || name[0] == '/' || strings.HasSuffix(name, "/") ||
			strings.HasSuffix(name, ".") || name == "@" {
			t.Fatalf("accepted %q", name)
		}
		for _, part := range strings.Split(name, "/") {
			if strings.HasPrefix(part, ".") || strings.HasSuffix(part, ".lock") {
				t.Fatalf("accepted %q with component %q", name, part)
			}
		}
	})
}

func TestParseExpiresIn(t *testing.T) {
	cases := []struct {
		in   string
		want time.Duration
		msg  string
	}{
		{"24h", 24 * time.Hour, ""}, {"90m", 90 * time.Minute, ""}, {"7d", 7 * 24 * time.Hour, ""}, {"30d", 30 * 24 * time.Hour, ""},
		{"1d", 24 * time.Hour, ""}, {"720h", 720 * time.Hour, ""},
		{"", 0, "valid duration"}, {"0d", 0, "valid duration"}, {"-1h", 0, "valid duration"}, {"0s", 0, "valid duration"},
		{"d", 0, "valid duration"}, {"1.5d", 0, "valid duration"}, {"+3d", 0, "valid duration"}, {"abc", 0, "valid duration"},
		{"31d", 0, "cannot exceed 30 days"}, {"721h", 0, "cannot exceed 30 days"}, {"99999999999999999999d", 0, "valid duration"},
	}
	for _, c := range cases {
		d, err := ParseExpiresIn("expires_in", c.in, 30)
		switch {
		case c.msg == "" && (err != nil || d != c.want):
			t.Errorf("%q: %v, %v; want %v", c.in, d, err, c.want)
		case c.msg != "" && (err == nil || !strings.Contains(err.Error(), c.msg)):
			t.Errorf("%q: err %v, want one containing %q", c.in, err, c.msg)
		}
	}
}

func TestCursorRoundTrip(t *testing.T) {
	at := Timestamp(time.Now())
	c := EncodeCursor(at, "web")
	got, id, err := DecodeCursor(c)
	if err != nil || !got.Equal(at) || id != "web" {
		t.Fatalf("%v %q %v", got, id, err)
	}
	for _, bad := range []string{"!!", "eA", EncodeCursor(at, "")} {
		if _, _, err := DecodeCursor(bad); !IsInvalid(err) {
			t.Errorf("DecodeCursor(%q) = %v, want an invalid-input error", bad, err)
		}
	}
}

func TestKeyIDForToken(t *testing.T) {
	id, tok := NewKeyToken()
	if KeyIDForToken(tok) != id || !TokenMatches(tok, HashToken(tok)) {
		t.Fatal("generated token does not map to its id")
	}
	seeded := KeyIDForToken("some-long-automation-token-0123456789")
	if seeded == id || !strings.HasPrefix(seeded, "s") || KeyIDForToken("rdev_short_x") == "short" {
		t.Fatalf("derived ids: %q", seeded)
	}
}
