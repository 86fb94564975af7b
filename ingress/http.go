package ingress

// The HTTP API: the same operations as the Unix-socket protocol, for web
// apps that would rather speak HTTP/1.1. docs/http.md has every route with
// curl examples; this comment is the reference the code follows.
//
// # Routes
//
//	POST   /v1/send/{id}         body: the payload          -> counts
//	POST   /v1/send              {"ids":[...],"data":"..."} or {"ids":[...],"data_base64":"..."} -> counts
//	POST   /v1/publish/{topic}   body: the payload          -> counts
//	POST   /v1/broadcast         body: the payload          -> counts
//	POST   /v1/batch             one push a line (batch.go) -> {"results":[counts...],"totals":counts}
//	POST   /v1/subscriptions     {"id":"...","topics":[...]} -> {"changed":N}
//	DELETE /v1/subscriptions     as POST                    -> {"changed":N}
//	GET    /v1/clients/{id}      -> {"id","connected":true,"since","remote"}
//	DELETE /v1/clients/{id}      kick                       -> {}
//	GET    /v1/clients?cursor=&limit=  -> {"ids":[...],"next":"..."}
//	GET    /v1/topics/{topic}/subscribers?cursor=&limit=  -> {"topic","subscribers":N,"ids":[...],"next":"..."}
//	GET    /v1/stats             -> {"metric{labels}": value, ...}
//	GET    /metrics              Prometheus text format 0.0.4, with the go_* and process_* families
//	GET    /healthz              "ok\n" while the relay serves (no token needed)
//
// counts is {"queued":N,"unknown":N,"dropped":N,"overloaded":N,"unsupported":N}. Path
// segments are taken from the request line as sent and percent-decoded, so
// a topic may hold '/' as is and anything else percent-encoded.
//
// # Errors
//
// Every error is JSON, {"error":"one sentence","status":"word"}, with the
// same words as the Unix protocol's statuses where they overlap:
//
//	400 bad_request         malformed JSON or HTTP, invalid ID or topic, a payload the framing cannot carry
//	401 unauthorized        missing or wrong bearer token (WWW-Authenticate: Bearer)
//	403 forbidden_host      the Host header does not name this relay (DNS rebinding)
//	403 forbidden_origin    a browser's cross-site request (an Origin not in Origins)
//	404 unknown_id          no client with that ID is connected
//	404 not_found           no such route
//	405 method_not_allowed  wrong method for the route (Allow lists the right ones)
//	408 timeout             the request was not received in time
//	413 too_large           payload over --max-message, or body over MaxBody
//	415 unsupported_media_type  a JSON route without Content-Type: application/json
//	422 limit               too many IDs or topics in one request, or a topic limit reached
//	422 unsupported         send: the client's transport cannot carry the payload (SSE and
//	                        not UTF-8; a tcp client and a byte its framing forbids)
//	503 overloaded          the relay's queues are full; nothing was queued (Retry-After: 1)
//	503 shutting_down       the relay is draining and accepts no pushes
//
// # Connections
//
// fasthttp serves each connection on one goroutine from its worker pool.
// The acceptor admits at most MaxConns at once across the TCP and Unix
// listeners. A connection is untrusted until it has sent a request that
// passed the Host, Origin and token checks; at the limit, a new connection
// takes the place of the oldest untrusted one (closed, counted as evicted),
// and only when every connection is trusted is it refused with a
// plain-text 503. A request must arrive whole within httpReadTimeout of the
// connection opening (or of its first byte, on a keep-alive connection), so
// silent connections cannot keep token holders out.
//
// # Cross-site requests
//
// A page in a browser on the relay's host can send requests to loopback. A
// request with an Origin header is refused unless its origin is listed in
// Origins, so pages cannot push (text/plain needs no preflight). A request
// on TCP whose Host is not an IP address literal, localhost or a name in
// Hosts is refused, so a page cannot read the API through DNS rebinding.
// JSON routes require Content-Type: application/json.

import (
	"bytes"
	"container/list"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/pushrelay/pushrelay/ingress/wire"
	"github.com/pushrelay/pushrelay/relay"
)

// HTTPConfig configures the HTTP server. Zero values mean the defaults.
type HTTPConfig struct {
	// Addr is the TCP listener's HOST:PORT; "" serves no TCP. Port 0 picks
	// a free port (HTTPServer.Addr tells which). An address that is not
	// loopback needs a Token.
	Addr string
	// UnixPath, if set, also (or instead) serves HTTP on a Unix socket
	// there, mode 0660: the relay's user and group.
	UnixPath string
	// Token, if set, is required on every route but /healthz as
	// "Authorization: Bearer <token>". Visible ASCII, no spaces.
	Token string
	// MaxBody caps a request body. Default 2 × max-message + 64 KiB, room
	// for a payload in JSON or base64 with the IDs beside it.
	MaxBody int
	// MaxConns caps HTTP connections open at once, both listeners
	// together. Default 32.
	MaxConns int
	// MaxIDs caps the IDs in one POST /v1/send. Default 10,000, as the
	// Unix protocol's send_many.
	MaxIDs int
	// MaxTopics caps the topics in one subscriptions request. Default 100.
	MaxTopics int
	// Hosts are the names, besides IP address literals and localhost,
	// that a request's Host header may carry on the TCP listener (the port
	// is not checked); "*" allows any. Default none.
	Hosts []string
	// Origins are the browser origins, such as https://app.example.com,
	// whose requests (which carry an Origin header) are served, with CORS
	// headers; "*" allows any. Default none: every request with an Origin
	// header is refused.
	Origins []string
	// MaxBatch caps the pushes (lines) in one POST /v1/batch. Default
	// 10,000. Its body is capped by MaxBody like any other.
	MaxBatch int
	// Logger for lifecycle and errors. Default slog.Default().
	Logger *slog.Logger
	// Extra, if set, returns more metrics for /metrics and /v1/stats,
	// such as the Unix-socket server's counters. Called per scrape from
	// the serving goroutine; it must be safe for concurrent use.
	Extra func() []relay.Metric
}

// Defaults of HTTPConfig, and the address the command serves by default.
const (
	DefaultHTTPAddr     = "127.0.0.1:8844"
	DefaultHTTPMaxConns = 32
	// httpBodySlack is what MaxBody adds to twice max-message by default.
	httpBodySlack = 64 << 10
)

// Timeouts of HTTP connections. A keep-alive connection may idle longer
// than common clients keep one (Go's http.Transport: 90 s), so the client
// closes first and never sends into a connection the relay is closing.
// fasthttp sets the read deadline httpReadTimeout ahead when a connection
// opens and again at the first byte of each later request; it covers the
// headers and the body, so a connection may not stay silent or trickle a
// request for longer. An authorized request whose body is over
// httpLongBody gets httpBodyTimeout from the end of its headers instead.
const (
	httpReadTimeout  = 5 * time.Second  // a request, headers and body, from the connection's opening or its first byte
	httpBodyTimeout  = 30 * time.Second // the body of an authorized request over httpLongBody
	httpLongBody     = 64 << 10
	httpWriteTimeout = 30 * time.Second // one response
	httpIdleTimeout  = 2 * time.Minute  // between requests on a keep-alive connection
	httpCloseTimeout = 5 * time.Second  // Close waits this long for requests in flight
	lingerTimeout    = 2 * time.Second  // reading an oversized body before answering 413
	lingerMax        = 16 << 20         // bytes of an oversized body read before giving up
)

func (cfg HTTPConfig) withDefaults(maxMessage int) (HTTPConfig, error) {
	bad := func(format string, args ...any) (HTTPConfig, error) {
		return HTTPConfig{}, fmt.Errorf("%w: http: "+format, append([]any{ErrBadConfig}, args...)...)
	}
	if cfg.Addr == "" && cfg.UnixPath == "" {
		return bad("no address: set a TCP address, a Unix socket path, or both")
	}
	if cfg.Addr != "" {
		if _, _, err := net.SplitHostPort(cfg.Addr); err != nil {
			return bad("address %q: %v", cfg.Addr, err)
		}
	}
	if len(cfg.UnixPath) > 107 {
		return bad("socket path %q is %d bytes; Unix sockets allow 107", cfg.UnixPath, len(cfg.UnixPath))
	}
	for i := 0; i < len(cfg.Token); i++ {
		if c := cfg.Token[i]; c < 0x21 || c > 0x7e {
			return bad("the token holds byte 0x%02x at offset %d; use visible ASCII without spaces", c, i)
		}
	}
	if cfg.MaxBody == 0 {
		cfg.MaxBody = 2*maxMessage + httpBodySlack
	}
	if cfg.MaxBody < maxMessage {
		return bad("max body %d cannot hold a payload of max-message %d", cfg.MaxBody, maxMessage)
	}
	if cfg.MaxConns == 0 {
		cfg.MaxConns = DefaultHTTPMaxConns
	}
	if cfg.MaxIDs == 0 {
		cfg.MaxIDs = wire.DefaultMaxIDs
	}
	if cfg.MaxTopics == 0 {
		cfg.MaxTopics = wire.DefaultMaxTopics
	}
	if cfg.MaxBatch == 0 {
		cfg.MaxBatch = DefaultMaxBatch
	}
	if cfg.MaxConns < 0 || cfg.MaxIDs < 0 || cfg.MaxTopics < 0 || cfg.MaxBatch < 0 {
		return bad("limits must be positive (conns %d, ids %d, topics %d, batch %d)", cfg.MaxConns, cfg.MaxIDs, cfg.MaxTopics, cfg.MaxBatch)
	}
	hosts := make([]string, 0, len(cfg.Hosts))
	for _, h := range cfg.Hosts {
		if h == "" || strings.ContainsAny(h, ":/[] ") && h != "*" {
			return bad("host %q (--http-hosts): want a DNS name such as relay.internal, without a port or scheme (IP addresses and localhost are always allowed)", h)
		}
		hosts = append(hosts, strings.TrimSuffix(h, "."))
	}
	cfg.Hosts = hosts
	for _, o := range cfg.Origins {
		if o != "*" && !(strings.HasPrefix(o, "http://") || strings.HasPrefix(o, "https://")) || strings.HasSuffix(o, "/") {
			return bad("origin %q (--http-origins): want scheme://host[:port] as a browser sends it, such as https://app.example.com, or *", o)
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return cfg, nil
}

// HTTPServer serves the HTTP API. Its methods are safe for concurrent use.
type HTTPServer struct {
	// Fixed after ListenHTTP.
	cfg        HTTPConfig
	maxMessage int
	relay      Relay
	log        *slog.Logger
	srv        *fasthttp.Server
	ln         *acceptor
	tcpAddr    string   // "" without a TCP listener
	tokenHash  [32]byte // SHA-256 of cfg.Token, compared in constant time
	hasToken   bool
	anyHost    bool // cfg.Hosts holds "*"
	anyOrigin  bool // cfg.Origins holds "*"

	mu      sync.Mutex
	serving bool                  // guarded by mu
	closed  bool                  // guarded by mu
	conns   map[net.Conn]struct{} // guarded by mu: open connections, for Close

	counters httpCounters
}

// httpCounters are the HTTP server's own counters. Atomic.
type httpCounters struct {
	requests [numRoutes][numClasses]atomic.Uint64
	errors   [numHTTPErrors]atomic.Uint64
	conns    atomic.Int64
	warned   atomic.Int64 // unix nanoseconds of the last fasthttp log line
	muted    atomic.Uint64
}

// ListenHTTP validates cfg and binds its listeners; Serve then serves
// them. maxMessage is the relay's --max-message. A TCP address that is not
// loopback is refused unless cfg.Token is set: the API pushes to every
// client and kicks them.
func ListenHTTP(cfg HTTPConfig, r Relay, maxMessage int) (*HTTPServer, error) {
	cfg, err := cfg.withDefaults(maxMessage)
	if err != nil {
		return nil, err
	}
	s := &HTTPServer{cfg: cfg, maxMessage: maxMessage, relay: r, log: cfg.Logger, conns: map[net.Conn]struct{}{}}
	if cfg.Token != "" {
		s.tokenHash = sha256.Sum256([]byte(cfg.Token))
		s.hasToken = true
	}
	for _, h := range cfg.Hosts {
		s.anyHost = s.anyHost || h == "*"
	}
	for _, o := range cfg.Origins {
		s.anyOrigin = s.anyOrigin || o == "*"
	}
	var lns []net.Listener
	closeAll := func() {
		for _, ln := range lns {
			ln.Close()
		}
	}
	if cfg.Addr != "" {
		ta, err := net.ResolveTCPAddr("tcp", cfg.Addr)
		if err != nil {
			return nil, fmt.Errorf("http: resolve %s: %w", cfg.Addr, err)
		}
		if !ta.IP.IsLoopback() && cfg.Token == "" {
			return nil, fmt.Errorf("%w: http: %s is reachable from other hosts and no token is set; set a token (--http-token) or listen on loopback, such as 127.0.0.1:8844", ErrBadConfig, cfg.Addr)
		}
		ln, err := net.ListenTCP("tcp", ta)
		if err != nil {
			return nil, fmt.Errorf("http: listen on %s: %w", cfg.Addr, err)
		}
		lns = append(lns, ln)
		s.tcpAddr = ln.Addr().String()
	}
	if cfg.UnixPath != "" {
		ln, err := listenSocket(cfg.UnixPath, DefaultMode, "http")
		if err != nil {
			closeAll()
			return nil, err
		}
		lns = append(lns, ln)
	}
	s.ln = newAcceptor(lns, cfg.MaxConns, s.log)
	s.srv = &fasthttp.Server{
		Handler:        s.handle,
		ErrorHandler:   s.handleError,
		ExpectHandler:  s.expect,
		HeaderReceived: s.headerReceived,
		ConnState:      s.connState,
		Logger:         fasthttpLogger{s},
		// The acceptor enforces MaxConns. fasthttp's own count drops a
		// little after a connection closes, and an evicted connection
		// stays in it until its goroutine notices: leave it room.
		Concurrency:                  2 * cfg.MaxConns,
		MaxRequestBodySize:           cfg.MaxBody,
		ReadTimeout:                  httpReadTimeout,
		WriteTimeout:                 httpWriteTimeout,
		IdleTimeout:                  httpIdleTimeout,
		DisablePreParseMultipartForm: true, // bodies are payloads, never forms
		CloseOnShutdown:              true,
		NoDefaultServerHeader:        true,
	}
	return s, nil
}

// Addr returns the TCP listener's address, with the port chosen if the
// configuration asked for port 0, or "" if there is no TCP listener.
func (s *HTTPServer) Addr() string { return s.tcpAddr }

// UnixPath returns the Unix socket's path, or "".
func (s *HTTPServer) UnixPath() string { return s.cfg.UnixPath }

// Serve serves HTTP until Close; it returns nil after Close, and an error
// only if a listener fails for good.
func (s *HTTPServer) Serve() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	if s.serving {
		s.mu.Unlock()
		return errors.New("http: Serve called twice")
	}
	s.serving = true
	s.mu.Unlock()
	s.log.Info("http listening", "addr", s.tcpAddr, "socket", s.cfg.UnixPath, "token", s.hasToken,
		"max_conns", s.cfg.MaxConns, "max_body", s.cfg.MaxBody, "hosts", s.cfg.Hosts, "origins", s.cfg.Origins)
	err := s.srv.Serve(s.ln)
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	switch {
	case closed:
		return nil
	case err == nil:
		return errors.New("http: listener closed unexpectedly")
	}
	return fmt.Errorf("http: serve: %w", err)
}

// Close stops accepting, lets requests in flight finish (up to 5 s, then
// closes their connections), closes idle connections and removes the Unix
// socket file.
func (s *HTTPServer) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), httpCloseTimeout)
	err := s.srv.ShutdownWithContext(ctx)
	cancel()
	if errors.Is(err, context.DeadlineExceeded) {
		s.mu.Lock()
		n := len(s.conns)
		for c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		s.log.Warn("http: requests still in flight at close; connections closed", "conns", n, "timeout", httpCloseTimeout.String())
		err = nil
	}
	// Serve may not have handed the listener to fasthttp yet.
	if lnErr := s.ln.Close(); err == nil && lnErr != nil && !errors.Is(lnErr, net.ErrClosed) {
		err = lnErr
	}
	if s.cfg.UnixPath != "" {
		if rmErr := os.Remove(s.cfg.UnixPath); rmErr != nil && !errors.Is(rmErr, os.ErrNotExist) && err == nil {
			err = rmErr
		}
	}
	return err
}

func (s *HTTPServer) connState(c net.Conn, st fasthttp.ConnState) {
	switch st {
	case fasthttp.StateNew:
		s.counters.conns.Add(1)
		s.mu.Lock()
		s.conns[c] = struct{}{}
		s.mu.Unlock()
	case fasthttp.StateClosed, fasthttp.StateHijacked:
		s.counters.conns.Add(-1)
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
	}
}

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

// replyJSON answers 200 with a JSON body.
func replyJSON(ctx *fasthttp.RequestCtx, b []byte) {
	ctx.SetStatusCode(fasthttp.StatusOK)
	ctx.SetContentType(contentJSON)
	ctx.Response.SetBodyRaw(b)
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
		payload := ctx.PostBody()
		counts, st := s.relay.Broadcast(payload)
		s.pushed(ctx, wire.OpBroadcast, counts, st, payload)
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

// trust marks the request's connection as one that has sent an authorized
// request: it is no longer evicted for newcomers.
func trust(ctx *fasthttp.RequestCtx) {
	if c, ok := ctx.Conn().(*httpConn); ok && !c.trusted.Load() {
		c.a.trust(c)
	}
}

// headerReceived gives an authorized request with a long body more time
// than httpReadTimeout to send it.
func (s *HTTPServer) headerReceived(h *fasthttp.RequestHeader) fasthttp.RequestConfig {
	if h.ContentLength() <= httpLongBody {
		return fasthttp.RequestConfig{}
	}
	if s.hasToken && !s.tokenMatches(h.Peek(fasthttp.HeaderAuthorization)) {
		return fasthttp.RequestConfig{}
	}
	return fasthttp.RequestConfig{ReadTimeout: httpBodyTimeout}
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

func (s *HTTPServer) badID(ctx *fasthttp.RequestCtx, op wire.Op, id []byte) {
	s.fail(ctx, errBadRequest, fmt.Sprintf("%s: %q is not a client ID (22 to 64 characters of A-Z a-z 0-9 _ -)", op, id))
}

// idArg decodes and checks the ID in the path, answering the error itself.
func (s *HTTPServer) idArg(ctx *fasthttp.RequestCtx, op wire.Op, arg []byte) ([]byte, bool) {
	id, err := pathArg(arg)
	if err != nil || !relay.ValidID(borrow(id)) {
		s.badID(ctx, op, arg)
		return nil, false
	}
	return id, true
}

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

// GET /v1/stats: every metric as one JSON object.
func (s *HTTPServer) stats(ctx *fasthttp.RequestCtx) {
	ms := s.allMetrics()
	b := make([]byte, 0, 64*len(ms)+4)
	b = append(b, '{')
	for i := range ms {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, metricKey(&ms[i]))
		b = append(b, ':')
		b = appendJSONNumber(b, ms[i].Value)
	}
	replyJSON(ctx, append(b, "}\n"...))
}

// GET /healthz: 200 while the relay accepts pushes, 503 once it drains or
// its event loops have stopped.
func (s *HTTPServer) healthz(ctx *fasthttp.RequestCtx) {
	ctx.SetContentType("text/plain; charset=utf-8")
	if err := s.relayHealth(); err != nil {
		ctx.SetStatusCode(fasthttp.StatusServiceUnavailable)
		ctx.SetBodyString(err.Error() + "\n")
		return
	}
	ctx.SetStatusCode(fasthttp.StatusOK)
	ctx.SetBodyString("ok\n")
}

// relayHealth says why the relay does not serve, or nil.
func (s *HTTPServer) relayHealth() error { return s.relay.Serving() }

// allMetrics is the relay's metrics, then Extra's, then the HTTP server's.
func (s *HTTPServer) allMetrics() []relay.Metric {
	ms := s.relay.Metrics()
	if s.cfg.Extra != nil {
		ms = append(ms, s.cfg.Extra()...)
	}
	return append(ms, s.Metrics()...)
}

// Metrics returns the HTTP server's own counters. Safe for concurrent use.
func (s *HTTPServer) Metrics() []relay.Metric {
	c := &s.counters
	ms := make([]relay.Metric, 0, int(numRoutes)*numClasses+int(numHTTPErrors)+3)
	for rt := range numRoutes {
		for cl := range numClasses {
			ms = append(ms, relay.Metric{
				Name:   "pushrelay_http_requests_total",
				Labels: `route="` + routeInfo[rt].pattern + `",code="` + classNames[cl] + `"`,
				Type:   "counter", Help: "HTTP requests answered, by route and class of status code.",
				Value: float64(c.requests[rt][cl].Load()),
			})
		}
	}
	for k := range httpError(numHTTPErrors) {
		ms = append(ms, relay.Metric{
			Name: "pushrelay_http_errors_total", Labels: `status="` + httpErrors[k].name + `"`,
			Type: "counter", Help: "HTTP error replies, by status.", Value: float64(c.errors[k].Load()),
		})
	}
	refused := s.ln.refused.Load()
	if s.srv != nil {
		refused += uint64(s.srv.GetRejectedConnectionsCount())
	}
	return append(ms,
		relay.Metric{Name: "pushrelay_http_connections", Type: "gauge", Help: "HTTP connections open.", Value: float64(c.conns.Load())},
		relay.Metric{Name: "pushrelay_http_refused_total", Type: "counter", Help: "HTTP connections refused over the connection limit, every open one having sent an authorized request.", Value: float64(refused)},
		relay.Metric{Name: "pushrelay_http_evicted_total", Type: "counter", Help: "HTTP connections closed, before they sent an authorized request, to make room for a new one at the connection limit.", Value: float64(s.ln.evicted.Load())},
	)
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

// lingerBody reads what the client is still sending of a body the relay
// refused, for a while, before the reply and the close: closing a socket
// with unread bytes sends a reset, and the client would lose the reply.
func lingerBody(c net.Conn) {
	if c == nil {
		return
	}
	buf := make([]byte, 32<<10)
	end := time.Now().Add(lingerTimeout)
	for n := 0; n < lingerMax; {
		// The client waits for the reply once its body is sent: a pause
		// means it is done.
		d := min(time.Until(end), 50*time.Millisecond)
		if d <= 0 || c.SetReadDeadline(time.Now().Add(d)) != nil {
			return
		}
		m, err := c.Read(buf)
		n += m
		if err != nil {
			return
		}
	}
}

// fasthttpLogger sends fasthttp's own log lines (connection limit reached,
// connection errors) to slog, at most one per 10 seconds.
type fasthttpLogger struct{ s *HTTPServer }

func (l fasthttpLogger) Printf(format string, args ...any) {
	c := &l.s.counters
	now := time.Now().UnixNano()
	last := c.warned.Load()
	if now-last < int64(10*time.Second) || !c.warned.CompareAndSwap(last, now) {
		c.muted.Add(1)
		return
	}
	l.s.log.Warn("http: "+fmt.Sprintf(format, args...), "suppressed", c.muted.Swap(0))
}

// acceptor merges the HTTP listeners into the one net.Listener fasthttp
// serves, so its connection limit covers both; rides out accept errors
// such as EMFILE that fasthttp would take as fatal; and admits at most max
// connections, making room for a newcomer by closing the oldest untrusted
// one (see the package comment, Connections).
type acceptor struct {
	// Fixed after newAcceptor.
	lns   []net.Listener
	max   int
	log   *slog.Logger
	conns chan net.Conn
	errs  chan error
	done  chan struct{}
	start sync.Once
	stop  sync.Once
	wg    sync.WaitGroup

	mu        sync.Mutex
	open      int       // guarded by mu: admitted and not yet closed
	untrusted list.List // guarded by mu: *httpConn not yet trusted, oldest first

	refused atomic.Uint64 // over max with every connection trusted
	evicted atomic.Uint64 // untrusted connections closed for a newcomer
}

func newAcceptor(lns []net.Listener, max int, log *slog.Logger) *acceptor {
	return &acceptor{lns: lns, max: max, log: log, conns: make(chan net.Conn), errs: make(chan error, len(lns)), done: make(chan struct{})}
}

// httpConn is an admitted connection. fasthttp closes it when done with it.
type httpConn struct {
	net.Conn
	a       *acceptor
	trusted atomic.Bool   // set once, by trust
	elem    *list.Element // guarded by a.mu: in a.untrusted, or nil
	closed  bool          // guarded by a.mu
}

// Close releases the connection's place and closes it. Safe to call more
// than once, from any goroutine.
func (c *httpConn) Close() error {
	a := c.a
	a.mu.Lock()
	if !c.closed {
		c.closed = true
		a.open--
		if c.elem != nil {
			a.untrusted.Remove(c.elem)
			c.elem = nil
		}
	}
	a.mu.Unlock()
	return c.Conn.Close()
}

// trust takes c off the untrusted list: it has sent an authorized request.
func (a *acceptor) trust(c *httpConn) {
	c.trusted.Store(true)
	a.mu.Lock()
	if c.elem != nil {
		a.untrusted.Remove(c.elem)
		c.elem = nil
	}
	a.mu.Unlock()
}

// admit wraps nc for serving, closing the oldest untrusted connection if
// the limit is reached, or returns nil if every place is held by a trusted
// connection.
func (a *acceptor) admit(nc net.Conn) *httpConn {
	var victim *httpConn
	a.mu.Lock()
	if a.open >= a.max {
		front := a.untrusted.Front()
		if front == nil {
			a.mu.Unlock()
			return nil
		}
		victim = front.Value.(*httpConn)
		a.untrusted.Remove(front)
		victim.elem = nil
		victim.closed = true
		a.open--
	}
	c := &httpConn{Conn: nc, a: a}
	c.elem = a.untrusted.PushBack(c)
	a.open++
	a.mu.Unlock()
	if victim != nil {
		a.evicted.Add(1)
		victim.Conn.Close() // its fasthttp goroutine sees the read fail and ends
	}
	return c
}

// refuse tells a connection over the limit why, then closes it.
func (a *acceptor) refuse(nc net.Conn) {
	msg := fmt.Sprintf("too many HTTP connections: %d are open, each has sent an authorized request, and that is the most allowed (--http-max-conns); retry later\n", a.max)
	nc.SetDeadline(time.Now().Add(time.Second))
	fmt.Fprintf(nc, "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\nConnection: close\r\nRetry-After: 1\r\n\r\n%s", len(msg), msg)
	nc.Close()
}

func (a *acceptor) run(ln net.Listener) {
	defer a.wg.Done()
	var delay time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			select {
			case <-a.done:
				return
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && !errors.Is(err, net.ErrClosed) {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				a.log.Warn("http accept failed; retrying", "err", err, "delay", delay)
				time.Sleep(delay)
				continue
			}
			a.errs <- fmt.Errorf("accept on %s: %w", ln.Addr(), err)
			return
		}
		delay = 0
		c := a.admit(nc)
		if c == nil {
			a.refused.Add(1)
			go a.refuse(nc)
			continue
		}
		select {
		case a.conns <- c:
		case <-a.done:
			c.Close()
			return
		}
	}
}

// Accept returns the next connection from either listener; after Close,
// net.ErrClosed, which fasthttp takes as the end of Serve.
func (a *acceptor) Accept() (net.Conn, error) {
	a.start.Do(func() {
		select {
		case <-a.done:
			return
		default:
		}
		for _, ln := range a.lns {
			a.wg.Add(1)
			go a.run(ln)
		}
	})
	select {
	case <-a.done:
		return nil, net.ErrClosed
	default:
	}
	select {
	case c := <-a.conns:
		return c, nil
	case err := <-a.errs:
		return nil, err
	case <-a.done:
		return nil, net.ErrClosed
	}
}

// Close closes the listeners and waits for the accepting goroutines.
func (a *acceptor) Close() error {
	var err error
	a.stop.Do(func() {
		close(a.done)
		for _, ln := range a.lns {
			if e := ln.Close(); e != nil && err == nil {
				err = e
			}
		}
		a.start.Do(func() {}) // no goroutines after Close
		a.wg.Wait()
	})
	return err
}

func (a *acceptor) Addr() net.Addr { return a.lns[0].Addr() }
