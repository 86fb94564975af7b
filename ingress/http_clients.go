package ingress

// The HTTP routes about clients and topics: subscriptions, kick, info,
// list and presence.

import (
	"fmt"
	"strconv"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/pushrelay/pushrelay/ingress/wire"
	"github.com/pushrelay/pushrelay/relay"
)

// subscriptionsBody is the request of POST and DELETE /v1/subscriptions.
type subscriptionsBody struct {
	ID     string   `json:"id"`
	Topics []string `json:"topics"`
}

// POST (subscribe) and DELETE (unsubscribe) /v1/subscriptions.
func (s *HTTPServer) subscriptions(ctx *fasthttp.RequestCtx, subscribe bool) {
	op := wire.OpUnsubscribe
	if subscribe {
		op = wire.OpSubscribe
	}
	var req subscriptionsBody
	if err := decodeJSON(ctx.PostBody(), &req, `{"id":"...","topics":["..."]}`); err != nil {
		s.fail(ctx, errBadRequest, fmt.Sprintf("%s: %v", op, err))
		return
	}
	if !relay.ValidID(req.ID) {
		s.failed(ctx, badID(op.String(), []byte(req.ID)))
		return
	}
	if req.Topics == nil {
		s.fail(ctx, errBadRequest, fmt.Sprintf(`%s: the body has no "topics": want {"id":"...","topics":["..."]}`, op))
		return
	}
	if len(req.Topics) > s.cfg.MaxTopics {
		s.failed(ctx, tooMany(op, len(req.Topics), "topics", s.cfg.MaxTopics))
		return
	}
	o := opTopics(s.relay, op, req.ID, req.Topics)
	if o.failed() {
		// A subscribe stopped by a limit may have added the topics
		// before the one it could not: say how many.
		s.failWith(ctx, fromWire(o.status), o.msg, func(b []byte) []byte {
			return strconv.AppendInt(append(b, `"changed":`...), int64(o.n), 10)
		})
		return
	}
	b := strconv.AppendInt(append(make([]byte, 0, 24), `{"changed":`...), int64(o.n), 10)
	replyJSON(ctx, append(b, "}\n"...))
}

// DELETE /v1/clients/{id}.
func (s *HTTPServer) kick(ctx *fasthttp.RequestCtx, arg []byte) {
	id, ok := s.idArg(ctx, wire.OpKick, arg)
	if !ok {
		return
	}
	if !s.failed(ctx, opKick(s.relay, id)) {
		replyJSON(ctx, []byte("{}\n"))
	}
}

// GET /v1/clients/{id}.
func (s *HTTPServer) info(ctx *fasthttp.RequestCtx, arg []byte) {
	id, ok := s.idArg(ctx, wire.OpInfo, arg)
	if !ok {
		return
	}
	info, connected, o := opInfo(s.relay, id)
	if s.failed(ctx, o) {
		return
	}
	if !connected { // an error here, a flag in the Unix protocol
		o := notConnected(wire.OpInfo, id)
		s.failWith(ctx, fromWire(o.status), o.msg, func(b []byte) []byte {
			b = append(b, `"id":`...)
			b = appendJSONString(b, borrow(id))
			return append(b, `,"connected":false`...)
		})
		return
	}
	b := make([]byte, 0, 128)
	b = append(b, `{"id":`...)
	b = appendJSONString(b, info.ID)
	b = append(b, `,"connected":true,"since":"`...)
	b = info.Since.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","remote":"`...)
	b = info.Remote.AppendTo(b)
	b = append(b, "\"}\n"...)
	replyJSON(ctx, b)
}

// GET /v1/clients?cursor=&limit=.
func (s *HTTPServer) list(ctx *fasthttp.RequestCtx) {
	limit, ok := s.limitArg(ctx, wire.OpList, relay.MaxListPage)
	if !ok {
		return
	}
	ids, next, o := opList(s.relay, string(ctx.QueryArgs().Peek("cursor")), limit)
	if s.failed(ctx, o) {
		return
	}
	b := make([]byte, 0, 32+len(ids)*(relay.IDLen+3))
	b = append(b, '{')
	replyJSON(ctx, appendIDPage(b, ids, next))
}

// GET /v1/topics/{topic}/subscribers?cursor=&limit=.
func (s *HTTPServer) presence(ctx *fasthttp.RequestCtx, arg []byte) {
	const op = wire.OpPresence
	topic, ok := s.topicArg(ctx, op, arg)
	if !ok || s.failed(ctx, checkTopic(op.String(), topic)) {
		return
	}
	limit, ok := s.limitArg(ctx, op, relay.MaxPresencePage)
	if !ok {
		return
	}
	ids, next, count, o := opPresence(s.relay, topic, string(ctx.QueryArgs().Peek("cursor")), limit)
	if s.failed(ctx, o) {
		return
	}
	b := make([]byte, 0, 64+len(topic)+len(ids)*(relay.IDLen+3))
	b = append(b, `{"topic":`...)
	b = appendJSONString(b, borrow(topic))
	b = append(b, `,"subscribers":`...)
	b = strconv.AppendInt(b, int64(count), 10)
	b = append(b, ',')
	replyJSON(ctx, appendIDPage(b, ids, next))
}

// limitArg reads the query's limit: 0 (the relay's default) when absent,
// else a whole number from 1, capped at max. It answers the error itself.
func (s *HTTPServer) limitArg(ctx *fasthttp.RequestCtx, op wire.Op, max int) (int, bool) {
	args := ctx.QueryArgs()
	if !args.Has("limit") {
		return 0, true
	}
	v := args.Peek("limit")
	n, err := strconv.Atoi(string(v))
	if err != nil || n < 1 {
		s.fail(ctx, errBadRequest, fmt.Sprintf("%s: limit %q is not a whole number from 1 to %d", op, v, max))
		return 0, false
	}
	return min(n, max), true
}

// appendIDPage appends a page of IDs and the cursor of the next one, and
// closes the object: "ids":[...],"next":"..."}.
func appendIDPage(b []byte, ids []string, next string) []byte {
	b = append(b, `"ids":[`...)
	for i, id := range ids {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, id)
	}
	b = append(b, `],"next":`...)
	b = appendJSONString(b, next)
	return append(b, "}\n"...)
}
