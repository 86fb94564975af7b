package relay

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"
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
