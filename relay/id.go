package relay

import (
	"crypto/rand"
	"encoding/base64"
)

// IDBytes is the entropy of a client ID: 128 bits from crypto/rand.
const IDBytes = 16

// IDLen is the length of an ID as written to clients: 16 bytes in unpadded
// URL-safe base64, so 22 characters of [A-Za-z0-9_-].
const IDLen = (IDBytes*8 + 5) / 6

// idSource hands out random client IDs. It reads crypto/rand in blocks so an
// accept costs one getrandom call per idBlock/IDBytes connections, not one
// each. Not safe for concurrent use: each event loop owns one.
type idSource struct {
	buf   [idBlock]byte
	avail int // unused random bytes at the end of buf
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
