package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/panjf2000/gnet/v2"
)

// Server is a running relay: the client listener, its event loops and the
// registry. Its push methods (Send, SendMany, Broadcast, Kick) and queries
// (Connected, Stats, Len) are safe to call from any goroutine.
type Server struct {
	// Fixed after New.
	cfg       Config
	log       *slog.Logger
	heartbeat *Frame

	// Fixed after Start.
	engine    gnet.Engine
	acceptors []*acceptor // client and web listeners (accept.go)
	addr      *net.TCPAddr
	webAddr   *net.TCPAddr // nil without --web
	policy    *policyServer

	reg      registry
	topics   topicIndex
	events   *EventLog
	instance string // random per process: lets watchers notice a restart
	counters counters
	open     atomic.Int64 // client connections open now

	// loops is the list of event loops that have had a connection,
	// replaced whole (copy on write) under loopsMu so pushes read it
	// without a lock.
	loopsMu sync.Mutex
	loops   atomic.Pointer[[]*loop]

	draining atomic.Bool // new connections are rejected
	closing  atomic.Bool // pushes are refused

	started    atomic.Bool
	booted     chan struct{}
	loopsReady chan struct{} // closed once gnet has made every loop (OwnAccept)
	loopsOnce  sync.Once
	done       chan struct{} // closed when the engine has stopped
	runErr     error         // why the engine stopped; read after done
	stopTick   chan struct{}
	shutOnce   sync.Once
}

// New validates cfg and returns a server ready to Start.
func New(cfg Config) (*Server, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:        cfg,
		log:        cfg.Logger,
		heartbeat:  heartbeatFrame(cfg.Framing),
		events:     newServerEventLog(cfg),
		instance:   newInstanceID(),
		booted:     make(chan struct{}),
		loopsReady: make(chan struct{}),
		done:       make(chan struct{}),
		stopTick:   make(chan struct{}),
	}
	s.loops.Store(&[]*loop{})
	return s, nil
}

// Instance returns this process's random instance ID: a watcher that sees
// it change knows the relay restarted and every client reconnected.
func (s *Server) Instance() string { return s.instance }

// Config returns the configuration in force, defaults filled in.
func (s *Server) Config() Config { return s.cfg }

// Start binds the client listener (and the Flash policy listener if
// configured) and starts the event loops. It returns once the relay accepts
// connections, or with the reason it cannot.
func (s *Server) Start() error {
	if !s.started.CompareAndSwap(false, true) {
		return errors.New("relay: Start called twice")
	}
	if !s.cfg.ReusePort {
		// Held until Start returns, by when gnet's listeners hold the
		// ports themselves against a second relay's probe.
		for _, a := range []string{s.cfg.Listen, s.cfg.Web} {
			if a == "" {
				continue
			}
			lock, err := startLock(a)
			if err != nil {
				what := "client"
				if a == s.cfg.Web {
					what = "web"
				}
				return fmt.Errorf("relay: %s listener: %w", what, err)
			}
			if lock != nil {
				defer lock.Close()
			}
		}
	}
	var (
		addrs             []string // what the log names
		clientLns, webLns []*net.TCPListener
		err               error
	)
	if s.cfg.OwnAccept {
		// One listening socket and one acceptor per loop, joined with
		// SO_REUSEPORT, as gnet's per-loop listeners were: the kernel
		// spreads connections over them and accepts run in parallel (one
		// acceptor alone overflowed the listen queue in a storm). Unless
		// sharing is wanted, reserveAddr first checks that no one else
		// listens there, and fixes port 0 to one port for all of them.
		var ca, wa *net.TCPAddr
		if ca, err = reserveAddr(s.cfg.Listen, s.cfg.ReusePort); err != nil {
			return fmt.Errorf("relay: client listener: %w", err)
		}
		if s.cfg.Web != "" {
			if wa, err = reserveAddr(s.cfg.Web, s.cfg.ReusePort); err != nil {
				return fmt.Errorf("relay: web listener: %w", err)
			}
		}
		n := s.loopCount()
		clientLns, err = s.listenN("client", ca.String(), n)
		if err != nil {
			return err
		}
		s.addr = displayAddr(s.cfg.Listen, clientLns[0])
		addrs = []string{s.addr.String()}
		if s.cfg.Web != "" {
			webLns, err = s.listenN("web", wa.String(), n)
			if err != nil {
				closeListeners(clientLns)
				return err
			}
			s.webAddr = displayAddr(s.cfg.Web, webLns[0])
			if s.webAddr.Port == s.addr.Port {
				closeListeners(clientLns)
				closeListeners(webLns)
				return fmt.Errorf("relay: the web listener %s and the client listener %s share port %d: give each its own", s.cfg.Web, s.cfg.Listen, s.addr.Port)
			}
			addrs = append(addrs, s.webAddr.String())
		}
	} else {
		addr, err := reserveAddr(s.cfg.Listen, s.cfg.ReusePort)
		if err != nil {
			return fmt.Errorf("relay: client listener: %w", err)
		}
		s.addr = addr
		addrs = []string{"tcp://" + addr.String()}
		if s.cfg.Web != "" {
			wa, err := reserveAddr(s.cfg.Web, s.cfg.ReusePort)
			if err != nil {
				return fmt.Errorf("relay: web listener: %w", err)
			}
			if wa.Port == addr.Port {
				return fmt.Errorf("relay: the web listener %s and the client listener %s share port %d: give each its own", s.cfg.Web, s.cfg.Listen, wa.Port)
			}
			s.webAddr = wa
			addrs = append(addrs, "tcp://"+wa.String())
		}
	}
	setGnetLogger(s.log)
	gl := &gnetLogger{}

	opts := []gnet.Option{
		gnet.WithMulticore(true),
		gnet.WithNumEventLoop(s.cfg.Loops),
		// Size gnet's per-connection ring (pooled, taken only while bytes
		// wait) to the outbound cap: past the ring gnet keeps a linked list
		// that allocates a node for every write.
		gnet.WithWriteBufferCap(s.cfg.MaxOutbound),
		gnet.WithLogger(gl),
	}
	gnetAddrs := addrs
	anchorDir := ""
	if s.cfg.OwnAccept {
		// gnet's engine needs a listener of its own (Engine.Register and
		// Stop refuse an engine without one), so it gets a Unix socket
		// nobody can reach: bound in a private directory removed at once.
		var err error
		anchorDir, err = os.MkdirTemp("", "pushrelay-")
		if err != nil {
			closeListeners(clientLns)
			closeListeners(webLns)
			return fmt.Errorf("relay: a directory for the event loops' private socket: %w (set TMPDIR to a writable directory)", err)
		}
		gnetAddrs = []string{"unix://" + filepath.Join(anchorDir, "loops.sock")}
		// Engine.Register picks a loop through the balancer; the default
		// round robin is not safe to call from the acceptors' goroutines.
		opts = append(opts, gnet.WithLoadBalancing(gnet.LeastConnections),
			// Its first OnTick says the loops exist (accept.go).
			gnet.WithTicker(true))
	} else {
		opts = append(opts,
			// One listener per loop (SO_REUSEPORT): each loop accepts and
			// runs OnOpen for its own sockets, so at most one accepted
			// socket per loop waits for admission. With gnet's shared
			// acceptor, a burst could hold thousands of accepted
			// descriptors beyond --max-conns, and EMFILE in accept stops
			// gnet's engine altogether.
			gnet.WithReusePort(true),
			// SO_REUSEADDR: the connections this relay closes (at
			// shutdown, after a crash, every refusal) linger in FIN-WAIT-2
			// and TIME_WAIT and inherit the listener's options; with it,
			// the next relay can bind the port at once (reserveAddr).
			gnet.WithReuseAddr(true),
			gnet.WithTCPNoDelay(gnet.TCPNoDelay))
		if s.cfg.SendBuffer > 0 {
			opts = append(opts, gnet.WithSocketSendBuffer(s.cfg.SendBuffer))
		}
		if ka := s.cfg.KeepAlive; ka > 0 {
			opts = append(opts,
				gnet.WithTCPKeepAlive(ka),
				gnet.WithTCPKeepInterval(max(ka/3, time.Second)),
				gnet.WithTCPKeepCount(3))
		}
	}
	h := &handler{srv: s}
	go func() {
		// One engine for both listeners: browser clients live on the same
		// loops as raw ones, so one broadcast is one mailbox item per loop.
		err := gnet.Rotate(h, gnetAddrs, opts...)
		if err == nil && !s.closing.Load() {
			// gnet returns nil when an error stopped it.
			err = gl.stopCause()
		}
		s.runErr = err
		close(s.done)
	}()
	select {
	case <-s.booted:
		if anchorDir != "" {
			_ = os.RemoveAll(anchorDir) // gnet has bound it: unreachable from now on
		}
	case <-s.done:
		if anchorDir != "" {
			_ = os.RemoveAll(anchorDir)
		}
		closeListeners(clientLns)
		closeListeners(webLns)
		return fmt.Errorf("relay: start event loops on %s: %w", strings.Join(addrs, ", "), s.runErr)
	}
	for _, ln := range clientLns {
		s.acceptors = append(s.acceptors, newAcceptor(s, "client", ln, &s.counters.acceptPauses[0]))
	}
	for _, ln := range webLns {
		s.acceptors = append(s.acceptors, newAcceptor(s, "web", ln, &s.counters.acceptPauses[1]))
	}
	for _, a := range s.acceptors {
		go a.run()
	}
	go func() {
		// An engine that stops by itself takes no more connections.
		<-s.done
		s.stopAcceptors()
	}()

	if s.cfg.FlashPolicyListen != "" {
		p, err := startPolicy(s.cfg.FlashPolicyListen, s.cfg.FlashPolicyMaxConns, s.policyDocument(), s.log)
		if err != nil {
			_ = s.engine.Stop(context.Background())
			<-s.done
			return fmt.Errorf("relay: flash policy listener: %w", err)
		}
		s.policy = p
	}
	go s.ticker()
	s.log.Info("relay listening",
		"addr", s.addr.String(), "framing", s.cfg.Framing.String(),
		"loops", s.loopCount(), "max_conns", s.cfg.MaxConns,
		"max_outbound", s.cfg.MaxOutbound, "slow", s.cfg.Slow.String(),
		"max_inbound", s.cfg.MaxInbound, "max_message", s.cfg.MaxMessage,
		"keepalive", s.cfg.KeepAlive.String(), "write_timeout", s.cfg.WriteTimeout.String(),
		"heartbeat", s.cfg.Heartbeat.String())
	if s.webAddr != nil {
		s.log.Info("web listener: WebSocket at /ws, Server-Sent Events at /sse, a demo page at /",
			"addr", s.webAddr.String(), "compress", s.cfg.WebCompress,
			"origins", strings.Join(s.cfg.WebOrigins, ","), "max_header", s.cfg.WebMaxHeader,
			"handshake_timeout", s.cfg.WebHandshakeTimeout.String())
	}
	return nil
}

// loopCount is the number of event loops gnet runs.
func (s *Server) loopCount() int {
	if s.cfg.Loops > 0 {
		return s.cfg.Loops
	}
	return numCPU()
}

// Addr returns the client listener's address (with the port chosen, if
// Config.Listen asked for port 0). Nil before Start.
func (s *Server) Addr() *net.TCPAddr { return s.addr }

// WebAddr returns the web listener's address, or nil without one.
func (s *Server) WebAddr() *net.TCPAddr { return s.webAddr }

// PolicyAddr returns the Flash policy listener's address, or nil.
func (s *Server) PolicyAddr() *net.TCPAddr {
	if s.policy == nil {
		return nil
	}
	return s.policy.addr
}

// Done is closed when the event loops have stopped, after Shutdown or
// because the engine failed (Err says why).
func (s *Server) Done() <-chan struct{} { return s.done }

// Serving returns nil while the relay accepts connections and pushes, and
// otherwise says why not: not started, shutting down, or its event loops
// stopped, or a listener stopped accepting (the Flash policy listener).
// Safe for concurrent use; for health checks.
func (s *Server) Serving() error {
	switch {
	case !s.started.Load():
		return errors.New("the relay has not started")
	case s.closing.Load():
		return errors.New("the relay is shutting down")
	}
	select {
	case <-s.done:
		return fmt.Errorf("the relay's event loops stopped: %v", s.runErr)
	default:
	}
	if s.policy != nil {
		if err := s.policy.err(); err != nil {
			return err
		}
	}
	for _, a := range s.acceptors {
		if err := a.err(); err != nil {
			return err
		}
	}
	return nil
}

// stopAcceptors closes the client and web listeners and waits for their
// accept loops. Safe to call more than once, from any goroutine.
func (s *Server) stopAcceptors() {
	for _, a := range s.acceptors {
		a.stop()
	}
}

// Err returns why the event loops stopped: nil after a Shutdown, the
// engine's error otherwise. Valid once Done is closed.
func (s *Server) Err() error {
	select {
	case <-s.done:
		return s.runErr
	default:
		return nil
	}
}

// Shutdown stops accepting connections, refuses further pushes, waits up to
// Config.DrainTimeout (or ctx) for queued messages to be written, then
// closes every connection and stops the event loops. Safe to call from any
// goroutine, more than once.
func (s *Server) Shutdown(ctx context.Context) error {
	if !s.started.Load() {
		return ErrClosed
	}
	var err error
	s.shutOnce.Do(func() {
		s.draining.Store(true)
		s.closing.Store(true)
		close(s.stopTick)
		if s.policy != nil {
			s.policy.stop()
		}
		// New connections are refused by the kernel from here on, rather
		// than accepted and closed.
		s.stopAcceptors()
		dctx, cancel := context.WithTimeout(ctx, s.cfg.DrainTimeout)
		left := s.drain(dctx)
		cancel()
		if s.webAddr != nil {
			// Even when some client's bytes are stuck (left > 0), the
			// browsers get their close frames, on a short budget of
			// their own: a close frame is skipped for a connection at
			// its outbound cap.
			gctx, gcancel := context.WithTimeout(ctx, goodbyeTimeout)
			s.goodbye(gctx)
			gcancel()
		}
		if left > 0 {
			s.log.Warn("drain timeout: closing connections with bytes unwritten", "bytes", left, "timeout", s.cfg.DrainTimeout.String())
		}
		select {
		case <-s.done:
		default:
			if e := s.engine.Stop(context.Background()); e != nil {
				err = fmt.Errorf("relay: stop event loops: %w", e)
			}
		}
		<-s.done
		for _, l := range *s.loops.Load() {
			l.stop()
		}
		s.log.Info("relay stopped", "closed_shutdown", s.counters.closed[ReasonShutdown].Load())
	})
	return err
}

// goodbyeTimeout bounds the wait for the WebSockets' close frames at
// shutdown, after the drain.
const goodbyeTimeout = 500 * time.Millisecond

// goodbye has every loop write a close frame (1001, "shutting down") to
// its WebSockets once what was queued is written, so browsers see a clean
// close, and waits for those frames to leave, within ctx.
func (s *Server) goodbye(ctx context.Context) {
	loops := *s.loops.Load()
	reply := make(chan int, len(loops))
	sent := 0
	for _, l := range loops {
		if l.enqueue(item{kind: kindGoodbye, probe: reply}, 0) == Queued {
			sent++
		}
	}
	for i := 0; i < sent; i++ {
		select {
		case <-reply:
		case <-ctx.Done():
			return
		}
	}
	s.drain(ctx)
}

// drain waits until every mailbox is empty and every connection's buffer
// is flushed, or ctx ends. It returns the bytes still unwritten.
func (s *Server) drain(ctx context.Context) int {
	loops := *s.loops.Load()
	reply := make(chan int, len(loops))
	for {
		sent := 0
		for _, l := range loops {
			if l.enqueue(item{kind: kindProbe, probe: reply}, 0) == Queued {
				sent++
			}
		}
		left := 0
		for i := 0; i < sent; i++ {
			select {
			case n := <-reply:
				left += n
			case <-ctx.Done():
				return max(left, 1)
			}
		}
		if left == 0 && sent == len(loops) {
			return 0
		}
		select {
		case <-ctx.Done():
			return left
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// ticker enqueues housekeeping on every loop: heartbeats and congestion
// re-checks. It runs until Shutdown.
func (s *Server) ticker() {
	every := 250 * time.Millisecond
	if hb := s.cfg.Heartbeat; hb > 0 && hb/4 < every {
		every = max(hb/4, 5*time.Millisecond)
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.stopTick:
			return
		case <-t.C:
			for _, l := range *s.loops.Load() {
				l.enqueue(item{kind: kindTick}, 0)
			}
		}
	}
}

// loopFor returns the loop state of el, creating it on first use. Called on
// el's own goroutine, so two callers never create the same loop.
func (s *Server) loopFor(el gnet.EventLoop) (*loop, error) {
	for _, l := range *s.loops.Load() {
		if l.el == el {
			return l, nil
		}
	}
	l, err := newLoop(s, el)
	if err != nil {
		return nil, err
	}
	s.loopsMu.Lock()
	next := append(append([]*loop(nil), *s.loops.Load()...), l)
	s.loops.Store(&next)
	s.loopsMu.Unlock()
	return l, nil
}

// listenN binds n listening sockets on addr, with SO_REUSEPORT.
func (s *Server) listenN(name, addr string, n int) ([]*net.TCPListener, error) {
	lns := make([]*net.TCPListener, 0, n)
	for i := 0; i < n; i++ {
		ln, err := listenTCP(addr, true, s.cfg)
		if err != nil {
			closeListeners(lns)
			return nil, fmt.Errorf("relay: %s listener: %w", name, err)
		}
		lns = append(lns, ln)
	}
	return lns, nil
}

func closeListeners(lns []*net.TCPListener) {
	for _, ln := range lns {
		_ = ln.Close()
	}
}

// reserveAddr resolves addr to a concrete TCP address. Unless sharing is
// wanted, it first binds the address exclusively: SO_REUSEPORT would
// otherwise let a second relay join the port silently and split clients
// between two processes. The probe sets SO_REUSEADDR as the relay's own
// listeners do (probeControl): a port whose previous relay just stopped
// still holds that relay's closed connections in FIN-WAIT-2 and TIME_WAIT
// for up to a minute, and those must not block a restart; a live listener
// does. Port 0 becomes the free port the probe got.
func reserveAddr(addr string, shared bool) (*net.TCPAddr, error) {
	if shared {
		ta, err := net.ResolveTCPAddr("tcp", addr)
		if err != nil {
			return nil, err
		}
		if ta.Port == 0 {
			return nil, errors.New("port 0 cannot be shared: name a port with reuse-port")
		}
		return ta, nil
	}
	lc := net.ListenConfig{Control: probeControl}
	ln, err := lc.Listen(context.Background(), "tcp", addr)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, fmt.Errorf("%w: %s (another pushrelay, or another server, listens there)", ErrAddrInUse, addr)
		}
		return nil, err
	}
	ta := ln.Addr().(*net.TCPAddr)
	ln.Close()
	if host, _, _ := net.SplitHostPort(addr); host == "" {
		// Keep the wildcard as gnet reads it (dual-stack), not as the
		// "[::]" Go reports, which gnet would bind IPv6-only.
		return &net.TCPAddr{Port: ta.Port}, nil
	}
	return ta, nil
}

// policyDocument returns the Flash policy to serve, without its 0x00.
func (s *Server) policyDocument() []byte {
	if len(s.cfg.FlashPolicy) > 0 {
		return s.cfg.FlashPolicy
	}
	return DefaultFlashPolicy(s.addr.Port)
}

// DefaultFlashPolicy returns the policy that lets a Flash player from any
// domain connect to port.
func DefaultFlashPolicy(port int) []byte {
	return []byte(`<?xml version="1.0"?>` +
		`<!DOCTYPE cross-domain-policy SYSTEM "http://www.adobe.com/xml/dtds/cross-domain-policy.dtd">` +
		`<cross-domain-policy><site-control permitted-cross-domain-policies="master-only"/>` +
		`<allow-access-from domain="*" to-ports="` + strconv.Itoa(port) + `"/></cross-domain-policy>`)
}
