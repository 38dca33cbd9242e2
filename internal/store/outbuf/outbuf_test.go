package outbuf

import (
	"bytes"
	"crypto/rand"
	"testing"
)

func TestPackRoundTrip(t *testing.T) {
	random := make([]byte, 64<<10)
	rand.Read(random)
	text := bytes.Repeat([]byte("ok  \trdev.dev/rdev/internal/store\t0.412s\n"), 2000)
	for name, tc := range map[string]struct {
		data []byte
		enc  int
	}{
		"empty":  {nil, Raw},
		"short":  {[]byte("hello\n"), Raw},
		"random": {random, Raw},
		"text":   {text, S2},
	} {
		stored, enc := Pack(tc.data)
		if enc != tc.enc {
			t.Errorf("%s: encoding %d, want %d", name, enc, tc.enc)
		}
		if enc == S2 && len(stored) >= len(tc.data)/4 {
			t.Errorf("%s: %d bytes stored for %d", name, len(stored), len(tc.data))
		}
		got, err := Unpack(stored, enc)
		if err != nil || !bytes.Equal(got, tc.data) {
			t.Errorf("%s: round trip changed the data (err %v)", name, err)
		}
	}
}

func TestUnpackRefusesDamage(t *testing.T) {
	if _, err := Unpack([]byte("not an s2 block"), S2); err == nil {
		t.Error("a damaged block decoded")
	}
	if _, err := Unpack([]byte("x"), 7); err == nil {
		t.Error("an unknown encoding decoded")
	}
}
