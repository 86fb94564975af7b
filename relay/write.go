package relay

import (
	"math/bits"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The write path of a mailbox pass: frames are staged per session while
// items are applied, then each touched session is flushed with one write
// or writev, within what MaxOutbound lets gnet hold.

// pendFrame is a frame staged for one session during a mailbox pass;
// staged frames of a session form a singly linked list through next.
type pendFrame struct {
	b         []byte
	next      int32
	heartbeat bool
}

// iovMax is the kernel's limit on iovecs per writev (IOV_MAX).
const iovMax = 1024

// stage links frame f, as s's transport reads it, onto s's list of frames
// to write in this pass.
func (l *loop) stage(s *session, f *Frame, heartbeat bool) {
	l.stageFrom(s, f, 0, heartbeat)
}

// stageFrom stages f from byte off on: the rest of a frame a direct write
// began (direct.go).
func (l *loop) stageFrom(s *session, f *Frame, off int, heartbeat bool) {
	if s.closed {
		if !heartbeat {
			l.tally.drops[DropClosed]++
		}
		return
	}
	b := f.bytesFor(s.transport)
	if b == nil || s.wsFlags&wsCloseSent != 0 || len(b) > l.hold {
		switch {
		case heartbeat:
		case b != nil && s.wsFlags&wsCloseSent != 0:
			l.tally.drops[DropClosed]++ // a WebSocket closing: nothing may follow its close frame
		default:
			// SSE: not UTF-8, or an event longer than a connection may
			// hold unsent (newlines grow it sevenfold), which would
			// otherwise close or stall every SSE client. Counted in the
			// push's reply as unsupported where the relay could tell.
			l.tally.drops[DropUnsupported]++
		}
		return
	}
	if heartbeat && s.transport != transportRaw && s.transport != transportSSE {
		s.wsFlags |= wsPingOut // the pong it asks for is free of MaxInbound
	}
	b = b[off:]
	idx := int32(len(l.pend))
	l.pend = append(l.pend, pendFrame{b: b, next: -1, heartbeat: heartbeat})
	if s.tail < 0 {
		s.head = idx
		l.dirty = append(l.dirty, s)
	} else {
		l.pend[s.tail].next = idx
	}
	s.tail = idx
}

// flushAll flushes every session staged in this pass, then releases the
// frames of the items applied so far (staged bytes point into them).
func (l *loop) flushAll() {
	for _, s := range l.dirty {
		l.flush(s)
	}
	clear(l.dirty)
	l.dirty = l.dirty[:0]
	clear(l.pend)
	l.pend = l.pend[:0]
	for _, f := range l.done {
		f.release()
	}
	clear(l.done)
	l.done = l.done[:0]
}

// flush writes s's staged frames, enforcing l.hold (what MaxOutbound
// allows gnet to hold, see outboundHold): under SlowClose a
// batch that would pass the cap closes the connection; under SlowDrop each
// frame that would pass it is skipped and the session marked congested.
func (l *loop) flush(s *session) {
	if s.head < 0 {
		return
	}
	head := s.head
	s.head, s.tail = -1, -1
	if s.closed {
		l.dropStaged(head, DropClosed)
		return
	}
	room := l.hold - s.conn.OutboundBuffered()
	if l.srv.cfg.Slow == SlowClose {
		total := 0
		for i := head; i >= 0; i = l.pend[i].next {
			total += len(l.pend[i].b)
		}
		if total > room {
			l.dropStaged(head, DropSlow)
			l.closeSession(s, ReasonSlow)
			return
		}
	}
	iov := l.iov[:0]
	var msgs, beats, bytes uint64
	for i := head; i >= 0; i = l.pend[i].next {
		p := &l.pend[i]
		if len(p.b) > room { // only under SlowDrop
			if !p.heartbeat {
				l.tally.drops[DropSlow]++
			}
			if !s.congested.Load() {
				s.congested.Store(true)
				l.congested = append(l.congested, s)
			}
			continue
		}
		room -= len(p.b)
		iov = append(iov, p.b)
		if p.heartbeat {
			beats++
		} else {
			msgs++
			bytes += uint64(len(p.b))
		}
	}
	if len(iov) > 0 {
		l.armTimeout(s)
		l.write(s, iov)
	}
	clear(iov)
	l.iov = iov[:0]
	l.tally.written += msgs
	l.tally.bytes += bytes
	l.tally.heartbeats += beats
}

// outboundHold is how many unsent bytes of one connection the relay lets
// gnet hold, so that gnet's buffer for them stays within maxOutbound bytes
// of memory. gnet keeps a connection's unsent bytes in a ring that grows,
// past 4 KiB, by a quarter at a time until it holds what is asked, and
// takes each new array from a pool of powers of two: a ring asked to hold
// b bytes can grow to just under 1.25 b and sit in an array of the next
// power of two, twice the cap for a ring asked to hold all of it
// (figures: docs/architecture.md; guarded by
// TestStalledClientMemoryWithinMaxOutbound). Holding at most 4/5 of the
// largest power of two p within maxOutbound keeps the ring's array at p
// or less, and keeps the bytes out of gnet's linked list (which starts
// past gnet's write buffer cap, a power of two at least p, and allocates
// per write). The arithmetic holds for p of 8 KiB and more; below, gnet's
// doubling of rings under 4 KiB can reach 8 KiB.
func outboundHold(maxOutbound int) int {
	p := 1 << (bits.Len(uint(maxOutbound)) - 1)
	return p / 5 * 4
}

// minMaxOutbound is the smallest MaxOutbound whose hold takes a frame of
// n bytes.
func minMaxOutbound(n int) int {
	p := 1
	for outboundHold(p) < n {
		p <<= 1
	}
	return p
}

// armTimeout sets TCP_USER_TIMEOUT on s before its first write after the
// ID. It bounds how long written data may stay unacknowledged, so it
// matters from the first write on; setting it here rather than at accept
// keeps a system call off the accept path, which a reconnect storm is made
// of (gnet offers no hook to set it on its listeners).
func (l *loop) armTimeout(s *session) {
	if !s.timeoutSet {
		s.timeoutSet = true
		if to := l.srv.cfg.WriteTimeout; to > 0 {
			_ = setUserTimeout(s.conn.Fd(), to)
		}
	}
}

// dropStaged counts every non-heartbeat frame from head on as dropped.
func (l *loop) dropStaged(head int32, why DropReason) {
	for i := head; i >= 0; i = l.pend[i].next {
		if !l.pend[i].heartbeat {
			l.tally.drops[why]++
		}
	}
}

// write hands iov to the socket. While gnet holds nothing unsent for the
// connection, it calls write or writev itself (gnet's Writev allocates past
// eight buffers) and gives gnet only what the kernel did not take;
// otherwise gnet appends to its buffer, keeping the order.
//
// The calls are raw: the socket is non-blocking, so they never sleep, and
// the loop keeps its P through them. Through Go's syscall entry a loop
// writing a broadcast spends most of its time in system calls, and sysmon,
// retaking such Ps, stays at its shortest tick and takes a share of a core
// (figures: docs/architecture.md, Own writev on the fast path).
func (l *loop) write(s *session, iov [][]byte) {
	l.tally.writes++
	if s.conn.OutboundBuffered() > 0 {
		l.gnetWrite(s, iov)
		return
	}
	// gnet holds nothing of s, and keeps holding nothing unless this
	// write comes up short: producers may write to s directly again.
	s.direct = true
	fd := uintptr(s.conn.Fd())
	for len(iov) > 0 {
		chunk := iov[:min(len(iov), iovMax)]
		var n, total uintptr
		var errno unix.Errno
		if len(chunk) == 1 {
			b := chunk[0]
			total = uintptr(len(b))
			n, _, errno = unix.RawSyscall(unix.SYS_WRITE, fd, uintptr(unsafe.Pointer(unsafe.SliceData(b))), total)
		} else {
			vecs := l.iovecs[:0]
			for _, b := range chunk {
				v := unix.Iovec{Base: unsafe.SliceData(b)}
				v.SetLen(len(b))
				vecs = append(vecs, v)
				total += uintptr(len(b))
			}
			l.iovecs = vecs
			n, _, errno = unix.RawSyscall(unix.SYS_WRITEV, fd, uintptr(unsafe.Pointer(unsafe.SliceData(vecs))), uintptr(len(vecs)))
			clear(vecs) // no stale pointers into pooled frames
		}
		switch errno {
		case 0:
		case unix.EAGAIN, unix.EINTR:
			n = 0
		default:
			l.closeSession(s, classify(errno))
			return
		}
		if n == total {
			iov = iov[len(chunk):]
			continue
		}
		// A short write: skip what the kernel took and hand the rest to
		// gnet, which buffers it in order and asks epoll to say when the
		// socket is writable again.
		for n >= uintptr(len(iov[0])) {
			n -= uintptr(len(iov[0]))
			iov = iov[1:]
		}
		iov[0] = iov[0][n:]
		l.gnetWrite(s, iov)
		return
	}
}

// gnetWrite writes through gnet, which writes directly when its buffer is
// empty and copies what is left. gnet closes the connection itself on a
// hard error (OnClose runs inside the call).
func (l *loop) gnetWrite(s *session, iov [][]byte) {
	s.direct = false // gnet's buffer goes first, written when epoll says
	for len(iov) > 0 && !s.closed {
		chunk := iov[:min(len(iov), iovMax)]
		if len(chunk) == 1 {
			_, _ = s.conn.Write(chunk[0])
		} else {
			_, _ = s.conn.Writev(chunk)
		}
		iov = iov[len(chunk):]
	}
}
