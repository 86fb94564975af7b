package relay

import (
	"crypto/rand"
	"encoding/base64"

	"github.com/pushrelay/pushrelay/pkg/clientid"
)

// The ID format lives in pkg/clientid; these names keep relay's API as it
// was.
const (
	// IDBytes is the size of a client ID: 16 bytes (clientid.Bytes).
	IDBytes = clientid.Bytes
	// NodeIDBytes is how many leading bytes of a clustered ID name its node.
	NodeIDBytes = clientid.NodeBytes
	// IDLen is the length of an ID as written to clients: 22 characters.
	IDLen = clientid.Len
)

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
	clientid.SetNode(&raw, s.node)
	return raw
}

// encodeID writes the text form of an ID's random bytes.
func encodeID(raw *[IDBytes]byte) (text [IDLen]byte) { return clientid.Encode(raw) }

// idString returns the text form of an ID's random bytes (allocates).
func idString(raw *[IDBytes]byte) string { return clientid.Format(raw) }

// FormatID returns the text form of an ID's 16 bytes (allocates).
func FormatID(raw *[IDBytes]byte) string { return clientid.Format(raw) }

// ParseID returns the 16 bytes of an ID the relay could have issued; see
// clientid.Parse.
func ParseID(id string) (raw [IDBytes]byte, ok bool) { return clientid.Parse(id) }

// NodeOf returns the node ID carried by an ID a clustered relay issued
// (Config.NodeID); see clientid.NodeOf.
func NodeOf(id string) (node uint16, ok bool) { return clientid.NodeOf(id) }

// ValidID reports whether id is shaped like a client ID: 22 to 64 characters
// of the URL-safe alphabet. It does not say whether the ID is connected.
func ValidID(id string) bool { return clientid.Valid(id) }

// newInstanceID returns 8 random bytes in URL-safe base64.
func newInstanceID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}
