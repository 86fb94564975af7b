package cluster

// The cluster's event log: every node's connects and disconnects, for
// watch streams.

import (
	"github.com/nats-io/nats.go"
	"github.com/pushrelay/pushrelay/relay"
)

// EventsSince reads the cluster's event log: every node's connects and
// disconnects, each marked with its node (relay.Event.Node).
func (n *Node) EventsSince(from uint64, dst []relay.Event, max int) ([]relay.Event, uint64, uint64, <-chan struct{}) {
	return n.events.Since(from, dst, max)
}

// LastEventSeq returns the sequence number of the cluster log's latest
// event.
func (n *Node) LastEventSeq() uint64 { return n.events.Last() }

// pumpEvents copies the local relay's events into the cluster log and
// publishes them, in batches, to the other nodes.
func (n *Node) pumpEvents() {
	defer n.wg.Done()
	buf := make([]relay.Event, 0, maxEventBatch)
	var e encoder
	from := uint64(1)
	for {
		evs, next, lost, wait := n.local.EventsSince(from, buf[:0], maxEventBatch)
		if lost > 0 {
			n.counters.eventsLost.Add(lost)
		}
		from = next
		if len(evs) > 0 {
			n.events.Append(evs...)
			if n.nc.IsConnected() {
				e.begin(opEvents, n.id)
				e.u64(evs[0].Seq)
				e.u16(uint16(len(evs)))
				for i := range evs {
					ev := &evs[i]
					e.u8(uint8(ev.Kind))
					e.u8(uint8(ev.Reason))
					e.u64(uint64(ev.Time))
					raw, _ := relay.ParseID(ev.ID)
					e.id(&raw)
					e.addr(ev.Remote)
				}
				if n.nc.Publish(n.subjEvts, e.b) == nil {
					n.counters.sent(opEvents, len(e.b))
				}
			}
		}
		if wait != nil && !waitFor(wait, n.stop) {
			return
		}
	}
}

// onEvents takes another node's batch of events into the cluster log.
func (n *Node) onEvents(m *nats.Msg) {
	if env, ok := n.receive(m, opEvents); ok {
		n.events.Append(env.events...)
	}
}
