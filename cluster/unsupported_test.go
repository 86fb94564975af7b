package cluster

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pushrelay/pushrelay/relay"
)

// TestUnsupportedCrossesNodes: a push through node a to clients of node b
// that cannot take the payload (an SSE client and bytes that are not
// UTF-8) comes back counted unsupported, per push, as it would locally.
func TestUnsupportedCrossesNodes(t *testing.T) {
	ns := startNATS(t, 0)
	a := startNode(t, ns.ClientURL(), 1)
	b := startNodeWith(t,
		relay.Config{Listen: "127.0.0.1:0", Web: "127.0.0.1:0", Loops: 2, NodeID: 2},
		Config{NATS: ns.ClientURL(), Timeout: 2 * time.Second, Hello: 200 * time.Millisecond})
	waitPeers(t, a, b)

	cb := dial(t, b.srv.Addr().String())
	sseID := dialSSE(t, b.srv.WebAddr().String())
	notText := []byte("x\xff")

	if st := a.node.Send(sseID, notText); st != relay.Unsupported {
		t.Fatalf("send to b's SSE client through a: %v, want unsupported", st)
	}
	c, st := a.node.SendMany([]string{cb.id, sseID}, notText)
	if st != relay.Queued || c != (relay.Counts{Queued: 1, Unsupported: 1}) {
		t.Fatalf("send_many through a: %+v %v, want 1 queued, 1 unsupported", c, st)
	}
	c, st = a.node.Broadcast(notText)
	if st != relay.Queued || c != (relay.Counts{Queued: 1, Unsupported: 1}) {
		t.Fatalf("broadcast through a: %+v %v, want 1 queued, 1 unsupported", c, st)
	}
	for range 2 {
		if got := cb.read(2 * time.Second); got != string(notText) {
			t.Fatalf("b's tcp client read %q", got)
		}
	}
}

// dialSSE opens an SSE stream on a relay's web listener and returns the
// client's ID.
func dialSSE(t *testing.T, addr string) string {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(nc, "GET /sse HTTP/1.1\r\nHost: relay.test\r\n\r\n")
	br := bufio.NewReader(nc)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("sse: %v %v", resp, err)
	}
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if id, ok := strings.CutPrefix(strings.TrimSuffix(line, "\n"), "data: "); ok {
			return id
		}
	}
}
