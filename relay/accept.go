package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/panjf2000/gnet/v2"
	gerrors "github.com/panjf2000/gnet/v2/pkg/errors"
)

// The relay accepts client and web connections itself and hands each one
// to gnet's event loops (Engine.Register, which enrolls it on the loop
// with the fewest connections; OnOpen then runs there as before). gnet
// v2.10.0 treats any accept error but EAGAIN, EINTR, ECONNRESET and
// ECONNABORTED as fatal and stops the whole engine, closing every client:
// running out of descriptors (EMFILE, ENFILE) or socket memory (ENOBUFS,
// ENOMEM) for a moment would end the relay. Here it is a pause: the
// acceptor counts it, logs it (rate-limited), backs off and keeps
// serving; the connections already open are untouched.
//
// An acceptor owns one listening socket, which may come from anywhere (a
// socket the relay bound, or one inherited from a previous process): it
// only needs a *net.TCPListener.
//
// Cost, measured with `pushrelay bench storm` (docs/operations.md): 1.4
// to 1.7 times the CPU per accepted connection of gnet's own accept. Go's
// accept registers the socket with the runtime's poller; gnet dups it,
// closes Go's copy and registers the dup on the loop, from a pool
// goroutine per connection. Hence Config.OwnAccept is off by default.

// acceptPending bounds the sockets one acceptor has handed to gnet and
// not yet seen registered: beyond it, it waits. An acceptor refuses at
// once while --max-conns are open, so at most this many accepted sockets
// per acceptor wait beyond the limit for OnOpen's exact check.
const acceptPending = 32

// acceptLogEvery rate-limits the acceptor's warning while a shortage lasts.
const acceptLogEvery = 10 * time.Second

type acceptor struct {
	// Fixed after newAcceptor.
	srv  *Server
	name string // "client" or "web", for the log and /metrics
	ln   *net.TCPListener
	log  *slog.Logger
	quit chan struct{} // closed by stop
	done chan struct{} // closed when run returns

	stopping atomic.Bool
	deadErr  atomic.Pointer[error] // why run ended, if not stop

	// Counters; atomic.
	pauses *atomic.Uint64 // accept or enroll failures backed off from (EMFILE...)

	// Owned by run.
	pending  []<-chan gnet.RegisteredResult
	delay    time.Duration
	lastLog  time.Time
	unlogged uint64
}

func newAcceptor(s *Server, name string, ln *net.TCPListener, pauses *atomic.Uint64) *acceptor {
	return &acceptor{
		srv:     s,
		name:    name,
		ln:      ln,
		log:     s.log,
		quit:    make(chan struct{}),
		done:    make(chan struct{}),
		pauses:  pauses,
		pending: make([]<-chan gnet.RegisteredResult, 0, acceptPending),
	}
}

// stop closes the listener and waits for run to return. Safe to call more
// than once, from any goroutine.
func (a *acceptor) stop() {
	if a.stopping.CompareAndSwap(false, true) {
		close(a.quit)
		_ = a.ln.Close()
	}
	<-a.done
}

// err returns why the acceptor stopped accepting while the relay ran, or
// nil. Safe for concurrent use.
func (a *acceptor) err() error {
	if e := a.deadErr.Load(); e != nil {
		return *e
	}
	return nil
}

// OnTick runs first on gnet's ticker goroutine, which gnet starts after
// it has created every event loop: until then Engine.Register reads the
// loop list while gnet appends to it. With OwnAccept only (WithTicker).
func (h *handler) OnTick() (time.Duration, gnet.Action) {
	h.srv.loopsOnce.Do(func() { close(h.srv.loopsReady) })
	return 24 * time.Hour, gnet.None
}

// run accepts until stop.
func (a *acceptor) run() {
	defer close(a.done)
	s := a.srv
	select {
	case <-s.loopsReady:
	case <-a.quit:
		return
	}
	for {
		nc, err := a.ln.AcceptTCP()
		if err != nil {
			if a.stopping.Load() {
				return
			}
			if isAcceptPause(err) {
				a.pause(err)
				continue
			}
			err = fmt.Errorf("the %s listener on %s stopped: %w", a.name, a.ln.Addr(), err)
			a.deadErr.Store(&err)
			a.log.Error("listener stopped accepting; /healthz now fails: restart the relay", "listener", a.name, "err", err)
			return
		}
		a.delay = 0
		// Refuse here what OnOpen would refuse, before gnet spends a dup
		// and a pool task on it; OnOpen still reserves the slot exactly.
		if s.draining.Load() {
			s.counters.rejected[RejectDraining].Add(1)
			_ = nc.Close()
			continue
		}
		if s.open.Load() >= int64(s.cfg.MaxConns) {
			s.counters.rejected[RejectFull].Add(1)
			_ = nc.Close()
			continue
		}
		if !a.enroll(nc) {
			return
		}
		a.reap(len(a.pending) == cap(a.pending))
	}
}

// enroll hands nc to gnet. It returns false if the engine has stopped.
func (a *acceptor) enroll(nc *net.TCPConn) bool {
	ctx := gnet.NewNetConnContext(context.Background(), nc)
	for {
		ch, err := a.srv.engine.Register(ctx)
		switch {
		case err == nil:
			a.pending = append(a.pending, ch)
			return true
		case errors.Is(err, gerrors.ErrEngineInShutdown):
			_ = nc.Close()
			return false
		default:
			// gnet's goroutine pool is full: a shortage like EMFILE.
			_ = nc.Close()
			a.pause(err)
			return true
		}
	}
}

// reap collects the results of enrolled sockets, in order: all that are
// ready, or, with wait, at least the oldest one.
func (a *acceptor) reap(wait bool) {
	n := 0
	for ; n < len(a.pending); n++ {
		var res gnet.RegisteredResult
		if wait && n == 0 {
			select {
			case res = <-a.pending[0]:
			case <-a.quit:
				return
			}
		} else {
			select {
			case res = <-a.pending[n]:
			default:
				goto done
			}
		}
		if res.Err != nil {
			// The dup gnet makes can meet EMFILE after accept took the
			// last descriptor; the client sees its connection closed.
			a.pause(res.Err)
		}
	}
done:
	if n > 0 {
		rest := copy(a.pending, a.pending[n:])
		clear(a.pending[rest:])
		a.pending = a.pending[:rest]
	}
}

// pause counts a shortage, logs it at most every acceptLogEvery, and
// sleeps, doubling the sleep while the shortage lasts.
func (a *acceptor) pause(err error) {
	a.pauses.Add(1)
	a.unlogged++
	if now := time.Now(); now.Sub(a.lastLog) >= acceptLogEvery {
		a.log.Warn("accept failed, backing off until descriptors free up; clients already connected are served; if this repeats, raise RLIMIT_NOFILE (and fs.file-max for ENFILE) or lower --max-conns",
			"listener", a.name, "addr", a.ln.Addr().String(), "err", err, "failures", a.unlogged)
		a.lastLog, a.unlogged = now, 0
	}
	if a.delay == 0 {
		a.delay = acceptBackoffMin
	} else {
		a.delay = min(2*a.delay, acceptBackoffMax)
	}
	select {
	case <-a.quit:
	case <-time.After(a.delay):
	}
}

// listenTCP binds addr with the options accepted sockets inherit (see
// listenControl): SO_REUSEADDR always, so a restart binds at once past the
// previous relay's FIN-WAIT-2 and TIME_WAIT connections, and SO_REUSEPORT
// only when shared, so without it a second live relay on the port is
// refused by the bind itself. Go's own keepalive on accepted sockets is
// off (KeepAlive -1): they keep the listener's.
func listenTCP(addr string, shared bool, cfg Config) (*net.TCPListener, error) {
	lc := net.ListenConfig{
		KeepAlive: -1,
		Control:   listenControl(shared, cfg.SendBuffer, cfg.KeepAlive),
	}
	ln, err := lc.Listen(context.Background(), "tcp", addr)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, fmt.Errorf("%w: %s (another pushrelay, or another server, listens there)", ErrAddrInUse, addr)
		}
		return nil, err
	}
	return ln.(*net.TCPListener), nil
}

// displayAddr is ln's address as the relay reports it: a wildcard host
// stays empty (":8080"), not the "[::]" Go reports for a dual-stack socket.
func displayAddr(listen string, ln net.Listener) *net.TCPAddr {
	ta := ln.Addr().(*net.TCPAddr)
	if host, _, _ := net.SplitHostPort(listen); host == "" {
		return &net.TCPAddr{Port: ta.Port}
	}
	return ta
}
