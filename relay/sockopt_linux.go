package relay

import (
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
