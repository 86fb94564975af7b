package ingress

// The push routes of the HTTP API: send, send-many, publish and broadcast.
// They decode the request and encode the outcome; ops.go checks and runs
// the push.

import (
	"encoding/base64"
	"fmt"
	"strings"

	"github.com/valyala/fasthttp"

	"github.com/pushrelay/pushrelay/ingress/wire"
)

// POST /v1/send/{id}. The payload is the request body, which the relay
// frames (copies) before Send returns.
func (s *HTTPServer) sendID(ctx *fasthttp.RequestCtx, arg []byte) {
	id, ok := s.idArg(ctx, wire.OpSend, arg)
	if !ok {
		return
	}
	o := opSend(s.relay, id, ctx.PostBody(), false)
	if o.counts.UnknownID == 1 { // one recipient: an error here, a count in the Unix protocol
		o = notConnected(wire.OpSend, id)
	}
	s.pushed(ctx, o)
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
		s.failed(ctx, tooMany(op, len(req.IDs), "IDs", s.cfg.MaxIDs))
		return
	}
	if s.failed(ctx, checkIDs(op.String(), req.IDs)) {
		return
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
	s.pushed(ctx, opSendMany(s.relay, req.IDs, payload))
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
	topic, ok := s.topicArg(ctx, wire.OpPublish, arg)
	if !ok {
		return
	}
	s.pushed(ctx, opPublish(s.relay, topic, ctx.PostBody()))
}

// POST /v1/broadcast.
func (s *HTTPServer) broadcast(ctx *fasthttp.RequestCtx) {
	s.pushed(ctx, opBroadcast(s.relay, ctx.PostBody()))
}

// pushed answers a push's outcome: its counts, or its failure.
func (s *HTTPServer) pushed(ctx *fasthttp.RequestCtx, o outcome) {
	if !s.failed(ctx, o) {
		replyCounts(ctx, o.counts)
	}
}
