package bench

import (
	"bytes"
	"errors"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/pushrelay/pushrelay/relay"
)

func startBaseline(t *testing.T, cfg BaselineConfig) *Baseline {
	t.Helper()
	b, err := NewBaseline(cfg)
	if err != nil {
		t.Fatalf("NewBaseline: %v", err)
	}
	if err := b.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return b
}

// testClient is a real connection to a server and its ID.
type testClient struct {
	conn *net.TCPConn
	fr   *relay.FrameReader
	id   string
}

func dialTest(t *testing.T, addr string, framing relay.Framing, rcvbuf int) *testClient {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	tc := c.(*net.TCPConn)
	t.Cleanup(func() { tc.Close() })
	if rcvbuf > 0 {
		if err := tc.SetReadBuffer(rcvbuf); err != nil {
			t.Fatalf("SetReadBuffer: %v", err)
		}
	}
	cl := &testClient{conn: tc, fr: relay.NewFrameReader(tc, framing, 0)}
	id, err := cl.next(5 * time.Second)
	if err != nil {
		t.Fatalf("read ID frame: %v", err)
	}
	if !relay.ValidID(string(id)) || len(id) != relay.IDLen {
		t.Fatalf("first frame %q is not a %d-character ID", id, relay.IDLen)
	}
	cl.id = string(id)
	return cl
}

func (c *testClient) next(wait time.Duration) ([]byte, error) {
	_ = c.conn.SetReadDeadline(time.Now().Add(wait))
	return c.fr.Next()
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestBaselineSendReachesOnlyItsClient(t *testing.T) {
	for _, framing := range []relay.Framing{relay.FramingNUL, relay.FramingLine, relay.FramingLen32} {
		t.Run(framing.String(), func(t *testing.T) {
			b := startBaseline(t, BaselineConfig{Framing: framing})
			clients := make([]*testClient, 3)
			seen := map[string]bool{}
			for i := range clients {
				clients[i] = dialTest(t, b.Addr().String(), framing, 0)
				if seen[clients[i].id] {
					t.Fatalf("ID %q handed out twice", clients[i].id)
				}
				seen[clients[i].id] = true
			}
			waitFor(t, "3 registered connections", func() bool { return b.Len() == 3 })
			if got := b.Accepted(); got != 3 {
				t.Errorf("Accepted() = %d, want 3", got)
			}

			if st := b.Send(clients[1].id, []byte("hello")); st != relay.Queued {
				t.Fatalf("Send: got %v, want queued", st)
			}
			got, err := clients[1].next(5 * time.Second)
			if err != nil || string(got) != "hello" {
				t.Fatalf("addressee read %q, %v; want \"hello\"", got, err)
			}
			for _, i := range []int{0, 2} {
				if got, err := clients[i].next(100 * time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
					t.Errorf("client %d read %q, %v; want nothing", i, got, err)
				}
			}
			if st := b.Send(strings.Repeat("A", relay.IDLen), []byte("x")); st != relay.UnknownID {
				t.Errorf("Send to an unknown ID: got %v, want unknown_id", st)
			}
		})
	}
}

func TestBaselineBroadcast(t *testing.T) {
	b := startBaseline(t, BaselineConfig{})
	var clients []*testClient
	for range 4 {
		clients = append(clients, dialTest(t, b.Addr().String(), relay.FramingNUL, 0))
	}
	waitFor(t, "4 registered connections", func() bool { return b.Len() == 4 })
	counts, st := b.Broadcast([]byte("all"))
	if st != relay.Queued || counts.Queued != 4 {
		t.Fatalf("Broadcast: got %+v %v, want 4 queued", counts, st)
	}
	for i, c := range clients {
		if got, err := c.next(5 * time.Second); err != nil || string(got) != "all" {
			t.Errorf("client %d read %q, %v; want \"all\"", i, got, err)
		}
	}
	if _, st := b.Broadcast([]byte("a\x00b")); st != relay.BadPayload {
		t.Errorf("Broadcast with 0x00 under nul framing: got %v, want bad_payload", st)
	}
}

func TestBaselineClosesFloodingClient(t *testing.T) {
	b := startBaseline(t, BaselineConfig{MaxInbound: 100})
	c := dialTest(t, b.Addr().String(), relay.FramingNUL, 0)
	if _, err := c.conn.Write(bytes.Repeat([]byte("x"), 101)); err != nil {
		t.Fatalf("write: %v", err)
	}
	if got, err := c.next(5 * time.Second); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("after passing the inbound budget the client read %q, %v; want the connection closed", got, err)
	}
	waitFor(t, "the flooding client to leave the registry", func() bool { return b.Len() == 0 })
}

func TestBaselineClosesSlowClient(t *testing.T) {
	b := startBaseline(t, BaselineConfig{Queue: 2})
	slow := dialTest(t, b.Addr().String(), relay.FramingNUL, 4096) // never reads again
	waitFor(t, "1 registered connection", func() bool { return b.Len() == 1 })
	payload := bytes.Repeat([]byte("p"), 60<<10)
	var st relay.Status
	for i := 0; i < 500 && st != relay.DroppedSlow; i++ {
		st = b.Send(slow.id, payload)
	}
	if st != relay.DroppedSlow {
		t.Fatalf("500 sends of 60 KiB to a client that never reads: last status %v, want dropped_slow", st)
	}
	waitFor(t, "the slow client to leave the registry", func() bool { return b.Len() == 0 })
	if st := b.Send(slow.id, []byte("late")); st != relay.UnknownID {
		t.Errorf("Send after the close: got %v, want unknown_id", st)
	}
}
