package client

import (
	"bytes"
	"testing"
)

// FuzzDecodeData: the fast path and encoding/json read an event body the
// same way.
func FuzzDecodeData(f *testing.F) {
	for _, s := range []string{`{"data":"plain"}`, `{"data":"a\nb\"c\\d\u0001"}`, `{"data":"caf\u00e9"}`, `{"data":"x","pid":3}`,
		`{"data_b64":"/w=="}`, `{"data":"` + "\xff" + `"}`, `{"data":"unterminated}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		fast, ok := fastData([]byte(body))
		var slow Event
		err := decodeEvent(&slow, body)
		if !ok {
			return
		}
		if err != nil {
			t.Fatalf("%q: fast path took it, encoding/json refuses: %v", body, err)
		}
		if !bytes.Equal(fast, slow.Data) {
			t.Fatalf("%q: fast %q, encoding/json %q", body, fast, slow.Data)
		}
	})
}

func TestFastDataTakesOutputEvents(t *testing.T) {
	for _, body := range []string{`{"data":""}`, `{"data":"out\n"}`, `{"data":"tab\there \u001b[0m"}`} {
		if _, ok := fastData([]byte(body)); !ok {
			t.Errorf("%s: fast path refused", body)
		}
	}
	for _, body := range []string{`{"data":"x","pid":1}`, `{"exit_code":3}`, `{"data":"caf\u00e9"}`} {
		if _, ok := fastData([]byte(body)); ok {
			t.Errorf("%s: fast path took it", body)
		}
	}
}
