package relay

import (
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// readAll reads n frames from each client concurrently and returns them.
func readAll(t *testing.T, clients []*client, n func(i int) int) [][]string {
	t.Helper()
	got := make([][]string, len(clients))
	var wg sync.WaitGroup
	errs := make(chan error, len(clients))
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; k < n(i); k++ {
				b, err := c.next(10 * time.Second)
				if err != nil {
					errs <- fmt.Errorf("client %d, frame %d of %d: %v", i, k, n(i), err)
					return
				}
				got[i] = append(got[i], string(b))
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	return got
}

// TestInterleavedFanoutsKeepEveryClientsOrder pushes a random mix of
// broadcasts, publishes and unicasts from one goroutine (as one ingress
// connection would) while fanouts run in slices, and checks that every
// client gets exactly its messages, once each, in the order they were
// pushed.
func TestInterleavedFanoutsKeepEveryClientsOrder(t *testing.T) {
	srv := startServer(t, Config{MaxOutbound: 64 << 20})
	const nClients = 1500 // several slices per loop
	clients := make([]*client, nClients)
	for i := range clients {
		clients[i] = dial(t, srv)
		if i%3 == 0 {
			srv.Subscribe(clients[i].id, "thirds")
		}
	}
	want := make([][]string, nClients)
	rng := rand.New(rand.NewPCG(7, 8))
	for m := 0; m < 300; m++ {
		msg := fmt.Sprintf("m%d", m)
		switch r := rng.IntN(10); {
		case r < 2:
			srv.Broadcast([]byte(msg))
			for i := range want {
				want[i] = append(want[i], msg)
			}
		case r < 4:
			srv.Publish("thirds", []byte(msg))
			for i := 0; i < nClients; i += 3 {
				want[i] = append(want[i], msg)
			}
		default:
			i := rng.IntN(nClients)
			srv.Send(clients[i].id, []byte(msg))
			want[i] = append(want[i], msg)
		}
	}
	got := readAll(t, clients, func(i int) int { return len(want[i]) })
	for i := range want {
		for k := range want[i] {
			if got[i][k] != want[i][k] {
				t.Fatalf("client %d, frame %d: got %s, want %s", i, k, got[i][k], want[i][k])
			}
		}
		clients[i].expectSilence(time.Millisecond)
	}
	st := srv.Stats()
	if st.Fanouts == 0 || st.FanoutRecipients == 0 || st.FanoutMaxSize == 0 || st.FanoutTime <= 0 {
		t.Fatalf("fanout figures missing: %+v", st)
	}
}

// TestBurstBehindAFanoutCoalesces: publishes that queue up behind a
// running fanout merge into one job, so each subscriber gets them in one
// writev.
func TestBurstBehindAFanoutCoalesces(t *testing.T) {
	srv := startServer(t, Config{Loops: 1, MaxOutbound: 64 << 20})
	var subs []*client
	for i := 0; i < 2000; i++ {
		c := dial(t, srv)
		if i < 100 {
			srv.Subscribe(c.id, "burst")
			subs = append(subs, c)
		}
	}
	before := srv.Stats()
	// A broadcast to 2,000 keeps the loop busy for several slices; the 8
	// publishes queue behind it and start together.
	srv.Broadcast([]byte("wide"))
	for k := 0; k < 8; k++ {
		srv.Publish("burst", []byte(fmt.Sprintf("b%d", k)))
	}
	got := readAll(t, subs, func(int) int { return 9 })
	for i := range got {
		for k := 0; k < 8; k++ {
			if got[i][k+1] != fmt.Sprintf("b%d", k) {
				t.Fatalf("subscriber %d: %v", i, got[i])
			}
		}
	}
	waitFor(t, 5*time.Second, "counters", func() bool { return srv.Stats().MessagesWritten-before.MessagesWritten >= 2000+800 })
	st := srv.Stats()
	msgs := st.MessagesWritten - before.MessagesWritten - 2000
	writes := st.Writes - before.Writes - 2000
	if float64(msgs)/float64(writes) < 0.8*8 {
		t.Fatalf("the burst took %d writes for %d deliveries (%.1f per write), want at least 6.4", writes, msgs, float64(msgs)/float64(writes))
	}
}

// TestFrozenReaderDoesNotHoldBackABroadcast: one client that never reads
// among 1,000 that do. Broadcasts go at the healthy clients' pace (each
// waits until all of them have the previous one, as a live app's would);
// every broadcast reaches all 1,000, in order, and the frozen client is
// closed by the slow-consumer policy once its share passes the cap.
func TestFrozenReaderDoesNotHoldBackABroadcast(t *testing.T) {
	// A small SO_SNDBUF keeps the kernel from absorbing megabytes for the
	// frozen client before the relay's cap is reached.
	srv := startServer(t, Config{Framing: FramingLen32, MaxMessage: 4 << 10, MaxOutbound: 16 << 10, SendBuffer: 16 << 10})
	frozen := dial(t, srv, dialOpts{rcvbuf: 4096})
	healthy := make([]*client, 1000)
	for i := range healthy {
		healthy[i] = dial(t, srv)
	}
	var received atomic.Int64
	errs := make(chan error, len(healthy))
	const rounds = 300
	for i, c := range healthy {
		go func() {
			for k := 0; k < rounds; k++ {
				b, err := c.next(10 * time.Second)
				if err != nil || len(b) != 2<<10 || b[0] != byte(k) {
					errs <- fmt.Errorf("healthy client %d, broadcast %d: %d bytes, %v", i, k, len(b), err)
					return
				}
				received.Add(1)
			}
		}()
	}
	payload := make([]byte, 2<<10)
	for k := 0; k < rounds; k++ {
		payload[0] = byte(k)
		if counts, st := srv.Broadcast(payload); st != Queued || counts.Queued < len(healthy) {
			t.Fatalf("broadcast %d: %+v %v", k, counts, st)
		}
		for received.Load() < int64(len(healthy)*(k+1)) {
			select {
			case err := <-errs:
				t.Fatal(err)
			case <-time.After(time.Millisecond):
			}
		}
	}
	waitFor(t, 5*time.Second, "frozen reader closed", func() bool { return !srv.Connected(frozen.id) })
	if srv.Stats().Closed[ReasonSlow] != 1 {
		t.Fatalf("closed by slow policy: %d, want 1 (the frozen one)", srv.Stats().Closed[ReasonSlow])
	}
}

// TestFullMailboxRefusesAndLosesNothingAccepted: with a mailbox of one
// item, a producer faster than the loop is refused (Overloaded) some of
// the time; every refusal is counted, and every push that was accepted
// reaches the client, in order.
func TestFullMailboxRefusesAndLosesNothingAccepted(t *testing.T) {
	srv := startServer(t, Config{Framing: FramingLen32, MaxMessage: 1024, MailboxItems: 1, MailboxBytes: 1028, MaxOutbound: 64 << 20})
	c := dial(t, srv)
	var accepted []int
	refused := 0
	payload := make([]byte, 512)
	for i := 0; i < 20000; i++ {
		payload[0], payload[1] = byte(i>>8), byte(i)
		switch st := srv.Send(c.id, payload); st {
		case Queued:
			accepted = append(accepted, i)
		case Overloaded:
			refused++
		default:
			t.Fatalf("push %d: %v", i, st)
		}
	}
	if refused == 0 {
		t.Fatal("no push was refused by a one-item mailbox")
	}
	for _, want := range accepted {
		got, err := c.next(5 * time.Second)
		if err != nil {
			t.Fatalf("accepted push %d never arrived: %v", want, err)
		}
		if n := int(got[0])<<8 | int(got[1]); n != want {
			t.Fatalf("got push %d, want %d", n, want)
		}
	}
	c.expectSilence(50 * time.Millisecond)
	if got := srv.Stats().Drops[DropOverloaded]; got != uint64(refused) {
		t.Fatalf("drops{overloaded} = %d, want the %d refusals", got, refused)
	}
	t.Logf("%d accepted, %d refused", len(accepted), refused)
}

// loopGate holds an event loop inside a mailbox pass, so a test decides which
// items the loop's next mailbox pass takes together. It is two topic operations
// naming no topic, whose replies nobody reads until the test says so: the
// loop applies the first (reached returns then), and waits on the second
// until release, doing nothing else meanwhile. Items queued while it waits
// are taken together by the next mailbox pass.
type loopGate struct {
	t            testing.TB
	reach, hold  chan topicOp
	got, dropped bool
}

func holdLoop(t testing.TB, l *loop) *loopGate {
	t.Helper()
	g := &loopGate{t: t, reach: make(chan topicOp), hold: make(chan topicOp)}
	for _, ch := range []chan topicOp{g.reach, g.hold} {
		if st := l.enqueue(item{kind: kindSubscribe, topicReply: ch}, 0); st != Queued {
			t.Fatalf("gate: %v", st)
		}
	}
	t.Cleanup(func() { g.release() }) // never leave a loop held
	return g
}

// reached waits until the loop is held: it has applied what was queued
// before the gate and writes nothing until release.
func (g *loopGate) reached() {
	g.t.Helper()
	if g.got {
		return
	}
	select {
	case <-g.reach:
		g.got = true
	case <-time.After(10 * time.Second):
		g.t.Fatal("the loop never reached the gate")
	}
}

// release lets the loop go on.
func (g *loopGate) release() {
	g.t.Helper()
	g.reached()
	if !g.dropped {
		<-g.hold
		g.dropped = true
	}
}

// buffered returns how many bytes wait unread in c's socket.
func (c *client) buffered() int {
	c.t.Helper()
	rc, err := c.conn.SyscallConn()
	if err != nil {
		c.t.Fatal(err)
	}
	n := 0
	if err := rc.Control(func(fd uintptr) { n, err = unix.IoctlGetInt(int(fd), unix.SIOCINQ) }); err != nil {
		c.t.Fatal(err)
	}
	if err != nil {
		c.t.Fatal(err)
	}
	return n
}

// TestUnicastOvertakesQueuedBroadcasts: a unicast queued behind two
// broadcasts, the first under way, reaches its client (after both
// broadcasts' frames, in order) before the first broadcast has reached
// everyone. Gates fix which items each mailbox pass of the loop takes, and hold
// the loop while the clients' sockets are looked at, so the test checks
// the order of writes, not how fast they are.
func TestUnicastOvertakesQueuedBroadcasts(t *testing.T) {
	srv := startServer(t, Config{Loops: 1, MaxOutbound: 64 << 20})
	const n = 1000 // several turns of a job
	clients := make([]*client, n)
	for i := range clients {
		clients[i] = dial(t, srv)
	}
	w, x := clients[0], clients[n/2]
	l := srv.reg.get(w.id).loop

	g1 := holdLoop(t, l)
	srv.Broadcast([]byte("b1"))
	srv.Send(w.id, []byte("u0")) // w gets b1 first: job 1 has served someone
	g2 := holdLoop(t, l)
	g1.release()
	g2.reached() // b1 is a job now; b2 comes in a later pass
	srv.Broadcast([]byte("b2"))
	srv.Send(x.id, []byte("u"))
	srv.Kick(x.id) // writes what is queued for x, then closes it
	g3 := holdLoop(t, l)
	g2.release() // one turn of b1, then a pass takes b2, u, the kick and g3
	g3.reached()

	// The loop is held: whatever a socket has now was written before u
	// and the kick were applied.
	for _, want := range []string{"b1", "b2", "u"} {
		x.expect(want)
	}
	if _, err := x.next(5 * time.Second); err != io.EOF {
		t.Fatalf("kicked client: %v, want EOF after its frames", err)
	}
	have := 0
	for _, c := range clients {
		if c != x && c.buffered() > 0 {
			have++
		}
	}
	t.Logf("%d of %d other clients had the first broadcast when the unicast behind the second reached its client", have, n-1)
	if have >= n-1 {
		t.Fatal("the unicast waited for the first broadcast to reach every client")
	}
	g3.release()

	w.expect("b1")
	w.expect("u0")
	w.expect("b2")
	for _, c := range clients[1:] {
		if c != x {
			c.expect("b1")
			c.expect("b2")
		}
	}
	for _, c := range clients {
		if c != x {
			c.expectSilence(time.Millisecond)
		}
	}
}

// waitQueued waits until l's mailbox holds n items.
func waitQueued(t testing.TB, l *loop, n int) {
	t.Helper()
	waitFor(t, 5*time.Second, fmt.Sprintf("%d items queued", n), func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		return len(l.queue) == n
	})
}

// TestQueuedPublishesTakeTheMembersOfTheirTurn: two publishes to one topic
// with a subscribe and an unsubscribe between them, all taken by one
// mailbox pass: each publish reaches the members of its own moment, so the second
// must not join the first's job.
func TestQueuedPublishesTakeTheMembersOfTheirTurn(t *testing.T) {
	srv := startServer(t, Config{Loops: 1})
	a, b, c := dial(t, srv), dial(t, srv), dial(t, srv)
	for _, cl := range []*client{a, b} {
		if _, err := srv.Subscribe(cl.id, "t"); err != nil {
			t.Fatal(err)
		}
	}
	l := srv.reg.get(a.id).loop
	g := holdLoop(t, l)
	g.reached()
	srv.Publish("t", []byte("p1"))
	errs := make(chan error, 2)
	go func() { _, err := srv.Subscribe(c.id, "t"); errs <- err }()
	waitQueued(t, l, 2)
	go func() { _, err := srv.Unsubscribe(b.id, "t"); errs <- err }()
	waitQueued(t, l, 3)
	srv.Publish("t", []byte("p2"))
	srv.Publish("t", []byte("p3")) // joins p2's job: same members
	g.release()
	for i := 0; i < 2; i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	a.expect("p1")
	a.expect("p2")
	a.expect("p3")
	b.expect("p1")
	c.expect("p2")
	c.expect("p3")
	for _, cl := range []*client{a, b, c} {
		cl.expectSilence(20 * time.Millisecond)
	}
}

// TestManyQueuedFanoutsKeepOrderAndReleaseFrames queues more fanout jobs
// than a loop has slots, in rounds taken by one pass each while earlier
// rounds' jobs still run: broadcasts, publishes to two topics, sends and
// send-to-many in a random mix, with heartbeats, clients hanging up on
// their own, and a shutdown at the end. Every client still open gets
// exactly its messages in the order pushed, then EOF; every frame's
// reference is released exactly once.
func TestManyQueuedFanoutsKeepOrderAndReleaseFrames(t *testing.T) {
	srv := startServer(t, Config{Loops: 2, Heartbeat: 5 * time.Millisecond, MaxOutbound: 64 << 20, DrainTimeout: 30 * time.Second})
	const nClients = 600
	clients := make([]*client, nClients)
	sessions := make([]*session, nClients)
	for i := range clients {
		clients[i] = dial(t, srv)
		sessions[i] = srv.reg.get(clients[i].id)
		if i%2 == 0 {
			srv.Subscribe(clients[i].id, "even")
		}
		if i%3 == 0 {
			srv.Subscribe(clients[i].id, "third")
		}
	}
	loops := *srv.loops.Load()
	if len(loops) != 2 {
		t.Fatalf("%d loops, want 2", len(loops))
	}
	hungUp := map[int]bool{}
	want := make([][]string, nClients)
	var frames []*Frame
	push := func(msg string, kind itemKind, topic string, to ...int) {
		f := encodeFrame(srv.cfg.Framing, []byte(msg))
		frames = append(frames, f) // the test keeps one reference
		switch kind {
		case kindWrite:
			for _, i := range to {
				if st := srv.push(sessions[i], f); st != Queued {
					t.Fatalf("push %s: %v", msg, st)
				}
				want[i] = append(want[i], msg)
			}
			return
		case kindBroadcast:
			to = nil
			for i := range want {
				to = append(to, i)
			}
		case kindPublish:
			to = nil
			for i := range want {
				if topic == "even" && i%2 == 0 || topic == "third" && i%3 == 0 {
					to = append(to, i)
				}
			}
		}
		if st := srv.enqueueAll(item{kind: kind, frame: f, topic: topic}, len(f.b)); st != Queued {
			t.Fatalf("fanout %s: %v", msg, st)
		}
		for _, i := range to {
			want[i] = append(want[i], msg)
		}
	}
	rng := rand.New(rand.NewPCG(4, 2))
	const rounds = 8
	for r := 0; r < rounds; r++ {
		var gates []*loopGate
		for _, l := range loops {
			gates = append(gates, holdLoop(t, l))
		}
		for _, g := range gates {
			g.reached()
		}
		for m := 0; m < 40; m++ {
			msg := fmt.Sprintf("r%dm%d", r, m)
			if r == 0 {
				// Alternating targets: 20 jobs that cannot merge, more
				// than the slots.
				if m%2 == 0 {
					push(msg, kindBroadcast, "")
				} else {
					push(msg, kindPublish, "even")
				}
				continue
			}
			switch k := rng.IntN(10); {
			case k < 3:
				push(msg, kindBroadcast, "")
			case k < 5:
				push(msg, kindPublish, "even")
			case k < 6:
				push(msg, kindPublish, "third")
			case k < 8:
				push(msg, kindWrite, "", rng.IntN(nClients))
			default:
				push(msg, kindWrite, "", rng.Perm(nClients)[:5]...)
			}
		}
		if r == rounds/2 {
			for len(hungUp) < 10 {
				i := rng.IntN(nClients)
				hungUp[i] = true
				clients[i].conn.Close()
			}
		}
		for _, g := range gates {
			g.release()
		}
	}
	stopped := make(chan error, 1)
	go func() { stopped <- srv.Shutdown(t.Context()) }()

	var wg sync.WaitGroup
	errs := make(chan error, nClients)
	for i, c := range clients {
		if hungUp[i] {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			k := 0
			for {
				b, err := c.next(20 * time.Second)
				switch {
				case err == io.EOF && k == len(want[i]):
					return
				case err != nil:
					errs <- fmt.Errorf("client %d after %d of %d frames: %v", i, k, len(want[i]), err)
					return
				case len(b) == 0:
					continue // a heartbeat
				case k == len(want[i]) || string(b) != want[i][k]:
					errs <- fmt.Errorf("client %d, frame %d: got %q, want %q", i, k, b, want[i][min(k, len(want[i])-1)])
					return
				}
				k++
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if err := <-stopped; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if srv.Stats().Heartbeats == 0 {
		t.Fatal("no heartbeat went out")
	}
	for i, f := range frames {
		if r := f.refs.Load(); r != 1 {
			t.Fatalf("frame %d: %d references left, want the test's 1", i, r)
		}
		f.release()
	}
}

// TestSessionFitsItsSizeClass: one session per idle client, so it stays in
// the 112-byte size class.
func TestSessionFitsItsSizeClass(t *testing.T) {
	if n := unsafe.Sizeof(session{}); n > 112 {
		t.Fatalf("session is %d bytes, want at most 112", n)
	}
}
