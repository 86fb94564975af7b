package relay

import (
	"crypto/rand"
	"encoding/base64"
	"unsafe"
)

// IDBytes is the size of a client ID: 16 bytes. A standalone relay draws all
// 128 bits from crypto/rand. A relay in a cluster (Config.NodeID non-zero)
// writes its node ID, big-endian, in the first two bytes and draws the other
// 112 bits: any node finds the owner of an ID in the ID itself, with no
// lookup table, and 112 random bits still make guessing a live ID hopeless
// (a million clients: one chance in 5*10^27 per guess).
const IDBytes = 16

// NodeIDBytes is how many leading bytes of a clustered ID name its node.
const NodeIDBytes = 2

// IDLen is the length of an ID as written to clients: 16 bytes in unpadded
// URL-safe base64, so 22 characters of [A-Za-z0-9_-].
const IDLen = (IDBytes*8 + 5) / 6

// idSource hands out random client IDs. It reads crypto/rand in blocks so an
// accept costs one getrandom call per idBlock/IDBytes connections, not one
// each. Not safe for concurrent use: each event loop owns one.
type idSource struct {
	buf   [idBlock]byte
	avail int    // unused random bytes at the end of buf
	node  uint16 // Config.NodeID: 0 leaves every byte random
}

const idBlock = 64 * IDBytes

// next returns a fresh ID's random bytes.
func (s *idSource) next() (raw [IDBytes]byte) {
	if s.avail < IDBytes {
		// crypto/rand.Read does not fail on Linux: since Go 1.24 it
		// crashes the process rather than return weak randomness.
		_, _ = rand.Read(s.buf[:])
		s.avail = len(s.buf)
	}
	used := s.buf[len(s.buf)-s.avail:][:IDBytes]
	copy(raw[:], used)
	// Wipe what was used so a core dump does not list past IDs.
	clear(used)
	s.avail -= IDBytes
	if s.node != 0 {
		raw[0], raw[1] = byte(s.node>>8), byte(s.node)
	}
	return raw
}

// encodeID writes the text form of an ID's random bytes.
func encodeID(raw *[IDBytes]byte) (text [IDLen]byte) {
	base64.RawURLEncoding.Encode(text[:], raw[:])
	return text
}

// idString returns the text form of an ID's random bytes (allocates).
func idString(raw *[IDBytes]byte) string {
	text := encodeID(raw)
	return string(text[:])
}

// FormatID returns the text form of an ID's 16 bytes (allocates).
func FormatID(raw *[IDBytes]byte) string { return idString(raw) }

// ParseID returns the 16 bytes of an ID the relay could have issued: exactly
// IDLen characters of the URL-safe alphabet. Longer IDs, which ValidID
// accepts for the future, are never issued today; ok is false for them.
func ParseID(id string) (raw [IDBytes]byte, ok bool) {
	if len(id) != IDLen {
		return raw, false
	}
	n, err := base64.RawURLEncoding.Decode(raw[:], unsafeBytes(id))
	return raw, err == nil && n == IDBytes
}

// NodeOf returns the node ID carried by an ID a clustered relay issued
// (Config.NodeID), reading only its first three characters: ok is false if
// the ID cannot be one the relay issued. For IDs of a standalone relay the
// value means nothing.
func NodeOf(id string) (node uint16, ok bool) {
	if len(id) != IDLen {
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

// ValidID reports whether id is shaped like a client ID: 22 to 64 characters
// of the URL-safe alphabet. It does not say whether the ID is connected.
func ValidID(id string) bool {
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

// newInstanceID returns 8 random bytes in URL-safe base64.
func newInstanceID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// unsafeBytes views s as bytes for a read-only use (decoding).
func unsafeBytes(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }
