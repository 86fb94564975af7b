package relay

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/pushrelay/pushrelay/internal/testutil"
)

// testLogger is quiet unless PUSHRELAY_TEST_LOG is set.
func testLogger() *slog.Logger { return testutil.Logger() }

// startServer starts a relay on a free loopback port and stops it when the
// test ends.
func startServer(t testing.TB, cfg Config) *Server {
	t.Helper()
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	if cfg.Logger == nil {
		cfg.Logger = testLogger()
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := srv.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	testutil.ShutdownAtEnd(t, 10*time.Second, srv.Shutdown)
	return srv
}

// client is a test client: a real TCP connection and a frame reader.
type client struct {
	t    testing.TB
	conn *net.TCPConn
	fr   *FrameReader
	id   string
}

// dialOpts tune a test client's socket before it connects.
type dialOpts struct {
	rcvbuf int // SO_RCVBUF before connect, so the window stays small
}

func dial(t testing.TB, srv *Server, opts ...dialOpts) *client {
	t.Helper()
	c := dialRaw(t, srv.Addr().String(), srv.cfg.Framing, opts...)
	id, err := c.next(5 * time.Second)
	if err != nil {
		t.Fatalf("read ID frame: %v", err)
	}
	if !ValidID(string(id)) || len(id) != IDLen {
		t.Fatalf("first frame %q is not a %d-character ID", id, IDLen)
	}
	c.id = string(id)
	return c
}

func dialRaw(t testing.TB, addr string, framing Framing, opts ...dialOpts) *client {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second}
	if len(opts) > 0 && opts[0].rcvbuf > 0 {
		n := opts[0].rcvbuf
		d.Control = func(_, _ string, rc syscall.RawConn) error {
			var serr error
			if err := rc.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, n)
			}); err != nil {
				return err
			}
			return serr
		}
	}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	tc := nc.(*net.TCPConn)
	t.Cleanup(func() { tc.Close() })
	return &client{t: t, conn: tc, fr: NewFrameReader(tc, framing, 0)}
}

// next reads one frame within d.
func (c *client) next(d time.Duration) ([]byte, error) {
	c.conn.SetReadDeadline(time.Now().Add(d))
	return c.fr.Next()
}

// expect reads one frame and fails the test unless it equals want.
func (c *client) expect(want string) {
	c.t.Helper()
	got, err := c.next(5 * time.Second)
	if err != nil {
		c.t.Fatalf("client %s: read frame: %v (want %q)", c.id, err, trunc(want))
	}
	if string(got) != want {
		c.t.Fatalf("client %s: got frame %q, want %q", c.id, trunc(string(got)), trunc(want))
	}
}

// expectSilence fails if a frame arrives within d.
func (c *client) expectSilence(d time.Duration) {
	c.t.Helper()
	got, err := c.next(d)
	if err == nil {
		c.t.Fatalf("client %s: unexpected frame %q", c.id, trunc(string(got)))
	}
	if !isTimeout(err) {
		c.t.Fatalf("client %s: want silence, got %v", c.id, err)
	}
}

// expectClosed fails unless the relay closes the connection within d
// (frames still in flight are skipped).
func (c *client) expectClosed(d time.Duration) error {
	c.t.Helper()
	deadline := time.Now().Add(d)
	for {
		_, err := c.next(time.Until(deadline))
		if err == nil {
			continue
		}
		if isTimeout(err) {
			c.t.Fatalf("client %s: still open after %v", c.id, d)
		}
		return err
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func trunc(s string) string {
	if len(s) > 60 {
		return s[:60] + "..."
	}
	return s
}

// waitFor polls cond until it holds or d passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// drainClient reads and discards everything c receives until it closes.
func drainClient(c *client) {
	go func() {
		c.conn.SetReadDeadline(time.Time{})
		_, _ = io.Copy(io.Discard, c.conn)
	}()
}
