package relay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"
)

// itemKind is what a mailbox item asks the loop to do.
type itemKind uint8

const (
	kindWrite       itemKind = iota // write frame to sess
	kindBroadcast                   // write frame to every session of the loop
	kindClose                       // close sess for reason, after what was queued before
	kindTick                        // housekeeping: heartbeats, congestion re-checks
	kindProbe                       // report how much is still unwritten (shutdown)
	kindSubscribe                   // add sess to topics
	kindUnsubscribe                 // remove sess from topics
	kindPublish                     // write frame to the loop's members of topic
	kindGoodbye                     // shutdown: a close frame to every WebSocket, then reply on probe
)

// item is one unit of work in a loop's mailbox. Items are values in a
// reused slice: enqueuing allocates nothing.
type item struct {
	kind   itemKind
	reason CloseReason
	off    uint32 // kindWrite: bytes of the frame already written (direct.go)
	sess   *session
	frame  *Frame
	probe  chan<- int // kindProbe: receives the loop's unwritten byte count
	topic  string     // kindPublish: a stored name, safe to keep
	topics []string   // kindSubscribe, kindUnsubscribe
	// topicReply receives the outcome of kindSubscribe and kindUnsubscribe.
	topicReply chan<- topicOp
}

// loop is pushrelay's side of one gnet event loop: its sessions and its
// mailbox. Producers (any goroutine) append to the mailbox and ring the
// doorbell, a socketpair whose read end gnet polls like any connection; the
// loop works through the mailbox in OnTraffic of the doorbell and does every write
// itself. A doorbell ring is one write(2) and allocates nothing, where gnet's
// own Execute and Wake allocate a closure per call.
type loop struct {
	// Fixed after creation.
	srv   *Server
	el    gnet.EventLoop
	bellW int // write end of the doorbell; producers write one byte to it
	hold  int // unsent bytes a connection may have in gnet: outboundHold(MaxOutbound)

	// own is held by whoever acts as the loop: the loop's goroutine for
	// the length of each gnet callback, or a producer writing a unicast
	// to an idle loop's client itself (direct.go). Everything below
	// marked "owned by the event loop" is touched only by its holder.
	// Lock order: locks.go.
	own sync.Mutex

	// Guarded by mu: the mailbox.
	mu         sync.Mutex
	queue      []item
	queueBytes int
	rung       bool // a ring is on its way: the next pass takes the queue
	stopped    bool // the engine stopped and bellW is closed: refuse work

	// Atomic.
	count    atomic.Int64 // sessions on this loop
	counters loopCounters

	backlogLen atomic.Int64 // items taken from the mailbox, not yet applied

	// Written only by the loop's goroutine: it holds own (entered).
	inCallback bool

	// Owned by the event loop; touch only while holding own.
	spare      []item // the other half of the mailbox's double buffer
	backlog    []item // taken from the mailbox, not yet applied (FIFO)
	jobs       jobRing
	done       []*Frame // frames of applied items, released after the flush
	sessions   []*session
	handshakes []*session // web connections whose request is not yet answered
	webBuf     []byte     // scratch for web responses and control frames
	// wsSkip holds, for WebSockets in the middle of a client data frame
	// (wsSkipping), the payload bytes still to skip. Browsers send no data
	// frames, so this stays empty and costs idle sessions nothing.
	wsSkip    map[*session]uint32
	pend      []pendFrame
	dirty     []*session // sessions with staged frames this pass
	congested []*session // sessions with congested set, re-checked on ticks
	iov       [][]byte
	iovecs    []unix.Iovec
	topics    map[string]*loopTopic // this loop's sessions' subscriptions
	ids       idSource
	idFrame   []byte
	lastBeat  time.Time
	tally     loopTally
}

var bellByte = []byte{1}

// newLoop creates the loop state for el and enrolls its doorbell. It runs
// on el's goroutine (from OnOpen), so nothing else sees the loop yet.
func newLoop(srv *Server, el gnet.EventLoop) (*loop, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("relay: doorbell socketpair: %w", err)
	}
	l := &loop{
		srv:   srv,
		el:    el,
		bellW: fds[0],
		// Small to start (items are 80 bytes); the slices grow with load
		// and keep their size.
		queue:    make([]item, 0, 64),
		spare:    make([]item, 0, 64),
		lastBeat: time.Now(),
		ids:      idSource{node: srv.cfg.NodeID},
		hold:     outboundHold(srv.cfg.MaxOutbound),
	}
	f := os.NewFile(uintptr(fds[1]), "pushrelay-doorbell")
	nc, err := net.FileConn(f) // dups the fd
	f.Close()
	if err != nil {
		unix.Close(fds[0])
		return nil, fmt.Errorf("relay: doorbell conn: %w", err)
	}
	// Enroll dups the fd again, closes nc, and registers the copy on el;
	// OnOpen recognises it by the context. Bytes rung before the
	// registration completes wait in the socket and wake the loop then.
	if _, err := el.Enroll(gnet.NewContext(context.Background(), l), nc); err != nil {
		nc.Close()
		unix.Close(fds[0])
		return nil, fmt.Errorf("relay: enroll doorbell: %w", err)
	}
	return l, nil
}

// enqueue appends it to the mailbox, ringing the doorbell if the mailbox was
// idle. It returns Overloaded if the mailbox is full and Closed once the
// loop has stopped, queuing nothing. Safe for concurrent use.
func (l *loop) enqueue(it item, size int) Status {
	l.mu.Lock()
	defer l.mu.Unlock()
	if st := l.room(size); st != Queued {
		return st
	}
	l.appendLocked(it, size)
	return Queued
}

// room says whether the mailbox takes one more item of size bytes.
// l.mu is held on entry.
func (l *loop) room(size int) Status {
	switch {
	case l.stopped:
		return Closed
	case len(l.queue)+int(l.backlogLen.Load()) >= l.srv.cfg.MailboxItems || l.queueBytes+size > l.srv.cfg.MailboxBytes:
		return Overloaded
	}
	return Queued
}

// appendLocked appends it and rings the doorbell if the mailbox was idle.
// The ring happens under the lock, once per batch: stop closes bellW under
// it too, so a ring never hits a descriptor number the process has since
// reused. l.mu is held on entry.
func (l *loop) appendLocked(it item, size int) {
	l.queue = append(l.queue, it)
	l.queueBytes += size
	if !l.rung {
		l.rung = true
		l.ring()
	}
}

// stop refuses further work and closes the doorbell's write end. Called
// once the engine has stopped (gnet closed the read end with the loop).
func (l *loop) stop() {
	l.own.Lock() // no direct write is under way, or starts
	defer l.own.Unlock()
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.stopped {
		l.stopped = true
		unix.Close(l.bellW)
		// The engine has stopped: the loop's goroutine is gone, so its
		// state may be touched here.
		for _, q := range [][]item{l.queue, l.backlog} {
			for _, it := range q {
				if it.frame != nil {
					it.frame.release()
				}
			}
			clear(q)
		}
		l.queue, l.backlog = l.queue[:0], l.backlog[:0]
		l.endAllJobs()
	}
}

// ring wakes the loop. A full doorbell (EAGAIN) means the loop has bytes to
// read already, which is as good as a ring.
func (l *loop) ring() {
	for {
		_, err := unix.Write(l.bellW, bellByte)
		if err != unix.EINTR {
			return
		}
	}
}

// serveMailbox runs on the loop when the doorbell rings: one mailbox pass.
// It moves the mailbox to the backlog and works through it in order: items
// are applied at once, fanouts become jobs served in turns (fanout.go).
// When a job or items behind it remain, it rings the doorbell itself so the
// loop comes back after serving other sockets. l.own is held.
func (l *loop) serveMailbox() {
	l.takeMailbox()
	applied := l.workBacklog()
	l.flushAll()
	left := l.keepUnapplied(applied)
	l.tally.publish(&l.counters)
	if l.jobs.n > 0 || left > 0 {
		l.ringAgain()
	}
	if l.jobs.n > 0 {
		l.yieldCore()
	}
}

// takeMailbox moves the mailbox's items to the end of the backlog and
// leaves the mailbox empty for producers.
func (l *loop) takeMailbox() {
	l.mu.Lock()
	batch := l.queue
	l.queue = l.spare[:0]
	l.queueBytes = 0
	l.rung = false
	l.mu.Unlock()
	if len(l.backlog) == 0 {
		// The usual case: the batch becomes the backlog, no copy. The
		// three buffers rotate: queue, spare and backlog never share one.
		l.backlog, l.spare = batch, l.backlog[:0]
	} else {
		l.backlog = append(l.backlog, batch...)
		clear(batch)
		l.spare = batch[:0]
	}
}

// workBacklog applies the backlog's items in order and serves jobs in
// turns until the turn's budget (sliceTargets recipients, or its time) is
// spent or no job is left. It returns how many items from the backlog's
// front it applied or made jobs; an item that finds every job slot taken
// stops it, with everything behind it.
func (l *loop) workBacklog() int {
	budget := sliceTargets
	var turn time.Time // the turn's start, read when a job first runs
	i := 0
	for {
		for i < len(l.backlog) {
			it := &l.backlog[i]
			if isFanout(it.kind) {
				n := l.addFanout(l.backlog[i:])
				if n == 0 {
					break // every job slot is taken: wait, and all after it
				}
				i += n
				continue
			}
			l.apply(it)
			i++
		}
		if l.jobs.n == 0 {
			return i
		}
		if turn.IsZero() {
			turn = time.Now()
		}
		served, ended := l.runJob(budget, turn)
		budget -= served
		if !ended || budget <= 0 {
			return i
		}
	}
}

// keepUnapplied drops the first applied items of the backlog, keeping the
// rest in order for the next pass, and returns how many are left.
func (l *loop) keepUnapplied(applied int) int {
	n := copy(l.backlog, l.backlog[applied:])
	clear(l.backlog[n:])
	l.backlog = l.backlog[:n]
	l.backlogLen.Store(int64(n))
	return n
}

// ringAgain rings the loop's own doorbell, unless a ring is on its way, so
// the loop comes back for the work left after serving other sockets.
func (l *loop) ringAgain() {
	l.mu.Lock()
	if !l.rung {
		l.rung = true
		l.ring()
	}
	l.mu.Unlock()
}

// yieldCore gives the core away at the end of a turn with a job left. A
// fanout keeps the loop's thread busy from turn to turn, and the scheduler
// may let a thread that just woke up (an ingress goroutine's, holding a
// unicast) wait a whole time slice of a few milliseconds. Yielding makes
// the turn bound that wait too; if nothing else waits for this core, the
// call returns at once.
func (l *loop) yieldCore() {
	unix.RawSyscall(unix.SYS_SCHED_YIELD, 0, 0, 0)
}

// apply carries out one item that is not a fanout, and releases its frame.
func (l *loop) apply(it *item) {
	switch it.kind {
	case kindWrite:
		l.deliverPending(it.sess)
		l.stageFrom(it.sess, it.frame, int(it.off), false)
	case kindClose:
		// Writes queued before the close go out first.
		l.deliverPending(it.sess)
		l.flush(it.sess)
		l.closeSession(it.sess, it.reason)
	case kindTick:
		l.tick()
	case kindProbe:
		l.flushAll()
		n := l.unwritten()
		if l.jobs.n > 0 || len(l.backlog) > 1 {
			n++ // work still queued counts as unwritten
		}
		it.probe <- n
	case kindGoodbye:
		l.flushAll()
		for _, s := range l.sessions {
			if s.transport == transportWS || s.transport == transportWSDeflate {
				l.wsCloseFrame(s, wsCloseGoingAway, "shutting down")
			}
		}
		it.probe <- 0
	case kindSubscribe, kindUnsubscribe:
		l.jobs.epoch++ // a queued publish may no longer take later frames
		l.applyTopicOp(it)
	}
	if it.frame != nil {
		// gnet copies what a write leaves unsent, so once flushed (at the
		// latest by the flushAll that ends this pass) the frame is free.
		// Release it after that flush: keep it until then.
		l.done = append(l.done, it.frame)
		it.frame = nil
	}
	*it = item{}
}

// closeSession closes s on the loop. Slow and flooding clients are reset
// (SO_LINGER 0) so the kernel frees their buffers at once instead of
// retrying them for minutes.
func (l *loop) closeSession(s *session, why CloseReason) {
	if s.closed {
		return
	}
	s.reason = why
	if why == ReasonSlow || why == ReasonInbound {
		_ = s.conn.SetLinger(0)
	}
	if why == ReasonKicked && (s.transport == transportWS || s.transport == transportWSDeflate) {
		// A browser sees a clean close (1000, "kicked") rather than 1006.
		l.wsCloseFrame(s, wsCloseNormal, "kicked")
	}
	_ = l.el.Close(s.conn) // runs OnClose before it returns
}

// tick does the loop's housekeeping: heartbeats when due, and clearing the
// congested mark of sessions whose unsent bytes fell to half their cap.
func (l *loop) tick() {
	// A heartbeat is a job like a broadcast; while other jobs are under
	// way, data flows anyway and the heartbeat waits for a later tick.
	if hb := l.srv.cfg.Heartbeat; hb > 0 && l.jobs.n == 0 {
		if now := time.Now(); now.Sub(l.lastBeat) >= hb-hb/8 {
			l.lastBeat = now
			l.startHeartbeat()
		}
	}
	if len(l.handshakes) > 0 {
		l.expireHandshakes(time.Now())
	}
	kept := l.congested[:0]
	for _, s := range l.congested {
		switch {
		case s.closed:
		case s.conn.OutboundBuffered() <= l.hold/2:
			s.congested.Store(false)
		default:
			kept = append(kept, s)
		}
	}
	clear(l.congested[len(kept):])
	l.congested = kept
}

// unwritten returns the bytes the loop's sessions still hold unsent.
func (l *loop) unwritten() int {
	n := 0
	for _, s := range l.sessions {
		n += s.conn.OutboundBuffered()
	}
	return n
}

// addSession registers s as one of the loop's sessions.
func (l *loop) addSession(s *session) {
	s.idx = int32(len(l.sessions))
	s.head, s.tail = -1, -1
	l.sessions = append(l.sessions, s)
	l.count.Add(1)
	l.jobs.epoch++ // a queued broadcast may no longer take later frames
}

// removeSession forgets s (swap-remove) and marks it closed.
func (l *loop) removeSession(s *session) {
	s.closed = true
	l.sessions = swapRemove(l.sessions, s)
	if cap(l.sessions) > 1024 && len(l.sessions) < cap(l.sessions)/4 {
		// Give back the memory of a crowd that left.
		l.sessions = append([]*session(nil), l.sessions...)
	}
	l.count.Add(-1)
}

// classify maps the error a connection closed with to a reason.
func classify(err error) CloseReason {
	var errno syscall.Errno
	switch {
	case err == nil:
		return ReasonPeerClosed
	case errors.As(err, &errno):
		switch errno {
		case unix.ECONNRESET, unix.EPIPE:
			return ReasonPeerReset
		case unix.ETIMEDOUT:
			return ReasonTimeout
		}
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return ReasonTimeout
	}
	if errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF) {
		return ReasonPeerClosed
	}
	return ReasonError
}
