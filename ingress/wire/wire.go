// Package wire is the ingress protocol: how the web app talks to the relay
// over its Unix socket. Server (package ingress) and Go client (package
// ingress/client) both speak it through this package; docs/protocol.md
// shows every request and reply in hex.
//
// # Frames
//
// Both directions carry frames of one shape; integers are big-endian:
//
//	u32  length   bytes after this field: 6 + len(body)
//	u8   kind     request: the operation; reply: operation | 0x80; event: 0xC0
//	u8   flags    request: FlagNoReply; reply: the Status; event: the EventKind
//	u32  request  chosen by the client, echoed in the reply (and events)
//	...  body     per kind, below
//
// Inside bodies, str8 is a u8 length then bytes (IDs, topics, cursors,
// addresses), str16 a u16 length then bytes (error messages), and "rest"
// runs to the end of the frame (payloads).
//
// # A session
//
// The client connects to the socket and writes requests back to back
// without waiting (pipelining). The relay answers every request with
// exactly one reply, in the order the requests came, except requests with
// FlagNoReply, which get a reply only when they fail. A client matches
// replies by request ID. After a Watch request is answered, event frames
// carrying that request's ID arrive on the same connection, interleaved
// with later replies, until the connection closes.
//
// A malformed request gets an error reply and the connection goes on. A
// frame whose length cannot be trusted (below 6, or above the relay's
// request limit) gets an error reply of kind ReplyBit (0x80) with request
// ID 0, and the relay closes the connection, since it cannot find the next
// frame: it stops writing, reads and discards what the client still sends
// for up to a second, then closes (so the client gets the reply, not a
// reset). A refused connection (too many) gets the same kind of reply.
// Request ID 0 is therefore reserved: clients number requests from 1. An
// unknown operation, or one with flag bits other than FlagNoReply, gets an
// error reply of kind ReplyBit with the request's ID (the operation byte
// is not echoed, so an unknown one can never look like an event).
//
// The relay gives up on a connection whose replies it could not write for
// 30 seconds: a client that pipelines must also read.
//
// # Meaning of the counts
//
// Send and send_many count each recipient once: queued (written or in the
// relay's queue), unknown_id (no such client connected), dropped_slow (the
// client is over its outbound cap under --slow=drop), overloaded (its event
// loop's queue was full; send_many only: send answers StatusOverloaded),
// unsupported (the client's transport cannot carry the payload: a raw
// client and a byte its framing forbids, an SSE client and a payload that
// is not UTF-8; send_many only: send answers StatusUnsupported).
// Publish and broadcast report queued as the number of subscribers, or of
// connected clients, when the push was accepted, less unsupported: those
// of them whose transport cannot carry the payload, by the relay's count
// of clients per transport at that moment. Clients found slow while
// writing are counted in the relay's metrics, not in the reply, and a full
// queue is StatusOverloaded for the whole push.
//
// # Watches and listing
//
// A connection may hold up to 4 watches; a watch ends only with its
// connection (there is no unwatch), and ignores FlagNoReply. A list limit
// of 0 means the largest page, 10,000 IDs. A page may be empty while its
// next cursor is not: keep paging until the cursor is "". Presence pages
// through a topic's subscribers the same way (limit 0: 10,000 IDs), and
// every page carries the topic's subscriber count.
//
// Everything one connection pushes to one client reaches that client in the
// order the relay accepted it.
package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/pushrelay/pushrelay/pkg/bin"
)

// HeaderLen is the length of the fixed part of a frame: length, kind,
// flags, request ID.
const HeaderLen = 10

// Op is a request's operation.
type Op uint8

const (
	// OpSend: str8 id, rest payload. Reply: counts.
	OpSend Op = 0x01
	// OpSendMany: u16 n, n × str8 id, rest payload. Reply: counts.
	OpSendMany Op = 0x02
	// OpPublish: str8 topic, rest payload. Reply: counts.
	OpPublish Op = 0x03
	// OpBroadcast: rest payload. Reply: counts.
	OpBroadcast Op = 0x04
	// OpSubscribe: str8 id, u16 n, n × str8 topic. Reply: u32 added.
	OpSubscribe Op = 0x05
	// OpUnsubscribe: as OpSubscribe. Reply: u32 removed.
	OpUnsubscribe Op = 0x06
	// OpKick: str8 id. Reply: empty (StatusUnknownID if not connected).
	OpKick Op = 0x07
	// OpInfo: str8 id. Reply: u8 connected, i64 since (unix ns), str8 remote.
	OpInfo Op = 0x08
	// OpList: str8 cursor ("" to start), u16 limit. Reply: str8 next
	// cursor ("" after the last page), u16 n, n × str8 id.
	OpList Op = 0x09
	// OpStats: empty. Reply: u16 n, n × (str8 name, str8 labels, f64 value).
	OpStats Op = 0x0A
	// OpWatch: u64 from (0: only new events). Reply: str8 instance, u64
	// last sequence number; then event frames.
	OpWatch Op = 0x0B
	// OpPing: any body. Reply: the same body.
	OpPing Op = 0x0C
	// OpPresence: str8 topic, str8 cursor ("" to start), u16 limit. Reply:
	// u32 subscribers (the topic's count), str8 next cursor ("" after the
	// last page), u16 n, n × str8 id.
	OpPresence Op = 0x0D
)

var opNames = map[Op]string{
	OpSend: "send", OpSendMany: "send_many", OpPublish: "publish", OpBroadcast: "broadcast",
	OpSubscribe: "subscribe", OpUnsubscribe: "unsubscribe", OpKick: "kick", OpInfo: "info",
	OpList: "list", OpStats: "stats", OpWatch: "watch", OpPing: "ping",
	OpPresence: "presence",
}

// String returns the operation's name.
func (o Op) String() string {
	if s, ok := opNames[o]; ok {
		return s
	}
	return fmt.Sprintf("op(0x%02x)", uint8(o))
}

// Known reports whether o is an operation this version understands.
func (o Op) Known() bool { _, ok := opNames[o]; return ok }

// Frame kinds other than requests.
const (
	ReplyBit  = 0x80 // a reply's kind is its request's Op | ReplyBit
	KindEvent = 0xC0 // an event of a watch
)

// FlagNoReply on a request: answer only if it fails.
const FlagNoReply = 0x01

// Status is a reply's outcome, carried in its flags byte. Every status but
// StatusOK has a body of str16 message, a human-readable sentence.
type Status uint8

const (
	StatusOK           Status = 0
	StatusUnknownOp    Status = 1  // the kind byte is not an operation
	StatusBadRequest   Status = 2  // the body does not parse, or a value is invalid
	StatusTooLarge     Status = 3  // the payload or the frame is over a limit
	StatusNotAllowed   Status = 4  // refused: too many ingress connections
	StatusLimit        Status = 5  // a count limit: IDs or topics per request, topic limits
	StatusUnknownID    Status = 6  // kick, subscribe, unsubscribe of an ID not connected
	StatusOverloaded   Status = 7  // the relay's queues are full: retry later
	StatusShuttingDown Status = 8  // the relay is stopping
	StatusUnavailable  Status = 9  // a node of the relay could not be reached
	StatusUnsupported  Status = 10 // send: the client's transport cannot carry the payload
)

var statusNames = [...]string{"ok", "unknown_op", "bad_request", "too_large", "not_allowed", "limit", "unknown_id", "overloaded", "shutting_down", "unavailable", "unsupported"}

// String returns the status as a snake_case word.
func (s Status) String() string {
	if int(s) < len(statusNames) {
		return statusNames[s]
	}
	return fmt.Sprintf("status(%d)", uint8(s))
}

// EventKind is an event frame's flags byte.
type EventKind uint8

const (
	// EventConnect: u64 seq, i64 time (unix ns), str8 id, str8 remote.
	EventConnect EventKind = 1
	// EventDisconnect: as EventConnect, then str8 reason.
	//
	// From a relay cluster, both end with u16 node: the node the client
	// is connected to (a standalone relay omits it).
	EventDisconnect EventKind = 2
	// EventLost: u64 seq of the next event delivered, u64 events lost
	// before it (the watcher fell behind the relay's event log).
	EventLost EventKind = 3
)

// Counts is the body of a push's reply: five u32, in this order (queued,
// unknown, dropped, overloaded, unsupported), and a sixth, Unreachable,
// only when it is not zero (a relay cluster: nodes that did not answer in
// time). A reader takes a missing fifth as 0 (a relay older than the
// unsupported count sends four).
type Counts struct {
	Queued, UnknownID, DroppedSlow, Overloaded uint32
	Unsupported                                uint32
	Unreachable                                uint32
}

// CountsLen is the size of an encoded Counts without Unreachable.
const CountsLen = 20

// Default limits. The relay may be configured with others; a client learns
// of them from StatusTooLarge and StatusLimit replies.
const (
	DefaultMaxRequest = 1 << 20 // bytes in one frame, header included
	DefaultMaxIDs     = 10000   // IDs in one send_many
	DefaultMaxTopics  = 100     // topics in one subscribe or unsubscribe
	MaxStr8           = 255
)

// Header is a frame's fixed part.
type Header struct {
	Len     uint32 // bytes after the length field
	Kind    uint8
	Flags   uint8
	Request uint32
}

// BodyLen is the body's length.
func (h Header) BodyLen() int { return int(h.Len) - (HeaderLen - 4) }

// CheckLen checks a frame's length field (the first 4 bytes) against max,
// the most bytes a whole frame may take. A reader calls it as soon as the
// 4 bytes arrive, before waiting for more.
func CheckLen(b []byte, max int) error {
	n := binary.BigEndian.Uint32(b)
	switch {
	case n < HeaderLen-4:
		return fmt.Errorf("%w: length %d is below the 6 bytes of kind, flags and request ID", ErrFraming, n)
	case uint64(n)+4 > uint64(max):
		return fmt.Errorf("%w: frame of %d bytes, the limit is %d", ErrFrameTooLarge, uint64(n)+4, max)
	}
	return nil
}

// ParseHeader reads the fixed part of a frame from b (at least HeaderLen
// bytes) and checks its length against max (the whole frame's bytes).
func ParseHeader(b []byte, max int) (Header, error) {
	h := Header{
		Len:     binary.BigEndian.Uint32(b),
		Kind:    b[4],
		Flags:   b[5],
		Request: binary.BigEndian.Uint32(b[6:]),
	}
	return h, CheckLen(b, max)
}

// Errors of parsing.
var (
	ErrFraming       = errors.New("frame length cannot be trusted")
	ErrFrameTooLarge = errors.New("frame too large")
	ErrShort         = errors.New("body ends early")
	ErrTrailing      = errors.New("bytes after the last field")
)

// AppendHeader appends a frame header for a body of bodyLen bytes.
func AppendHeader(dst []byte, kind, flags uint8, request uint32, bodyLen int) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(HeaderLen-4+bodyLen))
	dst = append(dst, kind, flags)
	return binary.BigEndian.AppendUint32(dst, request)
}

// BeginFrame appends a header whose length PatchLen fills in once the body
// is appended; it returns the offset of the frame's start.
func BeginFrame(dst []byte, kind, flags uint8, request uint32) ([]byte, int) {
	start := len(dst)
	return AppendHeader(dst, kind, flags, request, 0), start
}

// PatchLen sets the length of the frame that starts at start to run to the
// end of b.
func PatchLen(b []byte, start int) {
	binary.BigEndian.PutUint32(b[start:], uint32(len(b)-start-4))
}

// AppendStr8 appends a u8-length-prefixed string, which must be at most
// 255 bytes.
func AppendStr8[T string | []byte](dst []byte, s T) []byte {
	return append(append(dst, byte(len(s))), s...)
}

// AppendStr16 appends a u16-length-prefixed string, cut to 65535 bytes.
func AppendStr16(dst []byte, s string) []byte {
	if len(s) > math.MaxUint16 {
		s = s[:math.MaxUint16]
	}
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(s)))
	return append(dst, s...)
}

// AppendCounts appends c's encoding.
func AppendCounts(dst []byte, c Counts) []byte {
	dst = binary.BigEndian.AppendUint32(dst, c.Queued)
	dst = binary.BigEndian.AppendUint32(dst, c.UnknownID)
	dst = binary.BigEndian.AppendUint32(dst, c.DroppedSlow)
	dst = binary.BigEndian.AppendUint32(dst, c.Overloaded)
	dst = binary.BigEndian.AppendUint32(dst, c.Unsupported)
	if c.Unreachable != 0 {
		dst = binary.BigEndian.AppendUint32(dst, c.Unreachable)
	}
	return dst
}

// Reader walks a body field by field (a bin.Reader: U8, U16, U32, U64,
// Str8, Str16, Rest). The first error sticks: check Err once at the end.
// Slices it returns alias the body.
type Reader struct {
	bin.Reader
	err error // ErrTrailing from End, or the short read's error once built
}

// NewReader reads body.
func NewReader(body []byte) Reader { return Reader{Reader: bin.New(body)} }

// Counts reads a Counts, with its optional fifth and sixth fields.
func (r *Reader) Counts() Counts {
	c := Counts{Queued: r.U32("queued count"), UnknownID: r.U32("unknown count"), DroppedSlow: r.U32("dropped count"), Overloaded: r.U32("overloaded count")}
	if r.Len() >= 4 {
		c.Unsupported = r.U32("unsupported count")
	}
	if r.Len() >= 4 {
		c.Unreachable = r.U32("unreachable count")
	}
	return c
}

// End records an error if bytes remain.
func (r *Reader) End() {
	if r.err == nil && !r.Failed() && r.Len() > 0 {
		r.err = fmt.Errorf("%w: %d", ErrTrailing, r.Len())
	}
}

// Err returns the first error: a field the body was too short for
// (ErrShort), or bytes after the last field (ErrTrailing).
func (r *Reader) Err() error {
	if r.err == nil && r.Failed() {
		what, _ := r.Failure()
		r.err = fmt.Errorf("%w: reading %s", ErrShort, what)
	}
	return r.err
}
