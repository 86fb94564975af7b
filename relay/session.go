package relay

import (
	"net/netip"
	"sync/atomic"

	"github.com/panjf2000/gnet/v2"
)

// session is one client connection.
type session struct {
	// Fixed after OnOpen; read from any goroutine.
	id     string
	conn   gnet.Conn
	loop   *loop
	remote netip.AddrPort // copied in OnOpen: gnet clears its address at close
	opened int64          // unix nanoseconds

	// Atomic: written by the loop, read by producers.
	congested atomic.Bool // over MaxOutbound under SlowDrop; cleared at half

	// Owned by the event loop; touch only in its callbacks and drains.
	closed     bool         // OnClose ran: conn may be a reused fd, never touch it
	fanPending bool         // a target of the loop's running job, not yet served
	reason     CloseReason  // why the relay closed it, set just before closing
	idx        int32        // position in loop.sessions
	head, tail int32        // frames staged in loop.pend this drain, -1 if none
	inbound    int          // bytes received and discarded so far
	subs       []membership // topics this session is in
}
