//go:build !race

package relay

import (
	"bytes"
	"io"
	"runtime"
	"runtime/debug"
	"testing"
	"time"
)

// TestSendPathAllocatesNothing guards the claim that a push costs no heap
// allocation in steady state. Each run pushes one message and reads it on
// the client, so the producer side (lookup, framing, mailbox, doorbell) and
// the loop side (serveMailbox, write) are both inside the measurement:
// AllocsPerRun counts every goroutine's allocations.
func TestSendPathAllocatesNothing(t *testing.T) {
	for _, f := range allFramings {
		t.Run(f.String(), func(t *testing.T) {
			srv := startServer(t, Config{Framing: f})
			c := dial(t, srv)
			c.conn.SetReadDeadline(time.Time{})
			payload := []byte(`{"event":"price","symbol":"XYZ","value":101.25}`)
			roundTrip := func() {
				if st := srv.Send(c.id, payload); st != Queued {
					t.Fatalf("Send: %v", st)
				}
				if got, err := c.fr.Next(); err != nil || len(got) != len(payload) {
					t.Fatalf("read: %d bytes, %v", len(got), err)
				}
			}
			for i := 0; i < 1000; i++ {
				roundTrip()
			}
			if allocs := testing.AllocsPerRun(5000, roundTrip); allocs > 0.01 {
				t.Fatalf("a push allocates %.3f objects, want 0", allocs)
			}
		})
	}
}

// TestBroadcastAllocatesNothingPerRecipient: a broadcast to 200 clients
// allocates nothing per recipient (and nothing at all in steady state).
func TestBroadcastAllocatesNothingPerRecipient(t *testing.T) {
	srv := startServer(t, Config{MaxOutbound: 64 << 20})
	for i := 0; i < 200; i++ {
		drainClient(dial(t, srv))
	}
	payload := []byte("tick")
	for i := 0; i < 2000; i++ {
		srv.Broadcast(payload)
	}
	time.Sleep(100 * time.Millisecond)
	// Each broadcast waits until the loops have written it, so a busy host
	// cannot pile frames up in the mailboxes: frames in flight past the
	// pool's store are allocated, which is not a cost per recipient.
	written := func() (n uint64) {
		for _, l := range *srv.loops.Load() {
			n += l.counters.written.Load()
		}
		return n
	}
	allocs := testing.AllocsPerRun(2000, func() {
		want := written() + 200
		srv.Broadcast(payload)
		for written() < want {
			runtime.Gosched()
		}
	})
	if allocs > 0.05 {
		t.Fatalf("Broadcast to 200 clients allocates %.3f objects, want 0", allocs)
	}
}

// TestWebSendAllocatesNothing: a push to a WebSocket or SSE client costs
// no allocation either, its transport's encoding included. The client
// reads the exact frame into a fixed buffer, so the count is the relay's.
func TestWebSendAllocatesNothing(t *testing.T) {
	srv := startWeb(t, Config{})
	ws, sse := dialWS(t, srv), dialSSE(t, srv)
	payload := []byte(`{"event":"price","symbol":"XYZ","value":101.25}`)
	var buf [256]byte
	for _, c := range []struct {
		name string
		w    *webConn
		want []byte
	}{
		{"ws", ws, appendWSFrame(nil, wsOpText, false, payload)},
		{"sse", sse, appendSSEEvent(nil, payload)},
	} {
		rt := func() {
			if st := srv.Send(c.w.id, payload); st != Queued {
				t.Fatalf("Send: %v", st)
			}
			got := buf[:len(c.want)]
			if _, err := io.ReadFull(c.w.br, got); err != nil || !bytes.Equal(got, c.want) {
				t.Fatalf("%s: read %q, %v; want %q", c.name, got, err, c.want)
			}
		}
		for i := 0; i < 1000; i++ {
			rt()
		}
		if allocs := testing.AllocsPerRun(3000, rt); allocs > 0.01 {
			t.Fatalf("%s: a push allocates %.3f objects, want 0", c.name, allocs)
		}
	}
}

// TestCompressedBroadcastAllocatesNothingPerRecipient: compressing once for
// 100 clients allocates nothing per recipient, nor per message once the
// frame pools are warm. Each broadcast waits for the loops to finish it,
// so frames go back to their pools before the next one needs one.
func TestCompressedBroadcastAllocatesNothingPerRecipient(t *testing.T) {
	srv := startWeb(t, Config{WebCompress: true, MaxOutbound: 64 << 20})
	const n = 100
	for i := 0; i < n; i++ {
		w := dialWS(t, srv, "Sec-WebSocket-Extensions: permessage-deflate")
		go io.Copy(io.Discard, w.conn)
	}
	payload := bytes.Repeat([]byte(`{"k":"value"},`), 100)
	broadcast := func() {
		before := srv.Stats().FanoutRecipients
		if _, st := srv.Broadcast(payload); st != Queued {
			t.Fatalf("Broadcast: %v", st)
		}
		for srv.Stats().FanoutRecipients < before+n {
			runtime.Gosched()
		}
	}
	for i := 0; i < 200; i++ {
		broadcast()
	}
	// A GC empties the frame pools; steady state is what is measured.
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	if allocs := testing.AllocsPerRun(500, broadcast); allocs > 0.05 {
		t.Fatalf("a compressed broadcast to %d clients allocates %.2f objects", n, allocs)
	}
	if srv.Stats().Compressed < 700 {
		t.Fatal("the broadcasts were not compressed")
	}
}
