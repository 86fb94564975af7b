package ingress

// The HTTP routes about clients and topics: subscriptions, kick, info,
// list and presence.

import (
	"errors"
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
		s.badID(ctx, op, []byte(req.ID))
		return
	}
	if req.Topics == nil {
		s.fail(ctx, errBadRequest, fmt.Sprintf(`%s: the body has no "topics": want {"id":"...","topics":["..."]}`, op))
		return
	}
	if len(req.Topics) > s.cfg.MaxTopics {
		s.fail(ctx, errLimit, fmt.Sprintf("%s: %d topics, the most in one request is %d", op, len(req.Topics), s.cfg.MaxTopics))
		return
	}
	var changed int
	var err error
	if subscribe {
		changed, err = s.relay.Subscribe(req.ID, req.Topics...)
	} else {
		changed, err = s.relay.Unsubscribe(req.ID, req.Topics...)
	}
	if err != nil {
		// A subscribe stopped by a limit may have added the topics
		// before the one it could not: say how many.
		s.failWith(ctx, fromWire(topicStatus(err)), fmt.Sprintf("%s: %v", op, err), func(b []byte) []byte {
			return strconv.AppendInt(append(b, `"changed":`...), int64(changed), 10)
		})
		return
	}
	b := strconv.AppendInt(append(make([]byte, 0, 24), `{"changed":`...), int64(changed), 10)
	replyJSON(ctx, append(b, "}\n"...))
}

// DELETE /v1/clients/{id}.
func (s *HTTPServer) kick(ctx *fasthttp.RequestCtx, arg []byte) {
	id, ok := s.idArg(ctx, wire.OpKick, arg)
	if !ok {
		return
	}
	switch st := s.relay.Kick(borrow(id)); st {
	case relay.Queued:
		replyJSON(ctx, []byte("{}\n"))
	case relay.UnknownID:
		s.fail(ctx, errUnknownID, fmt.Sprintf("kick: no client %q is connected", id))
	default:
		if !s.pushFailed(ctx, wire.OpKick, st, nil) {
			s.fail(ctx, errBadRequest, fmt.Sprintf("kick: %v", st))
		}
	}
}

// GET /v1/clients/{id}.
func (s *HTTPServer) info(ctx *fasthttp.RequestCtx, arg []byte) {
	id, ok := s.idArg(ctx, wire.OpInfo, arg)
	if !ok {
		return
	}
	info, connected := s.relay.Info(borrow(id))
	if !connected {
		s.failWith(ctx, errUnknownID, fmt.Sprintf("info: no client %q is connected", id), func(b []byte) []byte {
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
	args := ctx.QueryArgs()
	limit := 0
	if v := args.Peek("limit"); args.Has("limit") {
		n, err := strconv.Atoi(string(v))
		if err != nil || n < 1 {
			s.fail(ctx, errBadRequest, fmt.Sprintf("list: limit %q is not a whole number from 1 to %d", v, relay.MaxListPage))
			return
		}
		limit = min(n, relay.MaxListPage)
	}
	ids, next, err := s.relay.List(string(args.Peek("cursor")), limit)
	if errors.Is(err, relay.ErrUnreachable) {
		s.fail(ctx, errUnavailable, fmt.Sprintf("list: %v", err))
		return
	}
	if err != nil {
		s.fail(ctx, errBadRequest, fmt.Sprintf("list: %v", err))
		return
	}
	b := make([]byte, 0, 32+len(ids)*(relay.IDLen+3))
	b = append(b, `{"ids":[`...)
	for i, id := range ids {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, id)
	}
	b = append(b, `],"next":`...)
	b = appendJSONString(b, next)
	replyJSON(ctx, append(b, "}\n"...))
}

// GET /v1/topics/{topic}/subscribers?cursor=&limit=.
func (s *HTTPServer) presence(ctx *fasthttp.RequestCtx, arg []byte) {
	const op = wire.OpPresence
	topic, err := pathArg(arg)
	if err == nil {
		err = relay.CheckTopic(borrow(topic))
	}
	if err != nil {
		s.fail(ctx, errBadRequest, fmt.Sprintf("%s: topic: %v", op, err))
		return
	}
	args := ctx.QueryArgs()
	limit := 0
	if v := args.Peek("limit"); args.Has("limit") {
		n, err := strconv.Atoi(string(v))
		if err != nil || n < 1 {
			s.fail(ctx, errBadRequest, fmt.Sprintf("%s: limit %q is not a whole number from 1 to %d", op, v, relay.MaxPresencePage))
			return
		}
		limit = min(n, relay.MaxPresencePage)
	}
	ids, next, count, err := s.relay.Presence(borrow(topic), string(args.Peek("cursor")), limit)
	if err != nil {
		s.fail(ctx, fromWire(topicStatus(err)), fmt.Sprintf("%s: %v", op, err))
		return
	}
	b := make([]byte, 0, 64+len(topic)+len(ids)*(relay.IDLen+3))
	b = append(b, `{"topic":`...)
	b = appendJSONString(b, borrow(topic))
	b = append(b, `,"subscribers":`...)
	b = strconv.AppendInt(b, int64(count), 10)
	b = append(b, `,"ids":[`...)
	for i, id := range ids {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, id)
	}
	b = append(b, `],"next":`...)
	b = appendJSONString(b, next)
	replyJSON(ctx, append(b, "}\n"...))
}
