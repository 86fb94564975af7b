package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	ic "github.com/pushrelay/pushrelay/ingress/client"
	"github.com/pushrelay/pushrelay/ingress/wire"
	"github.com/pushrelay/pushrelay/internal/proctest"
	"github.com/pushrelay/pushrelay/relay"
)

// The tests in this file run the real binary: several `pushrelay serve
// --nats` processes and a NATS server in the test process.

// relayBin is the pushrelay binary, built once for these tests.
var relayBin string

func TestMain(m *testing.M) { proctest.Main(m, &relayBin) }

// proc is a running `pushrelay serve`.
type proc struct {
	*proctest.Proc
	t    *testing.T
	node int
	sock string
	addr string
	http string // the HTTP API, when started with --http
	api  *ic.Client
}

// startProc runs a relay node and waits until it is ready and its ingress
// answers.
func startProc(t *testing.T, natsURL string, node int, args ...string) *proc {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "r.sock")
	all := append([]string{"--ingress", sock, "--http", "", "--web", "", "--loops", "1", "--log-level", "debug"}, args...)
	if natsURL != "" {
		all = append(all, "--nats", natsURL, "--node", strconv.Itoa(node))
	}
	if !strings.Contains(strings.Join(args, " "), "--listen") {
		all = append(all, "--listen", "127.0.0.1:0")
	}
	pp := proctest.Start(t, nil, all...)
	p := &proc{Proc: pp, t: t, node: node, sock: sock, addr: pp.Ready.Listen, http: pp.Ready.HTTP}
	t.Cleanup(func() {
		if p.api != nil {
			p.api.Close()
		}
		p.kill()
		if t.Failed() {
			t.Logf("node %d log:\n%s", node, p.logs())
		}
	})
	var err error
	p.api, err = ic.Dial(sock, ic.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// httpAddr is the HTTP API's address.
func (p *proc) httpAddr() string {
	p.t.Helper()
	if p.http == "" {
		p.t.Fatalf("node %d has no HTTP listener", p.node)
	}
	return p.http
}

func (p *proc) logs() string { return p.Logs() }

// kill ends the process at once (SIGKILL), as a crash would.
func (p *proc) kill() { p.Kill() }

// stat returns one metric of the node.
func (p *proc) stat(name, labels string) float64 {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	st, err := p.api.Stats(ctx)
	if err != nil {
		p.t.Fatalf("node %d stats: %v", p.node, err)
	}
	for _, s := range st {
		if s.Name == name && s.Labels == labels {
			return s.Value
		}
	}
	p.t.Fatalf("node %d has no metric %s{%s}", p.node, name, labels)
	return 0
}

// formed waits until every node sees all the others alive.
func formed(t *testing.T, ps ...*proc) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for _, p := range ps {
		for p.stat("pushrelay_cluster_nodes", `state="alive"`) < float64(len(ps)-1) {
			if time.Now().After(deadline) {
				t.Fatalf("node %d does not see the %d others", p.node, len(ps)-1)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestProcsPushThroughAnotherNode(t *testing.T) {
	ns := startNATS(t, 0)
	a, b := startProc(t, ns.ClientURL(), 1), startProc(t, ns.ClientURL(), 2)
	formed(t, a, b)
	cb := dial(t, b.addr)
	if n, _ := relay.NodeOf(cb.id); n != 2 {
		t.Fatalf("node 2 issued ID %q of node %d", cb.id, n)
	}
	counts, err := a.api.Send(ctx(t), cb.id, []byte("through a"))
	if err != nil || counts.Queued != 1 {
		t.Fatalf("send through a's socket to b's client: %+v, %v", counts, err)
	}
	if got := cb.read(2 * time.Second); got != "through a" {
		t.Fatalf("b's client got %q", got)
	}
	// Pipelined from one connection, the order holds across nodes.
	for i := 0; i < 200; i++ {
		if err := a.api.SendNoReply(cb.id, fmt.Appendf(nil, "%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 200; i++ {
		if got := cb.read(2 * time.Second); got != strconv.Itoa(i) {
			t.Fatalf("message %d arrived as %q: out of order", i, got)
		}
	}
	// Listing through a covers b; watch on a sees b's client, marked.
	w, err := a.api.Watch(ctx(t), 1)
	if err != nil {
		t.Fatal(err)
	}
	var seen bool
	timeout := time.After(3 * time.Second)
	for !seen {
		select {
		case ev := <-w.Events():
			seen = ev.ID == cb.id && ev.Node == 2 && ev.Kind == wire.EventConnect
		case <-timeout:
			t.Fatalf("watch on node 1 saw no connect of %s marked node 2", cb.id)
		}
	}
	ids, next, err := a.api.List(ctx(t), "", 0)
	for err == nil && next != "" {
		var page []string
		page, next, err = a.api.List(ctx(t), next, 0)
		ids = append(ids, page...)
	}
	if err != nil || !strings.Contains(strings.Join(ids, ","), cb.id) {
		t.Fatalf("listing through node 1: %v, %v; want %s in it", ids, err, cb.id)
	}
}

func TestProcsTopicAndBroadcastOnEveryNode(t *testing.T) {
	ns := startNATS(t, 0)
	ps := []*proc{startProc(t, ns.ClientURL(), 1, "--http", "127.0.0.1:0"), startProc(t, ns.ClientURL(), 2), startProc(t, ns.ClientURL(), 3)}
	formed(t, ps...)
	var clients []*client
	for _, p := range ps {
		for i := 0; i < 3; i++ {
			clients = append(clients, dial(t, p.addr))
		}
	}
	// One subscriber per node, each subscribed through node 1.
	subs := []*client{clients[0], clients[3], clients[6]}
	for _, c := range subs {
		if n, err := ps[0].api.Subscribe(ctx(t), c.id, "scores"); err != nil || n != 1 {
			t.Fatalf("subscribe %s through node 1: %d, %v", c.id, n, err)
		}
	}
	counts, err := ps[1].api.Publish(ctx(t), "scores", []byte("2-1"))
	if err != nil || counts.Queued != 3 || counts.Unreachable != 0 {
		t.Fatalf("publish through node 2: %+v, %v; want 3 queued", counts, err)
	}
	for _, c := range subs {
		if got := c.read(2 * time.Second); got != "2-1" {
			t.Fatalf("subscriber %s got %q", c.id, got)
		}
	}
	for _, c := range clients {
		c.nothing(100 * time.Millisecond) // exactly once, and only subscribers
	}
	// Presence through node 3, a page of 2 at a time: every node's
	// subscriber exactly once, and the cluster's count on every page.
	var present []string
	for cursor, pages := "", 0; ; pages++ {
		ids, next, count, err := ps[2].api.Presence(ctx(t), "scores", cursor, 2)
		if err != nil || count != 3 || len(ids) > 2 || pages > 10 {
			t.Fatalf("presence page %d through node 3: %v, %q, count %d, %v; want count 3", pages, ids, next, count, err)
		}
		present = append(present, ids...)
		if next == "" {
			break
		}
		cursor = next
	}
	slices.Sort(present)
	want := []string{subs[0].id, subs[1].id, subs[2].id}
	slices.Sort(want)
	if !slices.Equal(present, want) {
		t.Fatalf("presence through node 3: %v, want %v", present, want)
	}
	// A batch through node 1's HTTP API: a push to a client of node 2, a
	// publish to every node's subscriber, an unknown ID.
	code, body := httpPost(t, "http://"+ps[0].httpAddr()+"/v1/batch",
		`{"id":"`+clients[4].id+`","data":"batch one"}`+"\n"+
			`{"topic":"scores","data":"batch two"}`+"\n"+
			`{"ids":["`+clients[8].id+`","`+relay.FormatID(&[relay.IDBytes]byte{0, 2})+`"],"data":"batch three"}`+"\n")
	wantBody := `{"results":[{"queued":1,"unknown":0,"dropped":0,"overloaded":0,"unsupported":0},{"queued":3,"unknown":0,"dropped":0,"overloaded":0,"unsupported":0},{"queued":1,"unknown":1,"dropped":0,"overloaded":0,"unsupported":0}],"totals":{"queued":5,"unknown":1,"dropped":0,"overloaded":0,"unsupported":0}}` + "\n"
	if code != 200 || body != wantBody {
		t.Fatalf("batch through node 1: %d %s\nwant 200 %s", code, body, wantBody)
	}
	if got := clients[4].read(2 * time.Second); got != "batch one" {
		t.Fatalf("node 2's client got %q from the batch", got)
	}
	for _, c := range subs {
		if got := c.read(2 * time.Second); got != "batch two" {
			t.Fatalf("subscriber %s got %q from the batch", c.id, got)
		}
	}
	if got := clients[8].read(2 * time.Second); got != "batch three" {
		t.Fatalf("node 3's client got %q from the batch", got)
	}
	counts, err = ps[2].api.Broadcast(ctx(t), []byte("everyone"))
	if err != nil || int(counts.Queued) != len(clients) {
		t.Fatalf("broadcast through node 3: %+v, %v; want %d queued", counts, err, len(clients))
	}
	for _, c := range clients {
		if got := c.read(2 * time.Second); got != "everyone" {
			t.Fatalf("client %s got %q", c.id, got)
		}
	}
	// A broadcast crosses NATS once per node, not once per client.
	if sent := ps[2].stat("pushrelay_cluster_messages_sent_total", `op="broadcast"`); sent != 1 {
		t.Fatalf("node 3 sent %v broadcast messages for one broadcast; want 1", sent)
	}
	for _, p := range ps[:2] {
		if got := p.stat("pushrelay_cluster_messages_received_total", `op="broadcast"`); got != 1 {
			t.Fatalf("node %d received %v broadcast messages; want 1", p.node, got)
		}
	}
}

func TestProcsKilledNode(t *testing.T) {
	ns := startNATS(t, 0)
	a, b, c := startProc(t, ns.ClientURL(), 1, "--http", "127.0.0.1:0"), startProc(t, ns.ClientURL(), 2), startProc(t, ns.ClientURL(), 3)
	formed(t, a, b, c)
	ca, cb, cc := dial(t, a.addr), dial(t, b.addr), dial(t, c.addr)
	c.kill()

	start := time.Now()
	_, err := a.api.Send(ctx(t), cc.id, []byte("to the dead"))
	var ce *ic.Error
	if !errors.As(err, &ce) || ce.Status != wire.StatusUnavailable {
		t.Fatalf("send to a killed node's client: %v; want status unavailable", err)
	}
	counts, err := a.api.SendMany(ctx(t), []string{ca.id, cb.id, cc.id}, []byte("many"))
	if err != nil || counts.Queued != 2 || counts.Unreachable != 1 {
		t.Fatalf("send_many with one node killed: %+v, %v; want 2 queued, 1 unreachable", counts, err)
	}
	counts, err = a.api.Broadcast(ctx(t), []byte("all"))
	if err != nil || counts.Queued != 2 || counts.Unreachable != 1 {
		t.Fatalf("broadcast with one node killed: %+v, %v; want 2 queued, 1 unreachable node", counts, err)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("three pushes took %v with a node killed; each must answer within --cluster-timeout", took)
	}
	if ca.read(time.Second) != "many" || cb.read(time.Second) != "many" || ca.read(time.Second) != "all" || cb.read(time.Second) != "all" {
		t.Fatal("live nodes' clients missed a push")
	}
	// The HTTP API says the same.
	code, body := httpPost(t, "http://"+a.httpAddr()+"/v1/send/"+cc.id, "x")
	if code != 503 || !strings.Contains(body, `"unavailable"`) {
		t.Fatalf("HTTP send to a killed node's client: %d %s; want 503 unavailable", code, body)
	}
	code, body = httpPost(t, "http://"+a.httpAddr()+"/v1/broadcast", "y")
	if code != 200 || !strings.Contains(body, `"queued":2`) || !strings.Contains(body, `"unreachable":1`) {
		t.Fatalf("HTTP broadcast with a node killed: %d %s; want 2 queued, 1 unreachable", code, body)
	}
	ca.read(time.Second)
	cb.read(time.Second)
	if got := a.stat("pushrelay_cluster_unreachable_total", ""); got < 3 {
		t.Fatalf("unreachable answers counted: %v, want at least 3", got)
	}
}

func TestProcsNATSRestart(t *testing.T) {
	ns := startNATS(t, 0)
	port := ns.Addr().(*net.TCPAddr).Port
	a, b := startProc(t, ns.ClientURL(), 1), startProc(t, ns.ClientURL(), 2)
	formed(t, a, b)
	ca, cb := dial(t, a.addr), dial(t, b.addr)

	ns.Shutdown()
	ns.WaitForShutdown()
	deadline := time.Now().Add(5 * time.Second)
	for a.stat("pushrelay_cluster_nats_connected", "") != 0 {
		if time.Now().After(deadline) {
			t.Fatal("node 1 did not notice NATS going away")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if counts, err := a.api.Send(ctx(t), ca.id, []byte("local")); err != nil || counts.Queued != 1 {
		t.Fatalf("local push without NATS: %+v, %v", counts, err)
	}
	if ca.read(time.Second) != "local" {
		t.Fatal("local push lost without NATS")
	}
	var ce *ic.Error
	if _, err := a.api.Send(ctx(t), cb.id, []byte("x")); !errors.As(err, &ce) || ce.Status != wire.StatusUnavailable {
		t.Fatalf("remote push without NATS: %v; want status unavailable", err)
	}

	startNATS(t, port)
	deadline = time.Now().Add(10 * time.Second)
	for {
		counts, err := a.api.Send(ctx(t), cb.id, []byte("resumed"))
		if err == nil && counts.Queued == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pushes did not resume after NATS restarted: %+v, %v", counts, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := cb.read(2 * time.Second); got != "resumed" {
		t.Fatalf("after the restart b's client got %q", got)
	}
	if a.stat("pushrelay_cluster_nats_reconnects_total", "") < 1 || a.stat("pushrelay_cluster_nats_disconnects_total", "") < 1 {
		t.Fatal("the metrics do not show the disconnect and reconnect")
	}
}

func TestProcsReusePort(t *testing.T) {
	// A free port, then two relays sharing it.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ns := startNATS(t, 0)
	a := startProc(t, ns.ClientURL(), 1, "--listen", addr, "--reuse-port")
	b := startProc(t, ns.ClientURL(), 2, "--listen", addr, "--reuse-port")
	formed(t, a, b)
	byNode := map[uint16]int{}
	for i := 0; i < 40; i++ {
		c := dial(t, addr)
		n, _ := relay.NodeOf(c.id)
		byNode[n]++
	}
	if byNode[1] == 0 || byNode[2] == 0 || byNode[1]+byNode[2] != 40 {
		t.Fatalf("40 connections to the shared port went to nodes %v; want both nodes", byNode)
	}
	if got := a.stat("pushrelay_cluster_connections_open", ""); got != 40 {
		t.Logf("cluster-wide open connections on node 1: %v (announced once a second)", got)
	}

	// Without --reuse-port, a relay refuses the port in use.
	cmd := exec.Command(relayBin, "serve", "--listen", addr, "--ingress", "", "--http", "", "--web", "")
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "address already in use") {
		t.Fatalf("a relay without --reuse-port on a shared port: %v\n%s", err, out)
	}
}

func httpPost(t *testing.T, url, body string) (int, string) {
	t.Helper()
	hc := &http.Client{Timeout: 5 * time.Second}
	ct := "application/octet-stream"
	if strings.HasSuffix(url, "/v1/batch") {
		ct = "application/x-ndjson"
	}
	resp, err := hc.Post(url, ct, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
