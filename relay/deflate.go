package relay

import (
	"bytes"

	"github.com/klauspost/compress/flate"
)

// permessage-deflate (RFC 7692). The relay compresses a message once, when
// it is pushed, and the same compressed frame goes to every WebSocket that
// negotiated the extension. That only works without context takeover: each
// message is compressed from an empty window, which the relay announces as
// server_no_context_takeover. klauspost/compress is used over
// compress/flate for speed at the same output format.

// DeflateLevel is the compression level of WebSocket messages: one
// compression serves every recipient, so a better ratio is worth more than
// the few microseconds it costs.
const DeflateLevel = 6

// DefaultWebCompressMin is the smallest payload compressed by default:
// below it, the header and block overhead eat the gain.
const DefaultWebCompressMin = 256

// deflater is a flate writer and the sink it writes to, pooled together:
// the writer holds about 1 MiB of tables, and a sink made per message
// would escape to the heap through the io.Writer interface.
type deflater struct {
	fw  *flate.Writer
	out sliceWriter
}

// deflaters is a bounded free list, not a sync.Pool: a pool is emptied by
// every other GC, and remaking a writer allocates its megabyte of tables
// again, which brings the next GC sooner. Producers compressing at once
// beyond its size make (and drop) writers of their own.
var deflaters = make(chan *deflater, 4)

func getDeflater() *deflater {
	select {
	case d := <-deflaters:
		return d
	default:
		d := &deflater{}
		d.fw, _ = flate.NewWriter(&d.out, DeflateLevel) // the level is valid
		return d
	}
}

func putDeflater(d *deflater) {
	d.out.b = nil // the buffer belongs to a frame now
	select {
	case deflaters <- d:
	default:
	}
}

// sliceWriter is an io.Writer appending to a byte slice.
type sliceWriter struct{ b []byte }

func (w *sliceWriter) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	return len(p), nil
}

// deflateTail is the empty stored block a sync flush ends with; RFC 7692
// section 7.2.1 has the sender remove it and the receiver add it back.
var deflateTail = []byte{0, 0, 0xff, 0xff}

// deflate compresses payload into a WebSocket frame with RSV1 set. It
// returns the pooled frame holding it and the frame's bytes, or nils when
// compression does not make the message smaller.
func (s *Server) deflate(payload []byte, text bool) (*Frame, []byte) {
	d := getDeflater()
	defer putDeflater(d)
	// Leave room for the header in front: compress after a gap of the
	// largest header, then write the header just before the data.
	hdr := wsHeaderLen(len(payload))
	ext := getFrame(hdr + len(payload) + 16)
	d.out.b = ext.b[:10]
	d.fw.Reset(&d.out)
	_, _ = d.fw.Write(payload) // a sliceWriter never fails
	_ = d.fw.Flush()
	out := &d.out
	z := bytes.TrimSuffix(out.b[10:], deflateTail)
	if len(z) == 0 || wsHeaderLen(len(z))+len(z) >= hdr+len(payload) {
		ext.b = out.b[:0]
		ext.release()
		return nil, nil
	}
	op := byte(wsOpBinary)
	if text {
		op = wsOpText
	}
	h := wsHeaderLen(len(z))
	start := 10 - h
	frame := out.b[start : 10+len(z)]
	putWSHeader(frame[:h], op, true, len(z))
	ext.b = out.b
	s.counters.compressed.Add(1)
	s.counters.compressedIn.Add(uint64(len(payload)))
	s.counters.compressedOut.Add(uint64(len(frame)))
	return ext, frame
}

// putWSHeader writes a frame header of exactly wsHeaderLen(n) bytes.
func putWSHeader(h []byte, op byte, compressed bool, n int) {
	b0 := wsFin | op
	if compressed {
		b0 |= wsRSV1
	}
	h[0] = b0
	switch {
	case n < 126:
		h[1] = byte(n)
	case n <= 0xFFFF:
		h[1] = 126
		h[2], h[3] = byte(n>>8), byte(n)
	default:
		h[1] = 127
		for i := 0; i < 8; i++ {
			h[2+i] = byte(uint64(n) >> (56 - 8*i))
		}
	}
}
