package relay

import (
	"math/bits"
	"sync"
	"sync/atomic"
)

// Frame is one message encoded in a listener's framing, shared read-only by
// every recipient. Its bytes come from a size-classed pool and go back there
// when the last event loop holding it is done: gnet copies whatever a write
// leaves unsent into its own buffer, so a frame never outlives the mailbox pass that
// wrote it.
type Frame struct {
	b     []byte       // the encoded frame (raw listener); fixed once published
	refs  atomic.Int32 // holders: one per mailbox item that points here
	class int8         // pool size class; -1 for static frames, never pooled

	// The browser transports' encodings of the same message (transport.go),
	// made by the producer when it knows they may be needed. ws and sse
	// share b's buffer, after b; wsz, the compressed WebSocket frame, lives
	// in ext. A nil encoding is one this message does not have: sse for a
	// payload that is not UTF-8, wsz below the compression threshold.
	ws, wsz, sse []byte
	ext          *Frame
}

const (
	minFrameClass = 6  // 64 bytes
	maxFrameClass = 25 // 32 MiB, room for MaxMessageLimit plus a header
)

var framePools [maxFrameClass + 1]sync.Pool

// getFrame returns a frame whose buffer holds at least n bytes, with one
// reference. Safe for concurrent use.
func getFrame(n int) *Frame {
	class := minFrameClass
	if n > 1 {
		class = bits.Len(uint(n - 1))
	}
	if class < minFrameClass {
		class = minFrameClass
	}
	if class > maxFrameClass {
		// Larger than any configurable message: allocate, never pool.
		f := &Frame{b: make([]byte, 0, n), class: -1}
		f.refs.Store(1)
		return f
	}
	f, _ := framePools[class].Get().(*Frame)
	if f == nil {
		f = &Frame{b: make([]byte, 0, 1<<class), class: int8(class)}
	}
	f.b = f.b[:0]
	f.refs.Store(1)
	return f
}

// encodeFrame frames payload once into a pooled frame with one reference.
func encodeFrame(framing Framing, payload []byte) *Frame {
	f := getFrame(len(payload) + framing.Overhead())
	f.b = framing.AppendFrame(f.b, payload)
	return f
}

// staticFrame returns a frame that is never released to the pool (the
// heartbeat): its reference count is ignored.
func staticFrame(b []byte) *Frame {
	return &Frame{b: b, class: -1}
}

// size is the bytes the frame holds in all its encodings: what a mailbox
// item pointing at it keeps in memory.
func (f *Frame) size() int { return len(f.b) + len(f.ws) + len(f.wsz) + len(f.sse) }

// Bytes returns the encoded frame. The caller must not modify it.
func (f *Frame) Bytes() []byte { return f.b }

// retain adds n references.
func (f *Frame) retain(n int32) {
	if f.class >= 0 {
		f.refs.Add(n)
	}
}

// release drops one reference and returns the buffer to its pool with the
// last one. Safe for concurrent use.
func (f *Frame) release() {
	if f.class < 0 {
		return
	}
	switch r := f.refs.Add(-1); {
	case r == 0:
		if f.ext != nil {
			f.ext.release()
		}
		f.ws, f.wsz, f.sse, f.ext = nil, nil, nil, nil
		framePools[f.class].Put(f)
	case r < 0:
		panic("relay: frame released more often than retained")
	}
}
