// Package relay is pushrelay's core: gnet event loops that accept client
// connections, write each one its ID, never parse what clients send, and write
// the messages the web app pushes to them.
//
// # A client session, from accept to close
//
//  1. The client connects to the client listener (Config.Listen). The event
//     loop that accepted the socket runs OnOpen: if the relay is full
//     (Config.MaxConns) or draining, the socket is closed at once and
//     counted; otherwise a fresh ID (128 bits from crypto/rand, 22
//     characters of [A-Za-z0-9_-]; see pkg/clientid) is drawn, the session
//     enters the registry, and the first frame, carrying exactly the ID, is
//     written before anything else can be.
//  2. From then on the relay only writes. Bytes the client sends are discarded
//     on arrival and counted; past Config.MaxInbound in total the client is
//     closed.
//  3. A push (Send, SendMany, Broadcast) encodes its payload into a frame once.
//     The frame goes, by reference, into the mailbox of each event loop that
//     owns a recipient; the loop writes it, coalescing what waits for one
//     connection into one writev. A connection whose unsent bytes would pass
//     Config.MaxOutbound is closed (Config.Slow: SlowClose) or misses that
//     message (SlowDrop).
//  4. The session ends on EOF or RST from the peer, a keepalive or
//     TCP_USER_TIMEOUT expiry, a limit, a kick, or shutdown. OnClose removes
//     it from the registry and counts the reason. IDs are never reused.
//
// # Frames on the wire
//
// Every frame, the ID frame included, uses the listener's framing
// (Config.Framing):
//
//	nul    payload 0x00            (Flash XMLSocket; payload must not contain 0x00)
//	line   payload 0x0a            (payload must not contain 0x0a or 0x00)
//	len32  uint32 big-endian length, then payload (any bytes)
//
// A heartbeat is an empty frame: a lone 0x00 (nul), a lone 0x0a (line) or four
// zero bytes (len32). docs/protocol.md has the same with hex dumps. The
// framing itself (check, append, read) is package pkg/framing, which the
// clients, the load generator and the bench share without linking gnet;
// this package names its pieces with the aliases in wire.go.
package relay
