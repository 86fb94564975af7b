//go:build !race

package relay

import (
	"testing"
	"time"
)

// TestSendPathAllocatesNothing guards the claim that a push costs no heap
// allocation in steady state. Each run pushes one message and reads it on
// the client, so the producer side (lookup, framing, mailbox, doorbell) and
// the loop side (drain, write) are both inside the measurement:
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
	allocs := testing.AllocsPerRun(2000, func() { srv.Broadcast(payload) })
	if allocs > 0.05 {
		t.Fatalf("Broadcast to 200 clients allocates %.3f objects, want 0", allocs)
	}
}
