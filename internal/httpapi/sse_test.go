package httpapi

import (
	"encoding/json"
	"testing"
	"unicode/utf8"
)

// FuzzAppendJSONString: the fast escaper's output decodes to its input,
// as encoding/json reads it.
func FuzzAppendJSONString(f *testing.F) {
	for _, s := range []string{"", "plain", "line\n", "tab\tquote\"back\\slash", "\x00\x01\x1f\x7f", "héllo ✓ 🚀", "</script>&"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !utf8.ValidString(s) {
			return
		}
		enc := appendJSONString(nil, []byte(s))
		var got string
		if err := json.Unmarshal(enc, &got); err != nil {
			t.Fatalf("%q encoded as %s: %v", s, enc, err)
		}
		if got != s {
			t.Fatalf("%q encoded as %s decodes to %q", s, enc, got)
		}
	})
}
