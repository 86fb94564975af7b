package ingress

// Routing of HTTP requests: which route a path names, and the checks every
// request passes before its handler (Host, Origin, token, method, media
// type; see http.go, Cross-site requests).

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/valyala/fasthttp"
)

// Routes, for dispatch and for counting requests.
type route uint8

const (
	routeOther route = iota // no such route, or a request fasthttp could not parse
	routeSendID
	routeSendMany
	routePublish
	routeBroadcast
	routeSubscriptions
	routeClient
	routeClients
	routeStats
	routeMetrics
	routeHealthz
	routePresence
	routeBatch
	numRoutes
)

// routeInfo is a route's pattern (its label in metrics) and its methods,
// as the Allow header lists them.
var routeInfo = [numRoutes]struct{ pattern, allow string }{
	routeOther:         {"other", ""},
	routeSendID:        {"/v1/send/{id}", "POST"},
	routeSendMany:      {"/v1/send", "POST"},
	routePublish:       {"/v1/publish/{topic}", "POST"},
	routeBroadcast:     {"/v1/broadcast", "POST"},
	routeSubscriptions: {"/v1/subscriptions", "POST, DELETE"},
	routeClient:        {"/v1/clients/{id}", "GET, HEAD, DELETE"},
	routeClients:       {"/v1/clients", "GET, HEAD"},
	routeStats:         {"/v1/stats", "GET, HEAD"},
	routeMetrics:       {"/metrics", "GET, HEAD"},
	routeHealthz:       {"/healthz", "GET, HEAD"},
	routePresence:      {"/v1/topics/{topic}/subscribers", "GET, HEAD"},
	routeBatch:         {"/v1/batch", "POST"},
}

// resolveRoute finds the route of a raw request path and its path argument
// (an ID or a topic, still percent-encoded). An empty argument is no route.
func resolveRoute(path []byte) (route, []byte) {
	p := borrow(path)
	prefixed := func(prefix string) ([]byte, bool) {
		if len(p) > len(prefix) && p[:len(prefix)] == prefix {
			return path[len(prefix):], true
		}
		return nil, false
	}
	switch p {
	case "/v1/send":
		return routeSendMany, nil
	case "/v1/broadcast":
		return routeBroadcast, nil
	case "/v1/batch":
		return routeBatch, nil
	case "/v1/subscriptions":
		return routeSubscriptions, nil
	case "/v1/clients":
		return routeClients, nil
	case "/v1/stats":
		return routeStats, nil
	case "/metrics":
		return routeMetrics, nil
	case "/healthz":
		return routeHealthz, nil
	}
	if arg, ok := prefixed("/v1/send/"); ok {
		return routeSendID, arg
	}
	if arg, ok := prefixed("/v1/publish/"); ok {
		return routePublish, arg
	}
	if arg, ok := prefixed("/v1/clients/"); ok {
		return routeClient, arg
	}
	if arg, ok := prefixed("/v1/topics/"); ok {
		const suffix = "/subscribers"
		if n := len(arg) - len(suffix); n > 0 && borrow(arg[n:]) == suffix {
			return routePresence, arg[:n]
		}
	}
	return routeOther, nil
}

// routeAllows reports whether the route takes the method.
func routeAllows(rt route, method string) bool {
	switch rt {
	case routeSendID, routeSendMany, routePublish, routeBroadcast, routeBatch:
		return method == fasthttp.MethodPost
	case routeSubscriptions:
		return method == fasthttp.MethodPost || method == fasthttp.MethodDelete
	case routeClient:
		return method == fasthttp.MethodGet || method == fasthttp.MethodHead || method == fasthttp.MethodDelete
	}
	return method == fasthttp.MethodGet || method == fasthttp.MethodHead
}

// handle answers one request.
func (s *HTTPServer) handle(ctx *fasthttp.RequestCtx) {
	rt, arg := resolveRoute(ctx.URI().PathOriginal())
	s.serveRoute(ctx, rt, arg)
	s.allowOrigin(ctx)
	s.count(rt, ctx.Response.StatusCode())
}

func (s *HTTPServer) serveRoute(ctx *fasthttp.RequestCtx, rt route, arg []byte) {
	method := borrow(ctx.Method())
	if !s.sameSite(ctx) || s.preflight(ctx, rt) {
		return
	}
	switch {
	case s.authorized(ctx):
		trust(ctx)
	case rt != routeHealthz:
		s.unauthorized(ctx)
		return
	}
	if rt == routeOther {
		s.fail(ctx, errNotFound, fmt.Sprintf("no route %s %s; docs/http.md lists the routes", method, trimForMessage(ctx.URI().PathOriginal())))
		return
	}
	if !routeAllows(rt, method) {
		s.fail(ctx, errMethod, fmt.Sprintf("%s does not take %s; it takes %s", routeInfo[rt].pattern, method, routeInfo[rt].allow))
		ctx.Response.Header.Set("Allow", routeInfo[rt].allow)
		return
	}
	switch rt {
	case routeSendID, routePublish, routeBroadcast, routeSendMany, routeSubscriptions, routeBatch:
		if enc := ctx.Request.Header.ContentEncoding(); len(enc) > 0 && !strings.EqualFold(borrow(enc), "identity") {
			s.fail(ctx, errBadRequest, fmt.Sprintf("Content-Encoding %q is not supported: send the body as is", enc))
			return
		}
	}
	switch rt {
	case routeSendMany, routeSubscriptions, routeBatch:
		if !s.jsonContent(ctx, rt) {
			return
		}
	}
	switch rt {
	case routeSendID:
		s.sendID(ctx, arg)
	case routeSendMany:
		s.sendMany(ctx)
	case routePublish:
		s.publish(ctx, arg)
	case routeBroadcast:
		s.broadcast(ctx)
	case routeSubscriptions:
		s.subscriptions(ctx, method == fasthttp.MethodPost)
	case routeClient:
		if method == fasthttp.MethodDelete {
			s.kick(ctx, arg)
		} else {
			s.info(ctx, arg)
		}
	case routeClients:
		s.list(ctx)
	case routePresence:
		s.presence(ctx, arg)
	case routeBatch:
		s.batch(ctx)
	case routeStats:
		s.stats(ctx)
	case routeMetrics:
		b := AppendPrometheus(make([]byte, 0, 32<<10), s.allMetrics())
		b = AppendIngressLatency(b)
		b = AppendStandardMetrics(b)
		ctx.SetStatusCode(fasthttp.StatusOK)
		ctx.SetContentType(PrometheusContentType)
		ctx.Response.SetBodyRaw(b)
	case routeHealthz:
		s.healthz(ctx)
	}
}

// authorized reports whether the request carries the token, if one is
// required. The comparison takes the same time whatever the token sent.
func (s *HTTPServer) authorized(ctx *fasthttp.RequestCtx) bool {
	if !s.hasToken {
		return true
	}
	return s.tokenMatches(ctx.Request.Header.Peek(fasthttp.HeaderAuthorization))
}

// tokenMatches reports whether an Authorization header's value carries the
// token, in constant time.
func (s *HTTPServer) tokenMatches(h []byte) bool {
	const scheme = "bearer "
	if len(h) <= len(scheme) || !strings.EqualFold(borrow(h[:len(scheme)]), scheme) {
		return false
	}
	sum := sha256.Sum256(bytes.TrimSpace(h[len(scheme):]))
	return subtle.ConstantTimeCompare(sum[:], s.tokenHash[:]) == 1
}

func (s *HTTPServer) unauthorized(ctx *fasthttp.RequestCtx) {
	msg := "this relay requires a token: send Authorization: Bearer <token>"
	if len(ctx.Request.Header.Peek(fasthttp.HeaderAuthorization)) > 0 {
		msg = "the Authorization header does not carry this relay's token (want Authorization: Bearer <token>)"
	}
	s.fail(ctx, errUnauthorized, msg)
	ctx.SetConnectionClose() // an untrusted connection does not stay
}

// sameSite refuses, answering 403, a request a browser page may have sent
// on its own: one with an Origin header not in Origins (a cross-site push
// needs no preflight with text/plain), or one on TCP whose Host does not
// name this relay (a page reading the API through DNS rebinding). The Unix
// socket is out of a browser's reach: Host is not checked there.
func (s *HTTPServer) sameSite(ctx *fasthttp.RequestCtx) bool {
	if origin := ctx.Request.Header.Peek(fasthttp.HeaderOrigin); len(origin) > 0 && !s.originAllowed(origin) {
		s.fail(ctx, errForbiddenOrigin, fmt.Sprintf("requests from browser pages are refused: Origin %s is not allowed (list it in --http-origins to serve it)", trimForMessage(origin)))
		ctx.SetConnectionClose()
		return false
	}
	if _, unix := ctx.LocalAddr().(*net.UnixAddr); !unix && !s.hostAllowed(ctx.Request.Header.Host()) {
		s.fail(ctx, errForbiddenHost, fmt.Sprintf("Host %s does not name this relay: use an IP address or localhost, such as 127.0.0.1:8844, or list the name in --http-hosts", trimForMessage(ctx.Request.Header.Host())))
		ctx.SetConnectionClose()
		return false
	}
	return true
}

// hostAllowed reports whether a Host header names this relay: an IP
// address literal (which a page cannot rebind to another address),
// localhost, or a name in Hosts. The port is not checked, so port
// mappings and proxies work.
func (s *HTTPServer) hostAllowed(host []byte) bool {
	if s.anyHost {
		return true
	}
	h := borrow(host)
	name := h
	if strings.HasPrefix(h, "[") {
		i := strings.IndexByte(h, ']')
		if i < 0 || (i+1 < len(h) && (h[i+1] != ':' || !isPort(h[i+2:]))) {
			return false
		}
		a, err := netip.ParseAddr(h[1:i])
		return err == nil && a.Is6()
	}
	if i := strings.LastIndexByte(h, ':'); i >= 0 {
		if !isPort(h[i+1:]) {
			return false
		}
		name = h[:i]
	}
	name = strings.TrimSuffix(name, ".")
	if name == "" {
		return false
	}
	if strings.EqualFold(name, "localhost") {
		return true
	}
	for _, n := range s.cfg.Hosts {
		if strings.EqualFold(name, n) {
			return true
		}
	}
	a, err := netip.ParseAddr(name)
	return err == nil && a.Is4()
}

// isPort reports whether p is a port number as a Host header carries one.
func isPort(p string) bool {
	if len(p) == 0 || len(p) > 5 {
		return false
	}
	for i := 0; i < len(p); i++ {
		if p[i] < '0' || p[i] > '9' {
			return false
		}
	}
	return true
}

// originAllowed reports whether Origins lists origin.
func (s *HTTPServer) originAllowed(origin []byte) bool {
	if s.anyOrigin {
		return true
	}
	for _, o := range s.cfg.Origins {
		if strings.EqualFold(borrow(origin), o) {
			return true
		}
	}
	return false
}

// allowOrigin adds the CORS header that lets an allowed origin's page read
// the response.
func (s *HTTPServer) allowOrigin(ctx *fasthttp.RequestCtx) {
	if len(s.cfg.Origins) == 0 {
		return
	}
	if origin := ctx.Request.Header.Peek(fasthttp.HeaderOrigin); len(origin) > 0 && s.originAllowed(origin) {
		ctx.Response.Header.SetBytesV(fasthttp.HeaderAccessControlAllowOrigin, origin)
		ctx.Response.Header.Set(fasthttp.HeaderVary, "Origin")
	}
}

// preflight answers a CORS preflight from an allowed origin (sameSite has
// refused the others) and reports whether it did.
func (s *HTTPServer) preflight(ctx *fasthttp.RequestCtx, rt route) bool {
	if !ctx.IsOptions() || len(ctx.Request.Header.Peek(fasthttp.HeaderOrigin)) == 0 ||
		len(ctx.Request.Header.Peek(fasthttp.HeaderAccessControlRequestMethod)) == 0 || rt == routeOther {
		return false
	}
	ctx.SetStatusCode(fasthttp.StatusNoContent)
	ctx.Response.Header.Set(fasthttp.HeaderAccessControlAllowMethods, routeInfo[rt].allow)
	ctx.Response.Header.Set(fasthttp.HeaderAccessControlAllowHeaders, "Authorization, Content-Type")
	ctx.Response.Header.Set(fasthttp.HeaderAccessControlMaxAge, "600")
	return true
}

// jsonContent refuses, answering 415, a JSON route's request that does not
// say its body is JSON: a browser sends a cross-site form or text/plain
// body without asking first, but never application/json. A batch's body,
// JSON lines, may also say application/x-ndjson.
func (s *HTTPServer) jsonContent(ctx *fasthttp.RequestCtx, rt route) bool {
	ct := borrow(ctx.Request.Header.ContentType())
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	ct = strings.TrimSpace(ct)
	if strings.EqualFold(ct, contentJSON) || rt == routeBatch && strings.EqualFold(ct, "application/x-ndjson") {
		return true
	}
	got := "no Content-Type"
	if ct != "" {
		got = "Content-Type " + strconv.Quote(ct)
	}
	s.fail(ctx, errMediaType, fmt.Sprintf("%s %s takes a JSON body and the request has %s: send Content-Type: application/json (curl: -H 'Content-Type: application/json')", ctx.Method(), routeInfo[rt].pattern, got))
	return false
}

// expect answers requests that wait for "100 Continue" before sending
// their body: refused ones are refused before the body is sent.
func (s *HTTPServer) expect(ctx *fasthttp.RequestCtx) int {
	rt, _ := resolveRoute(ctx.URI().PathOriginal())
	switch {
	case !s.sameSite(ctx):
	case rt != routeHealthz && !s.authorized(ctx):
		s.unauthorized(ctx)
	case ctx.Request.Header.ContentLength() > s.cfg.MaxBody:
		s.bodyTooLarge(ctx)
	default:
		return fasthttp.StatusContinue
	}
	s.count(rt, ctx.Response.StatusCode())
	return ctx.Response.StatusCode()
}

func (s *HTTPServer) bodyTooLarge(ctx *fasthttp.RequestCtx) {
	s.fail(ctx, errTooLarge, fmt.Sprintf("the request body is larger than %d bytes, the HTTP body limit; a payload may be at most %d bytes (max-message)", s.cfg.MaxBody, s.maxMessage))
}

// handleError answers a request fasthttp could not read.
func (s *HTTPServer) handleError(ctx *fasthttp.RequestCtx, err error) {
	var small *fasthttp.ErrSmallBuffer
	var ne net.Error
	switch {
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		s.bodyTooLarge(ctx)
		lingerBody(ctx.Conn())
	case errors.As(err, &small):
		s.fail(ctx, errHeadersTooLarge, "the request's headers are too large")
	case errors.Is(err, net.ErrClosed):
		return // evicted for a newcomer, or the server is closing: nobody to answer
	case errors.As(err, &ne) && ne.Timeout():
		s.fail(ctx, errTimeout, fmt.Sprintf("the request was not received within %v of the connection opening (or of its first byte)", httpReadTimeout))
	default:
		s.fail(ctx, errBadRequest, fmt.Sprintf("malformed HTTP request: %v", err))
	}
	s.count(routeOther, ctx.Response.StatusCode())
}
