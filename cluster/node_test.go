package cluster

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/pushrelay/pushrelay/relay"
)

// startNATS runs a NATS server in the test process on port (0: any free
// port) and stops it at the end of the test.
func startNATS(t testing.TB, port int) *server.Server {
	t.Helper()
	if port == 0 {
		port = -1
	}
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: port, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(5 * time.Second) {
		t.Fatal("nats-server did not start")
	}
	t.Cleanup(ns.Shutdown)
	return ns
}

// testNode is a relay and its cluster node, in this process.
type testNode struct {
	srv  *relay.Server
	node *Node
}

func startNode(t testing.TB, url string, id uint16) *testNode {
	t.Helper()
	return startNodeWith(t,
		relay.Config{Listen: "127.0.0.1:0", Loops: 2, NodeID: id},
		Config{NATS: url, Timeout: 500 * time.Millisecond, Hello: 200 * time.Millisecond})
}

// startNodeWith starts a relay configured by rcfg and a cluster node
// configured by ncfg on it, both logging nowhere, and stops them when the
// test ends.
func startNodeWith(t testing.TB, rcfg relay.Config, ncfg Config) *testNode {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	rcfg.Logger, ncfg.Logger = logger, logger
	srv, err := relay.New(rcfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	node, err := New(ncfg, srv)
	if err != nil {
		t.Fatal(err)
	}
	if err := node.Start(); err != nil {
		t.Fatal(err)
	}
	tn := &testNode{srv: srv, node: node}
	t.Cleanup(tn.stop)
	return tn
}

func (tn *testNode) stop() {
	tn.node.Close()
	tn.srv.Shutdown(context.Background())
}

// waitPeers waits until every node knows all the others.
func waitPeers(t testing.TB, nodes ...*testNode) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, n := range nodes {
		if err := n.node.Wait(ctx, len(nodes)-1); err != nil {
			t.Fatal(err)
		}
	}
}

// client is a client connection that reads nul-framed messages.
type client struct {
	t  testing.TB
	c  net.Conn
	r  *bufio.Reader
	id string
}

func dial(t testing.TB, addr string) *client {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	cl := &client{t: t, c: c, r: bufio.NewReader(c)}
	cl.id = cl.read(2 * time.Second)
	return cl
}

func (cl *client) read(within time.Duration) string {
	cl.t.Helper()
	cl.c.SetReadDeadline(time.Now().Add(within))
	b, err := cl.r.ReadBytes(0)
	if err != nil {
		cl.t.Fatalf("client %s: read: %v", cl.id, err)
	}
	return string(b[:len(b)-1])
}

// nothing asserts that no message arrives for d.
func (cl *client) nothing(d time.Duration) {
	cl.t.Helper()
	cl.c.SetReadDeadline(time.Now().Add(d))
	b, err := cl.r.ReadBytes(0)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		cl.t.Fatalf("client %s: got %q (%v), want nothing", cl.id, b, err)
	}
}

func TestRouteToOwnerNode(t *testing.T) {
	ns := startNATS(t, 0)
	a, b := startNode(t, ns.ClientURL(), 1), startNode(t, ns.ClientURL(), 2)
	waitPeers(t, a, b)
	ca, cb := dial(t, a.srv.Addr().String()), dial(t, b.srv.Addr().String())
	if n, _ := relay.NodeOf(cb.id); n != 2 {
		t.Fatalf("client of node 2 got ID %q of node %d", cb.id, n)
	}

	if st := a.node.Send(cb.id, []byte("to b")); st != relay.Queued {
		t.Fatalf("send through a to b's client: %v, want queued", st)
	}
	if got := cb.read(2 * time.Second); got != "to b" {
		t.Fatalf("b's client got %q", got)
	}
	// Order from one caller, across nodes.
	for i := 0; i < 100; i++ {
		if st := a.node.Send(cb.id, fmt.Appendf(nil, "m%d", i)); st != relay.Queued {
			t.Fatalf("send %d: %v", i, st)
		}
	}
	for i := 0; i < 100; i++ {
		if got, want := cb.read(2*time.Second), fmt.Sprintf("m%d", i); got != want {
			t.Fatalf("message %d: got %q, want %q", i, got, want)
		}
	}
	// A compressed payload arrives whole.
	big := bytes.Repeat([]byte("compress me "), 1000)
	if st := a.node.Send(cb.id, big); st != relay.Queued {
		t.Fatalf("big send: %v", st)
	}
	if got := cb.read(2 * time.Second); got != string(big) {
		t.Fatalf("big payload: got %d bytes, want %d", len(got), len(big))
	}
	if a.node.counters.compressed.Load() == 0 {
		t.Fatal("a 12,000-byte repetitive payload was not compressed")
	}

	// An unknown ID on b, and send_many across both nodes.
	gone := []byte(cb.id)
	gone[21] ^= 1 // same node, another ID
	if st := a.node.Send(string(gone), []byte("x")); st != relay.UnknownID {
		t.Fatalf("send to unknown ID on b: %v, want unknown_id", st)
	}
	c, st := a.node.SendMany([]string{ca.id, cb.id, string(gone)}, []byte("many"))
	if st != relay.Queued || c.Queued != 2 || c.UnknownID != 1 {
		t.Fatalf("send_many: %+v %v, want 2 queued, 1 unknown", c, st)
	}
	if ca.read(time.Second) != "many" || cb.read(time.Second) != "many" {
		t.Fatal("send_many did not reach both")
	}

	// Subscribe through a, publish through b.
	if n, err := a.node.Subscribe(cb.id, "news", "sport"); err != nil || n != 2 {
		t.Fatalf("subscribe b's client through a: %d, %v", n, err)
	}
	if n, err := b.node.Subscribe(ca.id, "news"); err != nil || n != 1 {
		t.Fatalf("subscribe a's client through b: %d, %v", n, err)
	}
	if _, err := a.node.Subscribe(string(gone), "news"); !errors.Is(err, relay.ErrUnknownID) {
		t.Fatalf("subscribe unknown ID: %v, want ErrUnknownID", err)
	}
	c, st = b.node.Publish("news", []byte("headline"))
	if st != relay.Queued || c.Queued != 2 || c.Unreachable != 0 {
		t.Fatalf("publish: %+v %v, want 2 queued", c, st)
	}
	if ca.read(time.Second) != "headline" || cb.read(time.Second) != "headline" {
		t.Fatal("publish did not reach both")
	}
	c, _ = a.node.Broadcast([]byte("all"))
	if c.Queued != 2 {
		t.Fatalf("broadcast: %+v, want 2 queued", c)
	}
	ca.read(time.Second)
	cb.read(time.Second)

	info, ok := a.node.Info(cb.id)
	if !ok || info.ID != cb.id || !info.Remote.IsValid() {
		t.Fatalf("info of b's client through a: %+v %v", info, ok)
	}

	// Listing covers both nodes.
	var ids []string
	cursor := ""
	for pages := 0; ; pages++ {
		page, next, err := a.node.List(cursor, 0)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, page...)
		if next == "" {
			break
		}
		if pages > 10 {
			t.Fatal("listing does not end")
		}
		cursor = next
	}
	if len(ids) != 2 || !strings.Contains(strings.Join(ids, " "), ca.id) || !strings.Contains(strings.Join(ids, " "), cb.id) {
		t.Fatalf("listing: %v, want %s and %s", ids, ca.id, cb.id)
	}

	// Watch sees both nodes' events, each marked with its node.
	deadline := time.Now().Add(2 * time.Second)
	for {
		evs, _, _, _ := a.node.EventsSince(1, nil, 100)
		nodes := map[string]uint16{}
		for _, ev := range evs {
			nodes[ev.ID] = ev.Node
		}
		if nodes[ca.id] == 1 && nodes[cb.id] == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("events on a: %+v, want connects of %s (node 1) and %s (node 2)", evs, ca.id, cb.id)
		}
		time.Sleep(10 * time.Millisecond)
	}

	if st := a.node.Kick(cb.id); st != relay.Queued {
		t.Fatalf("kick: %v", st)
	}
	cb.c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := cb.r.ReadBytes(0); !errors.Is(err, io.EOF) {
		t.Fatalf("kicked client read: %v, want EOF", err)
	}
}

func TestNodeLeavesAndDies(t *testing.T) {
	ns := startNATS(t, 0)
	a, b, c := startNode(t, ns.ClientURL(), 1), startNode(t, ns.ClientURL(), 2), startNode(t, ns.ClientURL(), 3)
	waitPeers(t, a, b, c)
	cb, cc := dial(t, b.srv.Addr().String()), dial(t, c.srv.Addr().String())

	// b leaves cleanly: once a has heard its goodbye, its IDs are unknown.
	b.stop()
	deadline := time.Now().Add(2 * time.Second)
	for a.node.peers.state(2, time.Now()) != peerUnknown {
		if time.Now().After(deadline) {
			t.Fatal("node 1 did not hear node 2 leave")
		}
		time.Sleep(5 * time.Millisecond)
	}
	start := time.Now()
	if st := a.node.Send(cb.id, []byte("x")); st != relay.UnknownID {
		t.Fatalf("send to a client of a node that left: %v, want unknown_id", st)
	}
	// c's NATS connection dies without a goodbye: unreachable, at once
	// (no responders), not after the timeout.
	c.node.nc.Close()
	if st := a.node.Send(cc.id, []byte("x")); st != relay.Unreachable {
		t.Fatalf("send to a client of a silent node: %v, want unreachable", st)
	}
	// No hang: each answer comes within the 500ms timeout (at once, when
	// NATS has already dropped c's subscriptions: no responders).
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("two answers took %v with a 500ms timeout", took)
	}
	counts, _ := a.node.Broadcast([]byte("b"))
	if counts.Unreachable != 1 {
		t.Fatalf("broadcast with c silent: %+v, want 1 unreachable node", counts)
	}
}

func TestNATSRestart(t *testing.T) {
	ns := startNATS(t, 0)
	port := ns.Addr().(*net.TCPAddr).Port
	a, b := startNode(t, ns.ClientURL(), 1), startNode(t, ns.ClientURL(), 2)
	waitPeers(t, a, b)
	ca, cb := dial(t, a.srv.Addr().String()), dial(t, b.srv.Addr().String())

	ns.Shutdown()
	ns.WaitForShutdown()
	deadline := time.Now().Add(2 * time.Second)
	for a.node.Connected() && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if st := a.node.Send(ca.id, []byte("local")); st != relay.Queued {
		t.Fatalf("local send without NATS: %v", st)
	}
	if ca.read(time.Second) != "local" {
		t.Fatal("local push lost without NATS")
	}
	start := time.Now()
	if st := a.node.Send(cb.id, []byte("remote")); st != relay.Unreachable {
		t.Fatalf("remote send without NATS: %v, want unreachable", st)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("remote send without NATS took %v; want an answer at once", took)
	}
	if a.node.counters.unsent.Load() == 0 {
		t.Fatal("the send without NATS was not counted as unsent: did it wait for a timeout?")
	}

	startNATS(t, port)
	deadline = time.Now().Add(10 * time.Second)
	for {
		if st := a.node.Send(cb.id, []byte("back")); st == relay.Queued {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("pushes did not resume after NATS came back")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := cb.read(2 * time.Second); got != "back" {
		t.Fatalf("after NATS restart got %q", got)
	}
	if a.node.counters.reconnects.Load() == 0 {
		t.Fatal("no reconnect counted")
	}
}
