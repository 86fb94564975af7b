// Package framing is the client framing of pushrelay: how the relay
// delimits the frames it writes to a client connection, shared by the
// relay (package relay), its Go clients, the load generator and the bench.
// It depends on the standard library only.
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
//
// The writer's side is Check (can the framing carry a payload?) and Append;
// the reader's side is Reader, for a blocking io.Reader, and Cut, for a
// reader that gathers bytes itself from a non-blocking socket.
//
// The other wire basics live beside it: pkg/clientid (the ID format and the
// node bits of a clustered ID), pkg/stamp (the latency timestamp a payload
// may start with) and pkg/bin (a bounds-checked big-endian field reader).
package framing

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

// Framing says how a message is delimited on a client connection.
type Framing uint8

const (
	// NUL ends each payload with one 0x00 byte, as Flash's XMLSocket
	// expects. It is the default (the zero value).
	NUL Framing = iota
	// Line ends each payload with '\n'. Payloads containing '\n' or 0x00
	// are refused.
	Line
	// Len32 prefixes each payload with its length as a 4-byte big-endian
	// integer. Payloads may hold any bytes.
	Len32
)

const (
	// MaxPayload is the largest payload the relay can be configured to
	// send (its Config.MaxMessage): 16 MiB keeps one frame well inside any
	// sane outbound cap. Reader takes it as its default limit.
	MaxPayload = 16 << 20
	// Len32Header is the size of Len32's length prefix.
	Len32Header = 4
)

// ErrBadPayload: the payload holds a byte the framing cannot carry.
var ErrBadPayload = errors.New("payload not allowed by framing")

var names = [...]string{NUL: "nul", Line: "line", Len32: "len32"}

// String returns the framing's name, as Parse reads it.
func (f Framing) String() string {
	if int(f) < len(names) {
		return names[f]
	}
	return fmt.Sprintf("framing(%d)", uint8(f))
}

// Parse reads a framing name: nul, line or len32, in any case.
func Parse(s string) (Framing, error) {
	for i, name := range names {
		if strings.EqualFold(s, name) {
			return Framing(i), nil
		}
	}
	return 0, fmt.Errorf("unknown framing %q (want nul, line or len32)", s)
}

// Overhead is the number of bytes the framing adds to a payload.
func (f Framing) Overhead() int {
	if f == Len32 {
		return Len32Header
	}
	return 1
}

// Check reports whether payload can be carried by the framing: nul refuses
// 0x00 inside the payload, line refuses '\n' and 0x00; len32 takes any bytes.
// It does not check the size. Its errors wrap ErrBadPayload.
func (f Framing) Check(payload []byte) error {
	switch f {
	case NUL:
		if i := bytes.IndexByte(payload, 0); i >= 0 {
			return fmt.Errorf("%w: nul framing cannot carry byte 0x00 (at offset %d)", ErrBadPayload, i)
		}
	case Line:
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

// Carries reports whether the framing can carry payload: Check without
// building an error, for the push path.
func (f Framing) Carries(payload []byte) bool {
	switch f {
	case NUL:
		return bytes.IndexByte(payload, 0) < 0
	case Line:
		return bytes.IndexByte(payload, '\n') < 0 && bytes.IndexByte(payload, 0) < 0
	}
	return true
}

// AppendFrame appends payload, framed, to dst and returns the result. It does
// not validate the payload; callers check it with Check first.
func (f Framing) AppendFrame(dst, payload []byte) []byte {
	return Append(f, dst, payload)
}

// Append is AppendFrame for strings as well, so an ID frame needs no
// conversion.
func Append[T string | []byte](f Framing, dst []byte, payload T) []byte {
	switch f {
	case Len32:
		dst = binary.BigEndian.AppendUint32(dst, uint32(len(payload)))
		return append(dst, payload...)
	case Line:
		dst = append(dst, payload...)
		return append(dst, '\n')
	default:
		dst = append(dst, payload...)
		return append(dst, 0)
	}
}
