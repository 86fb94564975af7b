// Package bin reads the big-endian fields of a binary message: one
// bounds-checked cursor for the ingress protocol (ingress/wire) and the
// cluster's envelopes (cluster), each of which words its own errors from
// what the cursor reports. It depends on the standard library only.
package bin

import "encoding/binary"

// Reader walks a message field by field. A read that does not fit fails
// the reader: the first failure sticks (Failure names its field and the
// bytes that were left), and every later read returns zero values and nil
// slices, so a decoder checks once at the end. Slices it returns alias the
// message. The zero Reader is an empty message.
type Reader struct {
	b      []byte
	what   string // the first field that did not fit
	left   int    // bytes left when it did not
	failed bool
}

// New reads b.
func New(b []byte) Reader { return Reader{b: b} }

// Fail fails the reader at the field what, unless it has failed already.
func (r *Reader) Fail(what string) {
	if !r.failed {
		r.failed, r.what, r.left = true, what, len(r.b)
	}
	r.b = nil
}

// Failed reports whether a read has failed.
func (r *Reader) Failed() bool { return r.failed }

// Failure returns the field of the first failed read and how many bytes
// were left then.
func (r *Reader) Failure() (what string, left int) { return r.what, r.left }

// Len returns how many bytes remain.
func (r *Reader) Len() int { return len(r.b) }

// Take returns the next n bytes, or nil if fewer remain.
func (r *Reader) Take(n int, what string) []byte {
	if len(r.b) < n || r.failed {
		r.Fail(what)
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

// U8 reads one byte.
func (r *Reader) U8(what string) uint8 {
	if b := r.Take(1, what); b != nil {
		return b[0]
	}
	return 0
}

// U16 reads a big-endian uint16.
func (r *Reader) U16(what string) uint16 {
	if b := r.Take(2, what); b != nil {
		return binary.BigEndian.Uint16(b)
	}
	return 0
}

// U32 reads a big-endian uint32.
func (r *Reader) U32(what string) uint32 {
	if b := r.Take(4, what); b != nil {
		return binary.BigEndian.Uint32(b)
	}
	return 0
}

// U64 reads a big-endian uint64.
func (r *Reader) U64(what string) uint64 {
	if b := r.Take(8, what); b != nil {
		return binary.BigEndian.Uint64(b)
	}
	return 0
}

// Str8 reads a u8 length, then that many bytes.
func (r *Reader) Str8(what string) []byte { return r.Take(int(r.U8(what)), what) }

// Str16 reads a u16 length, then that many bytes.
func (r *Reader) Str16(what string) []byte { return r.Take(int(r.U16(what)), what) }

// Rest returns the remaining bytes (nil after a failure).
func (r *Reader) Rest() []byte {
	v := r.b
	r.b = nil
	return v
}
