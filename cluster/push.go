package cluster

// Routing of pushes: a push to one client goes to the node that holds it
// (the node bits of its ID); a push to a topic or to everyone fans out to
// every node (doc.go, Subjects).

import (
	"errors"
	"fmt"
	"time"

	"github.com/pushrelay/pushrelay/relay"
)

// precheck refuses, before anything crosses NATS, a payload this node
// would refuse; the owner node checks it again against its own limits.
func (n *Node) precheck(payload []byte) relay.Status {
	if n.local.Serving() != nil {
		return relay.Closed
	}
	if err := n.local.CheckPayload(payload); err != nil {
		if errors.Is(err, relay.ErrTooLarge) {
			return relay.TooLarge
		}
		return relay.BadPayload
	}
	return relay.Queued
}

// request publishes one request per target and waits, at most
// Config.Timeout, for each one's reply. build appends request i's body to
// an envelope already begun with o. res gets one outcome per target; the
// replies' data stays valid after the call.
func (n *Node) request(o op, targets []uint16, res []result, build func(i int, e *encoder)) []result {
	res = res[:0]
	for range targets {
		res = append(res, result{})
	}
	if n.nc == nil || !n.nc.IsConnected() {
		for i := range res {
			res[i].out = outUnsent
		}
		n.counters.unsent.Add(uint64(len(targets)))
		return res
	}
	c := n.calls.start(n.cfg.Timeout)
	defer n.calls.finish(c)
	e := n.encoders.Get().(*encoder)
	waiting := 0
	for i, node := range targets {
		e.begin(o, n.id)
		build(i, e)
		if e.b[1]&flagCompressed != 0 {
			n.counters.compressed.Add(1)
		}
		if err := n.nc.PublishRequest(n.nodeSubject(node), n.calls.subject(c, i), e.b); err != nil {
			res[i].out = outUnsent
			n.counters.unsent.Add(1)
			continue
		}
		n.counters.sent(o, len(e.b))
		waiting++
	}
	n.encoders.Put(e)
	for waiting > 0 {
		select {
		case r := <-c.ch:
			if r.base != c.base || r.idx >= len(res) || res[r.idx].out != outPending {
				n.calls.late.Add(1)
				continue
			}
			waiting--
			if r.noResp {
				res[r.idx].out = outNoResponders
				continue
			}
			res[r.idx].out, res[r.idx].data = outReplied, r.data
		case <-c.timer.C:
			for i := range res {
				if res[i].out == outPending {
					res[i].out = outTimeout
					n.counters.timeouts.Add(1)
				}
			}
			waiting = 0
		}
	}
	return res
}

// result is one request's outcome.
type result struct {
	out  outcome
	data []byte
}

// unreached answers a request that got no reply: a node that left cleanly
// or was never seen holds no clients (unknown); one that went silent, or
// that we could not ask, may (unreachable).
func (n *Node) unreached(node uint16, out outcome) relay.Status {
	if out == outNoResponders && n.peers.state(node, time.Now()) == peerUnknown {
		return relay.UnknownID
	}
	n.counters.unreachable.Add(1)
	return relay.Unreachable
}

// SendPipelined is Send for a caller with more pushes right behind: a
// client of this node gets it through relay.Server.SendPipelined.
func (n *Node) SendPipelined(id string, payload []byte) relay.Status {
	if node, ok := relay.NodeOf(id); !ok || node == n.id {
		return n.local.SendPipelined(id, payload)
	}
	return n.Send(id, payload)
}

// Send pushes to one client, on whichever node holds it. A client of
// another node costs one NATS round trip: the call returns the owner's
// answer, or Unreachable within Config.Timeout.
func (n *Node) Send(id string, payload []byte) relay.Status {
	node, ok := relay.NodeOf(id)
	if !ok || node == n.id {
		return n.local.Send(id, payload)
	}
	if st := n.precheck(payload); st != relay.Queued {
		return st
	}
	raw, ok := relay.ParseID(id)
	if !ok {
		return relay.UnknownID
	}
	env, st, ok := n.requestOne(opSend, node, func(_ int, e *encoder) {
		e.id(&raw)
		e.payload(payload, n.cfg.CompressMin)
	})
	if !ok {
		return st
	}
	return env.status
}

// requestOne sends request o to one node and decodes its reply. A node
// that does not answer, or answers with a bad envelope, gives instead the
// status its client gets (unreached) and false.
func (n *Node) requestOne(o op, node uint16, build func(i int, e *encoder)) (envelope, relay.Status, bool) {
	var resBuf [1]result
	targets := [1]uint16{node}
	res := n.request(o, targets[:], resBuf[:0], build)
	if res[0].out != outReplied {
		return envelope{}, n.unreached(node, res[0].out), false
	}
	env, err := (&decoder{}).decode(res[0].data)
	if err != nil || env.op != o|replyBit {
		n.counters.badEnvelopes.Add(1)
		return envelope{}, n.unreached(node, outTimeout), false
	}
	n.peers.touch(node, time.Now())
	return env, 0, true
}

// UnsupportedReason explains an Unsupported status for id: in this
// node's words for its own clients, in general ones for another node's.
func (n *Node) UnsupportedReason(id string, payload []byte) string {
	if node, ok := relay.NodeOf(id); !ok || node == n.id {
		return n.local.UnsupportedReason(id, payload)
	}
	return fmt.Sprintf("client %s cannot take this payload: its transport cannot carry it (tcp clients: the bytes the framing forbids; SSE: UTF-8 text only)", id)
}

// SendMany pushes one payload to many clients: its own at once, and one
// request per other node involved, all in flight together.
func (n *Node) SendMany(ids []string, payload []byte) (relay.Counts, relay.Status) {
	var c relay.Counts
	if st := n.precheck(payload); st != relay.Queued {
		return c, st
	}
	// Group by node: local IDs stay strings; others are parsed to bytes.
	var local []string
	groups := map[uint16][][relay.IDBytes]byte{}
	for _, id := range ids {
		node, ok := relay.NodeOf(id)
		if !ok || node == n.id {
			local = append(local, id)
			continue
		}
		raw, ok := relay.ParseID(id)
		if !ok {
			c.UnknownID++
			continue
		}
		groups[node] = append(groups[node], raw)
	}
	if len(local) > 0 {
		lc, st := n.local.SendMany(local, payload)
		if st != relay.Queued {
			return relay.Counts{}, st
		}
		c.Merge(lc)
	}
	if len(groups) == 0 {
		return c, relay.Queued
	}
	targets := make([]uint16, 0, len(groups))
	for node := range groups {
		targets = append(targets, node)
	}
	res := n.request(opSendMany, targets, nil, func(i int, e *encoder) {
		g := groups[targets[i]]
		e.u16(uint16(len(g)))
		for j := range g {
			e.id(&g[j])
		}
		e.payload(payload, n.cfg.CompressMin)
	})
	for i, r := range res {
		node, count := targets[i], len(groups[targets[i]])
		if r.out == outReplied {
			env, err := (&decoder{}).decode(r.data)
			if err == nil && env.op == opSendMany|replyBit {
				n.peers.touch(node, time.Now())
				if env.status == relay.Queued {
					c.Merge(env.counts)
				} else {
					// The node refused the payload as a whole (its own
					// limits, or it is closing): none of its IDs got it.
					switch env.status {
					case relay.Closed, relay.Overloaded:
						c.Overloaded += count
					default:
						c.UnknownID += count
					}
				}
				continue
			}
			n.counters.badEnvelopes.Add(1)
		}
		if n.unreached(node, r.out) == relay.UnknownID {
			c.UnknownID += count
		} else {
			c.Unreachable += count
		}
	}
	return c, relay.Queued
}

// fanout runs a publish or broadcast: locally, and once through NATS on
// PREFIX.all, which every other node receives once. It waits, at most
// Config.Timeout, for an answer from every node known alive; the counts
// sum the answers, and Unreachable counts the nodes that did not answer
// (alive ones past the timeout, and silent ones).
func (n *Node) fanout(o op, topic string, payload []byte, local func() (relay.Counts, relay.Status)) (relay.Counts, relay.Status) {
	if st := n.precheck(payload); st != relay.Queued {
		return relay.Counts{}, st
	}
	c, st := local()
	if st != relay.Queued {
		return c, st
	}
	now := time.Now()
	alive, silent, _ := n.peers.snapshot(nil, nil, now)
	c.Unreachable += len(silent)
	if n.nc == nil || !n.nc.IsConnected() {
		c.Unreachable += len(alive)
		n.counters.unsent.Add(1)
		n.counters.unreachable.Add(uint64(len(alive) + len(silent)))
		return c, relay.Queued
	}
	call := n.calls.start(n.cfg.Timeout)
	defer n.calls.finish(call)
	e := n.encoders.Get().(*encoder)
	e.begin(o, n.id)
	if o == opPublish {
		e.str8(topic)
	}
	if e.payload(payload, n.cfg.CompressMin) {
		n.counters.compressed.Add(1)
	}
	err := n.nc.PublishRequest(n.subjAll, n.calls.subject(call, 0), e.b)
	n.counters.sent(o, len(e.b))
	n.encoders.Put(e)
	if err != nil {
		c.Unreachable += len(alive)
		n.counters.unsent.Add(1)
		return c, relay.Queued
	}
	answered := make(map[uint16]bool, len(alive))
	missing := len(alive)
	var d decoder
wait:
	for missing > 0 {
		select {
		case r := <-call.ch:
			if r.noResp {
				break wait // no other node subscribes: none will answer
			}
			env, err := d.decode(r.data)
			if err != nil || env.op != o|replyBit {
				n.counters.badEnvelopes.Add(1)
				continue
			}
			if answered[env.from] {
				continue
			}
			answered[env.from] = true
			n.peers.touch(env.from, time.Now())
			if env.status == relay.Queued {
				c.Merge(env.counts)
			} else {
				c.Unreachable++ // it refused as a whole (closing, full): not delivered there
			}
			if n.isAlive(env.from, alive) {
				missing--
			}
		case <-call.timer.C:
			n.counters.timeouts.Add(1)
			break wait
		}
	}
	if missing > 0 {
		c.Unreachable += missing
		n.counters.unreachable.Add(uint64(missing))
	}
	return c, relay.Queued
}

// Publish pushes to a topic's subscribers on every node.
func (n *Node) Publish(topic string, payload []byte) (relay.Counts, relay.Status) {
	return n.fanout(opPublish, topic, payload, func() (relay.Counts, relay.Status) { return n.local.Publish(topic, payload) })
}

// Broadcast pushes to every client of every node.
func (n *Node) Broadcast(payload []byte) (relay.Counts, relay.Status) {
	return n.fanout(opBroadcast, "", payload, func() (relay.Counts, relay.Status) { return n.local.Broadcast(payload) })
}
