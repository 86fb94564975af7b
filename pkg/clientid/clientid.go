// Package clientid is the format of pushrelay's client IDs: the 16 bytes
// the relay draws for each connection, their 22-character text form, and
// the node bits that let any relay of a cluster find an ID's owner in the
// ID itself. The relay issues IDs (package relay's ID source); clients, the
// cluster, the load generator and the bench check and parse them here. It
// depends on the standard library only.
package clientid

import (
	"encoding/base64"
	"unsafe"
)

// Bytes is the size of a client ID: 16 bytes. A standalone relay draws all
// 128 bits from crypto/rand. A relay in a cluster (its Config.NodeID
// non-zero) writes its node ID, big-endian, in the first two bytes and draws
// the other 112 bits: any node finds the owner of an ID in the ID itself,
// with no lookup table, and 112 random bits still make guessing a live ID
// hopeless (a million clients: one chance in 5*10^27 per guess).
const Bytes = 16

// NodeBytes is how many leading bytes of a clustered ID name its node.
const NodeBytes = 2

// Len is the length of an ID as written to clients: 16 bytes in unpadded
// URL-safe base64, so 22 characters of [A-Za-z0-9_-].
const Len = (Bytes*8 + 5) / 6

// SetNode writes node into the node bytes of raw. Node 0 (a standalone
// relay) leaves raw as it is: every byte stays random.
func SetNode(raw *[Bytes]byte, node uint16) {
	if node != 0 {
		raw[0], raw[1] = byte(node>>8), byte(node)
	}
}

// Encode writes the text form of an ID's bytes.
func Encode(raw *[Bytes]byte) (text [Len]byte) {
	base64.RawURLEncoding.Encode(text[:], raw[:])
	return text
}

// Format returns the text form of an ID's 16 bytes (allocates).
func Format(raw *[Bytes]byte) string {
	text := Encode(raw)
	return string(text[:])
}

// Parse returns the 16 bytes of an ID the relay could have issued: exactly
// Len characters of the URL-safe alphabet. Longer IDs, which Valid accepts
// for the future, are never issued today; ok is false for them.
func Parse(id string) (raw [Bytes]byte, ok bool) {
	if len(id) != Len {
		return raw, false
	}
	n, err := strict.Decode(raw[:], unsafeBytes(id))
	return raw, err == nil && n == Bytes
}

// strict refuses an ID whose last character sets bits past the 16 bytes:
// each ID has one spelling, so a push names the same client on every node.
var strict = base64.RawURLEncoding.Strict()

// NodeOf returns the node ID carried by an ID a clustered relay issued
// (its Config.NodeID), reading only its first three characters: ok is
// false if the ID cannot be one the relay issued. For IDs of a standalone
// relay the value means nothing.
func NodeOf(id string) (node uint16, ok bool) {
	if len(id) != Len {
		return 0, false
	}
	// 3 characters carry 18 bits: the node's 16, then 2 of the random part.
	var v uint32
	for i := 0; i < 3; i++ {
		d := b64Value[id[i]]
		if d == 0xff {
			return 0, false
		}
		v = v<<6 | uint32(d)
	}
	return uint16(v >> 2), true
}

// b64Value maps a byte to its value in the URL-safe base64 alphabet, or
// 0xff.
var b64Value = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xff
	}
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	for i := 0; i < len(alphabet); i++ {
		t[alphabet[i]] = byte(i)
	}
	return t
}()

// Valid reports whether id is shaped like a client ID: 22 to 64 characters
// of the URL-safe alphabet. It does not say whether the ID is connected.
func Valid(id string) bool {
	if len(id) < 22 || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// unsafeBytes views s as bytes for a read-only use (decoding).
func unsafeBytes(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }
