//go:build !linux

package bench

import (
	"net/netip"
	"runtime"
	"time"

	"github.com/pushrelay/pushrelay/relay"
)

func uname() (kernel, host string) { return runtime.GOOS, "" }

func nofileLimit() uint64 { return 0 }

func cpuTime() (user, sys time.Duration) { return 0, 0 }

func dialID(netip.AddrPort, relay.Framing, time.Duration) (int, string, error) {
	return -1, "", ErrUnsupported
}

func connectNB(netip.AddrPort, netip.Addr) (int, error) { return -1, ErrUnsupported }

func closeReset(int) {}
