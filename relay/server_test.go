package relay

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

var allFramings = []Framing{FramingNUL, FramingLine, FramingLen32}

func TestFirstFrameIsExactlyTheID(t *testing.T) {
	for _, f := range allFramings {
		t.Run(f.String(), func(t *testing.T) {
			srv := startServer(t, Config{Framing: f})
			c := dialRaw(t, srv.Addr().String(), f)
			// Read the raw bytes: the ID and its delimiter, nothing more.
			want := IDLen + f.Overhead()
			buf := make([]byte, want+16)
			c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, err := io.ReadAtLeast(c.conn, buf, want)
			if err != nil {
				t.Fatalf("read: %v", err)
			}
			if n != want {
				t.Fatalf("got %d bytes %q, want exactly %d (ID and framing)", n, buf[:n], want)
			}
			var id []byte
			switch f {
			case FramingNUL:
				id, _ = bytes.CutSuffix(buf[:n], []byte{0})
			case FramingLine:
				id, _ = bytes.CutSuffix(buf[:n], []byte{'\n'})
			case FramingLen32:
				if got := int(buf[0])<<24 | int(buf[1])<<16 | int(buf[2])<<8 | int(buf[3]); got != IDLen {
					t.Fatalf("len32 header says %d, want %d", got, IDLen)
				}
				id = buf[4:n]
			}
			if !ValidID(string(id)) || len(id) != IDLen {
				t.Fatalf("frame %q is not an ID", buf[:n])
			}
			if !srv.Connected(string(id)) {
				t.Fatalf("ID %s not connected", id)
			}
			c.expectSilence(100 * time.Millisecond)
		})
	}
}

func TestThousandConnectionsGetDistinctIDs(t *testing.T) {
	srv := startServer(t, Config{})
	const n = 1000
	seen := make(map[string]bool, n)
	clients := make([]*client, 0, n)
	for i := 0; i < n; i++ {
		c := dial(t, srv)
		if seen[c.id] {
			t.Fatalf("ID %s handed out twice", c.id)
		}
		seen[c.id] = true
		clients = append(clients, c)
	}
	if got := srv.Len(); got != n {
		t.Fatalf("Len() = %d, want %d", got, n)
	}
	if got := srv.reg.len(); got != n {
		t.Fatalf("registry holds %d, want %d", got, n)
	}
	if got := srv.Stats().Accepted; got != n {
		t.Fatalf("Accepted = %d, want %d", got, n)
	}
	// One reuseport listener per loop: the kernel spreads connections
	// over the loops (a binomial split; 35% to 65% each with two loops
	// fails about once in 10^20 runs).
	loops := *srv.loops.Load()
	if len(loops) != srv.loopCount() {
		t.Fatalf("connections landed on %d of %d loops", len(loops), srv.loopCount())
	}
	for i, l := range loops {
		share := float64(l.count.Load()) / n
		if lo, hi := 0.7/float64(len(loops)), 1.3/float64(len(loops)); share < lo || share > hi {
			t.Errorf("loop %d holds %.0f%% of the connections, want %.0f%% to %.0f%%", i, share*100, lo*100, hi*100)
		}
	}
}

func TestSendReachesExactlyThatClientInOrder(t *testing.T) {
	for _, f := range allFramings {
		t.Run(f.String(), func(t *testing.T) {
			srv := startServer(t, Config{Framing: f})
			a, b := dial(t, srv), dial(t, srv)
			const n = 2000
			go func() {
				for i := 0; i < n; i++ {
					if st := srv.Send(a.id, []byte(fmt.Sprintf("message %d for a", i))); st != Queued {
						t.Errorf("Send %d: %v", i, st)
						return
					}
				}
			}()
			for i := 0; i < n; i++ {
				a.expect(fmt.Sprintf("message %d for a", i))
			}
			b.expectSilence(100 * time.Millisecond)
			if got := srv.Stats().MessagesWritten; got != n {
				t.Fatalf("MessagesWritten = %d, want %d", got, n)
			}
		})
	}
}

func TestLen32CarriesAnyBytesExactly(t *testing.T) {
	// The sender outruns the reader; a large cap keeps the slow-consumer
	// policy out of this test.
	srv := startServer(t, Config{Framing: FramingLen32, MaxOutbound: 64 << 20})
	c := dial(t, srv)
	rng := rand.New(rand.NewPCG(1, 2))
	var sent [][]byte
	for i := 0; i < 300; i++ {
		size := 1 + rng.IntN(DefaultMaxMessage)
		if i < 2 {
			size = []int{1, DefaultMaxMessage}[i]
		}
		p := make([]byte, size)
		for j := range p {
			p[j] = byte(rng.UintN(256))
		}
		if size > 2 {
			p[0], p[1] = 0, '\n' // the bytes other framings refuse
		}
		sent = append(sent, p)
	}
	go func() {
		for i, p := range sent {
			for {
				st := srv.Send(c.id, p)
				if st == Queued {
					break
				}
				if st != Overloaded {
					t.Errorf("Send %d: %v", i, st)
					return
				}
				time.Sleep(time.Millisecond)
			}
		}
	}()
	for i, want := range sent {
		got, err := c.next(10 * time.Second)
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("frame %d: got %d bytes, want %d bytes (first difference at %d)", i, len(got), len(want), firstDiff(got, want))
		}
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

func TestPushStatuses(t *testing.T) {
	srv := startServer(t, Config{Framing: FramingLine, MaxMessage: 100})
	c := dial(t, srv)
	cases := []struct {
		name    string
		id      string
		payload string
		want    Status
	}{
		{"ok", c.id, "hello", Queued},
		{"unknown id", "AAAAAAAAAAAAAAAAAAAAAA", "hello", UnknownID},
		{"not an id at all", "", "hello", UnknownID},
		{"too large", c.id, strings.Repeat("x", 101), TooLarge},
		{"largest allowed", c.id, strings.Repeat("x", 100), Queued},
		{"newline under line framing", c.id, "a\nb", BadPayload},
		{"nul under line framing", c.id, "a\x00b", BadPayload},
		{"empty: a heartbeat to the client", c.id, "", BadPayload},
	}
	for _, tc := range cases {
		if got := srv.Send(tc.id, []byte(tc.payload)); got != tc.want {
			t.Errorf("%s: Send = %v, want %v", tc.name, got, tc.want)
		}
	}
	c.expect("hello")
	c.expect(strings.Repeat("x", 100))
	c.expectSilence(50 * time.Millisecond)
	if err := srv.CheckPayload([]byte("a\nb")); err == nil || !strings.Contains(err.Error(), "offset 1") {
		t.Errorf("CheckPayload error %v does not say where the newline is", err)
	}
	counts, st := srv.SendMany([]string{c.id, "nope-nope-nope-nope-nope", c.id}, []byte("many"))
	if st != Queued || counts.Queued != 2 || counts.UnknownID != 1 {
		t.Errorf("SendMany = %+v, %v; want 2 queued, 1 unknown", counts, st)
	}
	c.expect("many")
	c.expect("many")
}

func TestNulFramingRefusesNulByte(t *testing.T) {
	srv := startServer(t, Config{})
	c := dial(t, srv)
	if got := srv.Send(c.id, []byte("a\x00b")); got != BadPayload {
		t.Fatalf("Send with 0x00 under nul framing = %v, want %v", got, BadPayload)
	}
	if got := srv.Send(c.id, []byte("line\nbreaks are fine")); got != Queued {
		t.Fatalf("Send = %v", got)
	}
	c.expect("line\nbreaks are fine")
}

func TestBroadcastReachesEveryClient(t *testing.T) {
	srv := startServer(t, Config{})
	var clients []*client
	for i := 0; i < 200; i++ {
		clients = append(clients, dial(t, srv))
	}
	counts, st := srv.Broadcast([]byte("to everyone"))
	if st != Queued || counts.Queued != 200 {
		t.Fatalf("Broadcast = %+v, %v; want 200 queued", counts, st)
	}
	for _, c := range clients {
		c.expect("to everyone")
	}
}

func TestFloodingClientIsDisconnected(t *testing.T) {
	srv := startServer(t, Config{MaxInbound: 4096})
	flooder, calm := dial(t, srv), dial(t, srv)
	// Flood well past the limit; the relay must neither buffer nor parse it.
	junk := bytes.Repeat([]byte("<policy-file-request/>\x00"), 1000)
	flooder.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, _ = flooder.conn.Write(junk) // may fail with RST once closed
	flooder.expectClosed(5 * time.Second)
	waitFor(t, 5*time.Second, "flooder gone", func() bool { return !srv.Connected(flooder.id) })
	if got := srv.Stats().Closed[ReasonInbound]; got != 1 {
		t.Fatalf("Closed[inbound_limit] = %d, want 1", got)
	}
	if srv.Send(calm.id, []byte("still here")) != Queued {
		t.Fatal("Send to the calm client failed")
	}
	calm.expect("still here")
	if got := srv.Stats().InboundBytes; got <= 4096 {
		t.Fatalf("InboundBytes = %d, want more than the 4096 limit", got)
	}
}

func TestAnyInboundByteClosesWhenLimitIsOff(t *testing.T) {
	srv := startServer(t, Config{MaxInbound: Off})
	c := dial(t, srv)
	c.conn.Write([]byte{'x'})
	c.expectClosed(5 * time.Second)
	waitFor(t, 5*time.Second, "close counted", func() bool { return srv.Stats().Closed[ReasonInbound] == 1 })
}

// slowPair starts a relay with a small outbound cap, a healthy client that
// reads everything, and a frozen client with a tiny receive buffer that
// never reads, then pushes n messages of size bytes to both. The pushes go
// at the healthy client's pace (each waits for the previous to arrive), as
// a live app's would, so only the frozen client falls behind.
func slowPair(t *testing.T, policy SlowPolicy, n, size int) (srv *Server, healthy, frozen *client) {
	srv = startServer(t, Config{Framing: FramingLen32, MaxMessage: 16 << 10, MaxOutbound: 64 << 10, Slow: policy})
	healthy = dial(t, srv)
	frozen = dial(t, srv, dialOpts{rcvbuf: 4096})
	payload := bytes.Repeat([]byte{'s'}, size)
	for i := 0; i < n; i++ {
		payload[0], payload[1] = byte(i>>8), byte(i) // a sequence number past 255
		if st := srv.Send(healthy.id, payload); st != Queued {
			t.Fatalf("Send to healthy client %d: %v", i, st)
		}
		srv.Send(frozen.id, payload) // any status: queued, dropped or unknown once closed
		got, err := healthy.next(10 * time.Second)
		if err != nil {
			t.Fatalf("healthy client, frame %d: %v", i, err)
		}
		if len(got) != size || seqOf(got) != i {
			t.Fatalf("healthy client, frame %d: got %d bytes numbered %d, want %d numbered %d", i, len(got), seqOf(got), size, i)
		}
	}
	return srv, healthy, frozen
}

// seqOf reads slowPair's frame number.
func seqOf(frame []byte) int { return int(frame[0])<<8 | int(frame[1]) }

func TestFrozenReaderIsClosedWhileHealthyReaderGetsEverything(t *testing.T) {
	srv, _, frozen := slowPair(t, SlowClose, 500, 8<<10)
	waitFor(t, 5*time.Second, "frozen client closed", func() bool { return !srv.Connected(frozen.id) })
	st := srv.Stats()
	if st.Closed[ReasonSlow] != 1 {
		t.Fatalf("Closed[slow_consumer] = %d, want 1", st.Closed[ReasonSlow])
	}
	if st.Drops[DropSlow] == 0 {
		t.Fatalf("no slow drops counted: %+v", st.Drops)
	}
	// The relay reset it: reading gives what the kernel had, then an error.
	frozen.expectClosed(5 * time.Second)
}

func TestFrozenReaderLosesOnlyItsOwnMessagesUnderDrop(t *testing.T) {
	srv, healthy, frozen := slowPair(t, SlowDrop, 500, 8<<10)
	if !srv.Connected(frozen.id) {
		t.Fatal("frozen client was disconnected under --slow=drop")
	}
	st := srv.Stats()
	if st.Drops[DropSlow] == 0 || st.Closed[ReasonSlow] != 0 {
		t.Fatalf("want slow drops and no slow closes, got drops %v closes %v", st.Drops, st.Closed)
	}
	if got := srv.Send(frozen.id, []byte("x")); got != DroppedSlow {
		t.Fatalf("Send to a congested client = %v, want %v", got, DroppedSlow)
	}
	// Once it reads again, what it gets is an in-order prefix-free subset:
	// frame numbers strictly increase, nothing is corrupted.
	last := -1
	for {
		got, err := frozen.next(300 * time.Millisecond)
		if err != nil {
			if !isTimeout(err) {
				t.Fatalf("frozen client: %v", err)
			}
			break
		}
		if len(got) != 8<<10 {
			t.Fatalf("frozen client got a %d-byte frame, want %d", len(got), 8<<10)
		}
		// Numbered past 255: a one-byte number wraps, and frames from
		// both sides of the wrap can arrive when congestion clears in
		// between.
		if n := seqOf(got); n <= last {
			t.Fatalf("frozen client: frame %d after %d", n, last)
		}
		last = seqOf(got)
	}
	// After draining, the congestion mark clears and pushes flow again.
	waitFor(t, 5*time.Second, "congestion cleared", func() bool { return srv.Send(frozen.id, []byte("back")) == Queued })
	got, err := frozen.next(5 * time.Second)
	for err == nil && string(got) != "back" {
		got, err = frozen.next(5 * time.Second)
	}
	if err != nil {
		t.Fatalf("frozen client never got the message after catching up: %v", err)
	}
	healthy.expectSilence(50 * time.Millisecond)
}

func TestKickWritesWhatWasQueuedThenCloses(t *testing.T) {
	srv := startServer(t, Config{})
	c := dial(t, srv)
	srv.Send(c.id, []byte("last words"))
	if st := srv.Kick(c.id); st != Queued {
		t.Fatalf("Kick = %v", st)
	}
	c.expect("last words")
	if _, err := c.next(5 * time.Second); err != io.EOF {
		t.Fatalf("after kick: %v, want EOF", err)
	}
	waitFor(t, 5*time.Second, "kick counted", func() bool { return srv.Stats().Closed[ReasonKicked] == 1 })
	if srv.Kick(c.id) != UnknownID {
		t.Fatal("second kick of a closed ID did not say unknown")
	}
}

func TestMaxConnsRefusesNewcomersAndKeepsServing(t *testing.T) {
	srv := startServer(t, Config{MaxConns: 5})
	var held []*client
	for i := 0; i < 5; i++ {
		held = append(held, dial(t, srv))
	}
	for i := 0; i < 3; i++ {
		extra := dialRaw(t, srv.Addr().String(), FramingNUL)
		if got, err := extra.next(5 * time.Second); err == nil {
			t.Fatalf("connection over max-conns got a frame %q", got)
		} else if isTimeout(err) {
			t.Fatal("connection over max-conns was left open")
		}
	}
	if got := srv.Stats().Rejected[RejectFull]; got != 3 {
		t.Fatalf("Rejected[max_conns] = %d, want 3", got)
	}
	for _, c := range held {
		srv.Send(c.id, []byte("still served"))
		c.expect("still served")
	}
	// A slot freed is a slot reusable.
	held[0].conn.Close()
	waitFor(t, 5*time.Second, "slot freed", func() bool { return srv.Len() == 4 })
	dial(t, srv)
}

func TestChurnLeavesNothingBehind(t *testing.T) {
	srv := startServer(t, Config{})
	// Warm up so lazily started runtime goroutines are counted in the base.
	dial(t, srv).conn.Close()
	waitFor(t, 5*time.Second, "warm-up closed", func() bool { return srv.Len() == 0 })
	base := runtime.NumGoroutine()

	const cycles, batch = 10000, 500
	addr := srv.Addr().String()
	for done := 0; done < cycles; done += batch {
		var wg sync.WaitGroup
		errs := make(chan error, batch)
		for i := 0; i < batch; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
				if err != nil {
					errs <- err
					return
				}
				tc := nc.(*net.TCPConn)
				fr := NewFrameReader(tc, FramingNUL, 0)
				tc.SetReadDeadline(time.Now().Add(5 * time.Second))
				if _, err := fr.Next(); err != nil {
					errs <- fmt.Errorf("read ID: %w", err)
				}
				tc.SetLinger(0) // RST: no TIME_WAIT pile-up on the client side
				tc.Close()
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
	}
	waitFor(t, 10*time.Second, "all sessions closed", func() bool { return srv.Len() == 0 })
	if n := srv.reg.len(); n != 0 {
		t.Fatalf("registry still holds %d sessions", n)
	}
	total := 0
	for _, l := range *srv.loops.Load() {
		total += int(l.count.Load())
	}
	if total != 0 {
		t.Fatalf("loops still count %d sessions", total)
	}
	st := srv.Stats()
	if st.Accepted != cycles+1 {
		t.Fatalf("Accepted = %d, want %d", st.Accepted, cycles+1)
	}
	var closed uint64
	for _, n := range st.Closed {
		closed += n
	}
	if closed != cycles+1 {
		t.Fatalf("closed %d, want %d (by reason: %v)", closed, cycles+1, st.Closed)
	}
	waitFor(t, 10*time.Second, "goroutines back to base", func() bool { return runtime.NumGoroutine() <= base+2 })
}

func TestHeartbeatsAreEmptyFrames(t *testing.T) {
	for _, f := range allFramings {
		t.Run(f.String(), func(t *testing.T) {
			srv := startServer(t, Config{Framing: f, Heartbeat: 40 * time.Millisecond})
			c := dial(t, srv)
			for i := 0; i < 3; i++ {
				c.expect("")
			}
			waitFor(t, 5*time.Second, "3 heartbeats counted", func() bool { return srv.Stats().Heartbeats >= 3 })
			if got := srv.Stats().MessagesWritten; got != 0 {
				t.Fatalf("heartbeats counted as %d messages", got)
			}
		})
	}
}

func TestSocketOptionsForDeadPeers(t *testing.T) {
	srv := startServer(t, Config{WriteTimeout: 7 * time.Second, KeepAlive: 9 * time.Second, SendBuffer: 24 << 10})
	c := dial(t, srv)
	sess := srv.reg.get(c.id)
	fd := sess.conn.Fd()
	// TCP_USER_TIMEOUT is set before the first write after the ID.
	if ut, _ := unix.GetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT); ut != 0 {
		t.Fatalf("TCP_USER_TIMEOUT = %d before any message, want 0 (set lazily)", ut)
	}
	srv.Send(c.id, []byte("first"))
	c.expect("first")
	ut, err := unix.GetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT)
	if err != nil || ut != 7000 {
		t.Fatalf("TCP_USER_TIMEOUT = %d (%v) after a message, want 7000 ms", ut, err)
	}
	if sb, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF); err != nil || sb != 2*24<<10 {
		t.Fatalf("SO_SNDBUF = %d (%v), want %d (the kernel doubles what is set)", sb, err, 2*24<<10)
	}
	ka, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_KEEPALIVE)
	if err != nil || ka != 1 {
		t.Fatalf("SO_KEEPALIVE = %d (%v), want 1", ka, err)
	}
	idle, err := unix.GetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_KEEPIDLE)
	if err != nil || idle != 9 {
		t.Fatalf("TCP_KEEPIDLE = %d (%v), want 9", idle, err)
	}
}

func TestShutdownWritesWhatIsQueued(t *testing.T) {
	srv := startServer(t, Config{Framing: FramingLen32, DrainTimeout: 10 * time.Second})
	// A client whose receive buffer is small, so most of the queue is still
	// in the relay when shutdown starts.
	c := dial(t, srv, dialOpts{rcvbuf: 8192})
	const n = 40
	payload := bytes.Repeat([]byte{'q'}, 4<<10)
	for i := 0; i < n; i++ {
		payload[0] = byte(i)
		if st := srv.Send(c.id, payload); st != Queued {
			t.Fatalf("Send %d: %v", i, st)
		}
	}
	stopped := make(chan error, 1)
	go func() { stopped <- srv.Shutdown(t.Context()) }()
	waitFor(t, 5*time.Second, "pushes refused", func() bool { return srv.Send("no-such-client-no-such", nil) == Closed })
	if st := srv.Send(c.id, payload); st != Closed {
		t.Fatalf("Send during shutdown = %v, want %v", st, Closed)
	}
	time.Sleep(100 * time.Millisecond) // the relay is now waiting on this reader
	for i := 0; i < n; i++ {
		got, err := c.next(5 * time.Second)
		if err != nil {
			t.Fatalf("frame %d of %d: %v", i, n, err)
		}
		if got[0] != byte(i) {
			t.Fatalf("frame %d carries %d", i, got[0])
		}
	}
	if _, err := c.next(5 * time.Second); err != io.EOF {
		t.Fatalf("after the queue: %v, want EOF", err)
	}
	if err := <-stopped; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if got := srv.Stats().Closed[ReasonShutdown]; got != 1 {
		t.Fatalf("Closed[shutdown] = %d, want 1", got)
	}
	// New connections are not served any more.
	if nc, err := net.DialTimeout("tcp", srv.Addr().String(), time.Second); err == nil {
		nc.SetReadDeadline(time.Now().Add(2 * time.Second))
		if n, _ := nc.Read(make([]byte, 64)); n > 0 {
			t.Fatal("a connection after shutdown got bytes")
		}
		nc.Close()
	}
}

func TestSecondRelayOnTheSamePortIsRefused(t *testing.T) {
	srv := startServer(t, Config{})
	other, err := New(Config{Listen: srv.Addr().String(), Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	err = other.Start()
	if err == nil {
		other.Shutdown(t.Context())
		t.Fatal("a second relay started on a port in use")
	}
	if !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("error %q does not say the address is in use", err)
	}
}

func TestConfigErrorsAreClear(t *testing.T) {
	cases := []struct {
		cfg  Config
		want string
	}{
		{Config{Listen: "nohostport"}, "listen address"},
		{Config{MaxMessage: MaxMessageLimit + 1}, "max-message"},
		{Config{MaxOutbound: 100}, "smaller than one frame"},
		{Config{MaxConns: 1 << 30}, "open-file limit"},
		{Config{KeepAlive: 500 * time.Millisecond}, "whole seconds"},
		{Config{Loops: -1}, "loops"},
	}
	for _, tc := range cases {
		_, err := New(tc.cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%+v) error = %v, want one mentioning %q", tc.cfg, err, tc.want)
		}
	}
}

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("cannot count descriptors: %v", err)
	}
	return len(ents)
}

func TestShutdownReleasesEveryDescriptor(t *testing.T) {
	before := openFDs(t)
	srv, err := New(Config{Listen: "127.0.0.1:0", Logger: testLogger(), FlashPolicyListen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	for i := 0; i < 20; i++ { // enough to wake every loop
		c := dial(t, srv)
		conns = append(conns, c.conn)
	}
	if err := srv.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, c := range conns {
		c.Close()
	}
	waitFor(t, 5*time.Second, "descriptors released", func() bool { return openFDs(t) <= before })
	if st := srv.Send("AAAAAAAAAAAAAAAAAAAAAA", []byte("x")); st != Closed {
		t.Fatalf("Send after shutdown = %v, want %v", st, Closed)
	}
}

// TestMaxConnsHoldsUnderConcurrentAccepts: both loops admit at once; the
// limit is never passed (it was, by one, when the check and the count
// were two steps).
func TestMaxConnsHoldsUnderConcurrentAccepts(t *testing.T) {
	for round := 0; round < 3; round++ {
		srv := startServer(t, Config{MaxConns: 50})
		const n = 400
		var wg sync.WaitGroup
		conns := make(chan net.Conn, n)
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if nc, err := net.DialTimeout("tcp", srv.Addr().String(), 5*time.Second); err == nil {
					conns <- nc
				}
			}()
		}
		wg.Wait()
		close(conns)
		defer func() {
			for nc := range conns {
				nc.Close()
			}
		}()
		waitFor(t, 10*time.Second, "every connect admitted or refused", func() bool {
			st := srv.Stats()
			return st.Accepted+st.Rejected[RejectFull] == n
		})
		if got, st := srv.Len(), srv.Stats(); got != 50 || st.Accepted != 50 || st.Rejected[RejectFull] != n-50 {
			t.Fatalf("round %d: %d held, %d accepted, %d refused; want 50, 50, %d", round, got, st.Accepted, st.Rejected[RejectFull], n-50)
		}
	}
}
