package ingress

import (
	"encoding/binary"
	"fmt"
	"math"
	"unsafe"

	"github.com/pushrelay/pushrelay/ingress/wire"
	"github.com/pushrelay/pushrelay/relay"
)

// borrow views b as a string without copying. The string is valid only
// until the connection reads its next request (the body buffer is reused),
// so it is passed only to relay calls that do not keep it: lookups, and
// Subscribe, which copies topic names, and Publish, which keeps the
// relay's own copy of the topic.
func borrow(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// handle answers one request.
func (c *ingressConn) handle(h wire.Header, body []byte) {
	op := wire.Op(h.Kind)
	req := h.Request
	quiet := h.Flags&wire.FlagNoReply != 0
	r := wire.NewReader(body)
	rel := c.srv.relay
	cfg := &c.srv.cfg

	// ok appends a success reply unless the request asked for none.
	ok := func(fn func([]byte) []byte) {
		if !quiet {
			c.reply(uint8(op)|wire.ReplyBit, uint8(wire.StatusOK), req, fn)
		}
	}
	// failed answers an operation's failure and reports whether it did.
	failed := func(o outcome) bool {
		if o.failed() {
			c.fail(op, req, o.status, o.msg)
		}
		return o.failed()
	}
	// pushed answers a push's outcome: its counts or its failure.
	pushed := func(o outcome) {
		if !failed(o) && !quiet {
			counts := wireCounts(o.counts)
			c.reply(uint8(op)|wire.ReplyBit, uint8(wire.StatusOK), req, func(b []byte) []byte { return wire.AppendCounts(b, counts) })
		}
	}
	// badBody answers a body that did not decode and reports whether it
	// did.
	badBody := func() bool {
		if err := r.Err(); err != nil {
			c.fail(op, req, wire.StatusBadRequest, fmt.Sprintf("%s: %v", op, err))
			return true
		}
		return false
	}
	// idBody reads a body that is exactly one ID, answering the errors.
	idBody := func() ([]byte, bool) {
		id := r.Str8("id")
		r.End()
		return id, !badBody()
	}
	// count reads a u16 count of items, answering one over limit, and
	// reports whether it is within the limit.
	count := func(what, items string, limit int) (int, bool) {
		n := int(r.U16(what))
		if n > limit {
			failed(tooMany(op, n, items, limit))
			return n, false
		}
		return n, true
	}
	if !op.Known() {
		c.fail(0, req, wire.StatusUnknownOp, fmt.Sprintf("unknown operation 0x%02x", uint8(op)))
		return
	}
	if h.Flags&^wire.FlagNoReply != 0 {
		c.fail(0, req, wire.StatusBadRequest, fmt.Sprintf("%s: unknown flag bits 0x%02x", op, h.Flags&^wire.FlagNoReply))
		return
	}

	switch op {
	case wire.OpSend:
		id := r.Str8("id")
		payload := r.Rest()
		if badBody() {
			return
		}
		pushed(opSend(rel, id, payload, c.br.Buffered() > 0)) // more requests wait: batch

	case wire.OpSendMany:
		n, within := count("id count", "IDs", cfg.MaxIDs)
		if !within {
			return
		}
		ids := c.ids[:0]
		for i := 0; i < n; i++ {
			id := r.Str8("id")
			if r.Err() == nil && !relay.ValidID(borrow(id)) {
				failed(badIDAt(op.String(), i, borrow(id)))
				return
			}
			ids = append(ids, borrow(id))
		}
		payload := r.Rest()
		c.ids = ids
		if badBody() {
			return
		}
		o := opSendMany(rel, ids, payload)
		clear(c.ids) // drop the views of the body
		pushed(o)

	case wire.OpPublish:
		topic := r.Str8("topic")
		payload := r.Rest()
		if badBody() {
			return
		}
		pushed(opPublish(rel, topic, payload))

	case wire.OpBroadcast:
		pushed(opBroadcast(rel, r.Rest()))

	case wire.OpSubscribe, wire.OpUnsubscribe:
		id := r.Str8("id")
		n, within := count("topic count", "topics", cfg.MaxTopics)
		if !within {
			return
		}
		topics := c.topics[:0]
		for i := 0; i < n; i++ {
			topics = append(topics, borrow(r.Str8("topic")))
		}
		r.End()
		c.topics = topics
		if badBody() {
			return
		}
		if failed(checkID(op, id)) {
			return
		}
		o := opTopics(rel, op, borrow(id), topics)
		clear(c.topics)
		if o.failed() && o.n > 0 {
			o.msg += fmt.Sprintf(" (the %d topics before it were changed)", o.n)
		}
		if !failed(o) {
			ok(func(b []byte) []byte { return binary.BigEndian.AppendUint32(b, uint32(o.n)) })
		}

	case wire.OpKick:
		if id, decoded := idBody(); decoded && !failed(opKick(rel, id)) {
			ok(func(b []byte) []byte { return b })
		}

	case wire.OpInfo:
		id, decoded := idBody()
		if !decoded {
			return
		}
		info, connected, o := opInfo(rel, id)
		if failed(o) {
			return
		}
		ok(func(b []byte) []byte {
			if !connected {
				b = append(b, 0)
				b = binary.BigEndian.AppendUint64(b, 0)
				return wire.AppendStr8(b, "")
			}
			b = append(b, 1)
			b = binary.BigEndian.AppendUint64(b, uint64(info.Since.UnixNano()))
			return wire.AppendStr8(b, info.Remote.String())
		})

	case wire.OpList:
		cursor := r.Str8("cursor")
		limit := int(r.U16("limit"))
		r.End()
		if badBody() {
			return
		}
		ids, next, o := opList(rel, string(cursor), limit)
		if failed(o) {
			return
		}
		ok(func(b []byte) []byte { return appendWireIDPage(b, next, ids) })

	case wire.OpPresence:
		topic := r.Str8("topic")
		cursor := r.Str8("cursor")
		limit := int(r.U16("limit"))
		r.End()
		if badBody() {
			return
		}
		ids, next, count, o := opPresence(rel, topic, string(cursor), limit)
		if failed(o) {
			return
		}
		ok(func(b []byte) []byte {
			return appendWireIDPage(binary.BigEndian.AppendUint32(b, uint32(count)), next, ids)
		})

	case wire.OpStats:
		r.End()
		if badBody() {
			return
		}
		ms := opStats(rel, c.srv.metrics())
		ok(func(b []byte) []byte {
			b = binary.BigEndian.AppendUint16(b, uint16(len(ms)))
			for _, m := range ms {
				b = wire.AppendStr8(b, m.Name)
				b = wire.AppendStr8(b, m.Labels)
				b = binary.BigEndian.AppendUint64(b, math.Float64bits(m.Value))
			}
			return b
		})

	case wire.OpWatch:
		from := r.U64("from")
		r.End()
		if badBody() {
			return
		}
		if c.watches >= cfg.MaxWatches {
			failed(tooManyWatches(cfg.MaxWatches))
			return
		}
		c.watches++
		from, last := opWatch(rel, from)
		c.reply(uint8(op)|wire.ReplyBit, uint8(wire.StatusOK), req, func(b []byte) []byte {
			b = wire.AppendStr8(b, rel.Instance())
			return binary.BigEndian.AppendUint64(b, last)
		})
		c.wg.Add(1)
		go c.watch(req, from)

	case wire.OpPing:
		ok(func(b []byte) []byte { return append(b, body...) })

	}
}

// appendWireIDPage appends a page of IDs as list and presence replies
// carry it: str8 next cursor, u16 count, str8 IDs.
func appendWireIDPage(b []byte, next string, ids []string) []byte {
	b = wire.AppendStr8(b, next)
	b = binary.BigEndian.AppendUint16(b, uint16(len(ids)))
	for _, id := range ids {
		b = wire.AppendStr8(b, id)
	}
	return b
}

func wireCounts(c relay.Counts) wire.Counts {
	return wire.Counts{Queued: uint32(c.Queued), UnknownID: uint32(c.UnknownID), DroppedSlow: uint32(c.DroppedSlow), Overloaded: uint32(c.Overloaded), Unsupported: uint32(c.Unsupported), Unreachable: uint32(c.Unreachable)}
}
