//go:build linux

package bench

import (
	crand "crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pushrelay/pushrelay/loadgen"
	"github.com/pushrelay/pushrelay/pkg/stamp"
	"github.com/pushrelay/pushrelay/relay"
)

// acceptor is the accept loop the two floors share: one OS thread in a
// blocking accept4(2) loop that keeps every descriptor and does nothing else
// (no epoll, no allocation) but what greet asks for.
//
// Accepted and AcceptTimes are safe to call from any goroutine.
type acceptor struct {
	// Fixed after construction.
	name   string        // for errors: accept4 or floor
	listen string        // HOST:PORT
	greet  func(fd int)  // called with each accepted descriptor; nil greets none
	done   chan struct{} // closed when the accept loop has returned

	// Fixed after start.
	lfd  int
	addr *net.TCPAddr

	mu      sync.Mutex
	held    []int // guarded by mu
	loopErr error // guarded by mu

	// Atomic.
	accepted atomic.Int64
	first    atomic.Int64 // wall clock (UnixNano) of the first accept
	last     atomic.Int64 // wall clock (UnixNano) of the latest accept
	closing  atomic.Bool

	closeOnce sync.Once
}

func newAcceptor(name, listen string) acceptor {
	return acceptor{name: name, listen: listen, lfd: -1, done: make(chan struct{})}
}

// start binds and listens with the largest backlog the kernel allows, then
// starts the accept loop on a thread of its own.
func (s *acceptor) start() error {
	fd, addr, err := listenRaw(s.name, s.listen)
	if err != nil {
		return err
	}
	s.addr = addr
	s.lfd = fd
	go s.loop()
	return nil
}

// loop accepts until Close shuts the listener down. It stays on one locked
// thread so the blocking accept4 never migrates or shares its thread.
func (s *acceptor) loop() {
	defer close(s.done)
	runtime.LockOSThread() // never unlocked: the thread exits with the loop
	for {
		// Null address arguments: the floor does not even decode the peer.
		nfd, _, errno := unix.Syscall6(unix.SYS_ACCEPT4, uintptr(s.lfd), 0, 0, unix.SOCK_CLOEXEC, 0, 0)
		if errno != 0 {
			switch {
			case s.closing.Load():
				return
			case errno == unix.EINTR || errno == unix.ECONNABORTED:
				continue
			}
			s.mu.Lock()
			s.loopErr = fmt.Errorf("bench: %s: accept after %d connections: %w", s.name, s.accepted.Load(), errno)
			s.mu.Unlock()
			return
		}
		if s.greet != nil {
			s.greet(int(nfd))
		}
		now := time.Now().UnixNano()
		if s.accepted.Load() == 0 {
			s.first.Store(now)
		}
		s.last.Store(now)
		s.mu.Lock()
		s.held = append(s.held, int(nfd))
		s.mu.Unlock()
		s.accepted.Add(1)
	}
}

// Addr returns the listening address. Nil before Start.
func (s *acceptor) Addr() *net.TCPAddr { return s.addr }

// Accepted returns how many connections were accepted.
func (s *acceptor) Accepted() uint64 { return uint64(s.accepted.Load()) }

// AcceptTimes returns the wall-clock times (UnixNano) of the first and the
// latest accept, zero before the first.
func (s *acceptor) AcceptTimes() (first, last int64) {
	return s.first.Load(), s.last.Load()
}

// Close stops the accept loop and closes the listener and every held
// descriptor. It returns the error that stopped the loop early, if any.
func (s *acceptor) Close() error {
	var err error
	s.closeOnce.Do(func() {
		if s.lfd < 0 {
			return
		}
		s.closing.Store(true)
		// close(2) does not wake a thread blocked in accept on the same
		// descriptor; shutdown(2) of a listener does, with EINVAL.
		if e := unix.Shutdown(s.lfd, unix.SHUT_RDWR); e != nil {
			err = fmt.Errorf("bench: %s: shutdown listener: %w", s.name, e)
		}
		select {
		case <-s.done:
		case <-time.After(5 * time.Second):
			err = errors.Join(err, fmt.Errorf("bench: %s: accept loop did not stop within 5s", s.name))
			return // leave the descriptors to the process's exit
		}
		unix.Close(s.lfd)
		s.mu.Lock()
		for _, fd := range s.held {
			unix.Close(fd)
		}
		s.held = nil
		err = errors.Join(err, s.loopErr)
		s.mu.Unlock()
	})
	return err
}

// Accept4Server is the floor for accepting TCP connections on this kernel:
// the bare accept loop. A server that accepts at a good fraction of its
// rate spends little beyond what the kernel must.
//
// Accepted, Len and AcceptTimes are safe to call from any goroutine.
type Accept4Server struct {
	// Greeting, if set before Start, is written to each connection as it
	// is accepted (one blocking write(2)): the floor for a server that
	// must greet its clients, as the relay writes each its ID.
	Greeting []byte

	acceptor
}

// NewAccept4 returns a server for listen (an IPv4 or IPv6 HOST:PORT; port 0
// picks a free one), ready to Start.
func NewAccept4(listen string) *Accept4Server {
	return &Accept4Server{acceptor: newAcceptor("accept4", listen)}
}

// Start binds and listens with the largest backlog the kernel allows, then
// starts the accept loop on a thread of its own.
func (s *Accept4Server) Start() error {
	if len(s.Greeting) > 0 {
		greeting := s.Greeting
		s.greet = func(fd int) {
			// A fresh socket's buffer takes a few bytes at once; a peer
			// gone already (EPIPE, ECONNRESET) is no concern of the floor.
			_, _ = unix.Write(fd, greeting)
		}
	}
	return s.start()
}

// Len returns how many connections are held open: all accepted ones, since
// the server never closes one before Close.
func (s *Accept4Server) Len() int { return int(s.accepted.Load()) }

// FloorServer is the kernel's floor for pushing to idle TCP connections:
// what writing a frame costs when nothing stands between the payload and
// write(2). The accept loop greets each connection with a fresh ID frame,
// as the relay does, so the same load generator reads both; on request, one
// locked thread writes timestamped frames to the held sockets with bare
// blocking write(2) calls: no queue, no event loop, no coalescing, no
// allocation.
//
// Accepted and Len are safe to call from any goroutine; the write methods
// (WriteRate, WritePaced, Sweep) from one goroutine at a time.
type FloorServer struct {
	framing relay.Framing // fixed after NewFloor
	acceptor
}

// FloorRun is what one of FloorServer's write runs did.
type FloorRun struct {
	Writes  int64   `json:"writes"`  // frames written whole
	Bytes   int64   `json:"bytes"`   // bytes written
	Seconds float64 `json:"seconds"` // from the first write to the last, on the writer's clock
	Errors  int64   `json:"errors"`  // writes that failed (the peer gone)
	// CPUSeconds is the writing thread's CPU time over the run (user and
	// system, from getrusage RUSAGE_THREAD).
	CPUSeconds float64 `json:"cpu_seconds"`
	Error      string  `json:"error,omitempty"`
}

// NewFloor returns a floor server for listen (IP:PORT; port 0 picks a free
// one) writing frames in framing, ready to Start.
func NewFloor(listen string, framing relay.Framing) *FloorServer {
	return &FloorServer{framing: framing, acceptor: newAcceptor("floor", listen)}
}

// Start binds and listens with the largest backlog the kernel allows and
// starts the accept loop on a thread of its own.
func (s *FloorServer) Start() error {
	var raw [relay.IDBytes]byte
	id := make([]byte, relay.IDLen)
	var greeting []byte
	s.greet = func(fd int) {
		// A distinct ID per connection, like the relay's: the reader
		// records IDs and a clash would hide nothing here, but a real one
		// keeps the greeting the same size and shape as the relay's.
		_, _ = crand.Read(raw[:])
		base64.RawURLEncoding.Encode(id, raw[:])
		greeting = s.framing.AppendFrame(greeting[:0], id)
		_, _ = unix.Write(fd, greeting)
	}
	return s.start()
}

// Len returns how many connections are held: every accepted one, less
// those Prune closed.
func (s *FloorServer) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.held)
}

// Prune closes the held sockets whose peer has gone (reset or shut down),
// so that Len counts the live ones, and returns how many it closed. It
// never reads: a peer that sent data is not a gone peer. Call it from the
// goroutine that runs the write methods.
func (s *FloorServer) Prune() (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	kept := make([]int, 0, len(s.held))
	closed := 0
	const batch = 4096 // well below RLIMIT_NOFILE, which bounds poll(2)'s count
	for lo := 0; lo < len(s.held); lo += batch {
		fds := s.held[lo:min(lo+batch, len(s.held))]
		pfds := make([]unix.PollFd, len(fds))
		for i, fd := range fds {
			pfds[i] = unix.PollFd{Fd: int32(fd), Events: unix.POLLRDHUP}
		}
		for {
			_, err := unix.Poll(pfds, 0)
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				return closed, fmt.Errorf("bench: floor: poll held sockets: %w", err)
			}
			break
		}
		for _, p := range pfds {
			if p.Revents&(unix.POLLRDHUP|unix.POLLHUP|unix.POLLERR) != 0 {
				unix.Close(int(p.Fd))
				closed++
				continue
			}
			kept = append(kept, int(p.Fd))
		}
	}
	s.held = kept
	return closed, nil
}

// sockets returns the descriptors held now. The slice is shared: read it
// only.
func (s *FloorServer) sockets() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.held[:len(s.held):len(s.held)]
}

// floorWriter writes stamped frames from one locked thread.
type floorWriter struct {
	framing relay.Framing
	size    int // payload bytes
	payload []byte
	frame   []byte
	run     FloorRun
	cpu0    time.Duration
	start   time.Time
}

func newFloorWriter(framing relay.Framing, size int) *floorWriter {
	runtime.LockOSThread()
	w := &floorWriter{framing: framing, size: size, payload: make([]byte, 0, size+32), frame: make([]byte, 0, size+64)}
	w.cpu0 = threadCPU()
	w.start = time.Now()
	return w
}

// stamp builds the frame for a payload stamped now.
func (w *floorWriter) stamp(now time.Time) {
	w.payload = stamp.AppendPadded(w.payload[:0], now, w.size)
	w.frame = w.framing.AppendFrame(w.frame[:0], w.payload)
}

// write writes the current frame to fd whole, retrying after a signal.
func (w *floorWriter) write(fd int) {
	b := w.frame
	for len(b) > 0 {
		n, err := unix.Write(fd, b)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			w.run.Errors++
			return
		}
		b = b[n:]
		w.run.Bytes += int64(n)
	}
	w.run.Writes++
}

// finish fills the run's times and releases the thread.
func (w *floorWriter) finish(last time.Time) FloorRun {
	w.run.Seconds = last.Sub(w.start).Seconds()
	w.run.CPUSeconds = (threadCPU() - w.cpu0).Seconds()
	runtime.UnlockOSThread()
	return w.run
}

// errNoSockets: a write run with nothing to write to.
var errNoSockets = errors.New("bench: floor: no connections to write to")

// WriteRate writes frames of a size-byte stamped payload to sockets chosen
// at random, one blocking write(2) each, as fast as one thread can, for d.
func (s *FloorServer) WriteRate(d time.Duration, size int) (FloorRun, error) {
	fds := s.sockets()
	if len(fds) == 0 {
		return FloorRun{}, errNoSockets
	}
	rng := rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	w := newFloorWriter(s.framing, size)
	end := w.start.Add(d)
	now := w.start
	for now.Before(end) {
		// The clock is read once per write anyway, for the stamp.
		w.stamp(now)
		w.write(fds[rng.IntN(len(fds))])
		now = time.Now()
	}
	return w.finish(now), nil
}

// WritePaced writes rate frames a second, each to a socket chosen at
// random and stamped just before its write, for d.
func (s *FloorServer) WritePaced(rate float64, d time.Duration, size int) (FloorRun, error) {
	fds := s.sockets()
	if len(fds) == 0 {
		return FloorRun{}, errNoSockets
	}
	if rate <= 0 {
		return FloorRun{}, fmt.Errorf("bench: floor: rate %v: want a positive rate", rate)
	}
	rng := rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	w := newFloorWriter(s.framing, size)
	n := int64(math.Round(rate * d.Seconds()))
	last := w.start
	for i := range n {
		due := w.start.Add(time.Duration(float64(i) * float64(time.Second) / rate))
		if wait := time.Until(due); wait > 0 {
			time.Sleep(wait)
		}
		last = time.Now()
		w.stamp(last)
		w.write(fds[rng.IntN(len(fds))])
	}
	return w.finish(last), nil
}

// Sweep writes one frame of a size-byte payload, stamped once at the
// start, to every held socket in turn: the bare sequential writer a
// broadcast is measured against.
func (s *FloorServer) Sweep(size int) (FloorRun, error) {
	fds := s.sockets()
	if len(fds) == 0 {
		return FloorRun{}, errNoSockets
	}
	w := newFloorWriter(s.framing, size)
	w.stamp(w.start)
	for _, fd := range fds {
		w.write(fd)
	}
	return w.finish(time.Now()), nil
}

// threadCPU returns the calling thread's CPU time, user and system.
func threadCPU() time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_THREAD, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// LoopbackProbe is the kernel's floor for one message's latency: one
// loopback TCP connection with a thread blocked in read(2) at one end and,
// at the other, count frames of a size-byte payload stamped just before
// its write(2), gap apart, each written once the last has been read. It
// returns the latency from each stamp to the return of the read that
// completed its frame. Nothing else is on the path: no epoll, no queue, no
// other socket.
func LoopbackProbe(count, size int, gap time.Duration, framing relay.Framing) (loadgen.Summary, error) {
	if count <= 0 {
		return loadgen.Summary{}, fmt.Errorf("bench: loopback probe: count %d: want at least 1", count)
	}
	lfd, addr, err := listenRaw("loopback probe", "127.0.0.1:0")
	if err != nil {
		return loadgen.Summary{}, err
	}
	defer unix.Close(lfd)
	wfd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return loadgen.Summary{}, fmt.Errorf("bench: loopback probe: socket: %w", err)
	}
	defer closeReset(wfd)
	// No Nagle: a frame written while the reader's ACK of the last is
	// still delayed would otherwise wait for it.
	if err := unix.SetsockoptInt(wfd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1); err != nil {
		return loadgen.Summary{}, fmt.Errorf("bench: loopback probe: TCP_NODELAY: %w", err)
	}
	if err := unix.Connect(wfd, &unix.SockaddrInet4{Port: addr.Port, Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		return loadgen.Summary{}, fmt.Errorf("bench: loopback probe: connect: %w", err)
	}
	rfd, _, err := unix.Accept4(lfd, unix.SOCK_CLOEXEC)
	if err != nil {
		return loadgen.Summary{}, fmt.Errorf("bench: loopback probe: accept: %w", err)
	}
	defer closeReset(rfd)
	tv := unix.NsecToTimeval((10 * time.Second).Nanoseconds())
	if err := unix.SetsockoptTimeval(rfd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return loadgen.Summary{}, fmt.Errorf("bench: loopback probe: SO_RCVTIMEO: %w", err)
	}
	frameLen := len(framing.AppendFrame(nil, stamp.AppendPadded(nil, time.Now(), size)))
	type reading struct {
		lat time.Duration
		err error
	}
	read := make(chan reading)
	go func() {
		// The waiting reader: a thread of its own, blocked in read(2).
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		buf := make([]byte, frameLen)
		for range count {
			n := 0
			for n < frameLen {
				m, err := unix.Read(rfd, buf[n:])
				if err == unix.EINTR {
					continue
				}
				if err != nil || m == 0 {
					read <- reading{err: fmt.Errorf("bench: loopback probe: read after %d of %d bytes: %v", n, frameLen, err)}
					return
				}
				n += m
			}
			now := time.Now()
			fr := relay.NewFrameReader(bytesReader(buf), framing, frameLen)
			payload, err := fr.Next()
			if err != nil {
				read <- reading{err: fmt.Errorf("bench: loopback probe: frame: %w", err)}
				return
			}
			ts, ok := stamp.Parse(payload)
			if !ok {
				read <- reading{err: fmt.Errorf("bench: loopback probe: frame %q carries no stamp", payload)}
				return
			}
			read <- reading{lat: now.Sub(time.Unix(0, ts))}
		}
	}()
	var (
		hist    loadgen.Histogram
		payload = make([]byte, 0, size+32)
		frame   = make([]byte, 0, frameLen)
	)
	for range count {
		time.Sleep(gap)
		payload = stamp.AppendPadded(payload[:0], time.Now(), size)
		frame = framing.AppendFrame(frame[:0], payload)
		for b := frame; len(b) > 0; {
			n, err := unix.Write(wfd, b)
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				closeReset(rfd) // wakes the reader
				<-read
				return hist.Summarize(), fmt.Errorf("bench: loopback probe: write: %w", err)
			}
			b = b[n:]
		}
		r := <-read
		if r.err != nil {
			return hist.Summarize(), r.err
		}
		hist.Record(r.lat)
	}
	return hist.Summarize(), nil
}

// bytesReader reads one buffer once.
type bytesReader []byte

func (b bytesReader) Read(p []byte) (int, error) {
	if len(b) == 0 {
		return 0, io.EOF
	}
	return copy(p, b), nil
}
