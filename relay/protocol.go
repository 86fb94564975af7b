// Package relay is pushrelay's core: gnet event loops that accept client
// connections, write each one its ID, never parse what clients send, and write
// the messages the web app pushes to them.
//
// # A client session, from accept to close
//
//  1. The client connects to the client listener (--listen). The event loop
//     that accepted the socket runs OnOpen: if the relay is full (--max-conns)
//     or draining, the socket is closed at once and counted; otherwise a fresh
//     ID (128 bits from crypto/rand, 22 characters of [A-Za-z0-9_-]) is drawn,
//     the session enters the registry, and the first frame, carrying exactly
//     the ID, is written before anything else can be.
//  2. From then on the relay only writes. Bytes the client sends are discarded
//     on arrival and counted; past --max-inbound in total the client is closed.
//  3. A push (Send, SendMany, Broadcast) encodes its payload into a frame once.
//     The frame goes, by reference, into the mailbox of each event loop that
//     owns a recipient; the loop writes it, coalescing what waits for one
//     connection into one writev. A connection whose unsent bytes would pass
//     --max-outbound is closed (--slow=close) or misses that message
//     (--slow=drop).
//  4. The session ends on EOF or RST from the peer, a keepalive or
//     TCP_USER_TIMEOUT expiry, a limit, a kick, or shutdown. OnClose removes
//     it from the registry and counts the reason. IDs are never reused.
//
// # Frames on the wire
//
// Every frame, the ID frame included, uses the listener's framing:
//
//	nul    payload 0x00            (Flash XMLSocket; payload must not contain 0x00)
//	line   payload 0x0a            (payload must not contain 0x0a or 0x00)
//	len32  uint32 big-endian length, then payload (any bytes)
//
// A heartbeat is an empty frame: a lone 0x00 (nul), a lone 0x0a (line) or four
// zero bytes (len32). docs/protocol.md has the same with hex dumps.
package relay

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strings"
)

// Framing says how a message is delimited on a client connection.
type Framing uint8

const (
	// FramingNUL ends each payload with one 0x00 byte, as Flash's XMLSocket
	// expects. It is the default (the zero value).
	FramingNUL Framing = iota
	// FramingLine ends each payload with '\n'. Payloads containing '\n' or
	// 0x00 are refused.
	FramingLine
	// FramingLen32 prefixes each payload with its length as a 4-byte
	// big-endian integer. Payloads may hold any bytes.
	FramingLen32
)

// Size limits of the framing layer.
const (
	// DefaultMaxMessage is the largest payload accepted by default.
	DefaultMaxMessage = 64 << 10
	// MaxMessageLimit is the largest --max-message the relay accepts: 16 MiB
	// keeps one frame well inside any sane outbound cap.
	MaxMessageLimit = 16 << 20
	// len32Header is the size of FramingLen32's length prefix.
	len32Header = 4
)

var framingNames = [...]string{FramingNUL: "nul", FramingLine: "line", FramingLen32: "len32"}

// String returns the framing's flag name.
func (f Framing) String() string {
	if int(f) < len(framingNames) {
		return framingNames[f]
	}
	return fmt.Sprintf("framing(%d)", uint8(f))
}

// ParseFraming reads a framing name as given to --framing.
func ParseFraming(s string) (Framing, error) {
	for i, name := range framingNames {
		if strings.EqualFold(s, name) {
			return Framing(i), nil
		}
	}
	return 0, fmt.Errorf("unknown framing %q (want nul, line or len32)", s)
}

// Overhead is the number of bytes the framing adds to a payload.
func (f Framing) Overhead() int {
	if f == FramingLen32 {
		return len32Header
	}
	return 1
}

// Check reports whether payload can be carried by the framing: nul refuses
// 0x00 inside the payload, line refuses '\n' and 0x00; len32 takes any bytes.
// It does not check the size.
func (f Framing) Check(payload []byte) error {
	switch f {
	case FramingNUL:
		if i := bytes.IndexByte(payload, 0); i >= 0 {
			return fmt.Errorf("%w: nul framing cannot carry byte 0x00 (at offset %d)", ErrBadPayload, i)
		}
	case FramingLine:
		// Two vectorised scans beat one byte-at-a-time loop for any size.
		nl, nul := bytes.IndexByte(payload, '\n'), bytes.IndexByte(payload, 0)
		if nl >= 0 && (nul < 0 || nl < nul) {
			return fmt.Errorf("%w: line framing cannot carry byte 0x0a (at offset %d)", ErrBadPayload, nl)
		}
		if nul >= 0 {
			return fmt.Errorf("%w: line framing cannot carry byte 0x00 (at offset %d)", ErrBadPayload, nul)
		}
	}
	return nil
}

// carries reports whether the framing can carry payload: Check without
// building an error, for the push path.
func (f Framing) carries(payload []byte) bool {
	switch f {
	case FramingNUL:
		return bytes.IndexByte(payload, 0) < 0
	case FramingLine:
		return bytes.IndexByte(payload, '\n') < 0 && bytes.IndexByte(payload, 0) < 0
	}
	return true
}

// AppendFrame appends payload, framed, to dst and returns the result. It does
// not validate the payload; callers check it with Check first.
func (f Framing) AppendFrame(dst, payload []byte) []byte {
	return appendFrame(f, dst, payload)
}

// appendFrame is AppendFrame for strings as well, so the ID frame needs no
// conversion.
func appendFrame[T string | []byte](f Framing, dst []byte, payload T) []byte {
	switch f {
	case FramingLen32:
		dst = binary.BigEndian.AppendUint32(dst, uint32(len(payload)))
		return append(dst, payload...)
	case FramingLine:
		dst = append(dst, payload...)
		return append(dst, '\n')
	default:
		dst = append(dst, payload...)
		return append(dst, 0)
	}
}
