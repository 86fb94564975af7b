//go:build linux

package bench

import (
	"errors"
	"fmt"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Accept4Server is the floor for accepting TCP connections on this kernel:
// one OS thread in a blocking accept4(2) loop that keeps every descriptor
// and does nothing else: no epoll, no allocation, no write. A server that
// accepts at a good fraction of its rate spends little beyond what the
// kernel must.
//
// Accepted, Len and AcceptTimes are safe to call from any goroutine.
type Accept4Server struct {
	// Greeting, if set before Start, is written to each connection as it
	// is accepted (one blocking write(2)): the floor for a server that
	// must greet its clients, as the relay writes each its ID.
	Greeting []byte

	// Fixed after Start.
	listen string
	lfd    int
	addr   *net.TCPAddr
	done   chan struct{} // closed when the accept loop has returned

	// Atomic.
	accepted atomic.Int64
	first    atomic.Int64 // wall clock (UnixNano) of the first accept
	last     atomic.Int64 // wall clock (UnixNano) of the latest accept
	closing  atomic.Bool

	// Owned by the accept loop until done is closed, then by Close.
	held    []int
	loopErr error

	closeOnce sync.Once
}

// NewAccept4 returns a server for listen (an IPv4 or IPv6 HOST:PORT; port 0
// picks a free one), ready to Start.
func NewAccept4(listen string) *Accept4Server {
	return &Accept4Server{listen: listen, lfd: -1, done: make(chan struct{})}
}

// Start binds and listens with the largest backlog the kernel allows, then
// starts the accept loop on a thread of its own.
func (s *Accept4Server) Start() error {
	fd, addr, err := listenRaw("accept4", s.listen)
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
func (s *Accept4Server) loop() {
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
			s.loopErr = fmt.Errorf("bench: accept4: accept after %d connections: %w", s.accepted.Load(), errno)
			return
		}
		if len(s.Greeting) > 0 {
			// A fresh socket's buffer takes a few bytes at once; a peer
			// gone already (EPIPE, ECONNRESET) is no concern of the floor.
			_, _ = unix.Write(int(nfd), s.Greeting)
		}
		now := time.Now().UnixNano()
		if s.accepted.Load() == 0 {
			s.first.Store(now)
		}
		s.last.Store(now)
		s.held = append(s.held, int(nfd))
		s.accepted.Add(1)
	}
}

// Addr returns the listening address. Nil before Start.
func (s *Accept4Server) Addr() *net.TCPAddr { return s.addr }

// Accepted returns how many connections were accepted.
func (s *Accept4Server) Accepted() uint64 { return uint64(s.accepted.Load()) }

// Len returns how many connections are held open: all accepted ones, since
// the server never closes one before Close.
func (s *Accept4Server) Len() int { return int(s.accepted.Load()) }

// AcceptTimes returns the wall-clock times (UnixNano) of the first and the
// latest accept, zero before the first.
func (s *Accept4Server) AcceptTimes() (first, last int64) {
	return s.first.Load(), s.last.Load()
}

// Close stops the accept loop and closes the listener and every accepted
// descriptor. It returns the error that stopped the loop early, if any.
func (s *Accept4Server) Close() error {
	var err error
	s.closeOnce.Do(func() {
		if s.lfd < 0 {
			return
		}
		s.closing.Store(true)
		// close(2) does not wake a thread blocked in accept on the same
		// descriptor; shutdown(2) of a listener does, with EINVAL.
		if e := unix.Shutdown(s.lfd, unix.SHUT_RDWR); e != nil {
			err = fmt.Errorf("bench: accept4: shutdown listener: %w", e)
		}
		select {
		case <-s.done:
		case <-time.After(5 * time.Second):
			err = errors.Join(err, errors.New("bench: accept4: accept loop did not stop within 5s"))
			return // leave the descriptors to the process's exit
		}
		unix.Close(s.lfd)
		for _, fd := range s.held {
			unix.Close(fd)
		}
		s.held = nil
		err = errors.Join(err, s.loopErr)
	})
	return err
}
