package relay

import (
	"bytes"
	"os"
	"runtime"
	"runtime/pprof"
	"strings"
	"testing"
	"time"
)

// TestStalledClientMemoryWithinMaxOutbound checks the documented bound
// under --slow=drop: a client that never reads holds at most --max-outbound
// of the relay's memory, gnet's buffer included. Stalled clients with a
// tiny receive window sit beside a healthy reader; broadcasts fill the
// stalled clients' buffers to the cap; the heap in use, after the garbage
// collector has run, grows by at most MaxOutbound per stalled client over
// what the same clients cost idle, plus a little for the small structures
// that come with a full buffer (gnet's ring header, the relay's congested
// list entry) and the heap's page granularity spread over the clients.
//
// PUSHRELAY_HEAPPROFILE=file writes a heap profile of the filled state
// (go tool pprof -sample_index=inuse_space file shows who holds it).
func TestStalledClientMemoryWithinMaxOutbound(t *testing.T) {
	const (
		stalled = 64
		size    = 1000 // payload bytes per broadcast
		msgs    = 400  // 400 KB each, past the cap and the kernel's buffers
	)
	// A small SO_SNDBUF keeps the kernel's share small and fixed, so the
	// relay's buffer fills after a known amount.
	srv := startServer(t, Config{Framing: FramingLen32, Slow: SlowDrop, SendBuffer: 4096})
	maxOut := srv.cfg.MaxOutbound
	healthy := dial(t, srv)
	frozen := make([]*client, stalled)
	for i := range frozen {
		frozen[i] = dial(t, srv, dialOpts{rcvbuf: 4096})
	}
	before := heapInUse()

	payload := bytes.Repeat([]byte{'m'}, size)
	deadline := time.Now().Add(30 * time.Second)
	for i := 0; i < msgs; i++ {
		payload[0] = byte(i)
		for {
			_, st := srv.Broadcast(payload)
			if st == Queued {
				break
			}
			if st != Overloaded || time.Now().After(deadline) {
				t.Fatalf("broadcast %d: %v", i, st)
			}
			time.Sleep(time.Millisecond)
		}
		got, err := healthy.next(10 * time.Second)
		if err != nil || len(got) != size || got[0] != byte(i) {
			t.Fatalf("healthy client, broadcast %d: got %d bytes (%v), want %d", i, len(got), err, size)
		}
	}
	want := uint64(msgs * (stalled + 1))
	waitFor(t, 10*time.Second, "every broadcast written or dropped", func() bool {
		st := srv.Stats()
		return st.MessagesWritten+st.Drops[DropSlow] >= want
	})
	st := srv.Stats()
	if st.Drops[DropSlow] == 0 || st.Closed[ReasonSlow] != 0 || srv.Len() != stalled+1 {
		t.Fatalf("want slow drops, no slow closes and every client connected; got drops %d, closes %d, %d open",
			st.Drops[DropSlow], st.Closed[ReasonSlow], srv.Len())
	}
	after := heapInUse()
	if name := os.Getenv("PUSHRELAY_HEAPPROFILE"); name != "" {
		writeHeapProfile(t, name)
	}
	per := (int64(after) - int64(before)) / stalled
	t.Logf("heap in use: %d before, %d after the stall: %d bytes per stalled client (--max-outbound %d)", before, after, per, maxOut)
	const slack = 1 << 10
	if per > int64(maxOut)+slack {
		t.Errorf("a stalled client holds %d bytes of the relay's heap, want at most --max-outbound, %d, and %d bytes of slack", per, maxOut, slack)
	}
	// The stalled clients still hold their buffers: they must not have
	// been given back early, which would make the measurement meaningless.
	if per < int64(maxOut)/2 {
		t.Errorf("a stalled client holds only %d bytes: the buffers did not fill (want over %d)", per, maxOut/2)
	}
}

// heapInUse returns the bytes of heap spans in use once the garbage
// collector has run twice (the second empties sync.Pools' victim caches,
// where gnet keeps buffers it let go of).
func heapInUse() uint64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

func writeHeapProfile(t *testing.T, name string) {
	t.Helper()
	f, err := os.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		t.Fatal(err)
	}
}

func TestOutboundHold(t *testing.T) {
	for _, tt := range []struct{ maxOut, hold int }{
		{256 << 10, 209712}, // the default: 204.8 KiB, rounded down to a multiple of 4
		{300 << 10, 209712}, // the largest power of two within it is 256 KiB
		{512 << 10, 419428},
		{64 << 20, 53687088},
	} {
		if got := outboundHold(tt.maxOut); got != tt.hold {
			t.Errorf("outboundHold(%d): got %d, want %d", tt.maxOut, got, tt.hold)
		}
	}
	// Whatever gnet's ring is asked to hold up to the hold, it grows by a
	// quarter at most to reach it, and its array is the next power of two
	// of that: within --max-outbound.
	for _, maxOut := range []int{8 << 10, 100 << 10, 256 << 10, 1 << 20, 3 << 20} {
		h := outboundHold(maxOut)
		if grown := h + h/4; 1<<(bitsLen(grown-1)) > maxOut {
			t.Errorf("max-outbound %d: hold %d can grow gnet's ring to %d, in an array of %d", maxOut, h, grown, 1<<bitsLen(grown-1))
		}
	}
}

func bitsLen(n int) int {
	l := 0
	for ; n > 0; n >>= 1 {
		l++
	}
	return l
}

// TestMaxOutboundMustHoldOneFrame: --max-outbound too small for one frame
// once gnet's growth is allowed for is refused with the value that works.
func TestMaxOutboundMustHoldOneFrame(t *testing.T) {
	// 64 KiB keeps 52,428 bytes unsent: less than a 64 KiB message.
	_, err := New(Config{Listen: "127.0.0.1:0", MaxOutbound: 64 << 10, Logger: testLogger()})
	if err == nil || !strings.Contains(err.Error(), "raise --max-outbound to 131072") {
		t.Fatalf("New with max-outbound 64 KiB and 64 KiB messages: got %v, want an error naming 131072", err)
	}
	srv, err := New(Config{Listen: "127.0.0.1:0", MaxOutbound: 128 << 10, Logger: testLogger()})
	if err != nil {
		t.Fatalf("New with max-outbound 128 KiB: %v", err)
	}
	_ = srv
}

// TestSSEEventOverTheHoldIsDropped: an SSE event longer than a connection
// may hold unsent, but within --max-outbound, is dropped for SSE clients
// and counted, as one over --max-outbound is; it must not close them as
// slow (it never fits, whatever they read).
func TestSSEEventOverTheHoldIsDropped(t *testing.T) {
	srv := startWeb(t, Config{}) // 256 KiB outbound cap: 209,712 bytes held
	sse := dialSSE(t, srv)
	ws := dialWS(t, srv)
	payload := bytes.Repeat([]byte("\n"), 32000) // a 224 KB event
	if n := sseEventLen(payload); n <= outboundHold(srv.cfg.MaxOutbound) || n > srv.cfg.MaxOutbound {
		t.Fatalf("event of %d bytes: want one between the hold and --max-outbound", n)
	}
	if _, st := srv.Broadcast(payload); st != Queued {
		t.Fatalf("Broadcast: %v", st)
	}
	expectSSESkipped(t, srv, ws, sse, payload)
}
