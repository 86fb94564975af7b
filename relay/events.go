package relay

import (
	"net/netip"
	"sync"
)

// EventKind says what happened to a client connection.
type EventKind uint8

const (
	EventConnect    EventKind = 1 // a client got its ID
	EventDisconnect EventKind = 2 // a client's connection closed
)

// String returns "connect" or "disconnect".
func (k EventKind) String() string {
	switch k {
	case EventConnect:
		return "connect"
	case EventDisconnect:
		return "disconnect"
	}
	return "unknown"
}

// Event is one connect or disconnect. Sequence numbers start at 1 and
// increase by one per event, relay-wide, so a watcher that sees a jump knows
// how many it missed.
type Event struct {
	Seq    uint64
	Kind   EventKind
	Time   int64 // unix nanoseconds
	ID     string
	Remote netip.AddrPort
	Reason CloseReason // EventDisconnect only
	// Node is the relay node the client is connected to (Config.NodeID):
	// in a cluster, a watch sees every node's events. 0 when standalone.
	Node uint16
}

// DefaultEventLog is how many recent events the relay keeps for watchers
// that fall behind or reconnect.
const DefaultEventLog = 1 << 16

// EventLog is a ring of the most recent events. Event loops append (one
// short critical section per connect or disconnect, never per message);
// watchers read from any goroutine with their own cursor, so a slow watcher
// costs the writers nothing: it loses the oldest events and sees the gap.
// The relay keeps one for its own clients; a cluster node keeps another
// for the whole cluster's (Append). Safe for concurrent use.
type EventLog struct {
	mu      sync.Mutex
	ring    []rawEvent    // guarded by mu; len is a power of two
	next    uint64        // guarded by mu; Seq of the next event
	waiters chan struct{} // guarded by mu; closed on append when non-nil
	node    uint16        // the node of events appended from sessions
}

// rawEvent is an Event as the ring keeps it: no pointers, so the ring
// costs the garbage collector nothing and keeps no session alive; strings
// are made when a watcher reads it.
type rawEvent struct {
	seq        uint64
	time       int64
	idRaw      [IDBytes]byte
	remoteIP   [16]byte
	remotePort uint16
	node       uint16
	kind       EventKind
	reason     CloseReason
}

// NewEventLog returns a log keeping the latest size events (rounded up to
// a power of two).
func NewEventLog(size int) *EventLog {
	n := 1
	for n < size {
		n <<= 1
	}
	return &EventLog{ring: make([]rawEvent, n), next: 1}
}

// append records an event of s, assigning its sequence number.
func (e *EventLog) append(kind EventKind, s *session, at int64, reason CloseReason) {
	e.mu.Lock()
	e.put(rawEvent{time: at, idRaw: s.idRaw, remoteIP: s.remoteIP, remotePort: s.remotePort, node: e.node, kind: kind, reason: reason})
	e.wake()
}

// Append records events read from elsewhere (another log, another node),
// numbering them anew: their Seq is ignored, their Node kept. An event
// whose ID is not a relay ID is kept with a zero ID.
func (e *EventLog) Append(evs ...Event) {
	if len(evs) == 0 {
		return
	}
	e.mu.Lock()
	for i := range evs {
		ev := &evs[i]
		raw, _ := ParseID(ev.ID)
		e.put(rawEvent{time: ev.Time, idRaw: raw, remoteIP: ev.Remote.Addr().As16(), remotePort: ev.Remote.Port(), node: ev.Node, kind: ev.Kind, reason: ev.Reason})
	}
	e.wake()
}

// put stores ev under the next sequence number. e.mu is held.
func (e *EventLog) put(ev rawEvent) {
	ev.seq = e.next
	e.ring[ev.seq&uint64(len(e.ring)-1)] = ev
	e.next++
}

// wake releases e.mu and wakes the watchers waiting for an event.
func (e *EventLog) wake() {
	w := e.waiters
	e.waiters = nil
	e.mu.Unlock()
	if w != nil {
		close(w)
	}
}

// Since appends to dst the events with Seq >= from that are still kept,
// at most max of them, and returns them with the sequence number to ask
// for next. lost counts the events from 'from' on that were overwritten
// before this read. When there is nothing new, wait is a channel closed by
// the next append. from 0 means "from now on".
func (e *EventLog) Since(from uint64, dst []Event, max int) (evs []Event, next, lost uint64, wait <-chan struct{}) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if from == 0 || from > e.next {
		from = e.next
	}
	oldest := uint64(1)
	if e.next > uint64(len(e.ring)) {
		oldest = e.next - uint64(len(e.ring))
	}
	if from < oldest {
		lost = oldest - from
		from = oldest
	}
	for seq := from; seq < e.next && len(dst) < max; seq++ {
		r := &e.ring[seq&uint64(len(e.ring)-1)]
		ev := Event{Seq: r.seq, Kind: r.kind, Time: r.time, ID: idString(&r.idRaw), Reason: r.reason, Node: r.node}
		ev.Remote = netip.AddrPortFrom(netip.AddrFrom16(r.remoteIP).Unmap(), r.remotePort)
		dst = append(dst, ev)
		from = seq + 1
	}
	if from == e.next {
		if e.waiters == nil {
			e.waiters = make(chan struct{})
		}
		wait = e.waiters
	}
	return dst, from, lost, wait
}

// Last returns the sequence number of the latest event (0 if none).
func (e *EventLog) Last() uint64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.next - 1
}

// EventsSince reads the relay's own events: EventLog.Since.
func (s *Server) EventsSince(from uint64, dst []Event, max int) (evs []Event, next, lost uint64, wait <-chan struct{}) {
	return s.events.Since(from, dst, max)
}

// LastEventSeq returns the sequence number of the latest event (0 if none).
func (s *Server) LastEventSeq() uint64 { return s.events.Last() }

// newServerEventLog is the relay's own log: its events carry its node.
func newServerEventLog(cfg Config) *EventLog {
	e := NewEventLog(cfg.EventLog)
	e.node = cfg.NodeID
	return e
}
