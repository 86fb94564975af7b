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
// takes the place of an untrusted one (closed, counted as evicted): the
// oldest of the source holding the most (see acceptor.victim), and only when every connection is trusted is it refused with a
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
	"cmp"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
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
	cfg.MaxBody = cmp.Or(cfg.MaxBody, 2*maxMessage+httpBodySlack)
	if cfg.MaxBody < maxMessage {
		return bad("max body %d cannot hold a payload of max-message %d", cfg.MaxBody, maxMessage)
	}
	cfg.MaxConns = cmp.Or(cfg.MaxConns, DefaultHTTPMaxConns)
	cfg.MaxIDs = cmp.Or(cfg.MaxIDs, wire.DefaultMaxIDs)
	cfg.MaxTopics = cmp.Or(cfg.MaxTopics, wire.DefaultMaxTopics)
	cfg.MaxBatch = cmp.Or(cfg.MaxBatch, DefaultMaxBatch)
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
