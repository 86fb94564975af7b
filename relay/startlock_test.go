//go:build linux

package relay

import (
	"errors"
	"net"
	"strconv"
	"strings"
	"testing"
)

// TestStartLockKeepsTwoStartingRelaysApart: between reserveAddr's probe
// and gnet's bind the port looks free, so a relay holds a start lock named
// for the port until it listens. Another relay starting on the port then
// is refused, as it is once the first listens; the lock is gone after
// Start, so a relay that stopped does not block the next.
func TestStartLockKeepsTwoStartingRelaysApart(t *testing.T) {
	free, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := free.Addr().String()
	free.Close()
	// Another relay, part-way through its Start on this port.
	held, err := startLock(addr)
	if err != nil || held == nil {
		t.Fatalf("startLock(%s) = %v, %v", addr, held, err)
	}
	srv, err := New(Config{Listen: addr, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); !errors.Is(err, ErrAddrInUse) || !strings.Contains(err.Error(), "starting") {
		t.Fatalf("Start while another relay starts on %s: %v; want ErrAddrInUse naming it", addr, err)
	}
	held.Close()
	srv = startServer(t, Config{Listen: addr})
	if got := strconv.Itoa(srv.Addr().Port); !strings.HasSuffix(addr, ":"+got) {
		t.Fatalf("listening on %v, want %s", srv.Addr(), addr)
	}
	// Started: the lock is free again; the listening port itself keeps the
	// next relay off.
	if l, err := startLock(addr); err != nil || l == nil {
		t.Fatalf("startLock after Start: %v, %v; want it free", l, err)
	} else {
		l.Close()
	}
	second, err := New(Config{Listen: addr, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if err := second.Start(); !errors.Is(err, ErrAddrInUse) {
		t.Fatalf("second relay on a live port: %v, want ErrAddrInUse", err)
	}
}
