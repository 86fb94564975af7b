package ingress

import (
	"encoding/binary"
	"errors"
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
	okCounts := func(counts wire.Counts) {
		if !quiet {
			c.reply(uint8(op)|wire.ReplyBit, uint8(wire.StatusOK), req, func(b []byte) []byte { return wire.AppendCounts(b, counts) })
		}
	}
	bad := func(err error) { c.fail(op, req, wire.StatusBadRequest, fmt.Sprintf("%s: %v", op, err)) }
	// validID answers bad_request for anything not shaped like an ID, the
	// same way for every operation that takes one.
	validID := func(id []byte) bool {
		if relay.ValidID(borrow(id)) {
			return true
		}
		c.fail(op, req, wire.StatusBadRequest, fmt.Sprintf("%s: %q is not a client ID (22 to 64 characters of A-Z a-z 0-9 _ -)", op, id))
		return false
	}
	// oneID reads a body that is exactly one ID, answering the errors.
	oneID := func() ([]byte, bool) {
		id := r.Str8("id")
		r.End()
		if r.Err() != nil {
			bad(r.Err())
			return nil, false
		}
		return id, validID(id)
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
		if r.Err() != nil {
			bad(r.Err())
			return
		}
		if !validID(id) {
			return
		}
		var st relay.Status
		if c.br.Buffered() > 0 {
			st = rel.SendPipelined(borrow(id), payload) // more requests wait: batch
		} else {
			st = rel.Send(borrow(id), payload)
		}
		if st == relay.Unsupported {
			c.fail(op, req, wire.StatusUnsupported, fmt.Sprintf("%s: %s", op, unsupportedReason(rel, string(id), payload)))
			return
		}
		if c.pushFailed(op, req, st, payload) {
			return
		}
		okCounts(countOne(st))

	case wire.OpSendMany:
		n := int(r.U16("id count"))
		if n > cfg.MaxIDs {
			c.fail(op, req, wire.StatusLimit, fmt.Sprintf("send_many: %d IDs, the most in one request is %d", n, cfg.MaxIDs))
			return
		}
		ids := c.ids[:0]
		for i := 0; i < n; i++ {
			id := r.Str8("id")
			if r.Err() == nil && !relay.ValidID(borrow(id)) {
				c.fail(op, req, wire.StatusBadRequest, fmt.Sprintf("send_many: ID %d, %q, is not a client ID", i, id))
				return
			}
			ids = append(ids, borrow(id))
		}
		payload := r.Rest()
		c.ids = ids
		if r.Err() != nil {
			bad(r.Err())
			return
		}
		counts, st := rel.SendMany(ids, payload)
		clear(c.ids) // drop the views of the body
		if c.pushFailed(op, req, st, payload) {
			return
		}
		okCounts(wireCounts(counts))

	case wire.OpPublish:
		topic := r.Str8("topic")
		payload := r.Rest()
		if r.Err() != nil {
			bad(r.Err())
			return
		}
		if err := relay.CheckTopic(borrow(topic)); err != nil {
			bad(err)
			return
		}
		counts, st := rel.Publish(borrow(topic), payload)
		if c.pushFailed(op, req, st, payload) {
			return
		}
		okCounts(wireCounts(counts))

	case wire.OpBroadcast:
		payload := r.Rest()
		counts, st := rel.Broadcast(payload)
		if c.pushFailed(op, req, st, payload) {
			return
		}
		okCounts(wireCounts(counts))

	case wire.OpSubscribe, wire.OpUnsubscribe:
		id := r.Str8("id")
		n := int(r.U16("topic count"))
		if n > cfg.MaxTopics {
			c.fail(op, req, wire.StatusLimit, fmt.Sprintf("%s: %d topics, the most in one request is %d", op, n, cfg.MaxTopics))
			return
		}
		topics := c.topics[:0]
		for i := 0; i < n; i++ {
			topics = append(topics, borrow(r.Str8("topic")))
		}
		r.End()
		c.topics = topics
		if r.Err() != nil {
			bad(r.Err())
			return
		}
		if !validID(id) {
			return
		}
		var changed int
		var err error
		if op == wire.OpSubscribe {
			changed, err = rel.Subscribe(borrow(id), topics...)
		} else {
			changed, err = rel.Unsubscribe(borrow(id), topics...)
		}
		clear(c.topics)
		if err != nil {
			msg := fmt.Sprintf("%s: %v", op, err)
			if changed > 0 {
				msg += fmt.Sprintf(" (the %d topics before it were changed)", changed)
			}
			c.fail(op, req, topicStatus(err), msg)
			return
		}
		ok(func(b []byte) []byte { return binary.BigEndian.AppendUint32(b, uint32(changed)) })

	case wire.OpKick:
		id, valid := oneID()
		if !valid {
			return
		}
		switch st := rel.Kick(borrow(id)); st {
		case relay.Queued:
			ok(func(b []byte) []byte { return b })
		case relay.UnknownID:
			c.fail(op, req, wire.StatusUnknownID, fmt.Sprintf("kick: no client %q is connected", id))
		default:
			c.pushFailed(op, req, st, nil)
		}

	case wire.OpInfo:
		id, valid := oneID()
		if !valid {
			return
		}
		info, connected := rel.Info(borrow(id))
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
		if r.Err() != nil {
			bad(r.Err())
			return
		}
		ids, next, err := rel.List(string(cursor), limit)
		if errors.Is(err, relay.ErrUnreachable) {
			c.fail(op, req, wire.StatusUnavailable, fmt.Sprintf("%s: %v", op, err))
			return
		}
		if err != nil {
			bad(err)
			return
		}
		ok(func(b []byte) []byte {
			b = wire.AppendStr8(b, next)
			b = binary.BigEndian.AppendUint16(b, uint16(len(ids)))
			for _, id := range ids {
				b = wire.AppendStr8(b, id)
			}
			return b
		})

	case wire.OpPresence:
		topic := r.Str8("topic")
		cursor := r.Str8("cursor")
		limit := int(r.U16("limit"))
		r.End()
		if r.Err() != nil {
			bad(r.Err())
			return
		}
		ids, next, count, err := rel.Presence(borrow(topic), string(cursor), limit)
		if err != nil {
			c.fail(op, req, topicStatus(err), fmt.Sprintf("%s: %v", op, err))
			return
		}
		ok(func(b []byte) []byte {
			b = binary.BigEndian.AppendUint32(b, uint32(count))
			b = wire.AppendStr8(b, next)
			b = binary.BigEndian.AppendUint16(b, uint16(len(ids)))
			for _, id := range ids {
				b = wire.AppendStr8(b, id)
			}
			return b
		})

	case wire.OpStats:
		r.End()
		if r.Err() != nil {
			bad(r.Err())
			return
		}
		ms := append(rel.Metrics(), c.srv.metrics()...)
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
		if r.Err() != nil {
			bad(r.Err())
			return
		}
		if c.watches >= cfg.MaxWatches {
			c.fail(op, req, wire.StatusLimit, fmt.Sprintf("watch: %d watches on this connection, the most allowed", cfg.MaxWatches))
			return
		}
		c.watches++
		last := rel.LastEventSeq()
		if from == 0 {
			from = last + 1
		}
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

// pushFailed sends the error reply for a push that the relay refused as a
// whole and reports whether it did.
func (c *ingressConn) pushFailed(op wire.Op, req uint32, st relay.Status, payload []byte) bool {
	switch st {
	case relay.TooLarge:
		c.fail(op, req, wire.StatusTooLarge, fmt.Sprintf("%s: %v", op, c.srv.relay.CheckPayload(payload)))
	case relay.BadPayload:
		c.fail(op, req, wire.StatusBadRequest, fmt.Sprintf("%s: %v", op, c.srv.relay.CheckPayload(payload)))
	case relay.BadTopic:
		c.fail(op, req, wire.StatusBadRequest, fmt.Sprintf("%s: invalid topic", op))
	case relay.Closed:
		c.fail(op, req, wire.StatusShuttingDown, fmt.Sprintf("%s: the relay is shutting down", op))
	case relay.Overloaded:
		if op == wire.OpSendMany {
			return false // per recipient, counted in the reply
		}
		c.fail(op, req, wire.StatusOverloaded, fmt.Sprintf("%s: the relay's queue is full; nothing was queued, retry later", op))
	case relay.Unreachable:
		c.fail(op, req, wire.StatusUnavailable, fmt.Sprintf("%s: %v in time; it may or may not have been done, retry later", op, relay.ErrUnreachable))
	default:
		return false
	}
	return true
}

// unsupportedReason explains an Unsupported status for the client id in
// the relay's own words (the client's transport and the offending byte),
// or in general ones from a relay that cannot tell.
func unsupportedReason(rel Relay, id string, payload []byte) string {
	if r, ok := rel.(interface {
		UnsupportedReason(id string, payload []byte) string
	}); ok {
		return r.UnsupportedReason(id, payload)
	}
	return fmt.Sprintf("client %s cannot take this payload: its transport cannot carry it (tcp clients: the bytes the framing forbids; SSE: UTF-8 text only)", id)
}

// countOne turns one recipient's status into counts.
func countOne(st relay.Status) wire.Counts {
	var c wire.Counts
	switch st {
	case relay.Queued:
		c.Queued = 1
	case relay.UnknownID:
		c.UnknownID = 1
	case relay.DroppedSlow:
		c.DroppedSlow = 1
	case relay.Overloaded:
		c.Overloaded = 1
	}
	return c
}

func wireCounts(c relay.Counts) wire.Counts {
	return wire.Counts{Queued: uint32(c.Queued), UnknownID: uint32(c.UnknownID), DroppedSlow: uint32(c.DroppedSlow), Overloaded: uint32(c.Overloaded), Unsupported: uint32(c.Unsupported), Unreachable: uint32(c.Unreachable)}
}

// topicStatus maps a topic operation's error to a status.
func topicStatus(err error) wire.Status {
	switch {
	case errors.Is(err, relay.ErrUnknownID):
		return wire.StatusUnknownID
	case errors.Is(err, relay.ErrBadTopic):
		return wire.StatusBadRequest
	case errors.Is(err, relay.ErrLimit):
		return wire.StatusLimit
	case errors.Is(err, relay.ErrClosed):
		return wire.StatusShuttingDown
	case errors.Is(err, relay.ErrOverloaded):
		return wire.StatusOverloaded
	case errors.Is(err, relay.ErrUnreachable):
		return wire.StatusUnavailable
	}
	return wire.StatusBadRequest
}
