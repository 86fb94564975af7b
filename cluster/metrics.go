package cluster

import (
	"sync/atomic"
	"time"

	"github.com/pushrelay/pushrelay/relay"
)

// counters are the node's cluster counters. Atomic; written from any
// goroutine.
type counters struct {
	msgsOut, bytesOut [256]atomic.Uint64 // by op, replies included
	msgsIn, bytesIn   [256]atomic.Uint64

	disconnects, reconnects atomic.Uint64
	timeouts                atomic.Uint64 // requests (or fanouts) that hit Config.Timeout
	unreachable             atomic.Uint64 // recipients or nodes answered unreachable
	unsent                  atomic.Uint64 // requests not published: NATS down
	compressed              atomic.Uint64 // envelopes sent with a compressed payload
	badEnvelopes            atomic.Uint64
	eventsLost              atomic.Uint64 // local events overwritten before they were copied
	conflicts               atomic.Uint64 // hellos from another relay with our node ID
}

func (c *counters) sent(o op, bytes int) {
	c.msgsOut[o].Add(1)
	c.bytesOut[o].Add(uint64(bytes))
}

func (c *counters) received(o op, bytes int) {
	c.msgsIn[o].Add(1)
	c.bytesIn[o].Add(uint64(bytes))
}

// Metrics returns the local relay's metrics and the cluster's, for the
// ingress's stats and /metrics.
func (n *Node) Metrics() []relay.Metric {
	ms := n.local.Metrics()
	c := &n.counters
	alive, silent, open := n.peers.snapshot(nil, nil, time.Now())
	connected := 0.0
	if n.Connected() {
		connected = 1
	}
	var dropped float64
	for _, s := range n.subs {
		if d, err := s.Dropped(); err == nil {
			dropped += float64(d)
		}
	}
	ms = append(ms,
		relay.Metric{Name: "pushrelay_cluster_node", Type: "gauge", Help: "This relay's node ID (--node).", Value: float64(n.id)},
		relay.Metric{Name: "pushrelay_cluster_nats_connected", Type: "gauge", Help: "1 while the NATS connection is up.", Value: connected},
		relay.Metric{Name: "pushrelay_cluster_nats_disconnects_total", Type: "counter", Help: "Times the NATS connection was lost.", Value: float64(c.disconnects.Load())},
		relay.Metric{Name: "pushrelay_cluster_nats_reconnects_total", Type: "counter", Help: "Times the NATS connection came back.", Value: float64(c.reconnects.Load())},
		relay.Metric{Name: "pushrelay_cluster_nodes", Labels: `state="alive"`, Type: "gauge", Help: "Other nodes by state: alive (heard from lately) or silent (quiet, not yet forgotten).", Value: float64(len(alive))},
		relay.Metric{Name: "pushrelay_cluster_nodes", Labels: `state="silent"`, Type: "gauge", Help: "Other nodes by state: alive (heard from lately) or silent (quiet, not yet forgotten).", Value: float64(len(silent))},
		relay.Metric{Name: "pushrelay_cluster_connections_open", Type: "gauge", Help: "Client connections open on the whole cluster: this node's now, the alive nodes' as they last announced.", Value: float64(open + uint64(n.local.Len()))},
		relay.Metric{Name: "pushrelay_cluster_timeouts_total", Type: "counter", Help: "Requests to other nodes that got no answer within --cluster-timeout.", Value: float64(c.timeouts.Load())},
		relay.Metric{Name: "pushrelay_cluster_unreachable_total", Type: "counter", Help: "Recipients (send, send_many) or nodes (publish, broadcast) answered unreachable.", Value: float64(c.unreachable.Load())},
		relay.Metric{Name: "pushrelay_cluster_unsent_total", Type: "counter", Help: "Requests not sent to other nodes because NATS was down.", Value: float64(c.unsent.Load())},
		relay.Metric{Name: "pushrelay_cluster_late_replies_total", Type: "counter", Help: "Replies that came after their request had given up.", Value: float64(n.lateReplies())},
		relay.Metric{Name: "pushrelay_cluster_compressed_total", Type: "counter", Help: "Messages to other nodes whose payload went compressed.", Value: float64(c.compressed.Load())},
		relay.Metric{Name: "pushrelay_cluster_bad_envelopes_total", Type: "counter", Help: "Messages from other nodes that did not parse.", Value: float64(c.badEnvelopes.Load())},
		relay.Metric{Name: "pushrelay_cluster_dropped_total", Type: "counter", Help: "Messages NATS dropped because this node did not keep up (slow consumer).", Value: dropped},
		relay.Metric{Name: "pushrelay_cluster_events_lost_total", Type: "counter", Help: "Local connect and disconnect events overwritten before they reached the cluster log.", Value: float64(c.eventsLost.Load())},
		relay.Metric{Name: "pushrelay_cluster_node_conflicts_total", Type: "counter", Help: "Announcements from another relay with this node ID.", Value: float64(c.conflicts.Load())},
	)
	for _, o := range append(append([]op(nil), requestOps...), opHello, opEvents) {
		for _, reply := range []bool{false, true} {
			oo, name := o, o.String()
			if reply {
				if o >= opHello {
					continue
				}
				oo |= replyBit
			}
			lbl := `op="` + name + `"`
			ms = append(ms,
				relay.Metric{Name: "pushrelay_cluster_messages_sent_total", Labels: lbl, Type: "counter", Help: "Messages sent to other nodes through NATS, by operation.", Value: float64(c.msgsOut[oo].Load())},
				relay.Metric{Name: "pushrelay_cluster_bytes_sent_total", Labels: lbl, Type: "counter", Help: "Bytes of those messages (envelopes, without NATS's own framing).", Value: float64(c.bytesOut[oo].Load())},
				relay.Metric{Name: "pushrelay_cluster_messages_received_total", Labels: lbl, Type: "counter", Help: "Messages received from other nodes, by operation.", Value: float64(c.msgsIn[oo].Load())},
			)
		}
	}
	return ms
}

func (n *Node) lateReplies() uint64 {
	if n.calls == nil {
		return 0
	}
	return n.calls.late.Load()
}
