package cluster

import (
	"net/netip"
	"sync"

	"github.com/pushrelay/pushrelay/relay"
)

// eventLog is the cluster's connect and disconnect events as this node
// saw them: its own, copied from the local relay, and every other node's,
// received on PREFIX.events. It numbers them in the order they arrived
// here, so a watch on any node reads one sequence, each event marked with
// its node. Like the relay's own log it is a ring: a slow watcher loses
// the oldest events and is told how many.
type eventLog struct {
	mu      sync.Mutex
	ring    []clusterEvent // guarded by mu; len is a power of two
	next    uint64         // guarded by mu; Seq of the next event
	waiters chan struct{}  // guarded by mu; closed on append when non-nil
}

// clusterEvent is an Event without pointers, as the ring keeps it.
type clusterEvent struct {
	seq    uint64
	time   int64
	idRaw  [relay.IDBytes]byte
	ip     [16]byte
	port   uint16
	node   uint16
	kind   relay.EventKind
	reason relay.CloseReason
}

func newEventLog(size int) *eventLog {
	n := 1
	for n < size {
		n <<= 1
	}
	return &eventLog{ring: make([]clusterEvent, n), next: 1}
}

// append records evs (their Seq is ignored: the log numbers them).
func (e *eventLog) append(evs []relay.Event) {
	if len(evs) == 0 {
		return
	}
	e.mu.Lock()
	for i := range evs {
		ev := &evs[i]
		raw, _ := relay.ParseID(ev.ID)
		ce := clusterEvent{seq: e.next, time: ev.Time, idRaw: raw, ip: ev.Remote.Addr().As16(), port: ev.Remote.Port(), node: ev.Node, kind: ev.Kind, reason: ev.Reason}
		e.ring[ce.seq&uint64(len(e.ring)-1)] = ce
		e.next++
	}
	w := e.waiters
	e.waiters = nil
	e.mu.Unlock()
	if w != nil {
		close(w)
	}
}

// since has the contract of relay.Server.EventsSince.
func (e *eventLog) since(from uint64, dst []relay.Event, max int) (evs []relay.Event, next, lost uint64, wait <-chan struct{}) {
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
		ev := relay.Event{Seq: r.seq, Kind: r.kind, Time: r.time, ID: relay.FormatID(&r.idRaw), Reason: r.reason, Node: r.node}
		ev.Remote = netip.AddrPortFrom(netip.AddrFrom16(r.ip).Unmap(), r.port)
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

func (e *eventLog) last() uint64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.next - 1
}
