package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/panjf2000/gnet/v2"
)

// handler is the gnet event handler of the client listener. gnet calls it
// from every event loop at once; it keeps no state of its own, only the
// server's (atomics and the registry) and the loop's (on its goroutine).
type handler struct {
	gnet.BuiltinEventEngine
	srv *Server
}

func (h *handler) OnBoot(eng gnet.Engine) gnet.Action {
	h.srv.engine = eng
	close(h.srv.booted)
	return gnet.None
}

func (h *handler) OnOpen(c gnet.Conn) ([]byte, gnet.Action) {
	if _, ok := c.Context().(*loop); ok {
		return nil, gnet.None // the loop's own doorbell, enrolled by newLoop
	}
	s := h.srv
	if s.draining.Load() {
		s.counters.rejected[RejectDraining].Add(1)
		return nil, gnet.Close
	}
	// Reserve the slot in one step: a check then a later increment let
	// two loops admit at once past the limit.
	if s.open.Add(1) > int64(s.cfg.MaxConns) {
		s.open.Add(-1)
		s.counters.rejected[RejectFull].Add(1)
		return nil, gnet.Close
	}
	l, err := s.loopFor(c.EventLoop())
	if err != nil {
		s.open.Add(-1)
		s.log.Error("cannot serve connections on this event loop", "err", err)
		return nil, gnet.Close
	}
	defer l.exitCallback(l.enterCallback())
	sess := &session{
		conn:   c,
		loop:   l,
		opened: time.Now().UnixNano(),
	}
	if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		ap := ta.AddrPort()
		sess.remoteIP, sess.remotePort = ap.Addr().As16(), ap.Port()
	}
	if s.webAddr != nil {
		if la, ok := c.LocalAddr().(*net.TCPAddr); ok && la.Port == s.webAddr.Port {
			// A browser: it gets its ID once its request is answered.
			l.openWeb(sess)
			c.SetContext(sess)
			return nil, gnet.None
		}
	}
	c.SetContext(sess)
	l.register(sess, transportRaw)
	text := encodeID(&sess.idRaw)
	l.idFrame = appendFrame(s.cfg.Framing, l.idFrame[:0], text[:])
	// gnet writes this before OnOpen's caller returns (copying what the
	// socket does not take), so the loop's scratch buffer is free again.
	return l.idFrame, gnet.None
}

// register gives s an ID and makes it a client: the registry, the loop's
// sessions, the counters and a connect event. On the loop.
func (l *loop) register(s *session, t transport) {
	srv := l.srv
	s.transport = t
	s.setID(l.ids.next())
	for !srv.reg.add(s) {
		s.setID(l.ids.next())
	}
	l.addSession(s)
	srv.counters.accepted.Add(1)
	srv.counters.transports[t].Add(1)
	srv.events.append(EventConnect, s, s.opened, 0)
	if srv.log.Enabled(context.Background(), slog.LevelDebug) {
		srv.log.Debug("client connected", "id", s.ID(), "remote", s.remote().String(), "transport", t.String())
	}
}

func (h *handler) OnTraffic(c gnet.Conn) gnet.Action {
	switch x := c.Context().(type) {
	case *session:
		defer x.loop.exitCallback(x.loop.enterCallback())
		if len(x.loop.backlog) > 0 {
			// The rest of a short direct write may wait there for this
			// session, and it must reach the socket before anything this
			// callback writes to it (a pong, a close frame): work
			// through the backlog first.
			x.loop.serveMailbox()
			if x.closed {
				return gnet.Close
			}
		}
		if x.transport == transportHandshake {
			return x.loop.handshake(x, c)
		}
		return x.loop.clientBytes(x, c)
	case *loop:
		_, _ = c.Discard(-1)
		defer x.exitCallback(x.enterCallback())
		x.serveMailbox()
	default:
		_, _ = c.Discard(-1)
	}
	return gnet.None
}

func (h *handler) OnClose(c gnet.Conn, err error) gnet.Action {
	sess, ok := c.Context().(*session)
	if !ok {
		return gnet.None // rejected before admission, or a doorbell at shutdown
	}
	defer sess.loop.exitCallback(sess.loop.enterCallback())
	s := h.srv
	if sess.transport == transportHandshake {
		// Never a client: no ID, no registry entry, no event.
		sess.closed = true
		sess.loop.removeHandshake(sess)
		s.open.Add(-1)
		c.SetContext(nil)
		return gnet.None
	}
	why := sess.reason
	switch {
	case s.draining.Load() && why == ReasonPeerClosed && err == nil:
		why = ReasonShutdown
	case why == ReasonPeerClosed:
		why = classify(err)
	}
	if sess.wsFlags&wsSkipping != 0 {
		delete(sess.loop.wsSkip, sess)
	}
	sess.loop.leaveAll(sess)
	sess.loop.removeSession(sess)
	s.reg.remove(sess)
	s.events.append(EventDisconnect, sess, time.Now().UnixNano(), why)
	s.open.Add(-1)
	s.counters.transports[sess.transport].Add(-1)
	s.counters.closed[why].Add(1)
	if s.log.Enabled(context.Background(), slog.LevelDebug) {
		if err != nil {
			s.log.Debug("client closed", "id", sess.ID(), "remote", sess.remote().String(), "reason", why.String(), "err", err)
		} else {
			s.log.Debug("client closed", "id", sess.ID(), "remote", sess.remote().String(), "reason", why.String())
		}
	}
	c.SetContext(nil)
	return gnet.None
}

// numCPU is the default number of event loops.
func numCPU() int { return runtime.NumCPU() }

// gnetLogger sends gnet's log lines to slog. gnet's default logger is
// process-wide, so it points at whichever relay started last (normally the
// only one); the engine's own lines (accept and event-loop errors) go to
// the logger given with WithLogger, which also keeps the first error for
// its server: gnet's Run returns nil when an error stops the engine, and
// the cause would otherwise be lost.
type gnetLogger struct {
	firstErr atomic.Pointer[string] // gnet's first error line, if any
}

var gnetLog atomic.Pointer[slog.Logger] // several relays in one process (tests) set it

func setGnetLogger(l *slog.Logger) { gnetLog.Store(l.With("component", "gnet")) }

func glog() *slog.Logger {
	if l := gnetLog.Load(); l != nil {
		return l
	}
	return slog.Default()
}

// gnet logs its start-up banner at info; that is debug detail here.
func (*gnetLogger) Debugf(f string, a ...any) { glog().Debug(fmt.Sprintf(f, a...)) }
func (*gnetLogger) Infof(f string, a ...any)  { glog().Debug(fmt.Sprintf(f, a...)) }
func (*gnetLogger) Warnf(f string, a ...any)  { glog().Warn(fmt.Sprintf(f, a...)) }
func (g *gnetLogger) Errorf(f string, a ...any) {
	msg := fmt.Sprintf(f, a...)
	g.firstErr.CompareAndSwap(nil, &msg)
	glog().Error(msg)
}
func (g *gnetLogger) Fatalf(f string, a ...any) { g.Errorf(f, a...) }

// stopCause explains an engine that stopped without being asked: what gnet
// logged first, and the fix when that was a shortage of descriptors.
func (g *gnetLogger) stopCause() error {
	msg := g.firstErr.Load()
	if msg == nil {
		return errors.New("gnet stopped the event loops without logging a reason")
	}
	if strings.Contains(*msg, syscall.EMFILE.Error()) || strings.Contains(*msg, syscall.ENFILE.Error()) {
		return fmt.Errorf("gnet stopped the event loops: %s: the process ran out of file descriptors in accept; raise RLIMIT_NOFILE (systemd LimitNOFILE) or lower --max-conns, and check nothing else in the process holds descriptors (docs/operations.md, File descriptors)", *msg)
	}
	return fmt.Errorf("gnet stopped the event loops: %s", *msg)
}
