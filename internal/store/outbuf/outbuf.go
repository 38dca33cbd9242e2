// Package outbuf is how both stores keep command output: chunks that
// compress well are stored as S2 blocks, the rest as they are. Output of
// builds, tests and servers is mostly text that S2 shrinks several times
// over at a cost well under a copy to disk, so the database writes less.
package outbuf

import (
	"fmt"

	"github.com/klauspost/compress/s2"
)

// Encodings of a stored chunk.
const (
	Raw = 0 // the bytes as they are
	S2  = 1 // an S2 block
)

// minSize is the smallest chunk worth compressing.
const minSize = 256

// Pack returns the bytes to store for data and their encoding. A chunk that
// would not shrink by an eighth is stored raw.
func Pack(data []byte) ([]byte, int) {
	if len(data) < minSize {
		return data, Raw
	}
	enc := s2.Encode(make([]byte, s2.MaxEncodedLen(len(data))), data)
	if len(enc) > len(data)-len(data)/8 {
		return data, Raw
	}
	return enc, S2
}

// Unpack reverses Pack.
func Unpack(stored []byte, enc int) ([]byte, error) {
	switch enc {
	case Raw:
		return stored, nil
	case S2:
		out, err := s2.Decode(nil, stored)
		if err != nil {
			return nil, fmt.Errorf("stored output: %w", err)
		}
		return out, nil
	}
	return nil, fmt.Errorf("stored output: unknown encoding %d", enc)
}
