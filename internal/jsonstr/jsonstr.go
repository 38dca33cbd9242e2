// Package jsonstr escapes command output into a JSON string and reads it
// back, the hot path of every SSE stream: output is mostly plain text, so
// both directions skip eight plain bytes at a time and copy runs whole.
// Anything outside the few escapes used here is left to encoding/json.
package jsonstr

import "encoding/binary"

const (
	ones  = 0x0101010101010101
	highs = 0x8080808080808080
)

// hasLess reports whether a byte of x is below n (n ≤ 128).
func hasLess(x, n uint64) bool { return (x-ones*n)&^x&highs != 0 }

// hasByte reports whether a byte of x equals c.
func hasByte(x uint64, c byte) bool { return hasLess(x^(ones*uint64(c)), 1) }

// plainRun returns how many leading bytes of s need no escape: none of
// them below 0x20, '"', '\\' or, when del, 0x7f.
func plainRun(s []byte, del bool) int {
	i := 0
	for ; i+8 <= len(s); i += 8 {
		x := binary.LittleEndian.Uint64(s[i:])
		if hasLess(x, 0x20) || hasByte(x, '"') || hasByte(x, '\\') || (del && hasByte(x, 0x7f)) {
			break
		}
	}
	for ; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c == '"' || c == '\\' || (del && c == 0x7f) {
			break
		}
	}
	return i
}

// Append appends s to b as a quoted JSON string. Control bytes and DEL are
// written as \n, \r, \t or \u00XX; other bytes are copied, so s should be
// UTF-8 for the result to be valid JSON.
func Append(b, s []byte) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for {
		i := plainRun(s, true)
		b = append(b, s[:i]...)
		if i == len(s) {
			return append(b, '"')
		}
		switch c := s[i]; c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		}
		s = s[i+1:]
	}
}

// Unescape decodes the inside of a JSON string that uses only the escapes
// \n \r \t \" \\ \/ and \u0000 to \u007f; ok is false for anything else
// (and for an unescaped '"' or control byte, which JSON forbids).
func Unescape(s []byte) (out []byte, ok bool) {
	out = make([]byte, 0, len(s))
	for {
		i := plainRun(s, false)
		out = append(out, s[:i]...)
		if i == len(s) {
			return out, true
		}
		if s[i] != '\\' || i+1 >= len(s) {
			return nil, false
		}
		switch c := s[i+1]; c {
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case '"', '\\', '/':
			out = append(out, c)
		case 'u':
			if i+5 >= len(s) || s[i+2] != '0' || s[i+3] != '0' {
				return nil, false
			}
			hi, lo := unhex(s[i+4]), unhex(s[i+5])
			if hi < 0 || lo < 0 || hi >= 8 { // \u0080 and up are code points, not bytes
				return nil, false
			}
			out = append(out, byte(hi<<4|lo))
			s = s[i+6:]
			continue
		default:
			return nil, false
		}
		s = s[i+2:]
	}
}

func unhex(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}
