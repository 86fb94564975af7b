package ingress

import (
	"errors"
	"io"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/pushrelay/pushrelay/ingress/wire"
	"github.com/pushrelay/pushrelay/relay"
)

// heapInUse is the live heap after a collection.
func heapInUse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// A client that pipelines requests in writes ending part-way through a
// frame (any fixed-size buffered writer does) and never reads its replies:
// the relay must stop reading once replies pile up, so the client's writes
// block and the relay's memory stays flat, rather than reading on and
// queueing replies without bound.
func TestUnreadRepliesStopTheRelayReading(t *testing.T) {
	e := newEnv(t, relay.Config{}, Config{})
	r := e.raw()

	const (
		frameLen = 100      // a ping with a 90-byte body; its reply is as long
		total    = 16 << 20 // the most this test writes
		chunk    = 4093     // writes that end inside a frame
		maxHeap  = 8 << 20  // what the relay may grow by
	)
	one := frame(wire.OpPing, 0, 1, make([]byte, frameLen-wire.HeaderLen))
	buf := make([]byte, 0, total)
	for len(buf)+frameLen <= total {
		buf = append(buf, one...)
	}
	before := heapInUse()

	// Every write ends one byte into a frame, so the relay never finds
	// its read buffer empty after a request.
	written, blocked := 0, false
	for written < len(buf) {
		end := min(written+chunk, len(buf))
		if written == 0 {
			end++
		}
		r.nc.SetWriteDeadline(time.Now().Add(time.Second))
		n, err := r.nc.Write(buf[written:end])
		written += n
		if errors.Is(err, os.ErrDeadlineExceeded) {
			blocked = true
			break
		}
		if err != nil {
			t.Fatalf("write after %d bytes: %v", written, err)
		}
	}
	grew := int64(heapInUse()) - int64(before)
	runtime.KeepAlive(buf)
	t.Logf("wrote %d bytes before blocking (%v); the heap grew %d bytes", written, blocked, grew)
	if !blocked {
		t.Errorf("the client wrote all %d bytes without its write blocking; want the relay to stop reading while replies wait", written)
	}
	if grew > maxHeap {
		t.Errorf("the heap grew by %d bytes while the client did not read; want at most %d", grew, maxHeap)
	}

	// Other connections are served meanwhile.
	other := e.raw()
	other.write(frame(wire.OpPing, 0, 9, []byte("hi")))
	if h, body, err := other.read(); err != nil || h.Request != 9 || string(body) != "hi" {
		t.Fatalf("another connection's ping: %+v %q %v", h, body, err)
	}
	// The stuck client gets its replies, in order, once it reads.
	r.nc.SetWriteDeadline(time.Time{})
	for i := 0; i < 1000; i++ {
		h, body, err := r.read()
		if err != nil || h.Request != 1 || len(body) != frameLen-wire.HeaderLen {
			t.Fatalf("reply %d once the client reads: %+v, %d bytes, %v", i, h, len(body), err)
		}
	}
}

// A frame that stays partial gets an error reply and the connection closes
// once the frame timeout passes, freeing its slot; a connection idle
// between frames stays, and a frame written in pieces within the timeout
// is served.
func TestPartialFrameTimesOut(t *testing.T) {
	const timeout = 300 * time.Millisecond
	e := newEnv(t, relay.Config{}, Config{MaxConns: 2, FrameTimeout: timeout})
	idle := e.raw()
	partial := e.raw()

	// Within the timeout, a frame may come in pieces.
	ping := frame(wire.OpPing, 0, 1, []byte("pieces"))
	partial.write(ping[:3])
	time.Sleep(timeout / 3)
	partial.write(ping[3:12])
	time.Sleep(timeout / 3)
	partial.write(ping[12:])
	if h, body, err := partial.read(); err != nil || h.Request != 1 || string(body) != "pieces" {
		t.Fatalf("a frame in pieces within the timeout: %+v %q %v", h, body, err)
	}

	// Then a frame that never completes.
	start := time.Now()
	partial.write(frame(wire.OpPing, 0, 2, []byte("never finished"))[:7])
	h, body, err := partial.read()
	if err != nil || h.Request != 0 || wire.Status(h.Flags) != wire.StatusBadRequest {
		t.Fatalf("a partial frame after %v: %+v %q %v; want an error reply with request 0, bad_request", time.Since(start), h, body, err)
	}
	rd := wire.NewReader(body)
	if msg := string(rd.Str16("msg")); !strings.Contains(msg, "not completed within 300ms") || !strings.Contains(msg, "--ingress-frame-timeout") {
		t.Errorf("message %q; want it to name the timeout and its flag", msg)
	}
	if _, _, err := partial.read(); err != io.EOF {
		t.Fatalf("after the error reply: %v; want the connection closed (EOF)", err)
	}
	partial.nc.Close()
	if got := e.unix.Counters().FrameTimeouts.Load(); got != 1 {
		t.Errorf("frame timeouts counted %d, want 1", got)
	}

	// The idle connection outlived the timeout several times over.
	time.Sleep(2 * timeout)
	idle.write(frame(wire.OpPing, 0, 3, []byte("idle")))
	if h, body, err := idle.read(); err != nil || h.Request != 3 || string(body) != "idle" {
		t.Fatalf("a connection idle between frames: %+v %q %v", h, body, err)
	}

	// The timed-out connection's slot is free again.
	for end := time.Now().Add(3 * time.Second); e.unix.Counters().Conns.Load() != 1; {
		if time.Now().After(end) {
			t.Fatalf("%d ingress connections open; want 1 once the partial one is closed", e.unix.Counters().Conns.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
	third := e.raw()
	third.write(frame(wire.OpPing, 0, 4, nil))
	if h, _, err := third.read(); err != nil || h.Request != 4 || wire.Status(h.Flags) != wire.StatusOK {
		t.Fatalf("a new connection in the freed slot: %+v %v", h, err)
	}
}
