package relay

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestIdlePushesAreWrittenDirectly: pushes to a client of an idle loop are
// written by the pushing goroutine (counted as direct writes) and arrive in
// order; with NoDirectWrites every push goes through the loop and arrives
// all the same.
func TestIdlePushesAreWrittenDirectly(t *testing.T) {
	for _, off := range []bool{false, true} {
		t.Run(fmt.Sprintf("NoDirectWrites=%v", off), func(t *testing.T) {
			srv := startServer(t, Config{NoDirectWrites: off})
			c := dial(t, srv)
			const n = 200
			for i := 0; i < n; i++ {
				msg := fmt.Sprintf("idle push %d", i)
				if st := srv.Send(c.id, []byte(msg)); st != Queued {
					t.Fatalf("Send %d: %v", i, st)
				}
				c.expect(msg)
				// A loop that wrote the push is still finishing its mailbox pass
				// when the client reads; it publishes its counts at the
				// end. Push again once it has, as an idle loop.
				waitFor(t, 5*time.Second, "the push counted", func() bool { return srv.Stats().MessagesWritten == uint64(i+1) })
			}
			st := srv.Stats()
			if off {
				if st.DirectWrites != 0 {
					t.Fatalf("DirectWrites = %d with NoDirectWrites, want 0", st.DirectWrites)
				}
				return
			}
			// The first push goes through the loop: gnet wrote the ID, and
			// only the loop may learn that its buffer is empty. A tick may
			// take the loop at the moment of a push, sending it the same way.
			if st.DirectWrites < n*9/10 || st.DirectShort != 0 {
				t.Fatalf("DirectWrites = %d (short %d) of %d pushes to an idle loop, want at least %d and none short", st.DirectWrites, st.DirectShort, n, n*9/10)
			}
		})
	}
}

// TestPipelinedPushesWaitForTheLoop: SendPipelined never writes directly,
// so a burst is written by the loop, several frames per write.
func TestPipelinedPushesWaitForTheLoop(t *testing.T) {
	srv := startServer(t, Config{Loops: 1})
	c := dial(t, srv)
	srv.Send(c.id, []byte("first"))
	c.expect("first") // the loop wrote it: the client may now take direct writes
	waitFor(t, 5*time.Second, "the first push counted", func() bool { return srv.Stats().MessagesWritten == 1 })
	before := srv.Stats()
	const n = 1000
	for i := 0; i < n; i++ {
		if st := srv.SendPipelined(c.id, []byte(fmt.Sprintf("burst %d", i))); st != Queued {
			t.Fatalf("SendPipelined %d: %v", i, st)
		}
	}
	for i := 0; i < n; i++ {
		c.expect(fmt.Sprintf("burst %d", i))
	}
	waitFor(t, 5*time.Second, "every message counted", func() bool { return srv.Stats().MessagesWritten-before.MessagesWritten == n })
	st := srv.Stats()
	if d := st.DirectWrites - before.DirectWrites; d != 0 {
		t.Fatalf("%d of %d pipelined pushes written directly, want none", d, n)
	}
	if w := st.Writes - before.Writes; w >= n {
		t.Fatalf("%d writes for %d pipelined pushes to one client: nothing coalesced", w, n)
	}
}

// TestShortDirectWriteIsFinishedByTheLoop: a client that stops reading
// fills its socket; the direct write that comes up short hands the rest of
// its frame to the loop, later pushes queue behind it, and once the client
// reads again it gets every frame whole and in order. Then direct writes
// resume.
func TestShortDirectWriteIsFinishedByTheLoop(t *testing.T) {
	srv := startServer(t, Config{Framing: FramingLen32, MaxMessage: 16 << 10, MaxOutbound: 32 << 20, SendBuffer: 4096})
	c := dial(t, srv, dialOpts{rcvbuf: 4096})
	payload := func(i int) []byte {
		return []byte(fmt.Sprintf("%06d", i) + strings.Repeat(string(rune('a'+i%26)), 10<<10))
	}
	// A small push read back: the loop wrote it whole, so gnet's buffer
	// is known to be empty and pushes may go direct.
	if st := srv.Send(c.id, []byte("hello")); st != Queued {
		t.Fatalf("Send hello: %v", st)
	}
	c.expect("hello")
	waitFor(t, 5*time.Second, "the loop done with hello", func() bool { return srv.Stats().MessagesWritten == 1 })
	n := 0
	for ; n < 2000 && srv.Stats().DirectShort == 0; n++ {
		if st := srv.Send(c.id, payload(n)); st != Queued {
			t.Fatalf("Send %d: %v", n, st)
		}
	}
	if srv.Stats().DirectShort == 0 {
		t.Fatalf("%d pushes of 10 KiB to a client that does not read: no direct write came up short (%+v)", n, srv.Stats())
	}
	// Some more behind the short one, through the mailbox.
	for end := n + 20; n < end; n++ {
		if st := srv.Send(c.id, payload(n)); st != Queued {
			t.Fatalf("Send %d: %v", n, st)
		}
	}
	for i := 0; i < n; i++ {
		c.expect(string(payload(i)))
	}
	before := srv.Stats().DirectWrites
	for i := 0; i < 20 && srv.Stats().DirectWrites == before; i++ {
		msg := fmt.Sprintf("after %d", i)
		written := srv.Stats().MessagesWritten
		srv.Send(c.id, []byte(msg))
		c.expect(msg)
		// Push again once the loop has finished the mailbox pass that wrote it
		// (it publishes its counts at the end).
		waitFor(t, 5*time.Second, "the push counted", func() bool { return srv.Stats().MessagesWritten > written })
	}
	if srv.Stats().DirectWrites == before {
		t.Fatal("no direct write in 20 pushes after the client caught up")
	}
	if st := srv.Stats(); st.Closed[ReasonSlow] != 0 || st.Drops[DropSlow] != 0 {
		t.Fatalf("slow closes %d, slow drops %d: want none under a 32 MiB cap", st.Closed[ReasonSlow], st.Drops[DropSlow])
	}
}

// TestConcurrentProducersKeepTheirOwnOrder: producers pushing to the same
// clients at once, some direct and some through the mailbox, with
// broadcasts in between: each client gets every message, each producer's
// in the order it pushed them.
func TestConcurrentProducersKeepTheirOwnOrder(t *testing.T) {
	srv := startServer(t, Config{MaxOutbound: 16 << 20})
	const nClients, nProducers, perProducer, nBroadcasts = 8, 4, 300, 30
	clients := make([]*client, nClients)
	for i := range clients {
		clients[i] = dial(t, srv)
	}
	var wg sync.WaitGroup
	for p := 0; p < nProducers; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; k < perProducer; k++ {
				for _, c := range clients {
					if st := srv.Send(c.id, []byte(fmt.Sprintf("p%d %d", p, k))); st != Queued {
						t.Errorf("producer %d, push %d: %v", p, k, st)
						return
					}
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for k := 0; k < nBroadcasts; k++ {
			srv.Broadcast([]byte(fmt.Sprintf("b %d", k)))
			time.Sleep(time.Millisecond)
		}
	}()
	total := nProducers*perProducer + nBroadcasts
	var rg sync.WaitGroup
	for _, c := range clients {
		rg.Add(1)
		go func() {
			defer rg.Done()
			next := map[string]int{}
			for i := 0; i < total; i++ {
				got, err := c.next(10 * time.Second)
				if err != nil {
					t.Errorf("client %s, frame %d of %d: %v", c.id, i, total, err)
					return
				}
				var who string
				var k int
				if _, err := fmt.Sscanf(string(got), "%s %d", &who, &k); err != nil {
					t.Errorf("client %s: frame %q: %v", c.id, got, err)
					return
				}
				if k != next[who] {
					t.Errorf("client %s: %s's message %d, want %d", c.id, who, k, next[who])
					return
				}
				next[who]++
			}
		}()
	}
	wg.Wait()
	rg.Wait()
	if srv.Stats().DirectWrites == 0 {
		t.Log("no push went direct (a busy host); the order held through the mailbox alone")
	}
}

// TestDirectWritesNeverReachAReusedDescriptor: clients come and go while
// producers push to every ID they have seen, gone or not. A closed client's
// descriptor number is soon a new client's; every frame a client reads
// must still be addressed to it.
func TestDirectWritesNeverReachAReusedDescriptor(t *testing.T) {
	srv := startServer(t, Config{Loops: 1})
	var mu sync.Mutex
	var ids []string
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for p := 0; p < 3; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				mu.Lock()
				if len(ids) == 0 {
					mu.Unlock()
					time.Sleep(time.Millisecond)
					continue
				}
				// The newest IDs: the live client's, and those whose
				// descriptor numbers it and its successors reuse.
				id := ids[len(ids)-1-(i+p)%min(len(ids), 4)]
				mu.Unlock()
				srv.Send(id, []byte("for "+id)) // any status: the client may be gone
			}
		}()
	}
	var frames int
	for round := 0; round < 300; round++ {
		c := dial(t, srv)
		mu.Lock()
		ids = append(ids, c.id)
		mu.Unlock()
		for k := 0; k < 3; k++ {
			got, err := c.next(2 * time.Second)
			if err != nil {
				break // pushes go to many IDs: this one may get none in time
			}
			frames++
			if want := "for " + c.id; string(got) != want {
				t.Fatalf("round %d: client %s read %q", round, c.id, got)
			}
		}
		if round%2 == 0 {
			c.conn.SetLinger(0) // a reset: the relay learns of it at once
		}
		c.conn.Close()
	}
	close(stop)
	wg.Wait()
	if frames == 0 {
		t.Fatal("no client read a push: the test proved nothing")
	}
	t.Logf("%d frames read, %d direct writes", frames, srv.Stats().DirectWrites)
}
