// Package stamp is the timestamp a pusher may start a payload with, so
// that a client held by pushrelay loadgen (or the bench) measures the
// push's latency. It depends on the standard library only.
package stamp

import (
	"math"
	"strconv"
	"time"
)

// Timestamped payloads. A pusher that wants its latency measured starts
// the payload with
//
//	@pr1:<unix nanoseconds, decimal>:
//
// and anything after the second colon is its own. The format is ASCII, so
// it passes every framing (nul and line forbid only 0x00 and 0x0a), and any
// language can write it: "@pr1:" + str(time.time_ns()) + ":". The reader
// subtracts the stamp from its wall clock when the frame arrives; pusher
// and reader must share a clock, which holds on one host.
const Prefix = "@pr1:"

// Append appends a timestamp for now to dst. Use it as the start of a
// payload.
func Append(dst []byte, now time.Time) []byte {
	dst = append(dst, Prefix...)
	dst = strconv.AppendInt(dst, now.UnixNano(), 10)
	return append(dst, ':')
}

// AppendPadded appends to dst a payload of size bytes (or the stamp's
// length, if longer) that starts with a timestamp for now and is padded
// with 'x'.
func AppendPadded(dst []byte, now time.Time, size int) []byte {
	start := len(dst)
	dst = Append(dst, now)
	for len(dst)-start < size {
		dst = append(dst, 'x')
	}
	return dst
}

// Parse returns the unix-nanosecond stamp at the start of payload, or
// false if it carries none.
func Parse(payload []byte) (int64, bool) {
	if len(payload) < len(Prefix)+2 || string(payload[:len(Prefix)]) != Prefix {
		return 0, false
	}
	var n int64
	digits := 0
	for _, c := range payload[len(Prefix):] {
		if c == ':' {
			return n, digits > 0
		}
		if c < '0' || c > '9' {
			return 0, false
		}
		d := int64(c - '0')
		if n > (math.MaxInt64-d)/10 {
			return 0, false // would overflow: not a time
		}
		n = n*10 + d
		digits++
	}
	return 0, false
}
