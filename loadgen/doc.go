// Package loadgen holds many idle relay clients from one process at little
// cost: raw non-blocking sockets on one epoll loop, no goroutine per
// connection. It reads and checks every frame, records each connection's
// ID, counts messages, and measures latency from timestamps that pushers
// put in payloads (pkg/stamp). It speaks the client framing through
// pkg/framing and checks IDs with pkg/clientid, so it links none of the
// relay.
package loadgen
