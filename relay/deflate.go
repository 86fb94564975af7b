package relay

import (
	"bytes"
	"sync"

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

// deflaters holds flate writers: each holds about 1 MiB of tables, so they
// are reused across messages and producers.
var deflaters = sync.Pool{New: func() any {
	w, _ := flate.NewWriter(nil, DeflateLevel) // the level is valid
	return w
}}

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
	fw := deflaters.Get().(*flate.Writer)
	defer deflaters.Put(fw)
	// Leave room for the header in front: compress after a gap of the
	// largest header, then move the header next to the data.
	hdr := wsHeaderLen(len(payload))
	ext := getFrame(hdr + len(payload) + 16)
	out := sliceWriter{b: ext.b[:10]}
	fw.Reset(&out)
	_, _ = fw.Write(payload) // a sliceWriter never fails
	_ = fw.Flush()
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
