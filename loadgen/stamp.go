// Package loadgen holds many idle relay clients from one process at little
// cost: raw non-blocking sockets on one epoll loop, no goroutine per
// connection. It reads and checks every frame, records each connection's
// ID, counts messages, and measures latency from timestamps that pushers
// put in payloads.
package loadgen

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
const StampPrefix = "@pr1:"

// AppendStamp appends a timestamp for now to dst. Use it as the start of a
// payload.
func AppendStamp(dst []byte, now time.Time) []byte {
	dst = append(dst, StampPrefix...)
	dst = strconv.AppendInt(dst, now.UnixNano(), 10)
	return append(dst, ':')
}

// ParseStamp returns the unix-nanosecond stamp at the start of payload, or
// false if it carries none.
func ParseStamp(payload []byte) (int64, bool) {
	if len(payload) < len(StampPrefix)+2 || string(payload[:len(StampPrefix)]) != StampPrefix {
		return 0, false
	}
	var n int64
	digits := 0
	for _, c := range payload[len(StampPrefix):] {
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
