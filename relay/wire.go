package relay

import (
	"io"

	"github.com/pushrelay/pushrelay/pkg/framing"
)

// The client framing lives in pkg/framing; these names keep relay's API
// (Config.Framing and the callers that already say relay.Framing) as it was.

// Framing says how a message is delimited on a client connection.
type Framing = framing.Framing

const (
	// FramingNUL ends each payload with one 0x00 byte (the default).
	FramingNUL = framing.NUL
	// FramingLine ends each payload with '\n'.
	FramingLine = framing.Line
	// FramingLen32 prefixes each payload with its 4-byte big-endian length.
	FramingLen32 = framing.Len32
)

// Size limits of the framing layer.
const (
	// DefaultMaxMessage is the largest payload accepted by default.
	DefaultMaxMessage = 64 << 10
	// MaxMessageLimit is the largest Config.MaxMessage the relay accepts.
	MaxMessageLimit = framing.MaxPayload
)

// ParseFraming reads a framing name (nul, line or len32) into a Framing.
func ParseFraming(s string) (Framing, error) { return framing.Parse(s) }

// FrameReader reads frames written by the relay; see framing.Reader.
type FrameReader = framing.Reader

// NewFrameReader reads frames in framing from r, refusing payloads above
// max bytes (0 means MaxMessageLimit).
func NewFrameReader(r io.Reader, f Framing, max int) *FrameReader {
	return framing.NewReader(r, f, max)
}

// ErrFrameTooLarge is returned by FrameReader for a frame above its limit.
var ErrFrameTooLarge = framing.ErrTooLarge

// appendFrame appends payload, framed, to dst: framing.Append, for the ID
// frame (a string) and the push path.
func appendFrame[T string | []byte](f Framing, dst []byte, payload T) []byte {
	return framing.Append(f, dst, payload)
}
