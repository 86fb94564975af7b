package ingress

// Encoding of HTTP requests and replies: the JSON error of every failure
// (see http.go, Errors), counts, and the decoding of path arguments and
// JSON bodies.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strconv"

	"github.com/valyala/fasthttp"

	"github.com/pushrelay/pushrelay/ingress/wire"
	"github.com/pushrelay/pushrelay/relay"
)

// Response classes counted per route.
const (
	class2xx = iota
	class4xx
	class5xx
	numClasses
)

var classNames = [numClasses]string{"2xx", "4xx", "5xx"}

func (s *HTTPServer) count(rt route, code int) {
	c := class2xx
	switch {
	case code >= 500:
		c = class5xx
	case code >= 400:
		c = class4xx
	}
	s.counters.requests[rt][c].Add(1)
}

// Error kinds: the HTTP code, and the status word of the JSON reply and
// of the errors counter.
type httpError uint8

const (
	errBadRequest httpError = iota
	errUnauthorized
	errForbiddenHost
	errForbiddenOrigin
	errNotFound
	errUnknownID
	errMethod
	errTimeout
	errTooLarge
	errMediaType
	errHeadersTooLarge
	errLimit
	errOverloaded
	errShuttingDown
	errUnavailable
	errUnsupported
	numHTTPErrors
)

var httpErrors = [numHTTPErrors]struct {
	code int
	name string
}{
	errBadRequest:      {fasthttp.StatusBadRequest, "bad_request"},
	errUnauthorized:    {fasthttp.StatusUnauthorized, "unauthorized"},
	errForbiddenHost:   {fasthttp.StatusForbidden, "forbidden_host"},
	errForbiddenOrigin: {fasthttp.StatusForbidden, "forbidden_origin"},
	errNotFound:        {fasthttp.StatusNotFound, "not_found"},
	errUnknownID:       {fasthttp.StatusNotFound, "unknown_id"},
	errMethod:          {fasthttp.StatusMethodNotAllowed, "method_not_allowed"},
	errTimeout:         {fasthttp.StatusRequestTimeout, "timeout"},
	errTooLarge:        {fasthttp.StatusRequestEntityTooLarge, "too_large"},
	errMediaType:       {fasthttp.StatusUnsupportedMediaType, "unsupported_media_type"},
	errHeadersTooLarge: {fasthttp.StatusRequestHeaderFieldsTooLarge, "headers_too_large"},
	errLimit:           {fasthttp.StatusUnprocessableEntity, "limit"},
	errOverloaded:      {fasthttp.StatusServiceUnavailable, "overloaded"},
	errShuttingDown:    {fasthttp.StatusServiceUnavailable, "shutting_down"},
	errUnavailable:     {fasthttp.StatusServiceUnavailable, "unavailable"},
	errUnsupported:     {fasthttp.StatusUnprocessableEntity, "unsupported"},
}

// fromWire maps a Unix-protocol status onto an HTTP error, so both
// ingresses answer the same failure the same way.
func fromWire(st wire.Status) httpError {
	switch st {
	case wire.StatusTooLarge:
		return errTooLarge
	case wire.StatusLimit:
		return errLimit
	case wire.StatusUnknownID:
		return errUnknownID
	case wire.StatusOverloaded:
		return errOverloaded
	case wire.StatusShuttingDown:
		return errShuttingDown
	case wire.StatusUnavailable:
		return errUnavailable
	case wire.StatusUnsupported:
		return errUnsupported
	}
	return errBadRequest
}

const contentJSON = "application/json"

// fail answers with a JSON error.
func (s *HTTPServer) fail(ctx *fasthttp.RequestCtx, kind httpError, msg string) {
	s.failWith(ctx, kind, msg, nil)
}

// failWith answers with a JSON error whose object starts with the fields
// that fields appends.
func (s *HTTPServer) failWith(ctx *fasthttp.RequestCtx, kind httpError, msg string, fields func([]byte) []byte) {
	e := &httpErrors[kind]
	s.counters.errors[kind].Add(1)
	b := make([]byte, 0, 48+len(msg))
	b = append(b, '{')
	if fields != nil {
		b = append(fields(b), ',')
	}
	b = append(b, `"error":`...)
	b = appendJSONString(b, msg)
	b = append(b, `,"status":"`...)
	b = append(b, e.name...)
	b = append(b, "\"}\n"...)
	ctx.Response.Reset()
	ctx.SetStatusCode(e.code)
	ctx.SetContentType(contentJSON)
	switch kind {
	case errOverloaded:
		ctx.Response.Header.Set("Retry-After", "1")
	case errUnauthorized:
		ctx.Response.Header.Set("WWW-Authenticate", `Bearer realm="pushrelay"`)
	}
	ctx.Response.SetBodyRaw(b)
}

// failed answers an operation's failure (see ops.go) and reports whether
// it did.
func (s *HTTPServer) failed(ctx *fasthttp.RequestCtx, o outcome) bool {
	if o.failed() {
		s.fail(ctx, fromWire(o.status), o.msg)
	}
	return o.failed()
}

// replyJSON answers 200 with a JSON body.
func replyJSON(ctx *fasthttp.RequestCtx, b []byte) {
	ctx.SetStatusCode(fasthttp.StatusOK)
	ctx.SetContentType(contentJSON)
	ctx.Response.SetBodyRaw(b)
}

// pathArg percent-decodes a path argument. Without a '%' it returns the
// bytes as they are, which are the request's and valid only during the
// handler.
func pathArg(arg []byte) ([]byte, error) {
	if bytes.IndexByte(arg, '%') < 0 {
		return arg, nil
	}
	v, err := url.PathUnescape(string(arg))
	if err != nil {
		return nil, fmt.Errorf("%q is not validly percent-encoded", arg)
	}
	return []byte(v), nil
}

// idArg decodes and checks the ID in the path, answering the error itself.
func (s *HTTPServer) idArg(ctx *fasthttp.RequestCtx, op wire.Op, arg []byte) ([]byte, bool) {
	id, err := pathArg(arg)
	if err != nil || !relay.ValidID(borrow(id)) {
		s.failed(ctx, badID(op.String(), arg))
		return nil, false
	}
	return id, true
}

// topicArg decodes the topic in the path, answering the error itself; the
// operation checks its name.
func (s *HTTPServer) topicArg(ctx *fasthttp.RequestCtx, op wire.Op, arg []byte) ([]byte, bool) {
	topic, err := pathArg(arg)
	if err != nil {
		s.fail(ctx, errBadRequest, fmt.Sprintf("%s: topic: %v", op, err))
		return nil, false
	}
	return topic, true
}

// replyCounts answers 200 with counts, built without a JSON encoder: the
// push routes are the hot ones.
func replyCounts(ctx *fasthttp.RequestCtx, c relay.Counts) {
	var buf [160]byte
	b := append(appendCountsJSON(buf[:0], c), '\n')
	ctx.SetStatusCode(fasthttp.StatusOK)
	ctx.SetContentType(contentJSON)
	ctx.Response.SetBody(b)
}

// appendCountsJSON appends c as the JSON object of docs/http.md.
func appendCountsJSON(b []byte, c relay.Counts) []byte {
	b = append(b, `{"queued":`...)
	b = strconv.AppendInt(b, int64(c.Queued), 10)
	b = append(b, `,"unknown":`...)
	b = strconv.AppendInt(b, int64(c.UnknownID), 10)
	b = append(b, `,"dropped":`...)
	b = strconv.AppendInt(b, int64(c.DroppedSlow), 10)
	b = append(b, `,"overloaded":`...)
	b = strconv.AppendInt(b, int64(c.Overloaded), 10)
	b = append(b, `,"unsupported":`...)
	b = strconv.AppendInt(b, int64(c.Unsupported), 10)
	if c.Unreachable != 0 {
		b = append(b, `,"unreachable":`...)
		b = strconv.AppendInt(b, int64(c.Unreachable), 10)
	}
	return append(b, '}')
}

// decodeJSON decodes one JSON object into v, refusing unknown fields and
// anything after the object; want shows the expected shape in errors.
func decodeJSON(body []byte, v any, want string) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return fmt.Errorf("the body is empty; want %s", want)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			if te.Field == "" {
				return fmt.Errorf("the body is a JSON %s; want %s", te.Value, want)
			}
			return fmt.Errorf("field %q is a JSON %s; want %s", te.Field, te.Value, want)
		}
		return fmt.Errorf("the body is not the JSON %s: %v", want, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("data after the JSON object; want one object, %s", want)
	}
	return nil
}

// trimForMessage quotes at most 100 bytes of b for an error message.
func trimForMessage(b []byte) string {
	if len(b) > 100 {
		return strconv.Quote(string(b[:100])) + "..."
	}
	return strconv.Quote(string(b))
}
