package relay

import "sync/atomic"

// CloseReason says why a client connection ended.
type CloseReason uint8

const (
	ReasonPeerClosed CloseReason = iota // the client closed (EOF)
	ReasonPeerReset                     // the client reset the connection
	ReasonTimeout                       // keepalive or TCP_USER_TIMEOUT expired
	ReasonSlow                          // over --max-outbound under --slow=close
	ReasonInbound                       // sent more than --max-inbound
	ReasonKicked                        // closed through the API (kick)
	ReasonShutdown                      // the relay shut down
	ReasonError                         // any other socket error
	numCloseReasons
)

var closeReasonNames = [numCloseReasons]string{
	ReasonPeerClosed: "peer_closed",
	ReasonPeerReset:  "peer_reset",
	ReasonTimeout:    "timeout",
	ReasonSlow:       "slow_consumer",
	ReasonInbound:    "inbound_limit",
	ReasonKicked:     "kicked",
	ReasonShutdown:   "shutdown",
	ReasonError:      "error",
}

// String returns the reason as a snake_case word, as used in metrics.
func (r CloseReason) String() string {
	if r < numCloseReasons {
		return closeReasonNames[r]
	}
	return "unknown"
}

// CloseReasons lists every reason, in order, for exporters.
func CloseReasons() []CloseReason {
	rs := make([]CloseReason, numCloseReasons)
	for i := range rs {
		rs[i] = CloseReason(i)
	}
	return rs
}

// DropReason says why a message did not reach one recipient.
type DropReason uint8

const (
	DropSlow       DropReason = iota // over --max-outbound (either policy)
	DropClosed                       // the connection closed before the write
	DropOverloaded                   // the event loop's mailbox was full
	numDropReasons
)

var dropReasonNames = [numDropReasons]string{
	DropSlow:       "slow_consumer",
	DropClosed:     "closed",
	DropOverloaded: "overloaded",
}

// String returns the reason as a snake_case word, as used in metrics.
func (r DropReason) String() string {
	if r < numDropReasons {
		return dropReasonNames[r]
	}
	return "unknown"
}

// DropReasons lists every reason, in order, for exporters.
func DropReasons() []DropReason {
	rs := make([]DropReason, numDropReasons)
	for i := range rs {
		rs[i] = DropReason(i)
	}
	return rs
}

// RejectReason says why an accepted socket was closed before it got an ID.
type RejectReason uint8

const (
	RejectFull     RejectReason = iota // --max-conns reached
	RejectDraining                     // the relay is shutting down
	numRejectReasons
)

var rejectReasonNames = [numRejectReasons]string{RejectFull: "max_conns", RejectDraining: "draining"}

// String returns the reason as a snake_case word, as used in metrics.
func (r RejectReason) String() string {
	if r < numRejectReasons {
		return rejectReasonNames[r]
	}
	return "unknown"
}

// Stats is a snapshot of the relay's counters. Counters only grow; Open and
// Loops are gauges.
type Stats struct {
	Open            int64                    // client connections open now
	Accepted        uint64                   // connections that got an ID
	Rejected        [numRejectReasons]uint64 // by RejectReason
	Closed          [numCloseReasons]uint64  // by CloseReason
	MessagesWritten uint64                   // frames handed to the kernel or gnet's buffer, per recipient (IDs and heartbeats excluded)
	BytesWritten    uint64                   // bytes of those frames
	Heartbeats      uint64                   // heartbeat frames written
	Drops           [numDropReasons]uint64   // by DropReason, per recipient
	InboundBytes    uint64                   // bytes clients sent (discarded)
	Writes          uint64                   // write/writev calls made for messages and heartbeats
	Loops           int                      // event loops that have held a connection
	MaxConns        int                      // the admission limit in force
}

// counters are the server-wide counters for per-connection events and
// producer-side drops. Atomic; written from any goroutine.
type counters struct {
	accepted atomic.Uint64
	rejected [numRejectReasons]atomic.Uint64
	closed   [numCloseReasons]atomic.Uint64
	drops    [numDropReasons]atomic.Uint64
}

// loopCounters are one event loop's per-message counters. Only that loop
// writes them, once per drain; anyone may read them.
type loopCounters struct {
	written    atomic.Uint64
	bytes      atomic.Uint64
	heartbeats atomic.Uint64
	writes     atomic.Uint64
	inbound    atomic.Uint64
	drops      [numDropReasons]atomic.Uint64
}

// loopTally accumulates a drain's counts in plain fields, so the hot loop
// touches no shared cache line; publish adds them to loopCounters once.
type loopTally struct {
	written, bytes, heartbeats, writes uint64
	drops                              [numDropReasons]uint64
}

func (t *loopTally) publish(c *loopCounters) {
	if t.written != 0 {
		c.written.Add(t.written)
		c.bytes.Add(t.bytes)
	}
	if t.heartbeats != 0 {
		c.heartbeats.Add(t.heartbeats)
	}
	if t.writes != 0 {
		c.writes.Add(t.writes)
	}
	for i, n := range t.drops {
		if n != 0 {
			c.drops[i].Add(n)
		}
	}
	*t = loopTally{}
}
