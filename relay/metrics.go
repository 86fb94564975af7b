package relay

import (
	"strconv"
	"sync/atomic"
	"time"
)

// CloseReason says why a client connection ended.
type CloseReason uint8

const (
	ReasonPeerClosed CloseReason = iota // the client closed (EOF)
	ReasonPeerReset                     // the client reset the connection
	ReasonTimeout                       // keepalive or TCP_USER_TIMEOUT expired
	ReasonSlow                          // over MaxOutbound under SlowClose
	ReasonInbound                       // sent more than MaxInbound
	ReasonKicked                        // closed through the API (kick)
	ReasonShutdown                      // the relay shut down
	ReasonError                         // any other socket error
	ReasonProtocol                      // a WebSocket client broke the protocol
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
	ReasonProtocol:   "protocol_error",
}

// String returns the reason as a snake_case word, as used in metrics.
func (r CloseReason) String() string { return enumName(r, closeReasonNames[:], "unknown") }

// CloseReasons lists every reason, in order, for exporters.
func CloseReasons() []CloseReason { return enumValues(numCloseReasons) }

// DropReason says why a message did not reach one recipient.
type DropReason uint8

const (
	DropSlow        DropReason = iota // over MaxOutbound (either policy)
	DropClosed                        // the connection closed before the write
	DropOverloaded                    // the event loop's mailbox was full
	DropUnsupported                   // the recipient's transport cannot carry the payload (Status Unsupported)
	numDropReasons
)

var dropReasonNames = [numDropReasons]string{
	DropSlow:        "slow_consumer",
	DropClosed:      "closed",
	DropOverloaded:  "overloaded",
	DropUnsupported: "unsupported",
}

// String returns the reason as a snake_case word, as used in metrics.
func (r DropReason) String() string { return enumName(r, dropReasonNames[:], "unknown") }

// DropReasons lists every reason, in order, for exporters.
func DropReasons() []DropReason { return enumValues(numDropReasons) }

// RejectReason says why an accepted socket was closed before it got an ID.
type RejectReason uint8

const (
	RejectFull     RejectReason = iota // MaxConns reached
	RejectDraining                     // the relay is shutting down
	numRejectReasons
)

var rejectReasonNames = [numRejectReasons]string{RejectFull: "max_conns", RejectDraining: "draining"}

// String returns the reason as a snake_case word, as used in metrics.
func (r RejectReason) String() string { return enumName(r, rejectReasonNames[:], "unknown") }

// enumName returns the name of v, one of the small enums above, or
// unknown for a value past the end of names.
func enumName[E ~uint8](v E, names []string, unknown string) string {
	if int(v) < len(names) {
		return names[v]
	}
	return unknown
}

// enumValues lists the values of an enum below n, in order.
func enumValues[E ~uint8](n E) []E {
	vs := make([]E, n)
	for i := range vs {
		vs[i] = E(i)
	}
	return vs
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
	DirectWrites    uint64                   // unicasts their producer wrote to the socket itself (direct.go)
	DirectShort     uint64                   // of those, the ones the socket took only part of, or refused: the loop finished them
	Loops           int                      // event loops that have held a connection
	MaxConns        int                      // the admission limit in force

	// Fanouts: broadcasts and publishes, counted per loop that ran them.
	Fanouts          uint64        // fanout messages run
	FanoutRecipients uint64        // recipients they were run for
	FanoutTime       time.Duration // from each fanout's start to its last write, summed
	FanoutMaxTime    time.Duration // the longest such time
	FanoutMaxSize    uint64        // the most recipients of one fanout on one loop

	// The web listener.
	Transports    [numTransports]int64     // open clients by transport (TransportNames)
	WebResponses  [len(webStatuses)]uint64 // handshake answers, by WebStatuses
	Compressed    uint64                   // messages compressed for permessage-deflate (once each)
	CompressedIn  uint64                   // their payload bytes
	CompressedOut uint64                   // their compressed frames' bytes
}

// TransportNames names the entries of Stats.Transports.
func TransportNames() []string { return transportNames[:] }

// WebStatuses lists the HTTP statuses of Stats.WebResponses.
func WebStatuses() []int { return webStatuses[:] }

// counters are the server-wide counters for per-connection events and
// producer-side drops. Atomic; written from any goroutine.
type counters struct {
	accepted atomic.Uint64
	rejected [numRejectReasons]atomic.Uint64
	closed   [numCloseReasons]atomic.Uint64
	drops    [numDropReasons]atomic.Uint64

	// Accepts that failed for want of descriptors or memory and were
	// retried after a pause (accept.go): [0] the client port, [1] the web.
	acceptPauses [2]atomic.Uint64

	// The web listener.
	transports    [numTransports]atomic.Int64     // open clients by transport
	web           [len(webStatuses)]atomic.Uint64 // handshake answers by HTTP status
	compressed    atomic.Uint64                   // messages compressed (once each)
	compressedIn  atomic.Uint64                   // their payload bytes
	compressedOut atomic.Uint64                   // their compressed frames' bytes
}

// loopCounters are one event loop's per-message counters. Only that loop
// writes them, once per mailbox pass; anyone may read them.
type loopCounters struct {
	written     atomic.Uint64
	bytes       atomic.Uint64
	heartbeats  atomic.Uint64
	writes      atomic.Uint64
	inbound     atomic.Uint64
	direct      atomic.Uint64
	directShort atomic.Uint64
	drops       [numDropReasons]atomic.Uint64

	fanouts, fanoutRecipients, fanoutNanos atomic.Uint64
	fanoutMaxNanos, fanoutMaxSize          atomic.Uint64
}

// loopTally accumulates a mailbox pass's counts in plain fields, so the hot loop
// touches no shared cache line; publish adds them to loopCounters once.
type loopTally struct {
	written, bytes, heartbeats, writes uint64
	direct, directShort                uint64
	drops                              [numDropReasons]uint64
	fanouts, fanoutRecipients          uint64
	fanoutNanos                        uint64
	fanoutMaxNanos, fanoutMaxSize      uint64 // maxima, not sums
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
	if t.direct != 0 {
		c.direct.Add(t.direct)
		if t.directShort != 0 {
			c.directShort.Add(t.directShort)
		}
	}
	for i, n := range t.drops {
		if n != 0 {
			c.drops[i].Add(n)
		}
	}
	if t.fanouts != 0 {
		c.fanouts.Add(t.fanouts)
		c.fanoutRecipients.Add(t.fanoutRecipients)
		c.fanoutNanos.Add(t.fanoutNanos)
		if t.fanoutMaxNanos > c.fanoutMaxNanos.Load() {
			c.fanoutMaxNanos.Store(t.fanoutMaxNanos) // only this loop writes it
		}
		if t.fanoutMaxSize > c.fanoutMaxSize.Load() {
			c.fanoutMaxSize.Store(t.fanoutMaxSize)
		}
	}
	*t = loopTally{}
}

// Metric is one exported figure: a Prometheus-style name, optional labels
// (already formatted, such as `reason="slow_consumer"`), its type and help.
type Metric struct {
	Name   string
	Labels string
	Type   string // "counter" or "gauge"
	Help   string
	Value  float64
}

// Metrics returns every counter and gauge of the relay, for the ingress's
// stats and /metrics. Safe for concurrent use.
func (s *Server) Metrics() []Metric {
	st := s.Stats()
	topics, subs := s.TopicCount()
	ms := []Metric{
		{Name: "pushrelay_connections_open", Type: "gauge", Help: "Client connections open now.", Value: float64(st.Open)},
		{Name: "pushrelay_connections_max", Type: "gauge", Help: "The admission limit (--max-conns).", Value: float64(st.MaxConns)},
		{Name: "pushrelay_connections_accepted_total", Type: "counter", Help: "Client connections that received an ID.", Value: float64(st.Accepted)},
	}
	for i, n := range st.Rejected {
		ms = append(ms, Metric{Name: "pushrelay_connections_rejected_total", Labels: `reason="` + RejectReason(i).String() + `"`, Type: "counter", Help: "Accepted sockets closed before getting an ID, by reason.", Value: float64(n)})
	}
	if s.cfg.OwnAccept {
		ms = append(ms, Metric{Name: "pushrelay_accept_errors_total", Labels: `listener="client"`, Type: "counter", Help: "Accepts on a listener that failed for want of descriptors or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM) and were retried after a pause; connections already open are unaffected.", Value: float64(s.counters.acceptPauses[0].Load())})
	}
	if s.cfg.OwnAccept && s.cfg.Web != "" {
		ms = append(ms, Metric{Name: "pushrelay_accept_errors_total", Labels: `listener="web"`, Type: "counter", Help: "Accepts on a listener that failed for want of descriptors or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM) and were retried after a pause; connections already open are unaffected.", Value: float64(s.counters.acceptPauses[1].Load())})
	}
	for i, n := range st.Closed {
		ms = append(ms, Metric{Name: "pushrelay_connections_closed_total", Labels: `reason="` + CloseReason(i).String() + `"`, Type: "counter", Help: "Client connections closed, by reason.", Value: float64(n)})
	}
	ms = append(ms,
		Metric{Name: "pushrelay_messages_written_total", Type: "counter", Help: "Message frames written, one per recipient.", Value: float64(st.MessagesWritten)},
		Metric{Name: "pushrelay_bytes_written_total", Type: "counter", Help: "Bytes of message frames written.", Value: float64(st.BytesWritten)},
		Metric{Name: "pushrelay_heartbeats_total", Type: "counter", Help: "Heartbeat frames written.", Value: float64(st.Heartbeats)},
		Metric{Name: "pushrelay_writes_total", Type: "counter", Help: "write and writev calls for messages and heartbeats.", Value: float64(st.Writes)},
		Metric{Name: "pushrelay_direct_writes_total", Type: "counter", Help: "Unicasts written to the socket by the goroutine that pushed them, the event loop being idle (--direct-writes).", Value: float64(st.DirectWrites)},
		Metric{Name: "pushrelay_direct_writes_short_total", Type: "counter", Help: "Direct writes the socket took only part of, or refused; the event loop wrote the rest.", Value: float64(st.DirectShort)},
	)
	for i, n := range st.Drops {
		ms = append(ms, Metric{Name: "pushrelay_drops_total", Labels: `reason="` + DropReason(i).String() + `"`, Type: "counter", Help: "Messages not delivered to a recipient, by reason.", Value: float64(n)})
	}
	for i, n := range st.Transports {
		ms = append(ms, Metric{Name: "pushrelay_connections_open_by_transport", Labels: `transport="` + transportNames[i] + `"`, Type: "gauge", Help: "Client connections open now, by transport.", Value: float64(n)})
	}
	for i, n := range st.WebResponses {
		ms = append(ms, Metric{Name: "pushrelay_web_responses_total", Labels: `code="` + strconv.Itoa(webStatuses[i]) + `"`, Type: "counter", Help: "Answers to requests on the web listener, by HTTP status (101: WebSocket upgrades).", Value: float64(n)})
	}
	ms = append(ms,
		Metric{Name: "pushrelay_web_compressed_total", Type: "counter", Help: "Messages compressed once for permessage-deflate WebSockets.", Value: float64(st.Compressed)},
		Metric{Name: "pushrelay_web_compressed_in_bytes_total", Type: "counter", Help: "Payload bytes of the compressed messages.", Value: float64(st.CompressedIn)},
		Metric{Name: "pushrelay_web_compressed_out_bytes_total", Type: "counter", Help: "Bytes of the compressed WebSocket frames made from them.", Value: float64(st.CompressedOut)},
	)
	ms = append(ms,
		Metric{Name: "pushrelay_inbound_bytes_total", Type: "counter", Help: "Bytes clients sent, discarded unread.", Value: float64(st.InboundBytes)},
		Metric{Name: "pushrelay_topics", Type: "gauge", Help: "Topics with at least one subscriber.", Value: float64(topics)},
		Metric{Name: "pushrelay_subscriptions", Type: "gauge", Help: "Topic subscriptions in total.", Value: float64(subs)},
		Metric{Name: "pushrelay_events_total", Type: "counter", Help: "Connect and disconnect events (the latest sequence number).", Value: float64(s.LastEventSeq())},
		Metric{Name: "pushrelay_event_loops", Type: "gauge", Help: "Event loops that have held a connection.", Value: float64(st.Loops)},
		Metric{Name: "pushrelay_fanouts_total", Type: "counter", Help: "Broadcast and publish messages run, per event loop that ran them.", Value: float64(st.Fanouts)},
		Metric{Name: "pushrelay_fanout_recipients_total", Type: "counter", Help: "Recipients of those fanouts.", Value: float64(st.FanoutRecipients)},
		Metric{Name: "pushrelay_fanout_seconds_total", Type: "counter", Help: "Time from each fanout's start on a loop to its last write there, summed.", Value: st.FanoutTime.Seconds()},
		Metric{Name: "pushrelay_fanout_seconds_max", Type: "gauge", Help: "The longest fanout on one loop since start.", Value: st.FanoutMaxTime.Seconds()},
		Metric{Name: "pushrelay_fanout_recipients_max", Type: "gauge", Help: "The most recipients of one fanout on one loop since start.", Value: float64(st.FanoutMaxSize)},
	)
	if p := s.policy; p != nil {
		up := 1.0
		if p.err() != nil {
			up = 0
		}
		ms = append(ms,
			Metric{Name: "pushrelay_policy_up", Type: "gauge", Help: "1 while the Flash policy listener accepts; 0 once it stopped (then /healthz fails).", Value: up},
			Metric{Name: "pushrelay_policy_connections_open", Type: "gauge", Help: "Flash policy connections open now.", Value: float64(len(p.slot))},
			Metric{Name: "pushrelay_policy_served_total", Type: "counter", Help: "Flash policy connections written the policy.", Value: float64(p.served.Load())},
			Metric{Name: "pushrelay_policy_rejected_total", Type: "counter", Help: "Flash policy connections closed at once: --flash-policy-max-conns were open.", Value: float64(p.rejected.Load())},
			Metric{Name: "pushrelay_policy_accept_errors_total", Type: "counter", Help: "Accepts on the Flash policy port that failed for want of descriptors or memory (EMFILE, ENFILE...) and were retried after a pause.", Value: float64(p.acceptErrors.Load())},
		)
	}
	return append(ms, processMetrics()...)
}
