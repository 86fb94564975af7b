package relay

// The push API: what the ingress calls, from any goroutine, to reach
// clients (one, many, everyone), kick them and ask about them. The event
// loops do the writing (loop.go, write.go); a producer only queues, or
// writes itself when the loop is idle (direct.go).

import (
	"fmt"
	"net/netip"
	"time"
)

// check validates a payload for pushing.
func (s *Server) check(payload []byte) Status {
	if s.closing.Load() {
		return Closed
	}
	if len(payload) > s.cfg.MaxMessage {
		return TooLarge
	}
	if len(payload) == 0 {
		return BadPayload
	}
	// With a web listener a WebSocket can carry any bytes: the framing is
	// judged per recipient (transport.go).
	if s.cfg.Web == "" && !s.cfg.Framing.Carries(payload) {
		return BadPayload
	}
	return Queued
}

// CheckPayload returns nil if payload can be pushed, or an error naming the
// limit or the byte that forbids it. Safe for concurrent use.
func (s *Server) CheckPayload(payload []byte) error {
	if len(payload) > s.cfg.MaxMessage {
		return fmt.Errorf("%w: %d bytes, max-message is %d", ErrTooLarge, len(payload), s.cfg.MaxMessage)
	}
	if len(payload) == 0 {
		return fmt.Errorf("%w: clients read an empty frame as a heartbeat, so there is nothing to push", ErrEmpty)
	}
	if s.cfg.Web != "" {
		return nil // a WebSocket takes any bytes; others are judged per recipient
	}
	if err := s.cfg.Framing.Check(payload); err != nil {
		return fmt.Errorf("%w; no client of this relay could take it (run with --web for WebSocket clients, which take any bytes, or with --framing len32)", err)
	}
	return nil
}

// Send queues payload for the connection with that ID. The payload is
// copied (framed) before Send returns; the caller may reuse it. Safe for
// concurrent use; pushes from one goroutine reach a client in call order.
// When the client's event loop is idle, Send writes the frame to the
// socket itself (direct.go) rather than wake the loop.
func (s *Server) Send(id string, payload []byte) Status {
	return s.send(id, payload, true)
}

// SendPipelined is Send for a producer that has more pushes right behind
// this one, such as an ingress connection with further requests already
// read. It never writes directly: the push waits in the loop's mailbox, so
// the loop wakes once for the lot and writes each client's frames with one
// writev, where direct writes would cost the producer one system call per
// push. Pushes through Send and SendPipelined from one goroutine keep
// their order.
func (s *Server) SendPipelined(id string, payload []byte) Status {
	return s.send(id, payload, false)
}

func (s *Server) send(id string, payload []byte, direct bool) Status {
	if st := s.check(payload); st != Queued {
		return st
	}
	sess := s.reg.get(id)
	if sess == nil {
		return UnknownID
	}
	if sess.congested.Load() {
		s.counters.drops[DropSlow].Add(1)
		return DroppedSlow
	}
	if sess.transport == transportRaw && s.cfg.Web != "" && !s.cfg.Framing.Carries(payload) {
		s.counters.drops[DropUnsupported].Add(1)
		return Unsupported // check let it through for the browsers
	}
	f := s.encode(payload, encodingOf(sess.transport))
	if f.bytesFor(sess.transport) == nil { // SSE: not UTF-8, or too large an event
		f.release()
		s.counters.drops[DropUnsupported].Add(1)
		return Unsupported
	}
	st := Queued
	if !direct || !sess.loop.writeDirect(sess, f) {
		st = s.push(sess, f)
	}
	f.release()
	return st
}

// push queues f (one more reference) for sess.
func (s *Server) push(sess *session, f *Frame) Status {
	f.retain(1)
	st := sess.loop.enqueue(item{kind: kindWrite, sess: sess, frame: f}, f.size())
	if st != Queued {
		f.release()
		if st == Overloaded {
			s.counters.drops[DropOverloaded].Add(1)
		}
	}
	return st
}

// SendMany queues one payload, framed once, for each ID and counts the
// outcomes. A payload the relay refuses as a whole (too large, bad bytes,
// closing) is reported in the Status, with zero counts. Safe for concurrent
// use.
func (s *Server) SendMany(ids []string, payload []byte) (Counts, Status) {
	var c Counts
	if st := s.check(payload); st != Queued {
		return c, st
	}
	f := s.encode(payload, s.webEncodings())
	for _, id := range ids {
		sess := s.reg.get(id)
		switch {
		case sess == nil:
			c.add(UnknownID)
		case f.bytesFor(sess.transport) == nil:
			s.counters.drops[DropUnsupported].Add(1)
			c.add(Unsupported)
		case sess.congested.Load():
			s.counters.drops[DropSlow].Add(1)
			c.add(DroppedSlow)
		default:
			c.add(s.push(sess, f))
		}
	}
	f.release()
	return c, Queued
}

// Broadcast queues payload, framed once, for every open connection: one
// mailbox item per event loop, however many connections it holds. Counts
// are the connections open on each loop when it was queued: Unsupported
// those of a transport that cannot carry the payload (by the registry's
// count per transport), Queued the rest. Safe for concurrent use.
func (s *Server) Broadcast(payload []byte) (Counts, Status) {
	var c Counts
	if st := s.check(payload); st != Queued {
		return c, st
	}
	n := 0
	for _, l := range *s.loops.Load() {
		n += int(l.count.Load())
	}
	if n == 0 {
		return c, Queued
	}
	f := s.encode(payload, s.webEncodings())
	st := s.enqueueAll(item{kind: kindBroadcast, frame: f}, f.size())
	unsupported := min(s.unsupportedOpen(f), n)
	f.release()
	switch st {
	case Queued:
		c.Queued, c.Unsupported = n-unsupported, unsupported
	case Overloaded:
		c.Overloaded = n
		s.counters.drops[DropOverloaded].Add(uint64(n))
	}
	return c, st
}

// enqueueAll queues it, with one reference to its frame for each, on every
// loop that has connections, or on none: a fanout is never half queued.
// It holds the mailbox locks of all those loops at once, taken in the order
// of s.loops (see locks.go).
func (s *Server) enqueueAll(it item, size int) Status {
	loops := *s.loops.Load()
	var buf [16]*loop
	targets := buf[:0]
	for _, l := range loops {
		if l.count.Load() > 0 {
			targets = append(targets, l)
		}
	}
	for _, l := range targets {
		l.mu.Lock()
	}
	st := Queued
	for _, l := range targets {
		if s := l.room(size); s != Queued {
			st = s
			break
		}
	}
	if st == Queued {
		for _, l := range targets {
			if it.frame != nil {
				it.frame.retain(1)
			}
			l.appendLocked(it, size)
		}
	}
	for _, l := range targets {
		l.mu.Unlock()
	}
	return st
}

// Kick closes the connection with that ID after what was queued for it
// before. Safe for concurrent use.
func (s *Server) Kick(id string) Status {
	if s.closing.Load() {
		return Closed
	}
	sess := s.reg.get(id)
	if sess == nil {
		return UnknownID
	}
	return sess.loop.enqueue(item{kind: kindClose, sess: sess, reason: ReasonKicked}, 0)
}

// Connected reports whether a connection with that ID is open. Safe for
// concurrent use.
func (s *Server) Connected(id string) bool { return s.reg.get(id) != nil }

// MaxListPage is the most IDs one List call returns.
const MaxListPage = 10000

// List returns up to limit connected IDs (at most MaxListPage) after
// cursor, and the cursor of the next page ("" after the last page). Pass ""
// to start. Listing is for reconciling after a restart of the web app: an
// ID connected for the whole listing appears exactly once. Safe for
// concurrent use.
func (s *Server) List(cursor string, limit int) (ids []string, next string, err error) {
	if limit <= 0 || limit > MaxListPage {
		limit = MaxListPage
	}
	return s.reg.page(cursor, limit, make([]string, 0, min(limit, s.Len()+1)))
}

// ClientInfo describes one connected client.
type ClientInfo struct {
	ID     string
	Remote netip.AddrPort
	Since  time.Time
}

// Info returns what the relay knows of a connected client. Safe for
// concurrent use.
func (s *Server) Info(id string) (ClientInfo, bool) {
	sess := s.reg.get(id)
	if sess == nil {
		return ClientInfo{}, false
	}
	return ClientInfo{ID: sess.ID(), Remote: sess.remote(), Since: time.Unix(0, sess.opened)}, true
}

// Len returns the number of open client connections. Safe for concurrent
// use.
func (s *Server) Len() int { return int(s.open.Load()) }

// Stats returns a snapshot of the counters. Safe for concurrent use; it
// reads atomics only and never stops a loop.
func (s *Server) Stats() Stats {
	st := Stats{
		Open:     s.open.Load(),
		Accepted: s.counters.accepted.Load(),
		MaxConns: s.cfg.MaxConns,
	}
	for i := range st.Rejected {
		st.Rejected[i] = s.counters.rejected[i].Load()
	}
	for i := range st.Closed {
		st.Closed[i] = s.counters.closed[i].Load()
	}
	for i := range st.Drops {
		st.Drops[i] = s.counters.drops[i].Load()
	}
	for i := range st.Transports {
		st.Transports[i] = s.counters.transports[i].Load()
	}
	for i := range st.WebResponses {
		st.WebResponses[i] = s.counters.web[i].Load()
	}
	st.Compressed = s.counters.compressed.Load()
	st.CompressedIn = s.counters.compressedIn.Load()
	st.CompressedOut = s.counters.compressedOut.Load()
	loops := *s.loops.Load()
	st.Loops = len(loops)
	for _, l := range loops {
		c := &l.counters
		st.MessagesWritten += c.written.Load()
		st.BytesWritten += c.bytes.Load()
		st.Heartbeats += c.heartbeats.Load()
		st.Writes += c.writes.Load()
		st.DirectWrites += c.direct.Load()
		st.DirectShort += c.directShort.Load()
		st.InboundBytes += c.inbound.Load()
		st.Fanouts += c.fanouts.Load()
		st.FanoutRecipients += c.fanoutRecipients.Load()
		st.FanoutTime += time.Duration(c.fanoutNanos.Load())
		st.FanoutMaxTime = max(st.FanoutMaxTime, time.Duration(c.fanoutMaxNanos.Load()))
		st.FanoutMaxSize = max(st.FanoutMaxSize, c.fanoutMaxSize.Load())
		for i := range st.Drops {
			st.Drops[i] += c.drops[i].Load()
		}
	}
	return st
}
