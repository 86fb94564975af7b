package cluster

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/klauspost/compress/s2"
	"github.com/pushrelay/pushrelay/ingress/wire"
	"github.com/pushrelay/pushrelay/pkg/bin"
	"github.com/pushrelay/pushrelay/pkg/clientid"
	"github.com/pushrelay/pushrelay/relay"
)

// The envelope: every message between nodes is one NATS message whose data
// is one envelope. Integers are big-endian; str8 is a u8 length then bytes;
// an ID is its 16 raw bytes (not its 22 characters); "rest" runs to the end.
//
//	u8   op       what the message asks or answers (op* below; replies set 0x80)
//	u8   flags    flagCompressed: the rest (a payload) is one s2 block
//	u16  from     the sending node
//	...  body     per op
//
// Requests, to one node (subject PREFIX.node.N) or to all (PREFIX.all):
//
//	send          ID, rest payload
//	send_many     u16 n, n × ID, rest payload
//	publish       str8 topic, rest payload
//	broadcast     rest payload
//	subscribe     ID, u16 n, n × str8 topic     (unsubscribe: the same)
//	kick, info    ID
//	list          str8 cursor, u16 limit
//	presence      str8 topic, str8 cursor, u16 limit (0: the count only)
//	ping          empty                          (is this node ID taken?)
//
// Replies, to the reply subject of the request (op | 0x80):
//
//	counts        u8 status, 6 × u32: queued, unknown, dropped, overloaded, unreachable,
//	              unsupported (read as 0 when absent: a node older than it sends 5)
//	topics        u8 error kind, u32 changed, str8 message
//	kick          u8 status
//	info          u8 connected, i64 since (unix ns), u8 address length, address
//	list          u8 error kind, str8 next cursor or message, u16 n, n × ID
//	presence      u8 error kind, u32 subscribers, str8 next cursor or message, u16 n, n × ID
//	ping          str8 instance
//
// Announcements, no reply:
//
//	hello         str8 instance, u32 open connections, u8 leaving   (PREFIX.hello)
//	events        u64 first seq, u16 n, n × (u8 kind, u8 reason, i64 time,
//	              ID, u8 address length, address)                 (PREFIX.events)
//
// Addresses are netip.AddrPort in its binary form (an IP of 0, 4 or 16
// bytes, then a little-endian u16 port): 6 or 18 bytes for a client.
type op uint8

const (
	opSend op = iota + 1
	opSendMany
	opPublish
	opBroadcast
	opSubscribe
	opUnsubscribe
	opKick
	opInfo
	opList
	opPing
	opPresence

	opHello  op = 0x40
	opEvents op = 0x41

	replyBit op = 0x80
)

// ingressOps maps each request a node forwards to the ingress operation it
// carries out, whose name it takes, so that metrics and errors name an
// operation alike on both sides.
var ingressOps = map[op]wire.Op{
	opSend: wire.OpSend, opSendMany: wire.OpSendMany, opPublish: wire.OpPublish, opBroadcast: wire.OpBroadcast,
	opSubscribe: wire.OpSubscribe, opUnsubscribe: wire.OpUnsubscribe, opKick: wire.OpKick, opInfo: wire.OpInfo,
	opList: wire.OpList, opPing: wire.OpPing, opPresence: wire.OpPresence,
}

func (o op) String() string {
	var n string
	switch base := o &^ replyBit; base {
	case opHello:
		n = "hello"
	case opEvents:
		n = "events"
	default:
		w, ok := ingressOps[base]
		if !ok {
			return fmt.Sprintf("op(0x%02x)", uint8(o))
		}
		n = w.String()
	}
	if o&replyBit != 0 {
		return n + "_reply"
	}
	return n
}

// requestOps lists the ops a node serves for others, for metrics.
var requestOps = []op{opSend, opSendMany, opPublish, opBroadcast, opSubscribe, opUnsubscribe, opKick, opInfo, opList, opPing, opPresence}

const (
	headerLen      = 4
	flagCompressed = 0x01
	// maxEventBatch bounds the events in one events envelope.
	maxEventBatch = 256
)

// Error kinds of topic and list replies: which relay error to give back.
const (
	errNone uint8 = iota
	errUnknownID
	errBadTopic
	errLimit
	errOverloaded
	errClosed
	errOther
)

var errKinds = []error{errUnknownID: relay.ErrUnknownID, errBadTopic: relay.ErrBadTopic, errLimit: relay.ErrLimit, errOverloaded: relay.ErrOverloaded, errClosed: relay.ErrClosed}

func errKindOf(err error) uint8 {
	for k, e := range errKinds {
		if e != nil && errors.Is(err, e) {
			return uint8(k)
		}
	}
	return errOther
}

// errBadEnvelope: an envelope did not parse. Counted, never answered.
var errBadEnvelope = errors.New("bad envelope")

// envelope is a decoded message. Slices and strings point into the
// message's data (or the decompression buffer): they live as long as it.
type envelope struct {
	op     op
	flags  uint8
	from   uint16
	id     [clientid.Bytes]byte
	ids    [][clientid.Bytes]byte
	topic  string
	topics []string
	cursor string
	limit  int
	// payload of pushes (decompressed).
	payload []byte

	// Replies.
	status  relay.Status
	counts  relay.Counts
	errKind uint8
	changed int // topic replies; presence replies: subscribers
	message string
	info    relay.ClientInfo
	found   bool

	// Announcements.
	instance string
	open     uint32
	leaving  bool
	firstSeq uint64
	events   []relay.Event
}

// encoder builds envelopes in a reused buffer. Not safe for concurrent use.
type encoder struct {
	b    []byte
	comp []byte // scratch for compression
}

// begin starts an envelope.
func (e *encoder) begin(o op, from uint16) {
	e.b = append(e.b[:0], byte(o), 0, byte(from>>8), byte(from))
}

func (e *encoder) u8(v uint8)   { e.b = append(e.b, v) }
func (e *encoder) u16(v uint16) { e.b = binary.BigEndian.AppendUint16(e.b, v) }
func (e *encoder) u32(v uint32) { e.b = binary.BigEndian.AppendUint32(e.b, v) }
func (e *encoder) u64(v uint64) { e.b = binary.BigEndian.AppendUint64(e.b, v) }
func (e *encoder) id(raw *[clientid.Bytes]byte) {
	e.b = append(e.b, raw[:]...)
}

// str8 appends s, cut to 255 bytes (callers pass checked topics, cursors
// and short messages).
func (e *encoder) str8(s string) {
	if len(s) > 255 {
		s = s[:255]
	}
	e.b = append(e.b, byte(len(s)))
	e.b = append(e.b, s...)
}

func (e *encoder) addr(ap netip.AddrPort) {
	n := len(e.b)
	e.b = append(e.b, 0)
	e.b, _ = ap.AppendBinary(e.b)
	e.b[n] = byte(len(e.b) - n - 1)
}

// payload appends the rest: p itself, or its s2 block when p is at least
// minCompress bytes (minCompress > 0) and the block is smaller.
func (e *encoder) payload(p []byte, minCompress int) (compressed bool) {
	if minCompress > 0 && len(p) >= minCompress {
		need := s2.MaxEncodedLen(len(p))
		if cap(e.comp) < need {
			e.comp = make([]byte, need)
		}
		c := s2.Encode(e.comp[:need], p)
		if len(c) < len(p) {
			e.b[1] |= flagCompressed
			e.b = append(e.b, c...)
			return true
		}
	}
	e.b = append(e.b, p...)
	return false
}

func (e *encoder) counts(st relay.Status, c relay.Counts) {
	e.u8(uint8(st))
	e.u32(uint32(c.Queued))
	e.u32(uint32(c.UnknownID))
	e.u32(uint32(c.DroppedSlow))
	e.u32(uint32(c.Overloaded))
	e.u32(uint32(c.Unreachable))
	e.u32(uint32(c.Unsupported))
}

// decoder reads one envelope. Its scratch slices are reused between
// messages; not safe for concurrent use.
type decoder struct {
	// maxPayload bounds a decompressed payload: a message can never be
	// larger than the relay's --max-message, so a block that claims more
	// is refused before anything is allocated for it.
	maxPayload int
	ids        [][clientid.Bytes]byte
	topics     []string
	events     []relay.Event
	plain      []byte
}

// reader is a cursor over an envelope's body (a bin.Reader) that knows the
// envelope's own fields; the first failure sticks.
type reader struct{ bin.Reader }

func (r *reader) id(dst *[clientid.Bytes]byte) {
	if b := r.Take(clientid.Bytes, "id"); b != nil {
		copy(dst[:], b)
	}
}

// str8 returns a string that copies the bytes: topics and cursors are
// kept by callers, and are short.
func (r *reader) str8(what string) string { return string(r.Str8(what)) }

func (r *reader) addr() netip.AddrPort {
	b := r.Str8("address")
	var ap netip.AddrPort
	if !r.Failed() {
		if err := ap.UnmarshalBinary(b); err != nil {
			r.Fail("address: " + err.Error())
		}
	}
	return ap
}

func (r *reader) end() {
	if !r.Failed() && r.Len() != 0 {
		r.Fail("trailing bytes")
	}
}

// err returns the first failure as a bad envelope, or nil.
func (r *reader) err() error {
	if !r.Failed() {
		return nil
	}
	what, left := r.Failure()
	return fmt.Errorf("%w: %s: %d bytes left", errBadEnvelope, what, left)
}

// readIDs reads a u16 count, then that many IDs, into d's scratch slice.
func (d *decoder) readIDs(r *reader) [][clientid.Bytes]byte {
	n := int(r.U16("id count"))
	if !r.Failed() && r.Len() < n*clientid.Bytes {
		r.Fail("ids")
	}
	ids := d.ids[:0]
	for i := 0; i < n && !r.Failed(); i++ {
		var raw [clientid.Bytes]byte
		r.id(&raw)
		ids = append(ids, raw)
	}
	d.ids = ids
	return ids
}

// decode parses data. The envelope's slices point into data or into d's
// scratch buffers, valid until the next decode.
func (d *decoder) decode(data []byte) (envelope, error) {
	var env envelope
	if len(data) < headerLen {
		return env, fmt.Errorf("%w: %d bytes, shorter than a header", errBadEnvelope, len(data))
	}
	env.op, env.flags = op(data[0]), data[1]
	env.from = binary.BigEndian.Uint16(data[2:4])
	if env.flags&^flagCompressed != 0 {
		return env, fmt.Errorf("%w: unknown flags 0x%02x", errBadEnvelope, env.flags)
	}
	if env.flags&flagCompressed != 0 && !carriesPayload(env.op) {
		return env, fmt.Errorf("%w: %s cannot be compressed", errBadEnvelope, env.op)
	}
	r := reader{bin.New(data[headerLen:])}
	switch env.op {
	case opSend:
		r.id(&env.id)
		env.payload = r.Rest()
	case opSendMany:
		env.ids = d.readIDs(&r)
		env.payload = r.Rest()
	case opPublish:
		env.topic = r.str8("topic")
		env.payload = r.Rest()
	case opBroadcast:
		env.payload = r.Rest()
	case opSubscribe, opUnsubscribe:
		r.id(&env.id)
		n := int(r.U16("topic count"))
		if !r.Failed() && r.Len() < n {
			r.Fail("topics")
		}
		topics := d.topics[:0]
		for i := 0; i < n && !r.Failed(); i++ {
			topics = append(topics, r.str8("topic"))
		}
		d.topics = topics
		env.topics = topics
	case opKick, opInfo:
		r.id(&env.id)
	case opList:
		env.cursor = r.str8("cursor")
		env.limit = int(r.U16("limit"))
	case opPresence:
		env.topic = r.str8("topic")
		env.cursor = r.str8("cursor")
		env.limit = int(r.U16("limit"))
	case opPing:
	case opSend | replyBit, opSendMany | replyBit, opPublish | replyBit, opBroadcast | replyBit:
		env.status = relay.Status(r.U8("status"))
		env.counts = relay.Counts{
			Queued:      int(r.U32("queued")),
			UnknownID:   int(r.U32("unknown")),
			DroppedSlow: int(r.U32("dropped")),
			Overloaded:  int(r.U32("overloaded")),
			Unreachable: int(r.U32("unreachable")),
		}
		if r.Len() >= 4 {
			env.counts.Unsupported = int(r.U32("unsupported"))
		}
	case opSubscribe | replyBit, opUnsubscribe | replyBit:
		env.errKind = r.U8("error kind")
		env.changed = int(r.U32("changed"))
		env.message = r.str8("message")
	case opKick | replyBit:
		env.status = relay.Status(r.U8("status"))
	case opInfo | replyBit:
		env.found = r.U8("connected") != 0
		since := int64(r.U64("since"))
		env.info.Remote = r.addr()
		if env.found {
			env.info.Since = timeFromUnixNano(since)
		}
	case opList | replyBit, opPresence | replyBit:
		env.errKind = r.U8("error kind")
		if env.op == opPresence|replyBit {
			env.changed = int(r.U32("subscribers"))
		}
		env.message = r.str8("cursor")
		env.ids = d.readIDs(&r)
	case opPing | replyBit:
		env.instance = r.str8("instance")
	case opHello:
		env.instance = r.str8("instance")
		env.open = r.U32("open")
		env.leaving = r.U8("leaving") != 0
	case opEvents:
		env.firstSeq = r.U64("first seq")
		n := int(r.U16("event count"))
		if n > maxEventBatch {
			r.Fail("event count")
		}
		evs := d.events[:0]
		for i := 0; i < n && !r.Failed(); i++ {
			ev := relay.Event{Node: env.from}
			ev.Kind = relay.EventKind(r.U8("kind"))
			ev.Reason = relay.CloseReason(r.U8("reason"))
			ev.Time = int64(r.U64("time"))
			var raw [clientid.Bytes]byte
			r.id(&raw)
			ev.Remote = r.addr()
			if !r.Failed() && ev.Kind != relay.EventConnect && ev.Kind != relay.EventDisconnect {
				r.Fail("event kind")
			}
			if !r.Failed() {
				ev.ID = clientid.Format(&raw)
			}
			evs = append(evs, ev)
		}
		d.events = evs
		env.events = evs
	default:
		return env, fmt.Errorf("%w: unknown op 0x%02x", errBadEnvelope, uint8(env.op))
	}
	r.end()
	if err := r.err(); err != nil {
		return env, fmt.Errorf("%s: %w", env.op, err)
	}
	if env.flags&flagCompressed != 0 {
		n, err := s2.DecodedLen(env.payload)
		if err != nil {
			return env, fmt.Errorf("%w: %s: compressed payload: %v", errBadEnvelope, env.op, err)
		}
		if n > d.maxPayload {
			return env, fmt.Errorf("%w: %s: compressed payload of %d bytes, more than the %d a message may have", errBadEnvelope, env.op, n, d.maxPayload)
		}
		if cap(d.plain) < n {
			d.plain = make([]byte, n)
		}
		plain, err := s2.Decode(d.plain[:n], env.payload)
		if err != nil {
			return env, fmt.Errorf("%w: %s: compressed payload: %v", errBadEnvelope, env.op, err)
		}
		env.payload = plain
	}
	return env, nil
}

func carriesPayload(o op) bool {
	switch o {
	case opSend, opSendMany, opPublish, opBroadcast:
		return true
	}
	return false
}
