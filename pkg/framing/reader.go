package framing

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// ErrTooLarge is returned by Reader and Cut for a frame above their limit.
var ErrTooLarge = errors.New("frame exceeds the reader's limit")

// Reader reads frames written by the relay: the client side of the
// framing, for tests, the load generator and Go clients. Not safe for
// concurrent use.
type Reader struct {
	r       *bufio.Reader
	framing Framing
	max     int
	buf     []byte
	hdr     [Len32Header]byte // a field, not a local: a local escapes through io.ReadFull
}

// NewReader reads frames in framing from r, refusing payloads above max
// bytes (0 means MaxPayload).
func NewReader(r io.Reader, framing Framing, max int) *Reader {
	if max <= 0 {
		max = MaxPayload
	}
	return &Reader{r: bufio.NewReaderSize(r, 16<<10), framing: framing, max: max}
}

// Next returns the next frame's payload. The slice is valid until the next
// call. At a clean end between frames it returns io.EOF; a stream that ends
// inside a frame gives io.ErrUnexpectedEOF.
func (fr *Reader) Next() ([]byte, error) {
	switch fr.framing {
	case Len32:
		if _, err := io.ReadFull(fr.r, fr.hdr[:]); err != nil {
			return nil, err
		}
		n := binary.BigEndian.Uint32(fr.hdr[:])
		if uint64(n) > uint64(fr.max) {
			return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, n, fr.max)
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
		delim := fr.framing.delim()
		fr.buf = fr.buf[:0]
		for {
			chunk, err := fr.r.ReadSlice(delim)
			if len(fr.buf)+len(chunk) > fr.max+1 {
				return nil, fmt.Errorf("%w: more than %d bytes without a delimiter", ErrTooLarge, fr.max)
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

// Cut splits the first whole frame off data, for a reader that gathers a
// connection's bytes itself (the load generator's epoll loop). ok is false
// while data holds no whole frame yet: keep rest (data itself) and append
// what arrives next. A frame whose length header claims more than max
// bytes, or more than max bytes without a delimiter, is an error wrapping
// ErrTooLarge. payload and rest alias data.
func (f Framing) Cut(data []byte, max int) (payload, rest []byte, ok bool, err error) {
	if f == Len32 {
		if len(data) < Len32Header {
			return nil, data, false, nil
		}
		n := binary.BigEndian.Uint32(data)
		if uint64(n) > uint64(max) {
			return nil, nil, false, fmt.Errorf("%w: len32 header says %d bytes, limit %d", ErrTooLarge, n, max)
		}
		if uint64(len(data)-Len32Header) < uint64(n) {
			return nil, data, false, nil
		}
		return data[Len32Header : Len32Header+n], data[Len32Header+n:], true, nil
	}
	i := bytes.IndexByte(data, f.delim())
	if i < 0 {
		if len(data) > max {
			return nil, nil, false, fmt.Errorf("%w: %d bytes without a delimiter", ErrTooLarge, len(data))
		}
		return nil, data, false, nil
	}
	return data[:i], data[i+1:], true, nil
}

// delim is the byte that ends a frame in nul and line framing.
func (f Framing) delim() byte {
	if f == Line {
		return '\n'
	}
	return 0
}
