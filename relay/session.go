package relay

import (
	"github.com/cespare/xxhash/v2"
	"net/netip"
	"sync/atomic"

	"github.com/panjf2000/gnet/v2"
)

// session is one client connection. It is kept small (112 bytes, one size
// class; TestSessionFitsItsSizeClass guards it) because there is one per
// idle client: the remote address is stored as raw bytes and the topic
// list behind a pointer most sessions never allocate.
type session struct {
	// Fixed after OnOpen; read from any goroutine. The ID is kept as its
	// 16 random bytes, not its 22-character string (a separate 24-byte
	// allocation per client); the string is made when someone asks.
	idRaw      [IDBytes]byte
	idHash     uint64 // xxhash of the ID's text: the registry key
	conn       gnet.Conn
	loop       *loop
	opened     int64    // unix nanoseconds
	remoteIP   [16]byte // IPv4 as IPv4-mapped IPv6; copied in OnOpen, as gnet clears its address at close
	remotePort uint16

	// Atomic: written by the loop, read by producers.
	congested atomic.Bool // over loop.hold (outboundHold) under SlowDrop; cleared at half

	// Owned by the event loop; touch only in its callbacks and mailbox passes.
	closed     bool          // OnClose ran: conn may be a reused fd, never touch it
	fanPending jobMask       // the loop's jobs (slot bits) it is a target of, not yet served
	reason     CloseReason   // why the relay closed it, set just before closing
	timeoutSet bool          // TCP_USER_TIMEOUT set (before the first write after the ID)
	transport  transport     // how the client reads frames; transportHandshake until admitted
	wsFlags    uint8         // WebSocket: wsPingOut, wsSkipping
	direct     bool          // gnet holds no bytes of it: a producer may write to it (direct.go)
	idx        int32         // position in loop.sessions
	head, tail int32         // frames staged in loop.pend this pass, -1 if none
	inbound    uint32        // bytes received and discarded so far (saturating)
	subs       *[]membership // topics this session is in; nil until the first
}

// ID returns the client's ID (allocates).
func (s *session) ID() string { return idString(&s.idRaw) }

// hasID reports whether id is this session's ID, without allocating.
func (s *session) hasID(id string) bool {
	text := encodeID(&s.idRaw)
	return string(text[:]) == id
}

// setID gives the session an ID.
func (s *session) setID(raw [IDBytes]byte) {
	s.idRaw = raw
	text := encodeID(&raw)
	s.idHash = xxhash.Sum64(text[:])
}

// remote returns the client's address.
func (s *session) remote() netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom16(s.remoteIP).Unmap(), s.remotePort)
}

// memberships returns the session's topics. Loop only.
func (s *session) memberships() []membership {
	if s.subs == nil {
		return nil
	}
	return *s.subs
}

// addMembership appends a topic membership. Loop only.
func (s *session) addMembership(m membership) {
	if s.subs == nil {
		s.subs = new([]membership)
	}
	*s.subs = append(*s.subs, m)
}

// removeMembership drops the i-th membership (swap-remove). Loop only.
func (s *session) removeMembership(i int) {
	list := *s.subs
	list[i] = list[len(list)-1]
	list[len(list)-1] = membership{}
	*s.subs = list[:len(list)-1]
}

// swapRemove removes s from list, in which s.idx is its position, by
// moving the last session into its place, and returns the shorter list.
func swapRemove(list []*session, s *session) []*session {
	last := len(list) - 1
	moved := list[last]
	list[s.idx] = moved
	moved.idx = s.idx
	list[last] = nil
	return list[:last]
}
