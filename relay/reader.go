package relay

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// ErrFrameTooLarge is returned by FrameReader for a frame above its limit.
var ErrFrameTooLarge = errors.New("frame exceeds the reader's limit")

// FrameReader reads frames written by the relay: the client side of the
// framing, for tests, the load generator and Go clients. Not safe for
// concurrent use.
type FrameReader struct {
	r       *bufio.Reader
	framing Framing
	max     int
	buf     []byte
	hdr     [len32Header]byte // a field, not a local: a local escapes through io.ReadFull
}

// NewFrameReader reads frames in framing from r, refusing payloads above
// max bytes (0 means MaxMessageLimit).
func NewFrameReader(r io.Reader, framing Framing, max int) *FrameReader {
	if max <= 0 {
		max = MaxMessageLimit
	}
	return &FrameReader{r: bufio.NewReaderSize(r, 16<<10), framing: framing, max: max}
}

// Next returns the next frame's payload. The slice is valid until the next
// call. At a clean end between frames it returns io.EOF; a stream that ends
// inside a frame gives io.ErrUnexpectedEOF.
func (fr *FrameReader) Next() ([]byte, error) {
	switch fr.framing {
	case FramingLen32:
		if _, err := io.ReadFull(fr.r, fr.hdr[:]); err != nil {
			return nil, err
		}
		n := binary.BigEndian.Uint32(fr.hdr[:])
		if uint64(n) > uint64(fr.max) {
			return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrFrameTooLarge, n, fr.max)
		}
		if cap(fr.buf) < int(n) {
			fr.buf = make([]byte, n)
		}
		fr.buf = fr.buf[:n]
		if _, err := io.ReadFull(fr.r, fr.buf); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		return fr.buf, nil
	default:
		delim := byte(0)
		if fr.framing == FramingLine {
			delim = '\n'
		}
		fr.buf = fr.buf[:0]
		for {
			chunk, err := fr.r.ReadSlice(delim)
			if len(fr.buf)+len(chunk) > fr.max+1 {
				return nil, fmt.Errorf("%w: more than %d bytes without a delimiter", ErrFrameTooLarge, fr.max)
			}
			fr.buf = append(fr.buf, chunk...)
			switch {
			case err == nil:
				return fr.buf[:len(fr.buf)-1], nil
			case errors.Is(err, bufio.ErrBufferFull):
				continue
			case err == io.EOF && len(fr.buf) > 0:
				return nil, io.ErrUnexpectedEOF
			default:
				return nil, err
			}
		}
	}
}
