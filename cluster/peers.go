package cluster

import (
	"slices"
	"sync"
	"time"
)

// peerState is what a node knows of another from its hello messages.
type peerState uint8

const (
	// peerUnknown: never heard of, forgotten, or left cleanly. Its IDs are
	// unknown: a node that shut down closed its clients.
	peerUnknown peerState = iota
	// peerAlive: heard from within the expiry.
	peerAlive
	// peerSilent: was alive, then went quiet (crashed, or cut off from
	// NATS). Its clients may still be connected: pushes to them are
	// unreachable, not unknown.
	peerSilent
)

// peer is one other node.
type peer struct {
	instance string
	lastSeen time.Time
	open     uint32 // its open connections, as last announced
}

// peers is the membership table, filled by hello messages. Safe for
// concurrent use: guarded by mu, held for a map operation at a time.
type peers struct {
	mu     sync.Mutex
	m      map[uint16]*peer // guarded by mu
	frozen bool             // guarded by mu: our NATS connection is down
	// expire: a peer not heard from this long is silent; forget: a silent
	// peer is forgotten after this long. Fixed after construction.
	expire, forget time.Duration
}

func newPeers(expire, forget time.Duration) *peers {
	return &peers{m: map[uint16]*peer{}, expire: expire, forget: forget}
}

// seen records a hello from node; it reports whether the node is new (or
// a new instance of it).
func (p *peers) seen(node uint16, instance string, open uint32, now time.Time) (isNew bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	pr := p.m[node]
	if pr == nil {
		pr = &peer{}
		p.m[node] = pr
		isNew = true
	}
	if pr.instance != instance {
		pr.instance = instance
		isNew = true
	}
	pr.lastSeen, pr.open = now, open
	return isNew
}

// touch records that node answered something: it is alive.
func (p *peers) touch(node uint16, now time.Time) {
	p.mu.Lock()
	if pr := p.m[node]; pr != nil {
		pr.lastSeen = now
	}
	p.mu.Unlock()
}

// left forgets a node that said goodbye.
func (p *peers) left(node uint16) {
	p.mu.Lock()
	delete(p.m, node)
	p.mu.Unlock()
}

// state says what is known of node.
func (p *peers) state(node uint16, now time.Time) peerState {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stateLocked(node, now)
}

func (p *peers) stateLocked(node uint16, now time.Time) peerState {
	pr := p.m[node]
	switch {
	case pr == nil:
		return peerUnknown
	case p.frozen:
		// While we cannot reach NATS we hear nobody; what we knew stands.
		return peerAlive
	case now.Sub(pr.lastSeen) <= p.expire:
		return peerAlive
	case now.Sub(pr.lastSeen) <= p.expire+p.forget:
		return peerSilent
	}
	delete(p.m, node)
	return peerUnknown
}

// freeze stops ageing peers while our own NATS connection is down (we
// would otherwise take our own deafness for their death); thaw restarts
// the clocks, giving every peer a full expiry to be heard again.
func (p *peers) freeze() {
	p.mu.Lock()
	p.frozen = true
	p.mu.Unlock()
}

func (p *peers) thaw(now time.Time) {
	p.mu.Lock()
	p.frozen = false
	for _, pr := range p.m {
		pr.lastSeen = now
	}
	p.mu.Unlock()
}

// snapshot appends the alive and the silent nodes, each in ascending order,
// and returns the connections the alive ones announced.
func (p *peers) snapshot(alive, silent []uint16, now time.Time) ([]uint16, []uint16, uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var open uint64
	for node, pr := range p.m {
		switch p.stateLocked(node, now) {
		case peerAlive:
			alive = append(alive, node)
			open += uint64(pr.open)
		case peerSilent:
			silent = append(silent, node)
		}
	}
	slices.Sort(alive)
	slices.Sort(silent)
	return alive, silent, open
}
