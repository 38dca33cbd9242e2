package client

import (
	"encoding/json"
	"testing"
	"unicode/utf8"
)

// FuzzUnescape: whatever the fast path accepts, encoding/json reads the
// same way.
func FuzzUnescape(f *testing.F) {
	for _, s := range []string{"plain", `line\n`, `a\"b\\c\t\r`, `\u0000\u001f\u007f`, `\u00e9`, `\b`, `"`, `\`, `\u12`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, ok := unescape(s)
		if !ok || !utf8.Valid(got) { // decodeEvent falls back to encoding/json then
			return
		}
		var want string
		if err := json.Unmarshal([]byte(`"`+s+`"`), &want); err != nil {
			if utf8.ValidString(s) {
				t.Fatalf("fast path took %q, which JSON refuses: %v", s, err)
			}
			return
		}
		if string(got) != want {
			t.Fatalf("%q: fast %q, json %q", s, got, want)
		}
	})
}
