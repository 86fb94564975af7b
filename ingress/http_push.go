package ingress

// The push routes of the HTTP API: send, send-many, publish (broadcast is
// served in serveRoute).

import (
	"encoding/base64"
	"fmt"
	"strings"

	"github.com/valyala/fasthttp"

	"github.com/pushrelay/pushrelay/ingress/wire"
	"github.com/pushrelay/pushrelay/relay"
)

// POST /v1/send/{id}. The payload is the request body, which the relay
// frames (copies) before Send returns.
func (s *HTTPServer) sendID(ctx *fasthttp.RequestCtx, arg []byte) {
	id, ok := s.idArg(ctx, wire.OpSend, arg)
	if !ok {
		return
	}
	payload := ctx.PostBody()
	st := s.relay.Send(borrow(id), payload)
	if st == relay.UnknownID {
		s.fail(ctx, errUnknownID, fmt.Sprintf("send: no client %q is connected", id))
		return
	}
	if st == relay.Unsupported {
		s.fail(ctx, errUnsupported, "send: "+unsupportedReason(s.relay, string(id), payload))
		return
	}
	if s.pushFailed(ctx, wire.OpSend, st, payload) {
		return
	}
	var c relay.Counts
	switch st {
	case relay.Queued:
		c.Queued = 1
	case relay.DroppedSlow:
		c.DroppedSlow = 1
	}
	replyCounts(ctx, c)
}

// sendManyBody is POST /v1/send's request.
type sendManyBody struct {
	IDs        []string `json:"ids"`
	Data       *string  `json:"data"`
	DataBase64 *string  `json:"data_base64"`
}

// POST /v1/send.
func (s *HTTPServer) sendMany(ctx *fasthttp.RequestCtx) {
	const op = wire.OpSendMany
	var req sendManyBody
	if err := decodeJSON(ctx.PostBody(), &req, `{"ids":["..."],"data":"..."}`); err != nil {
		s.fail(ctx, errBadRequest, fmt.Sprintf("%s: %v", op, err))
		return
	}
	if req.IDs == nil {
		s.fail(ctx, errBadRequest, fmt.Sprintf(`%s: the body has no "ids": want {"ids":["..."],"data":"..."}`, op))
		return
	}
	if len(req.IDs) > s.cfg.MaxIDs {
		s.fail(ctx, errLimit, fmt.Sprintf("%s: %d IDs, the most in one request is %d", op, len(req.IDs), s.cfg.MaxIDs))
		return
	}
	for i, id := range req.IDs {
		if !relay.ValidID(id) {
			s.fail(ctx, errBadRequest, fmt.Sprintf("%s: ID %d, %q, is not a client ID", op, i, id))
			return
		}
	}
	var payload []byte
	switch {
	case req.Data != nil && req.DataBase64 != nil:
		s.fail(ctx, errBadRequest, fmt.Sprintf(`%s: the body has both "data" and "data_base64"; send one`, op))
		return
	case req.Data != nil:
		payload = []byte(*req.Data)
	case req.DataBase64 != nil:
		b, err := decodeBase64(*req.DataBase64)
		if err != nil {
			s.fail(ctx, errBadRequest, fmt.Sprintf("%s: data_base64 is not standard base64: %v", op, err))
			return
		}
		payload = b
	default:
		s.fail(ctx, errBadRequest, fmt.Sprintf(`%s: the body has neither "data" (text) nor "data_base64" (bytes)`, op))
		return
	}
	counts, st := s.relay.SendMany(req.IDs, payload)
	if s.pushFailed(ctx, op, st, payload) {
		return
	}
	replyCounts(ctx, counts)
}

// decodeBase64 reads standard base64 (RFC 4648 section 4), padded or not.
func decodeBase64(s string) ([]byte, error) {
	if strings.HasSuffix(s, "=") {
		return base64.StdEncoding.DecodeString(s)
	}
	return base64.RawStdEncoding.DecodeString(s)
}

// POST /v1/publish/{topic}.
func (s *HTTPServer) publish(ctx *fasthttp.RequestCtx, arg []byte) {
	const op = wire.OpPublish
	topic, err := pathArg(arg)
	if err == nil {
		err = relay.CheckTopic(borrow(topic))
	}
	if err != nil {
		s.fail(ctx, errBadRequest, fmt.Sprintf("%s: topic: %v", op, err))
		return
	}
	payload := ctx.PostBody()
	counts, st := s.relay.Publish(borrow(topic), payload)
	s.pushed(ctx, op, counts, st, payload)
}

// pushed answers a push to many: counts, or the reason the relay refused
// it as a whole.
func (s *HTTPServer) pushed(ctx *fasthttp.RequestCtx, op wire.Op, counts relay.Counts, st relay.Status, payload []byte) {
	if !s.pushFailed(ctx, op, st, payload) {
		replyCounts(ctx, counts)
	}
}

// pushFailed answers a push the relay refused as a whole and reports
// whether it did; its messages are the Unix protocol's.
func (s *HTTPServer) pushFailed(ctx *fasthttp.RequestCtx, op wire.Op, st relay.Status, payload []byte) bool {
	switch st {
	case relay.TooLarge:
		s.fail(ctx, errTooLarge, fmt.Sprintf("%s: %v", op, s.relay.CheckPayload(payload)))
	case relay.BadPayload:
		s.fail(ctx, errBadRequest, fmt.Sprintf("%s: %v", op, s.relay.CheckPayload(payload)))
	case relay.BadTopic:
		s.fail(ctx, errBadRequest, fmt.Sprintf("%s: invalid topic", op))
	case relay.Closed:
		s.fail(ctx, errShuttingDown, fmt.Sprintf("%s: the relay is shutting down", op))
	case relay.Overloaded:
		if op == wire.OpSendMany {
			return false // per recipient, counted in the reply
		}
		s.fail(ctx, errOverloaded, fmt.Sprintf("%s: the relay's queue is full; nothing was queued, retry later", op))
	case relay.Unreachable:
		s.fail(ctx, errUnavailable, fmt.Sprintf("%s: %v in time; it may or may not have been done, retry later", op, relay.ErrUnreachable))
	default:
		return false
	}
	return true
}
