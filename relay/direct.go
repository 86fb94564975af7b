package relay

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// Direct writes.
//
// A unicast normally travels producer → mailbox → doorbell → loop → socket:
// two threads wake for it, the producer's (an ingress goroutine woken by
// its request) and the loop's. At a low push rate, when the loop sleeps,
// the two wake-ups are most of the latency the relay adds
// (docs/architecture.md, Direct writes). So when the loop is idle a producer
// acts as the loop for one write: it takes the loop's ownership lock
// (loop.own), which the loop's goroutine holds through every gnet
// callback, checks that nothing of the loop's could go before this frame,
// and writes the frame to the socket itself. Under load the lock is
// usually held or the mailbox busy, and the push takes the mailbox as
// before, so the loop keeps batching.
//
// What makes this safe with gnet, which keeps state of its own per
// connection that it touches outside the callbacks:
//   - gnet writes to a socket outside a callback only to flush bytes it
//     buffered. session.direct is true only while gnet holds nothing of
//     it: the loop sets it after writing to the socket with an empty gnet
//     buffer and clears it whenever it hands gnet bytes (a short write,
//     the ID gnet writes after OnOpen, web responses, pongs, close
//     frames). A direct write never passes gnet's buffer.
//   - gnet closes a socket only after OnClose, which waits for own; a
//     direct write checks session.closed under own, so it never writes to
//     a descriptor number the kernel has since given to someone else.
//   - The producer makes one raw write(2) and nothing else of gnet's. What
//     the socket does not take, and any error, go to the front of the
//     loop's backlog for the loop to finish, and the doorbell rings. Until
//     then the rest of the frame is in neither gnet's buffer nor the
//     socket, so nothing else may be written to that client first: a
//     client's OnTraffic (which may answer a ping or a close) works
//     through the backlog before anything else, and everything else the
//     loop writes comes from the backlog or after it.

// writeDirect writes f to s now if the loop is idle and nothing queued
// for s could be owed before f. It reports whether it took f (Queued);
// false means the caller queues f in the mailbox as usual. Safe for
// concurrent use.
func (l *loop) writeDirect(s *session, f *Frame) bool {
	if l.srv.cfg.NoDirectWrites || !l.own.TryLock() {
		return false // the loop is at work: the mailbox keeps the order
	}
	defer l.own.Unlock()
	if !s.direct || s.closed || l.jobs.n > 0 || len(l.backlog) > 0 {
		return false
	}
	b := f.bytesFor(s.transport)
	if b == nil || s.wsFlags&wsCloseSent != 0 || len(b) > l.hold {
		return false // the loop counts the drop, or applies the slow policy
	}
	l.mu.Lock()
	idle := len(l.queue) == 0 && !l.stopped
	l.mu.Unlock()
	if !idle {
		// Something is queued for this loop, maybe for s, and it goes
		// first. Items queued after this check come from other producers,
		// which have no order with this one.
		return false
	}
	l.armTimeout(s)
	var n uintptr
	var errno unix.Errno
	for {
		// Raw, like the loop's writes: the socket is non-blocking.
		n, _, errno = unix.RawSyscall(unix.SYS_WRITE, uintptr(s.conn.Fd()), uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)))
		if errno != unix.EINTR {
			break
		}
	}
	l.tally.writes++
	l.tally.direct++
	switch errno {
	case 0:
		l.tally.bytes += uint64(n)
		if int(n) == len(b) {
			l.tally.written++
			break
		}
		l.tally.directShort++
		f.retain(1) // the item's reference
		l.handBack(item{kind: kindWrite, sess: s, frame: f, off: uint32(n)})
	case unix.EAGAIN:
		l.tally.directShort++
		f.retain(1)
		l.handBack(item{kind: kindWrite, sess: s, frame: f})
	default:
		l.tally.directShort++
		l.tally.drops[DropClosed]++ // as if the loop had found it closed
		l.handBack(item{kind: kindClose, sess: s, reason: classify(errno)})
	}
	l.tally.publish(&l.counters)
	return true
}

// handBack puts it at the front of the loop's backlog (empty: writeDirect
// checked) and wakes the loop to carry it out. s is no longer written
// directly until the loop has written to it itself. l.own is held.
func (l *loop) handBack(it item) {
	it.sess.direct = false
	l.backlog = append(l.backlog, it)
	l.backlogLen.Store(int64(len(l.backlog)))
	l.mu.Lock()
	if !l.rung && !l.stopped {
		l.rung = true
		l.ring()
	}
	l.mu.Unlock()
}

// enterCallback makes the loop's goroutine the loop's owner for one gnet
// callback, waiting for a direct write under way. It returns false, taking
// nothing, inside a callback that owns the loop already: gnet runs OnClose
// inside Close.
func (l *loop) enterCallback() bool {
	if l.inCallback {
		return false
	}
	l.own.Lock()
	l.inCallback = true
	return true
}

// exitCallback ends what enterCallback began, if it took the lock.
func (l *loop) exitCallback(took bool) {
	if took {
		l.inCallback = false
		l.own.Unlock()
	}
}
