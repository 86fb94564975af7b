package cluster

import (
	"testing"
	"time"

	"github.com/pushrelay/pushrelay/relay"
)

// BenchmarkSend_Local and BenchmarkSend_Remote push through node 1 to a
// client of node 1 and to one of node 2 (across a NATS server in this
// process), each waiting for its status: the cost of the hop, and what it
// allocates, side by side.
func BenchmarkSend_Local(b *testing.B)  { benchSend(b, false) }
func BenchmarkSend_Remote(b *testing.B) { benchSend(b, true) }

func benchSend(b *testing.B, remote bool) {
	ns := startNATS(b, 0)
	a, o := startNode(b, ns.ClientURL(), 1), startNode(b, ns.ClientURL(), 2)
	waitPeers(b, a, o)
	target := a
	if remote {
		target = o
	}
	c := dial(b, target.srv.Addr().String())
	go func() {
		buf := make([]byte, 64<<10)
		for {
			c.c.SetReadDeadline(time.Now().Add(time.Minute))
			if _, err := c.c.Read(buf); err != nil {
				return
			}
		}
	}()
	payload := []byte("a 32-byte payload, more or less.")
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if st := a.node.Send(c.id, payload); st != relay.Queued {
			b.Fatalf("send: %v", st)
		}
	}
}
