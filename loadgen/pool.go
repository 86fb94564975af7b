package loadgen

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pushrelay/pushrelay/pkg/clientid"
	"github.com/pushrelay/pushrelay/pkg/framing"
	"github.com/pushrelay/pushrelay/pkg/stamp"
)

// PoolOptions configure a Pool.
type PoolOptions struct {
	// Target is the relay's client address, HOST:PORT.
	Target string
	// Framing of the target's listener.
	Framing framing.Framing
	// Sources, if any, are local addresses to connect from, in turn: each
	// gives its own range of ephemeral ports toward the target. Bound with
	// IP_BIND_ADDRESS_NO_PORT, so the port is chosen at connect time.
	Sources []netip.Addr
	// MaxFrame caps a payload; a larger frame fails the connection as
	// BAD_FRAME. Default framing.MaxPayload.
	MaxFrame int
	// RecvBuf, if positive, sets SO_RCVBUF before connecting.
	RecvBuf int
	// Web, if set, makes the clients browsers of the relay's web listener
	// (Target is then the --web address): each writes its request head,
	// checks the answer, then reads WebSocket frames or SSE events.
	Web Web
}

// Pool holds client connections on one epoll instance. Its methods must be
// called from one goroutine (the owner); the counters in Stats are atomic
// and may be read from anywhere.
type Pool struct {
	opts   PoolOptions
	target unix.Sockaddr
	family int
	epfd   int

	// Owned by the owner goroutine.
	conns   []lconn // by slot; the slot is the epoll event's data
	free    []int32 // free slots
	events  []unix.EpollEvent
	buf     []byte
	hist    Histogram
	window  Histogram // since the last TakeWindow
	nextSrc int
	pending int    // connections connecting or waiting for their ID
	request []byte // the web request head, when Web is set

	// Inflating permessage-deflate messages (WebWSDeflate).
	zin, zout []byte
	zsrc      bytes.Reader
	zr        io.ReadCloser

	Stats PoolStats
}

// PoolStats are a pool's counters. Atomic.
type PoolStats struct {
	Attempts    atomic.Int64 // connects started
	Established atomic.Int64 // connections that received a valid ID
	Open        atomic.Int64 // connections open now (ID received or not)
	Messages    atomic.Int64 // frames after the ID (heartbeats included)
	Empty       atomic.Int64 // empty frames (heartbeats)
	Bytes       atomic.Int64 // bytes read
	Stamped     atomic.Int64 // frames that carried a timestamp
	mu          atomic.Pointer[failures]
}

// failures is the copy-on-write record of failures by kind.
type failures struct {
	byKind     map[string]int64
	first      string
	firstAt    time.Time
	firstPhase string
}

// Failures returns the failure counts by kind (EMFILE, ECONNREFUSED, EOF,
// ...), the first failure's kind, when it happened, and in which phase
// ("connect" or "established").
func (s *PoolStats) Failures() (map[string]int64, string, time.Time, string) {
	f := s.mu.Load()
	if f == nil {
		return map[string]int64{}, "", time.Time{}, ""
	}
	return f.byKind, f.first, f.firstAt, f.firstPhase
}

func (s *PoolStats) fail(kind, phase string) {
	for {
		old := s.mu.Load()
		next := &failures{byKind: map[string]int64{}}
		if old != nil {
			for k, v := range old.byKind {
				next.byKind[k] = v
			}
			next.first, next.firstAt, next.firstPhase = old.first, old.firstAt, old.firstPhase
		}
		next.byKind[kind]++
		if next.first == "" {
			next.first, next.firstAt, next.firstPhase = kind, time.Now(), phase
		}
		if s.mu.CompareAndSwap(old, next) {
			return
		}
	}
}

// Connection states.
const (
	stFree uint8 = iota
	stConnecting
	stWaitID
	stIdle
	stWaitHead // web: the request is written, the answer's head not yet read
)

// lconn is one held connection: about 64 bytes besides its ID and any
// partial frame.
type lconn struct {
	fd    int32
	state uint8
	msgs  uint32
	id    string
	carry []byte // a partial frame, between reads
}

// NewPool creates an empty pool.
func NewPool(opts PoolOptions) (*Pool, error) {
	ap, err := netip.ParseAddrPort(opts.Target)
	if err != nil {
		ta, rerr := net.ResolveTCPAddr("tcp", opts.Target)
		if rerr != nil {
			return nil, fmt.Errorf("loadgen: target %q: %w", opts.Target, rerr)
		}
		ap = ta.AddrPort()
	}
	if opts.MaxFrame <= 0 {
		opts.MaxFrame = framing.MaxPayload
	}
	p := &Pool{opts: opts, events: make([]unix.EpollEvent, 1024), buf: make([]byte, 64<<10)}
	if ap.Addr().Unmap().Is4() {
		p.family = unix.AF_INET
		p.target = &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().Unmap().As4()}
	} else {
		p.family = unix.AF_INET6
		p.target = &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
	}
	for _, s := range opts.Sources {
		if s.Unmap().Is4() != (p.family == unix.AF_INET) {
			return nil, fmt.Errorf("loadgen: source %s and target %s are not the same address family", s, opts.Target)
		}
	}
	if opts.Web != WebNone {
		p.request = webRequest(opts.Web, opts.Target)
	}
	p.epfd, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("loadgen: epoll_create1: %w", err)
	}
	return p, nil
}

// Connect starts one connection. A failure that happens at once (EMFILE,
// EADDRNOTAVAIL, ...) is counted and returned.
func (p *Pool) Connect() error {
	p.Stats.Attempts.Add(1)
	fd, err := unix.Socket(p.family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		p.Stats.fail(ErrnoName(err), "connect")
		return err
	}
	if p.opts.RecvBuf > 0 {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, p.opts.RecvBuf)
	}
	if len(p.opts.Sources) > 0 {
		src := p.opts.Sources[p.nextSrc%len(p.opts.Sources)].Unmap()
		p.nextSrc++
		// Without this, bind picks a port before knowing the target, and
		// the port range runs out per source address, not per target.
		_ = unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
		var sa unix.Sockaddr
		if src.Is4() {
			sa = &unix.SockaddrInet4{Addr: src.As4()}
		} else {
			sa = &unix.SockaddrInet6{Addr: src.As16()}
		}
		if err := unix.Bind(fd, sa); err != nil {
			unix.Close(fd)
			p.Stats.fail(ErrnoName(err), "connect")
			return err
		}
	}
	err = unix.Connect(fd, p.target)
	if err != nil && err != unix.EINPROGRESS {
		unix.Close(fd)
		p.Stats.fail(ErrnoName(err), "connect")
		return err
	}
	slot := p.alloc()
	c := &p.conns[slot]
	*c = lconn{fd: int32(fd), state: stConnecting}
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP, Fd: slot}
	if err := unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		unix.Close(fd)
		c.state = stFree
		p.free = append(p.free, slot)
		p.Stats.fail(ErrnoName(err), "connect")
		return err
	}
	p.Stats.Open.Add(1)
	p.pending++
	return nil
}

func (p *Pool) alloc() int32 {
	if n := len(p.free); n > 0 {
		s := p.free[n-1]
		p.free = p.free[:n-1]
		return s
	}
	p.conns = append(p.conns, lconn{})
	return int32(len(p.conns) - 1)
}

// Poll waits up to timeout for events and handles them. It returns how
// many events it handled.
func (p *Pool) Poll(timeout time.Duration) (int, error) {
	ms := int(timeout / time.Millisecond)
	if timeout > 0 && ms == 0 {
		ms = 1
	}
	n, err := unix.EpollWait(p.epfd, p.events, ms)
	if err != nil {
		if err == unix.EINTR {
			return 0, nil
		}
		return 0, fmt.Errorf("loadgen: epoll_wait: %w", err)
	}
	for i := 0; i < n; i++ {
		ev := &p.events[i]
		slot := ev.Fd
		if int(slot) >= len(p.conns) || p.conns[slot].state == stFree {
			continue
		}
		p.handle(slot, ev.Events)
	}
	return n, nil
}

func (p *Pool) handle(slot int32, events uint32) {
	c := &p.conns[slot]
	if c.state == stConnecting {
		soerr, err := unix.GetsockoptInt(int(c.fd), unix.SOL_SOCKET, unix.SO_ERROR)
		if err == nil && soerr != 0 {
			err = syscall.Errno(soerr)
		}
		if err != nil {
			p.drop(slot, err, "connect")
			return
		}
		if events&(unix.EPOLLOUT|unix.EPOLLIN) == 0 {
			return
		}
		c.state = stWaitID
		if p.request != nil {
			// A few hundred bytes into an empty send buffer: one write.
			if n, err := unix.Write(int(c.fd), p.request); err != nil || n != len(p.request) {
				if err == nil {
					err = fmt.Errorf("%w: short write of the request head", errBadHandshake)
				}
				p.drop(slot, err, "connect")
				return
			}
			c.state = stWaitHead
		}
		ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP, Fd: slot}
		_ = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_MOD, int(c.fd), &ev)
	}
	if events&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		p.read(slot)
	}
}

// read drains a socket and parses its frames.
func (p *Pool) read(slot int32) {
	for {
		c := &p.conns[slot]
		n, err := unix.Read(int(c.fd), p.buf)
		switch {
		case err == unix.EAGAIN:
			return
		case err == unix.EINTR:
			continue
		case err != nil:
			p.drop(slot, err, p.phase(c))
			return
		case n == 0:
			p.drop(slot, errPeerClosed, p.phase(c))
			return
		}
		p.Stats.Bytes.Add(int64(n))
		if err := p.parse(c, p.buf[:n]); err != nil {
			p.drop(slot, err, p.phase(c))
			return
		}
		if n < len(p.buf) {
			return
		}
	}
}

func (p *Pool) phase(c *lconn) string {
	if c.state == stIdle {
		return "established"
	}
	return "connect"
}

// parse consumes data, prefixed by the connection's carried partial frame.
func (p *Pool) parse(c *lconn, data []byte) error {
	if len(c.carry) > 0 {
		c.carry = append(c.carry, data...)
		data = c.carry
	}
	if c.state == stWaitHead {
		rest, ok, err := cutHead(p.opts.Web, data)
		if err != nil {
			return err
		}
		if !ok {
			c.carry = append(c.carry[:0], data...)
			return nil
		}
		c.state = stWaitID
		data = rest
	}
	for {
		payload, rest, ok, err := p.cut(data)
		if err != nil {
			return err
		}
		if !ok {
			break
		}
		if err := p.frame(c, payload); err != nil {
			return err
		}
		data = rest
	}
	// Keep the partial frame; reuse the carry's memory when it fits.
	if len(data) == 0 {
		if cap(c.carry) > 4<<10 {
			c.carry = nil
		} else {
			c.carry = c.carry[:0]
		}
		return nil
	}
	// data may lie inside c.carry: append copies with memmove semantics.
	c.carry = append(c.carry[:0], data...)
	return nil
}

// cut splits the first whole frame off data.
func (p *Pool) cut(data []byte) (payload, rest []byte, ok bool, err error) {
	switch p.opts.Web {
	case WebWS, WebWSDeflate:
		return p.cutWS(data)
	case WebSSE:
		return p.cutSSE(data)
	}
	payload, rest, ok, err = p.opts.Framing.Cut(data, p.opts.MaxFrame)
	if err != nil {
		err = fmt.Errorf("%w: %w", errBadFrame, err)
	}
	return payload, rest, ok, err
}

// frame handles one payload.
func (p *Pool) frame(c *lconn, payload []byte) error {
	if c.state == stWaitID {
		if !clientid.Valid(string(payload)) {
			return fmt.Errorf("%w: first frame %q is not an ID", errBadFrame, payload)
		}
		c.id = string(payload)
		c.state = stIdle
		p.pending--
		p.Stats.Established.Add(1)
		return nil
	}
	c.msgs++
	p.Stats.Messages.Add(1)
	if len(payload) == 0 {
		p.Stats.Empty.Add(1)
		return nil
	}
	if ts, ok := stamp.Parse(payload); ok {
		p.Stats.Stamped.Add(1)
		d := time.Duration(time.Now().UnixNano() - ts)
		p.hist.Record(d)
		p.window.Record(d)
	}
	return nil
}

// TakeWindow returns the latency of the stamped frames received since the
// previous call, and starts a new window: how a long run reports each
// phase's latency (a step of a ramp, one broadcast) apart.
func (p *Pool) TakeWindow() Histogram {
	w := p.window
	p.window = Histogram{}
	return w
}

// drop closes a connection that failed and counts why.
func (p *Pool) drop(slot int32, err error, phase string) {
	p.Stats.fail(ErrnoName(err), phase)
	p.closeSlot(slot, false)
}

func (p *Pool) closeSlot(slot int32, rst bool) {
	c := &p.conns[slot]
	if c.state == stFree {
		return
	}
	switch c.state {
	case stIdle:
		p.Stats.Established.Add(-1)
	case stConnecting, stWaitID, stWaitHead:
		p.pending--
	}
	if rst {
		// RST, not FIN: no TIME_WAIT left behind by a run.
		_ = unix.SetsockoptLinger(int(c.fd), unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
	}
	_ = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_DEL, int(c.fd), nil)
	unix.Close(int(c.fd))
	*c = lconn{}
	p.free = append(p.free, slot)
	p.Stats.Open.Add(-1)
}

// IDs returns the IDs of the connections holding one, in slot order.
func (p *Pool) IDs() []string {
	ids := make([]string, 0, len(p.conns))
	for i := range p.conns {
		if p.conns[i].state == stIdle {
			ids = append(ids, p.conns[i].id)
		}
	}
	return ids
}

// MessagesPerConn returns, for each connection holding an ID, its message
// count.
func (p *Pool) MessagesPerConn() map[string]uint32 {
	m := make(map[string]uint32, len(p.conns))
	for i := range p.conns {
		if p.conns[i].state == stIdle {
			m[p.conns[i].id] = p.conns[i].msgs
		}
	}
	return m
}

// Latency returns the histogram of timestamped frames' latency.
func (p *Pool) Latency() *Histogram { return &p.hist }

// Close resets every connection (SO_LINGER 0) and closes the epoll fd.
func (p *Pool) Close() error {
	for i := range p.conns {
		p.closeSlot(int32(i), true)
	}
	return unix.Close(p.epfd)
}

// ErrDeadline is returned by Open when its deadline passes first.
var ErrDeadline = errors.New("deadline passed before every connection got an ID or failed")

// Open starts n connections at rate per second (0: as fast as it can),
// handling events as it goes, and returns once every attempt has an ID or
// has failed, or at deadline (ErrDeadline). Failures are counted in Stats,
// not returned.
func (p *Pool) Open(n int, rate float64, deadline time.Time) error {
	start := time.Now()
	started := 0
	for {
		now := time.Now()
		if now.After(deadline) {
			return ErrDeadline
		}
		due := n
		if rate > 0 {
			due = min(n, int(rate*now.Sub(start).Seconds())+1)
		}
		for ; started < due; started++ {
			p.Connect()
			if started%64 == 63 {
				p.Poll(0) // keep handshakes moving during a fast ramp
			}
		}
		if started == n && p.settled() {
			return nil
		}
		wait := 5 * time.Millisecond
		if started < n && rate > 0 {
			wait = min(wait, time.Duration(float64(time.Second)/rate))
		}
		if _, err := p.Poll(wait); err != nil {
			return err
		}
	}
}

// settled reports whether no connection is still waiting for its ID. A
// counter, not a scan: the connect loop asks after every poll.
func (p *Pool) settled() bool { return p.pending == 0 }

// Run handles events until stop is closed or deadline passes.
func (p *Pool) Run(stop <-chan struct{}, deadline time.Time) error {
	for time.Now().Before(deadline) {
		select {
		case <-stop:
			return nil
		default:
		}
		if _, err := p.Poll(20 * time.Millisecond); err != nil {
			return err
		}
	}
	return nil
}
