package relay

import (
	"io"
	"testing"
	"time"
)

// TestHalfCloseEndsTheSession pins the documented answer to issue 14's
// ninth item: a raw client's FIN (shutdown(SHUT_WR), as `nc -N` sends at
// the end of its input) ends its session at once, like a close. The relay
// never reads, so it cannot tell a half-close from a full close, and
// keeping every FIN'd connection would hold its descriptor and ID until a
// write failed (never, without --heartbeat); gnet v2.10.0 closes on a read
// EOF anyway. What was queued before the FIN is still written, the ID is
// forgotten at once, and the close counts as peer_closed.
func TestHalfCloseEndsTheSession(t *testing.T) {
	srv := startServer(t, Config{})
	c := dial(t, srv)
	if st := srv.Send(c.id, []byte("before")); st != Queued {
		t.Fatalf("Send: %v", st)
	}
	if got, err := c.next(5 * time.Second); err != nil || string(got) != "before" {
		t.Fatalf("frame %q, %v; want the push sent before the FIN", got, err)
	}
	if err := c.conn.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	rest, err := io.ReadAll(c.conn)
	if err != nil || len(rest) != 0 {
		t.Fatalf("after the half-close read %q, %v; want a clean EOF from the relay", rest, err)
	}
	for end := time.Now().Add(5 * time.Second); srv.Connected(c.id) && time.Now().Before(end); {
		time.Sleep(5 * time.Millisecond)
	}
	if srv.Connected(c.id) {
		t.Fatal("the ID is still connected after the client's FIN")
	}
	if st := srv.Send(c.id, []byte("after")); st != UnknownID {
		t.Fatalf("Send after the half-close = %v, want UnknownID", st)
	}
	if n := srv.Stats().Closed[ReasonPeerClosed]; n != 1 {
		t.Fatalf("closed{peer_closed} = %d, want 1", n)
	}
}
