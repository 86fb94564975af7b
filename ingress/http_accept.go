package ingress

// Connections of the HTTP API: one acceptor for both listeners, the
// connection limit with eviction of untrusted connections, and the read
// deadlines (see http.go, Connections).

import (
	"container/list"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

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

	mu          sync.Mutex
	open        int            // guarded by mu: admitted and not yet closed
	untrusted   list.List      // guarded by mu: *httpConn not yet trusted, oldest first
	untrustedBy map[string]int // guarded by mu: untrusted connections by source

	refused atomic.Uint64 // over max with every connection trusted
	evicted atomic.Uint64 // untrusted connections closed for a newcomer
}

func newAcceptor(lns []net.Listener, max int, log *slog.Logger) *acceptor {
	return &acceptor{lns: lns, max: max, log: log, conns: make(chan net.Conn), errs: make(chan error, len(lns)), done: make(chan struct{}), untrustedBy: map[string]int{}}
}

// sourceOf names where a connection comes from, for fair eviction: the
// peer's IP address, or "unix" for the Unix socket (the web app on this
// host).
func sourceOf(nc net.Conn) string {
	if a, ok := nc.RemoteAddr().(*net.TCPAddr); ok {
		return a.IP.String()
	}
	return "unix"
}

// httpConn is an admitted connection. fasthttp closes it when done with it.
type httpConn struct {
	net.Conn
	a       *acceptor
	src     string        // fixed: sourceOf(Conn)
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
		a.untrust(c)
	}
	a.mu.Unlock()
	return c.Conn.Close()
}

// untrust takes c off the untrusted list, if it is on it. a.mu is held.
func (a *acceptor) untrust(c *httpConn) {
	if c.elem == nil {
		return
	}
	a.untrusted.Remove(c.elem)
	c.elem = nil
	if a.untrustedBy[c.src]--; a.untrustedBy[c.src] == 0 {
		delete(a.untrustedBy, c.src)
	}
}

// trust takes c off the untrusted list: it has sent an authorized request.
func (a *acceptor) trust(c *httpConn) {
	c.trusted.Store(true)
	a.mu.Lock()
	a.untrust(c)
	a.mu.Unlock()
}

// victim picks the untrusted connection a newcomer from src replaces: the
// oldest of the source that holds the most untrusted connections, the
// newcomer counted with its own. So a host that churns connections evicts
// its own, not a token holder's request still in flight from another
// host; only a source that holds no more than one gives up its oldest to
// anyone. a.mu is held; nil if none is untrusted.
func (a *acceptor) victim(src string) *httpConn {
	best, most := src, a.untrustedBy[src]+1
	for s, n := range a.untrustedBy {
		if n > most {
			best, most = s, n
		}
	}
	if a.untrustedBy[best] == 0 {
		best = "" // no source holds more than one: the oldest of all
	}
	for e := a.untrusted.Front(); e != nil; e = e.Next() {
		if c := e.Value.(*httpConn); best == "" || c.src == best {
			return c
		}
	}
	return nil
}

// admit wraps nc for serving, closing an untrusted connection (see
// victim) if the limit is reached, or returns nil if every place is held
// by a trusted connection.
func (a *acceptor) admit(nc net.Conn) *httpConn {
	src := sourceOf(nc)
	var victim *httpConn
	a.mu.Lock()
	if a.open >= a.max {
		victim = a.victim(src)
		if victim == nil {
			a.mu.Unlock()
			return nil
		}
		a.untrust(victim)
		victim.closed = true
		a.open--
	}
	c := &httpConn{Conn: nc, a: a, src: src}
	c.elem = a.untrusted.PushBack(c)
	a.untrustedBy[src]++
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
			var retry bool
			if delay, retry = retryAccept(err, delay, a.log, "http accept failed; retrying"); retry {
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
