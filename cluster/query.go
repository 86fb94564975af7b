package cluster

// Queries over the whole cluster, one node at a time: the connected IDs
// (List) and a topic's subscribers (Presence).

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/pushrelay/pushrelay/relay"
)

// List pages through the connected IDs of the whole cluster, one node at
// a time in ascending node order. The cursor is "NODE:LOCAL", where LOCAL
// is that node's own cursor; a page may be empty while the cursor is not.
// A node that does not answer makes the call fail (retry with the same
// cursor); a node that left is skipped.
func (n *Node) List(cursor string, limit int) ([]string, string, error) {
	from, localCursor, err := parseCursor(cursor)
	if err != nil {
		return nil, "", err
	}
	alive, _, _ := n.peers.snapshot(nil, nil, time.Now())
	nodes := mergeSorted(alive, n.id)
	i := 0
	for i < len(nodes) && nodes[i] < from {
		i++
	}
	if i == len(nodes) {
		return nil, "", nil
	}
	node := nodes[i]
	if node != from {
		localCursor = "" // the cursor's node left: start the next from its top
	}
	var ids []string
	var next string
	if node == n.id {
		ids, next, err = n.local.List(localCursor, limit)
		if err != nil {
			return nil, "", err
		}
	} else {
		var resBuf [1]result
		res := n.request(opList, []uint16{node}, resBuf[:0], func(_ int, e *encoder) {
			e.str8(localCursor)
			e.u16(uint16(min(max(limit, 0), relay.MaxListPage)))
		})
		if res[0].out != outReplied {
			n.unreached(node, res[0].out)
			return nil, "", fmt.Errorf("%w: node %d did not answer the listing within %v; retry with the same cursor", relay.ErrUnreachable, node, n.cfg.Timeout)
		}
		env, err := (&decoder{}).decode(res[0].data)
		if err != nil || env.op != opList|replyBit {
			n.counters.badEnvelopes.Add(1)
			return nil, "", fmt.Errorf("%w: node %d answered the listing with a bad envelope", relay.ErrUnreachable, node)
		}
		if env.errKind != errNone {
			return nil, "", kindError(env.errKind, env.message)
		}
		ids = make([]string, len(env.ids))
		for j := range env.ids {
			ids[j] = relay.FormatID(&env.ids[j])
		}
		next = env.message
	}
	switch {
	case next != "":
		next = strconv.Itoa(int(node)) + ":" + next
	case i+1 < len(nodes):
		next = strconv.Itoa(int(nodes[i+1])) + ":"
	}
	return ids, next, nil
}

// Presence pages through the subscribers of topic on the whole cluster,
// one node at a time in ascending node order, as List does (same cursor
// shape, "NODE:LOCAL"); count is the sum of every node's subscribers,
// asked of all of them in the same round. A node that does not answer makes
// the call fail (retry with the same cursor); a node that left is skipped.
func (n *Node) Presence(topic, cursor string, limit int) ([]string, string, int, error) {
	if err := relay.CheckTopic(topic); err != nil {
		return nil, "", 0, err
	}
	from, localCursor, err := parseCursor(cursor)
	if err != nil {
		return nil, "", 0, err
	}
	alive, _, _ := n.peers.snapshot(nil, nil, time.Now())
	nodes := mergeSorted(alive, n.id)
	i := 0
	for i < len(nodes) && nodes[i] < from {
		i++
	}
	page := uint16(0) // the node whose subscribers this page lists; 0 (no node has it): none left
	if i < len(nodes) {
		page = nodes[i]
		if page != from {
			localCursor = ""
		}
	}
	if limit <= 0 || limit > relay.MaxPresencePage {
		limit = relay.MaxPresencePage
	}
	var ids []string
	var next string
	count := 0
	if page == n.id {
		ids, next, count, err = n.local.Presence(topic, localCursor, limit)
		if err != nil {
			return nil, "", 0, err
		}
	} else {
		count = n.local.Subscribers(topic)
	}
	others := make([]uint16, 0, len(alive))
	for _, node := range alive {
		if node != n.id {
			others = append(others, node)
		}
	}
	res := n.request(opPresence, others, make([]result, 0, len(others)), func(j int, e *encoder) {
		e.str8(topic)
		if others[j] == page {
			e.str8(localCursor)
			e.u16(uint16(limit))
		} else {
			e.str8("")
			e.u16(0) // the count only
		}
	})
	var d decoder
	for j, node := range others {
		if res[j].out != outReplied {
			if n.unreached(node, res[j].out) == relay.UnknownID {
				continue // it left: its subscribers left with it
			}
			return nil, "", 0, fmt.Errorf("%w: node %d did not answer the presence query within %v; retry with the same cursor", relay.ErrUnreachable, node, n.cfg.Timeout)
		}
		env, err := d.decode(res[j].data)
		if err != nil || env.op != opPresence|replyBit {
			n.counters.badEnvelopes.Add(1)
			return nil, "", 0, fmt.Errorf("%w: node %d answered the presence query with a bad envelope", relay.ErrUnreachable, node)
		}
		if env.errKind != errNone {
			return nil, "", 0, kindError(env.errKind, env.message)
		}
		count += env.changed
		if node == page {
			ids = make([]string, len(env.ids))
			for k := range env.ids {
				ids[k] = relay.FormatID(&env.ids[k])
			}
			next = env.message
		}
	}
	switch {
	case page == 0: // past the last node
	case next != "":
		next = strconv.Itoa(int(page)) + ":" + next
	case i+1 < len(nodes):
		next = strconv.Itoa(int(nodes[i+1])) + ":"
	}
	return ids, next, count, nil
}

// parseCursor reads a cluster listing cursor.
func parseCursor(c string) (node uint16, local string, err error) {
	if c == "" {
		return 0, "", nil
	}
	num, local, ok := strings.Cut(c, ":")
	v, err := strconv.ParseUint(num, 10, 16)
	if !ok || err != nil {
		return 0, "", fmt.Errorf("invalid cursor %q: pass back the cursor a previous page returned, or nothing to start", c)
	}
	return uint16(v), local, nil
}

// mergeSorted returns sorted with v inserted in order.
func mergeSorted(sorted []uint16, v uint16) []uint16 {
	out := make([]uint16, 0, len(sorted)+1)
	done := false
	for _, s := range sorted {
		if !done && v < s {
			out = append(out, v)
			done = true
		}
		if s != v {
			out = append(out, s)
		}
	}
	if !done {
		out = append(out, v)
	}
	return out
}
