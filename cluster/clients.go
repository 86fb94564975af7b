package cluster

// Operations on one client, on whichever node holds it: subscribe,
// unsubscribe, kick and info.

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/pushrelay/pushrelay/relay"
)

// Subscribe adds a client, on whichever node holds it, to topics.
func (n *Node) Subscribe(id string, topics ...string) (int, error) {
	return n.topicOp(opSubscribe, id, topics)
}

// Unsubscribe removes a client, on whichever node holds it, from topics.
func (n *Node) Unsubscribe(id string, topics ...string) (int, error) {
	return n.topicOp(opUnsubscribe, id, topics)
}

func (n *Node) topicOp(o op, id string, topics []string) (int, error) {
	node, ok := relay.NodeOf(id)
	if !ok || node == n.id {
		if o == opSubscribe {
			return n.local.Subscribe(id, topics...)
		}
		return n.local.Unsubscribe(id, topics...)
	}
	for _, t := range topics {
		if err := relay.CheckTopic(t); err != nil {
			return 0, err
		}
	}
	raw, ok := relay.ParseID(id)
	if !ok {
		return 0, fmt.Errorf("%w: %q", relay.ErrUnknownID, id)
	}
	var resBuf [1]result
	res := n.request(o, []uint16{node}, resBuf[:0], func(_ int, e *encoder) {
		e.id(&raw)
		e.u16(uint16(len(topics)))
		for _, t := range topics {
			e.str8(t)
		}
	})
	if res[0].out != outReplied {
		if n.unreached(node, res[0].out) == relay.UnknownID {
			return 0, fmt.Errorf("%w: %q (its node %d is not in the cluster)", relay.ErrUnknownID, id, node)
		}
		return 0, fmt.Errorf("%w: node %d, within %v", relay.ErrUnreachable, node, n.cfg.Timeout)
	}
	env, err := (&decoder{}).decode(res[0].data)
	if err != nil || env.op != o|replyBit {
		n.counters.badEnvelopes.Add(1)
		return 0, fmt.Errorf("%w: node %d answered with a bad envelope", relay.ErrUnreachable, node)
	}
	n.peers.touch(node, time.Now())
	if env.errKind == errNone {
		return env.changed, nil
	}
	return env.changed, kindError(env.errKind, env.message)
}

// kindError rebuilds a relay error from a reply's error kind and message.
func kindError(kind uint8, msg string) error {
	if int(kind) < len(errKinds) && errKinds[kind] != nil {
		base := errKinds[kind].Error()
		return fmt.Errorf("%w%s", errKinds[kind], strings.TrimPrefix(msg, base))
	}
	return errors.New(msg)
}

// Kick closes a client's connection, on whichever node holds it.
func (n *Node) Kick(id string) relay.Status {
	node, ok := relay.NodeOf(id)
	if !ok || node == n.id {
		return n.local.Kick(id)
	}
	raw, ok := relay.ParseID(id)
	if !ok {
		return relay.UnknownID
	}
	env, st, ok := n.requestOne(opKick, node, func(_ int, e *encoder) { e.id(&raw) })
	if !ok {
		return st
	}
	return env.status
}

// Info describes a client, on whichever node holds it. A client whose node
// does not answer is reported as not connected.
func (n *Node) Info(id string) (relay.ClientInfo, bool) {
	node, ok := relay.NodeOf(id)
	if !ok || node == n.id {
		return n.local.Info(id)
	}
	raw, ok := relay.ParseID(id)
	if !ok {
		return relay.ClientInfo{}, false
	}
	var resBuf [1]result
	res := n.request(opInfo, []uint16{node}, resBuf[:0], func(_ int, e *encoder) { e.id(&raw) })
	if res[0].out != outReplied {
		n.unreached(node, res[0].out)
		return relay.ClientInfo{}, false
	}
	env, err := (&decoder{}).decode(res[0].data)
	if err != nil || env.op != opInfo|replyBit || !env.found {
		return relay.ClientInfo{}, false
	}
	env.info.ID = id
	return env.info, true
}
