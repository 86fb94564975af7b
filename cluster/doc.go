// Package cluster makes several relay processes, on one host or many, one
// relay for the web app, with NATS (github.com/nats-io/nats.go) carrying
// messages between them.
//
// Every node has a node ID, written in the first two bytes of each client
// ID it issues (relay.Config.NodeID), so a node finds the owner of any ID
// in the ID itself: there is no lookup table to keep in sync. A Node wraps
// the local relay.Server and implements ingress.Relay: the web app talks
// to any node's ingress exactly as to a single relay.
//
// # Subjects
//
// With the default prefix "pushrelay":
//
//	pushrelay.node.N              requests for node N: send, send_many (its
//	                              share), subscribe, unsubscribe, kick, info,
//	                              list, presence, ping
//	pushrelay.all                 publish and broadcast: NATS hands one copy
//	                              to each node, however many clients it holds
//	pushrelay.reply.N.INST.B.I    replies to node N's call B, request I
//	pushrelay.hello               each node's announcement, every second
//	pushrelay.events              connect and disconnect events, in batches
//
// envelope.go has the bytes of each message.
//
// # A push to a client of another node
//
//  1. The ingress of node A calls Send(id). The ID's first two bytes say
//     node B. A frames nothing: it writes one envelope (the ID's 16 bytes,
//     the payload, s2-compressed when at least Config.CompressMin bytes and
//     smaller so) and publishes it on pushrelay.node.B with a reply subject.
//  2. B's NATS subscription hands it to B's serve goroutine, which calls
//     its relay's Send (the frame goes into the event loop's mailbox) and
//     publishes the status on the reply subject.
//  3. A's ingress goroutine, waiting at most Config.Timeout, returns that
//     status. No reply in time: Unreachable. NATS's "no responders" (nobody
//     subscribes to pushrelay.node.B) answers at once: UnknownID if B left
//     cleanly or was never seen, Unreachable if it went silent.
//
// # Ordering
//
// What one ingress connection pushes to one client arrives in order, for a
// client of another node too: the ingress serves a connection's requests
// one at a time, and each push returns only when the owner node has put
// the frame in its event loop's mailbox (FIFO). Beyond that, what node A
// publishes reaches node B in publication order: one NATS connection per
// node, and B serves requests for itself and for all nodes from one Go
// channel, in arrival order. The one exception: a push that timed out
// (Unreachable) may still be delivered, late, after pushes that followed it.
//
// # Failures
//
// A node that loses NATS keeps serving its own clients; pushes to other
// nodes answer Unreachable at once (nothing is buffered for later), and
// the node reconnects by itself. A node not heard from for three hello
// intervals is silent: its clients are unreachable, and publish and
// broadcast count it unreachable, until it is forgotten (Config.Forget) or
// heard again. The metrics (Node.Metrics) show the connection, the nodes
// by state, timeouts and unreachable answers.
//
// # Locks
//
// calls.mu (pending calls), peers.mu (membership) and the cluster event
// log's own mutex (a relay.EventLog) each guard one table for one map or
// ring operation; none is held while another is taken, nor across a NATS
// call.
package cluster
