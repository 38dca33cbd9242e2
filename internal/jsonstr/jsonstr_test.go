package jsonstr

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

var seeds = []string{"", "plain", "line\n", "tab\tquote\"back\\slash", "\x00\x01\x1f\x7f", "héllo ✓ 🚀", "</script>&",
	"exactly8", "seven77\n", "0123456789abcdef\"", strings.Repeat("long plain run ", 9) + "\x1b[0m"}

// FuzzAppend: the escaper's output decodes to its input, as encoding/json
// reads it, and Unescape takes it back.
func FuzzAppend(f *testing.F) {
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !utf8.ValidString(s) {
			return
		}
		enc := Append(nil, []byte(s))
		var got string
		if err := json.Unmarshal(enc, &got); err != nil {
			t.Fatalf("%q encoded as %s: %v", s, enc, err)
		}
		if got != s {
			t.Fatalf("%q encoded as %s decodes to %q", s, enc, got)
		}
		back, ok := Unescape(enc[1 : len(enc)-1])
		if !ok || string(back) != s {
			t.Fatalf("%q encoded as %s: Unescape gives %q, %v", s, enc, back, ok)
		}
	})
}

// FuzzUnescape: whatever Unescape accepts, encoding/json reads the same way.
func FuzzUnescape(f *testing.F) {
	for _, s := range append(seeds, `line\n`, `a\"b\\c\t\r`, `\u0000\u001f\u007f`, `\u00e9`, `\b`, `"`, `\`, `\u12`) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, ok := Unescape([]byte(s))
		if !ok || !utf8.Valid(got) { // callers fall back to encoding/json then
			return
		}
		var want string
		if err := json.Unmarshal([]byte(`"`+s+`"`), &want); err != nil {
			if utf8.ValidString(s) {
				t.Fatalf("Unescape took %q, which JSON refuses: %v", s, err)
			}
			return
		}
		if string(got) != want {
			t.Fatalf("%q: Unescape %q, json %q", s, got, want)
		}
	})
}

func TestUnescapeTable(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"", "", true},
		{"plain text, longer than eight", "plain text, longer than eight", true},
		{`line\nnext\r\ttab`, "line\nnext\r\ttab", true},
		{`q\"b\\s\/`, "q\"b\\s/", true},
		{`\u0000\u001f\u007f end`, "\x00\x1f\x7f end", true},
		{`caf\u00e9`, "", false},      // a code point, not a byte
		{"raw \" quote", "", false},   // JSON wants it escaped
		{"raw\x01control", "", false}, // likewise
		{`dangling \`, "", false},
		{`short \u00`, "", false},
		{`\b`, "", false},
	} {
		got, ok := Unescape([]byte(tc.in))
		if ok != tc.ok || (ok && string(got) != tc.want) {
			t.Errorf("%q: got %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestPlainRunFindsEveryByteThatNeedsAnEscape(t *testing.T) {
	for c := 0; c < 256; c++ {
		for pos := 0; pos < 19; pos++ {
			s := []byte(strings.Repeat("a", 19))
			s[pos] = byte(c)
			special := c < 0x20 || c == '"' || c == '\\'
			want := 19
			if special {
				want = pos
			}
			if got := plainRun(s, false); got != want {
				t.Fatalf("byte %#x at %d: run %d, want %d", c, pos, got, want)
			}
			if c == 0x7f {
				want = pos
			}
			if got := plainRun(s, true); got != want {
				t.Fatalf("byte %#x at %d (with DEL): run %d, want %d", c, pos, got, want)
			}
		}
	}
}

func BenchmarkAppend(b *testing.B) {
	s := []byte(strings.Repeat("the quick brown fox jumps over the lazy dog 0123456789\n", 20000))
	b.SetBytes(int64(len(s)))
	buf := make([]byte, 0, 2*len(s))
	for b.Loop() {
		buf = Append(buf[:0], s)
	}
}

func BenchmarkUnescape(b *testing.B) {
	s := []byte(strings.Repeat("the quick brown fox jumps over the lazy dog 0123456789\n", 20000))
	enc := Append(nil, s)
	enc = enc[1 : len(enc)-1]
	b.SetBytes(int64(len(s)))
	for b.Loop() {
		Unescape(enc)
	}
}
