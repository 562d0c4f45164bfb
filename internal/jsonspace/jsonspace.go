// Package jsonspace is JSON's insignificant whitespace (RFC 8259 §2: space,
// tab, line feed, carriage return), for the hand-written scanners that walk
// request bodies without decoding them (the root's bodyscan.go,
// translate/anthropic's Scan).
package jsonspace

// Is reports whether c is JSON whitespace.
func Is(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// Skip returns the index of the first byte at or after i in b that is not
// JSON whitespace, or len(b).
func Skip(b []byte, i int) int {
	for i < len(b) && Is(b[i]) {
		i++
	}
	return i
}
