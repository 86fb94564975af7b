//go:build !linux

package relay

import (
	"net"
	"syscall"
	"time"
)

// setUserTimeout is Linux-only; elsewhere keepalive alone finds dead peers.
func setUserTimeout(int, time.Duration) error { return nil }

// probeControl keeps Go's listener options (SO_REUSEADDR on Unix systems).
func probeControl(string, string, syscall.RawConn) error { return nil }

// listenControl keeps Go's listener options (SO_REUSEADDR on Unix
// systems); elsewhere --reuse-port, --sndbuf and --keepalive are not
// applied to the listening sockets.
func listenControl(bool, int, time.Duration) func(string, string, syscall.RawConn) error {
	return nil
}

// startLock is Linux-only (abstract Unix sockets): elsewhere the probe in
// reserveAddr alone keeps a second relay off the port.
func startLock(string) (*net.UnixListener, error) { return nil, nil }
