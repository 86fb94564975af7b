package relay

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// setUserTimeout sets TCP_USER_TIMEOUT: the kernel drops a connection whose
// written data stays unacknowledged for d, which is how a write-only server
// notices a peer that vanished without a FIN or RST.
func setUserTimeout(fd int, d time.Duration) error {
	return unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, int(d.Milliseconds()))
}

// probeControl sets the options of reserveAddr's probe listener: the
// SO_REUSEADDR that gnet (WithReuseAddr) and Go's net set on the relay's
// listeners, so connections a stopped relay left in FIN-WAIT-2 or TIME_WAIT
// on the port do not fail the probe, and explicitly no SO_REUSEPORT, so a
// live listener on the port still does.
func probeControl(_, _ string, rc syscall.RawConn) error {
	var err error
	if cerr := rc.Control(func(fd uintptr) {
		if err = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err == nil {
			err = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 0)
		}
	}); cerr != nil {
		return cerr
	}
	return err
}

// listenControl sets the options of the relay's client and web listening
// sockets, which the sockets it accepts inherit on Linux: SO_REUSEADDR,
// SO_REUSEPORT when shared (and explicitly not otherwise), SO_SNDBUF when
// set (--sndbuf), and keepalive with its idle time, interval and count
// (--keepalive), as gnet set them on its own listeners.
func listenControl(shared bool, sndbuf int, keepalive time.Duration) func(string, string, syscall.RawConn) error {
	return func(_, _ string, rc syscall.RawConn) error {
		var err error
		set := func(fd, level, opt, v int) {
			if err == nil {
				err = unix.SetsockoptInt(fd, level, opt, v)
			}
		}
		if cerr := rc.Control(func(u uintptr) {
			fd := int(u)
			set(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
			reuse := 0
			if shared {
				reuse = 1
			}
			set(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, reuse)
			set(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
			if sndbuf > 0 {
				set(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, sndbuf)
			}
			if keepalive > 0 {
				secs := max(int(keepalive/time.Second), 1)
				set(fd, unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1)
				set(fd, unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, secs)
				set(fd, unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, max(secs/3, 1))
				set(fd, unix.IPPROTO_TCP, unix.TCP_KEEPCNT, 3)
			}
		}); cerr != nil {
			return cerr
		}
		return err
	}
}

// startLock holds, while a relay starts, an abstract Unix socket named for
// the port it is about to take: between reserveAddr's probe and gnet's
// bind (with SO_REUSEPORT, which a second relay's bind would join) the
// port looks free, and two relays started at the same moment could both
// take it. The name is per network namespace, as ports are, and the kernel
// frees it if the process dies. It returns nil and no error for port 0.
func startLock(addr string) (*net.UnixListener, error) {
	ta, err := net.ResolveTCPAddr("tcp", addr)
	if err != nil || ta.Port == 0 {
		return nil, nil // reserveAddr reports a bad address
	}
	name := "@pushrelay-start/" + strconv.Itoa(ta.Port)
	if ta.IP != nil && !ta.IP.IsUnspecified() {
		name += "/" + ta.IP.String()
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: name, Net: "unix"})
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, fmt.Errorf("%w: %s (another pushrelay is starting there)", ErrAddrInUse, addr)
		}
		return nil, nil // no abstract sockets here: the probe alone guards
	}
	return ln, nil
}
