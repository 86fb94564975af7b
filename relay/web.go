package relay

import (
	"bytes"
	_ "embed"
	"encoding/binary"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/panjf2000/gnet/v2"
)

// The web listener (Config.Web): browser clients on the same event loops as raw
// ones. A connection starts as a handshake session: not in the registry,
// no ID, its request head left in gnet's inbound buffer until complete.
// The head is answered once, on the loop: with 101 and the ID as the first
// WebSocket message (/ws), with 200 and the ID as the first event (/sse),
// with the demo page (/), or with the error that fits. From then on the
// session is a client like any other, and the relay only writes to it
// (WebSocket control frames aside: a ping gets a pong, a close a close).

//go:embed web/demo.html
var demoPage []byte

// Web handshake outcomes, counted per HTTP status.
var webStatuses = [...]int{101, 200, 204, 400, 403, 404, 405, 408, 426, 431, 503}

func webStatusIndex(code int) int {
	for i, c := range webStatuses {
		if c == code {
			return i
		}
	}
	return len(webStatuses) - 1
}

var statusText = map[int]string{
	200: "OK", 204: "No Content", 400: "Bad Request", 403: "Forbidden", 404: "Not Found",
	405: "Method Not Allowed", 408: "Request Timeout", 426: "Upgrade Required",
	431: "Request Header Fields Too Large", 503: "Service Unavailable",
}

// openWeb admits an accepted web socket as a handshake session.
func (l *loop) openWeb(s *session) {
	s.transport = transportHandshake
	s.idx = int32(len(l.handshakes))
	s.head, s.tail = -1, -1
	l.handshakes = append(l.handshakes, s)
}

// removeHandshake forgets a handshake session (swap-remove).
func (l *loop) removeHandshake(s *session) {
	l.handshakes = swapRemove(l.handshakes, s)
}

// handshake reads a handshake session's request head and answers it.
func (l *loop) handshake(s *session, c gnet.Conn) gnet.Action {
	cfg := &l.srv.cfg
	buf, _ := c.Peek(-1)
	// A client may send its head a few bytes at a time: look for its end
	// only in what is new (s.inbound, unused until admission, holds how
	// far the search got), so a slow sender costs linear work, not
	// quadratic; the head is parsed once, when whole.
	if headEndFrom(buf, int(s.inbound)) < 0 {
		if len(buf) >= cfg.WebMaxHeader {
			return l.refuse(s, errHeadTooLarge.status, errHeadTooLarge.msg, "")
		}
		s.inbound = uint32(len(buf))
		return gnet.None // wait for the rest; the deadline bounds the wait
	}
	var r webRequest
	n, werr := parseRequest(buf, cfg.WebMaxHeader, &r)
	switch {
	case werr != nil:
		return l.refuse(s, werr.status, werr.msg, "")
	case n == 0:
		return gnet.None // cannot happen: the head's end is in buf
	case r.http11 && !r.host:
		return l.refuse(s, 400, "missing Host header (HTTP/1.1 requires one)", "")
	}
	var act gnet.Action
	switch string(r.path) {
	case "/ws":
		act = l.upgradeWS(s, &r)
	case "/sse":
		act = l.openSSE(s, &r)
	case "/":
		act = l.servePage(s, &r)
	default:
		act = l.refuse(s, 404, "no such page: the relay serves /ws, /sse and /", "")
	}
	if act != gnet.None || s.closed {
		return gnet.Close
	}
	_, _ = c.Discard(n)
	if c.InboundBuffered() > 0 {
		// Bytes sent right behind the head: a client's first frames.
		return l.clientBytes(s, c)
	}
	return gnet.None
}

// originAllowed applies WebOrigins. A request without Origin does not
// come from a browser page, so there is no cross-site use to refuse.
func (l *loop) originAllowed(origin []byte) bool {
	list := l.srv.cfg.WebOrigins
	if len(list) == 0 || len(origin) == 0 {
		return true
	}
	for _, o := range list {
		if o == "*" || bytes.EqualFold(origin, []byte(o)) {
			return true
		}
	}
	return false
}

// upgradeWS answers a request for /ws.
func (l *loop) upgradeWS(s *session, r *webRequest) gnet.Action {
	switch {
	case string(r.method) != "GET":
		return l.refuse(s, 405, "/ws takes GET with a WebSocket upgrade", "Allow: GET\r\n")
	case !l.originAllowed(r.origin):
		return l.refuse(s, 403, "origin "+strconv.Quote(string(r.origin))+" is not in --web-origins", "")
	case !r.upgradeWS:
		return l.refuse(s, 426, "/ws is a WebSocket endpoint: send Upgrade: websocket", "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n")
	case !r.http11:
		return l.refuse(s, 400, "a WebSocket upgrade needs HTTP/1.1", "")
	case !r.connUpgrade:
		return l.refuse(s, 400, "a WebSocket upgrade needs Connection: Upgrade", "")
	case !r.host:
		return l.refuse(s, 400, "missing Host header", "")
	case string(r.wsVersion) != "13":
		return l.refuse(s, 426, "unsupported Sec-WebSocket-Version: the relay speaks 13 (RFC 6455)", "Sec-WebSocket-Version: 13\r\n")
	case !validWSKey(r.wsKey):
		return l.refuse(s, 400, "Sec-WebSocket-Key must be the base64 of 16 bytes", "")
	case l.srv.draining.Load():
		return l.refuse(s, 503, "the relay is shutting down", "")
	}
	t := transportWS
	if r.deflate && l.srv.cfg.WebCompress {
		t = transportWSDeflate
	}
	b := append(l.webBuf[:0], "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "...)
	b = appendWSAccept(b, r.wsKey)
	b = append(b, "\r\n"...)
	if t == transportWSDeflate {
		b = append(b, "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover\r\n"...)
	}
	b = append(b, "\r\n"...)
	l.admit(s, t)
	text := encodeID(&s.idRaw)
	b = appendWSFrame(b, wsOpText, false, text[:])
	return l.writeHandshake(s, b, 101)
}

// openSSE answers a request for /sse.
func (l *loop) openSSE(s *session, r *webRequest) gnet.Action {
	method := string(r.method)
	switch {
	case method != "GET" && method != "OPTIONS":
		return l.refuse(s, 405, "/sse takes GET", "Allow: GET, OPTIONS\r\n")
	case !l.originAllowed(r.origin):
		return l.refuse(s, 403, "origin "+strconv.Quote(string(r.origin))+" is not in --web-origins", "")
	case l.srv.draining.Load():
		return l.refuse(s, 503, "the relay is shutting down", "")
	}
	b := l.webBuf[:0]
	if method == "OPTIONS" {
		// A CORS preflight: EventSource does not send one, but a page
		// using fetch() with custom headers does.
		b = append(b, "HTTP/1.1 204 No Content\r\n"...)
		b = appendCORS(b, r.origin)
		b = append(b, "Access-Control-Allow-Methods: GET\r\nAccess-Control-Allow-Headers: Last-Event-ID, Cache-Control\r\nAccess-Control-Max-Age: 600\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"...)
		l.writeHandshake(s, b, 204)
		return gnet.Close
	}
	// No Content-Length and no chunked coding: the stream ends when the
	// connection does, so every event is written as encoded, shared
	// between recipients.
	b = append(b, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\nCache-Control: no-cache, no-transform\r\nX-Accel-Buffering: no\r\nConnection: close\r\n"...)
	b = appendCORS(b, r.origin)
	b = append(b, "\r\n"...)
	l.admit(s, transportSSE)
	text := encodeID(&s.idRaw)
	b = appendSSEEvent(b, text[:])
	return l.writeHandshake(s, b, 200)
}

// appendCORS lets the requesting page read the response.
func appendCORS(b, origin []byte) []byte {
	if len(origin) == 0 {
		return append(b, "Access-Control-Allow-Origin: *\r\n"...)
	}
	b = append(b, "Access-Control-Allow-Origin: "...)
	b = append(b, origin...)
	return append(b, "\r\nAccess-Control-Allow-Credentials: true\r\nVary: Origin\r\n"...)
}

// servePage answers / with the demo page.
func (l *loop) servePage(s *session, r *webRequest) gnet.Action {
	method := string(r.method)
	if method != "GET" && method != "HEAD" {
		return l.refuse(s, 405, "/ takes GET", "Allow: GET, HEAD\r\n")
	}
	b := append(l.webBuf[:0], "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nCache-Control: no-cache\r\nConnection: close\r\nContent-Length: "...)
	b = strconv.AppendInt(b, int64(len(demoPage)), 10)
	b = append(b, "\r\n\r\n"...)
	if method == "GET" {
		b = append(b, demoPage...)
	}
	l.writeHandshake(s, b, 200)
	return gnet.Close
}

// refuse answers a request with an error and closes the connection.
func (l *loop) refuse(s *session, code int, msg, extra string) gnet.Action {
	b := append(l.webBuf[:0], "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(code), 10)
	b = append(b, ' ')
	b = append(b, statusText[code]...)
	b = append(b, "\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n"...)
	b = append(b, extra...)
	b = append(b, "Content-Length: "...)
	b = strconv.AppendInt(b, int64(len(msg)+1), 10)
	b = append(b, "\r\n\r\n"...)
	b = append(b, msg...)
	b = append(b, '\n')
	l.writeHandshake(s, b, code)
	return gnet.Close
}

// writeHandshake writes a response, counting it by status. gnet writes it
// at once when it can and copies what the socket did not take, so the
// loop's scratch buffer is free again on return.
func (l *loop) writeHandshake(s *session, b []byte, code int) gnet.Action {
	l.webBuf = b[:0]
	l.srv.counters.web[webStatusIndex(code)].Add(1)
	s.direct = false // gnet may keep part of it
	if _, err := s.conn.Write(b); err != nil {
		return gnet.Close
	}
	return gnet.None
}

// admit turns a handshake session into a client: an ID, the registry, the
// loop's sessions, a connect event.
func (l *loop) admit(s *session, t transport) {
	l.removeHandshake(s)
	s.opened = time.Now().UnixNano()
	s.inbound = 0 // the head's bytes do not count against MaxInbound
	l.register(s, t)
}

// expireHandshakes answers 408 to handshakes older than the deadline.
func (l *loop) expireHandshakes(now time.Time) {
	limit := now.Add(-l.srv.cfg.WebHandshakeTimeout).UnixNano()
	for i := 0; i < len(l.handshakes); {
		s := l.handshakes[i]
		if s.opened > limit {
			i++
			continue
		}
		l.refuse(s, 408, "the request head did not arrive within --web-handshake-timeout", "")
		_ = l.el.Close(s.conn) // OnClose swap-removes s from handshakes
		if i < len(l.handshakes) && l.handshakes[i] == s {
			i++ // not removed (cannot happen; never loop forever)
		}
	}
}

// clientBytes handles what an admitted client sends: discarded and counted
// against MaxInbound; WebSocket frames parsed as far as the protocol
// requires (a ping gets a pong, a close a close).
func (l *loop) clientBytes(s *session, c gnet.Conn) gnet.Action {
	var n, free int
	act := gnet.None
	if s.transport == transportWS || s.transport == transportWSDeflate {
		n, free, act = l.wsInbound(s, c)
	} else {
		n, _ = c.Discard(-1) // never parse, never buffer
	}
	l.counters.inbound.Add(uint64(n))
	s.inbound = uint32(min(int64(s.inbound)+int64(n-free), 1<<32-1)) // saturate
	if act == gnet.None && n > free && int64(s.inbound) > int64(l.srv.cfg.MaxInbound) && !s.closed {
		// MaxInbound is Off (-1) when any byte must close.
		s.reason = ReasonInbound
		_ = c.SetLinger(0)
		return gnet.Close
	}
	return act
}

// WebSocket close codes (RFC 6455 section 7.4.1).
const (
	wsCloseNormal    = 1000
	wsCloseGoingAway = 1001
	wsCloseBadData   = 1007
	wsCloseProtocol  = 1002
	wsCloseTooBig    = 1009
)

// wsInbound parses the client's frames in gnet's inbound buffer. Data
// frames are skipped (their payload counted down in s.wsSkip, so no byte
// of them is kept); control frames are read whole (at most 131 bytes wait
// in the buffer). It returns the bytes consumed, how many of them are free
// of MaxInbound (the pong to the relay's heartbeat), and whether to close.
func (l *loop) wsInbound(s *session, c gnet.Conn) (used, free int, act gnet.Action) {
	buf, _ := c.Peek(-1)
	deflate := s.transport == transportWSDeflate
	for used < len(buf) {
		if s.wsFlags&wsSkipping != 0 {
			left := l.wsSkip[s]
			k := min(len(buf)-used, int(left))
			used += k
			if left -= uint32(k); left > 0 {
				l.wsSkip[s] = left
			} else {
				delete(l.wsSkip, s)
				s.wsFlags &^= wsSkipping
			}
			continue
		}
		h, hl, code := parseWSHeader(buf[used:], deflate)
		if code != 0 {
			used = len(buf)
			act = l.wsClose(s, code, ReasonProtocol)
			break
		}
		if hl == 0 {
			break // a partial header waits in gnet's buffer
		}
		if h.op < wsOpClose {
			used += hl
			if h.n > 0 {
				if l.wsSkip == nil {
					l.wsSkip = make(map[*session]uint32)
				}
				l.wsSkip[s] = uint32(h.n) // at most 2^32-1: parseWSHeader refuses more
				s.wsFlags |= wsSkipping
			}
			continue
		}
		if len(buf)-used < hl+int(h.n) {
			break // a partial control frame waits
		}
		var p [125]byte
		payload := p[:h.n]
		copy(payload, buf[used+hl:])
		for i := range payload {
			payload[i] ^= h.mask[i&3]
		}
		used += hl + int(h.n)
		switch h.op {
		case wsOpPing:
			if s.wsFlags&wsCloseSent == 0 && s.conn.OutboundBuffered()+len(payload)+2 <= l.hold {
				l.webBuf = appendWSFrame(l.webBuf[:0], wsOpPong, false, payload)
				s.direct = false // gnet may keep part of it
				_, _ = c.Write(l.webBuf)
			}
		case wsOpPong:
			if s.wsFlags&wsPingOut != 0 && h.n == 0 {
				s.wsFlags &^= wsPingOut
				free += hl
			}
		case wsOpClose:
			act = l.wsClose(s, closeReply(payload), ReasonPeerClosed)
		}
		if act != gnet.None {
			used = len(buf)
			break
		}
	}
	_, _ = c.Discard(used)
	return used, free, act
}

// closeReply is the code to answer a client's close frame with: its own,
// when it may be sent (RFC 6455 section 7.4), else 1002; 1000 for a close
// without a code; 1007 for a reason that is not UTF-8.
func closeReply(payload []byte) uint16 {
	switch {
	case len(payload) == 0:
		return wsCloseNormal
	case len(payload) == 1:
		return wsCloseProtocol
	case !utf8.Valid(payload[2:]):
		return wsCloseBadData
	}
	switch code := binary.BigEndian.Uint16(payload); {
	case code >= 1000 && code <= 1003, code >= 1007 && code <= 1014, code >= 3000 && code <= 4999:
		return code
	}
	return wsCloseProtocol
}

// wsClose writes a close frame with code and closes the connection.
func (l *loop) wsClose(s *session, code uint16, why CloseReason) gnet.Action {
	l.wsCloseFrame(s, code, "")
	s.reason = why
	return gnet.Close
}

// wsCloseFrame writes a close frame with code and reason, after what the
// connection already has queued, unless that would pass its outbound cap.
func (l *loop) wsCloseFrame(s *session, code uint16, reason string) {
	if s.wsFlags&wsCloseSent != 0 || s.conn.OutboundBuffered()+4+len(reason) > l.hold {
		return
	}
	s.wsFlags |= wsCloseSent
	var p [2 + 123]byte
	binary.BigEndian.PutUint16(p[:], code)
	n := 2 + copy(p[2:], reason)
	l.webBuf = appendWSFrame(l.webBuf[:0], wsOpClose, false, p[:n])
	s.direct = false // gnet may keep part of it
	_, _ = s.conn.Write(l.webBuf)
}

// wsFlags bits.
const (
	wsPingOut   = 1 << iota // a heartbeat ping was written; its pong is free
	wsSkipping              // in a client data frame: loop.wsSkip has what is left
	wsCloseSent             // the relay wrote its close frame: nothing may follow it
)

// wsHeader is a parsed client frame header.
type wsHeader struct {
	op   byte
	n    uint64
	mask [4]byte
}

// parseWSHeader reads a client frame header at the start of b. It returns
// the header and its length, a zero length if b holds only part of it, or
// a close code for a frame the protocol forbids: unmasked (clients must
// mask), reserved bits or opcodes in use, a fragmented or long control
// frame, or a length beyond 2^32-1 (the relay never reads such a frame).
func parseWSHeader(b []byte, deflate bool) (h wsHeader, n int, code uint16) {
	if len(b) < 2 {
		return h, 0, 0
	}
	fin, rsv, op := b[0]&0x80 != 0, b[0]&0x70, b[0]&0x0f
	masked, n7 := b[1]&0x80 != 0, b[1]&0x7f
	switch {
	case !masked:
		return h, 0, wsCloseProtocol
	case op > wsOpBinary && op < wsOpClose, op > wsOpPong:
		return h, 0, wsCloseProtocol
	case rsv != 0 && !(rsv == wsRSV1 && deflate && (op == wsOpText || op == wsOpBinary)):
		return h, 0, wsCloseProtocol
	case op >= wsOpClose && (!fin || n7 > 125):
		return h, 0, wsCloseProtocol
	}
	need := 2
	switch n7 {
	case 126:
		need += 2
	case 127:
		need += 8
	}
	if len(b) < need+4 {
		return h, 0, 0
	}
	switch n7 {
	case 126:
		h.n = uint64(binary.BigEndian.Uint16(b[2:]))
	case 127:
		h.n = binary.BigEndian.Uint64(b[2:])
		if h.n > 1<<32-1 {
			return h, 0, wsCloseTooBig
		}
	default:
		h.n = uint64(n7)
	}
	h.op = op
	copy(h.mask[:], b[need:need+4])
	return h, need + 4, 0
}
