//go:build linux

package bench

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"

	"github.com/pushrelay/pushrelay/relay"
	"golang.org/x/sys/unix"
)

// uname returns "sysname release machine" and the host name.
func uname() (kernel, host string) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "unknown", ""
	}
	return unix.ByteSliceToString(u.Sysname[:]) + " " + unix.ByteSliceToString(u.Release[:]) + " " +
		unix.ByteSliceToString(u.Machine[:]), unix.ByteSliceToString(u.Nodename[:])
}

// nofileLimit returns the soft RLIMIT_NOFILE (Go raises it to the hard
// limit at start).
func nofileLimit() uint64 {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0
	}
	return rl.Cur
}

// cpuTime returns the CPU time this process has used, user and system.
func cpuTime() (user, sys time.Duration) {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0, 0
	}
	return time.Duration(ru.Utime.Nano()), time.Duration(ru.Stime.Nano())
}

func sockaddr(ap netip.AddrPort) (unix.Sockaddr, int) {
	if ap.Addr().Is4() || ap.Addr().Is4In6() {
		return &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().Unmap().As4()}, unix.AF_INET
	}
	return &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}, unix.AF_INET6
}

// fdReader reads a blocking socket whose SO_RCVTIMEO bounds each read.
type fdReader int

func (r fdReader) Read(p []byte) (int, error) {
	for {
		n, err := unix.Read(int(r), p)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return 0, os.ErrDeadlineExceeded
		case err != nil:
			return 0, err
		case n == 0:
			return 0, io.EOF
		}
		return n, nil
	}
}

// dialID opens a blocking connection to dst and reads its first frame, the
// ID. The caller owns the descriptor it returns. A bare descriptor, not a
// net.Conn: an idle client then costs the kernel one socket and nothing
// else (no epoll entry of the client's own), so the kernel's cost per
// socket is the socket's.
func dialID(dst netip.AddrPort, framing relay.Framing, timeout time.Duration) (fd int, id string, err error) {
	sa, family := sockaddr(dst)
	fd, err = unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, "", fmt.Errorf("socket: %w", err)
	}
	defer func() {
		if err != nil {
			closeReset(fd)
			fd = -1
		}
	}()
	tv := unix.NsecToTimeval(timeout.Nanoseconds())
	// SO_SNDTIMEO bounds a blocking connect too.
	if err = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv); err != nil {
		return fd, "", fmt.Errorf("SO_SNDTIMEO: %w", err)
	}
	if err = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return fd, "", fmt.Errorf("SO_RCVTIMEO: %w", err)
	}
	for {
		err = unix.Connect(fd, sa)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		return fd, "", fmt.Errorf("connect %s: %w", dst, err)
	}
	b, err := relay.NewFrameReader(fdReader(fd), framing, 256).Next()
	if err != nil {
		return fd, "", fmt.Errorf("read ID frame from %s: %w", dst, err)
	}
	if !relay.ValidID(string(b)) || len(b) != relay.IDLen {
		return fd, "", fmt.Errorf("first frame from %s is %q, not a %d-character ID", dst, b, relay.IDLen)
	}
	return fd, string(b), nil
}

// connectNB starts a non-blocking connect to dst and returns at once,
// normally with EINPROGRESS swallowed. If src is valid the socket is bound
// to it first, its port left to connect (IP_BIND_ADDRESS_NO_PORT), so each
// source address has a port range of its own.
func connectNB(dst netip.AddrPort, src netip.Addr) (int, error) {
	sa, family := sockaddr(dst)
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("socket: %w", err)
	}
	if src.IsValid() {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1); err != nil {
			unix.Close(fd)
			return -1, fmt.Errorf("IP_BIND_ADDRESS_NO_PORT: %w", err)
		}
		ssa, _ := sockaddr(netip.AddrPortFrom(src, 0))
		if err := unix.Bind(fd, ssa); err != nil {
			unix.Close(fd)
			return -1, fmt.Errorf("bind %s: %w", src, err)
		}
	}
	for {
		err = unix.Connect(fd, sa)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil && err != unix.EINPROGRESS {
		unix.Close(fd)
		return -1, fmt.Errorf("connect %s: %w", dst, err)
	}
	return fd, nil
}

// closeReset closes fd with SO_LINGER 0: the peer gets a RST and neither
// end lingers in TIME_WAIT, so the next run starts from a clean table.
func closeReset(fd int) {
	_ = unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
	_ = unix.Close(fd)
}

// listenRaw binds a blocking TCP listener on listen (IP:PORT) with the
// largest backlog the kernel allows, for the bare floor servers. It
// returns the descriptor and the address bound (port 0 resolved); what
// names the caller in errors.
func listenRaw(what, listen string) (int, *net.TCPAddr, error) {
	ap, err := netip.ParseAddrPort(listen)
	if err != nil {
		return -1, nil, fmt.Errorf("bench: %s: listen address %q (want IP:PORT): %w", what, listen, err)
	}
	sa, family := sockaddr(ap)
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, nil, fmt.Errorf("bench: %s: socket: %w", what, err)
	}
	fail := func(step string, err error) (int, *net.TCPAddr, error) {
		unix.Close(fd)
		return -1, nil, fmt.Errorf("bench: %s: %s %s: %w", what, step, listen, err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
		return fail("SO_REUSEADDR", err)
	}
	if err := unix.Bind(fd, sa); err != nil {
		return fail("bind", err)
	}
	if err := unix.Listen(fd, readSomaxconn()); err != nil {
		return fail("listen", err)
	}
	got, err := unix.Getsockname(fd)
	if err != nil {
		return fail("getsockname", err)
	}
	var addr *net.TCPAddr
	switch a := got.(type) {
	case *unix.SockaddrInet4:
		addr = &net.TCPAddr{IP: net.IP(a.Addr[:]).To16(), Port: a.Port}
	case *unix.SockaddrInet6:
		addr = &net.TCPAddr{IP: net.IP(a.Addr[:]), Port: a.Port}
	}
	return fd, addr, nil
}
