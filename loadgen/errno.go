package loadgen

import (
	"errors"
	"syscall"
)

// Errno names for reports: the failures a load generator meets, each with
// the limit it points at.
var errnoNames = map[syscall.Errno]string{
	syscall.EMFILE:        "EMFILE",
	syscall.ENFILE:        "ENFILE",
	syscall.EADDRNOTAVAIL: "EADDRNOTAVAIL",
	syscall.EADDRINUSE:    "EADDRINUSE",
	syscall.ECONNREFUSED:  "ECONNREFUSED",
	syscall.ETIMEDOUT:     "ETIMEDOUT",
	syscall.ECONNRESET:    "ECONNRESET",
	syscall.EPIPE:         "EPIPE",
	syscall.ENOBUFS:       "ENOBUFS",
	syscall.ENOMEM:        "ENOMEM",
	syscall.EHOSTUNREACH:  "EHOSTUNREACH",
	syscall.ENETUNREACH:   "ENETUNREACH",
	syscall.EAGAIN:        "EAGAIN",
}

// ErrnoName returns "EMFILE" and the like for err, "EOF" for a clean close
// by the peer, "BAD_FRAME" for a frame that did not parse, "TIMEOUT" for a
// deadline of ours, "BAD_HANDSHAKE" for a web listener's answer that is not
// the upgrade asked for, and "OTHER" otherwise.
func ErrnoName(err error) string {
	var errno syscall.Errno
	switch {
	case err == nil:
		return ""
	case errors.As(err, &errno):
		if n, ok := errnoNames[errno]; ok {
			return n
		}
		return "errno_" + errno.Error()
	case errors.Is(err, errPeerClosed):
		return "EOF"
	case errors.Is(err, errBadFrame):
		return "BAD_FRAME"
	case errors.Is(err, errTimeout):
		return "TIMEOUT"
	case errors.Is(err, errBadHandshake):
		return "BAD_HANDSHAKE"
	}
	return "OTHER"
}

var (
	errPeerClosed = errors.New("peer closed the connection")
	errBadFrame   = errors.New("frame does not parse")
	errTimeout    = errors.New("no ID within the deadline")
)
