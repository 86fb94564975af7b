package loadgen

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/klauspost/compress/flate"

	"github.com/pushrelay/pushrelay/pkg/framing"
)

// Web says which browser transport a pool's clients speak to the relay's
// web listener (--web), instead of the raw listener's framing.
type Web uint8

const (
	WebNone      Web = iota // the raw listener
	WebWS                   // WebSocket, GET /ws
	WebWSDeflate            // WebSocket offering permessage-deflate
	WebSSE                  // Server-Sent Events, GET /sse
)

var webNames = [...]string{WebNone: "", WebWS: "ws", WebWSDeflate: "ws-deflate", WebSSE: "sse"}

func (w Web) String() string {
	if int(w) < len(webNames) {
		return webNames[w]
	}
	return fmt.Sprintf("web(%d)", uint8(w))
}

// ParseFraming reads a client framing as given to `pushrelay loadgen
// --framing`: the raw listener's nul, line or len32, or a browser
// transport: ws, ws-deflate or sse.
func ParseFraming(s string) (framing.Framing, Web, error) {
	for i, name := range webNames {
		if i > 0 && strings.EqualFold(s, name) {
			return framing.NUL, Web(i), nil
		}
	}
	f, err := framing.Parse(s)
	if err != nil {
		return 0, 0, fmt.Errorf("unknown framing %q (want nul, line, len32, ws, ws-deflate or sse)", s)
	}
	return f, WebNone, nil
}

// FramingName names a pool's framing as ParseFraming reads it.
func FramingName(f framing.Framing, w Web) string {
	if w != WebNone {
		return w.String()
	}
	return f.String()
}

// webRequest is the request head a client writes once connected. The key
// is fixed: it only has to be 16 bytes in base64, and the relay's answer
// to it is checked once per head, not per connection.
func webRequest(w Web, host string) []byte {
	var b bytes.Buffer
	switch w {
	case WebSSE:
		fmt.Fprintf(&b, "GET /sse HTTP/1.1\r\nHost: %s\r\nAccept: text/event-stream\r\n\r\n", host)
	default:
		fmt.Fprintf(&b, "GET /ws HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n", host)
		if w == WebWSDeflate {
			b.WriteString("Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover\r\n")
		}
		b.WriteString("\r\n")
	}
	return b.Bytes()
}

// maxResponseHead bounds the relay's answer to a request head.
const maxResponseHead = 4 << 10

// errBadHandshake: the web listener did not upgrade the connection.
var errBadHandshake = errors.New("BAD_HANDSHAKE")

// cutHead splits the response head off data once it is whole, checking
// the status: 101 for a WebSocket, 200 for an event stream.
func cutHead(w Web, data []byte) (rest []byte, ok bool, err error) {
	i := bytes.Index(data, []byte("\r\n\r\n"))
	if i < 0 {
		if len(data) > maxResponseHead {
			return nil, false, fmt.Errorf("%w: %d bytes without the end of a response head", errBadHandshake, len(data))
		}
		return data, false, nil
	}
	want := "HTTP/1.1 101 "
	if w == WebSSE {
		want = "HTTP/1.1 200 "
	}
	if !bytes.HasPrefix(data, []byte(want)) {
		line, _, _ := bytes.Cut(data, []byte("\r\n"))
		return nil, false, fmt.Errorf("%w: %q", errBadHandshake, line)
	}
	if w == WebWSDeflate && !bytes.Contains(data[:i], []byte("permessage-deflate")) {
		return nil, false, fmt.Errorf("%w: the relay did not accept permessage-deflate (is --web-compress on?)", errBadHandshake)
	}
	return data[i+4:], true, nil
}

// cutWS splits the first whole WebSocket frame off data. A ping (the
// relay's heartbeat) comes out as an empty payload; a compressed message
// is inflated into p.zout.
func (p *Pool) cutWS(data []byte) (payload, rest []byte, ok bool, err error) {
	if len(data) < 2 {
		return nil, data, false, nil
	}
	b0, b1 := data[0], data[1]
	if b0&0x80 == 0 || b1&0x80 != 0 {
		return nil, nil, false, fmt.Errorf("%w: websocket frame header %02x %02x (fragmented or masked)", errBadFrame, b0, b1)
	}
	hl, n := 2, uint64(b1&0x7f)
	switch n {
	case 126:
		if len(data) < 4 {
			return nil, data, false, nil
		}
		hl, n = 4, uint64(binary.BigEndian.Uint16(data[2:]))
	case 127:
		if len(data) < 10 {
			return nil, data, false, nil
		}
		hl, n = 10, binary.BigEndian.Uint64(data[2:])
	}
	if n > uint64(p.opts.MaxFrame) {
		return nil, nil, false, fmt.Errorf("%w: websocket frame of %d bytes, limit %d", errBadFrame, n, p.opts.MaxFrame)
	}
	if uint64(len(data)-hl) < n {
		return nil, data, false, nil
	}
	payload, rest = data[hl:hl+int(n)], data[hl+int(n):]
	switch op := b0 & 0x0f; {
	case op == 0x9: // ping: the heartbeat
		return payload[:0], rest, true, nil
	case op == 0x8:
		return nil, nil, false, fmt.Errorf("%w: the relay closed the websocket", errPeerClosed)
	case op != 0x1 && op != 0x2:
		return nil, nil, false, fmt.Errorf("%w: websocket opcode %d", errBadFrame, op)
	}
	if b0&0x40 != 0 {
		if p.opts.Web != WebWSDeflate {
			return nil, nil, false, fmt.Errorf("%w: compressed frame without permessage-deflate", errBadFrame)
		}
		if payload, err = p.inflate(payload); err != nil {
			return nil, nil, false, err
		}
	}
	return payload, rest, true, nil
}

// inflate decompresses one permessage-deflate message (no context
// takeover: each starts from an empty window).
//
// A broadcast gives every client the same compressed frame, so the last
// message's inflated bytes are kept and reused when the next compressed
// message is byte for byte the same: otherwise the load generator's one
// thread would spend more on inflating 10,000 copies than the relay on
// writing them, and time to last would measure the client.
func (p *Pool) inflate(z []byte) ([]byte, error) {
	if len(p.zin) == len(z)+4 && bytes.Equal(p.zin[:len(z)], z) {
		return p.zout, nil
	}
	p.zin = append(append(p.zin[:0], z...), 0, 0, 0xff, 0xff)
	p.zsrc.Reset(p.zin)
	if p.zr == nil {
		p.zr = flate.NewReader(&p.zsrc)
	} else if err := p.zr.(flate.Resetter).Reset(&p.zsrc, nil); err != nil {
		return nil, err
	}
	out := p.zout[:0]
	for {
		if len(out) == cap(out) {
			out = append(out, 0)[:len(out)]
		}
		n, err := p.zr.Read(out[len(out):cap(out)])
		out = out[:len(out)+n]
		if err == io.EOF || err == io.ErrUnexpectedEOF || err == nil && p.zsrc.Len() == 0 && n == 0 {
			break
		}
		if err != nil {
			p.zin = p.zin[:0]
			return nil, fmt.Errorf("%w: inflate: %v", errBadFrame, err)
		}
		if len(out) > p.opts.MaxFrame {
			p.zin = p.zin[:0]
			return nil, fmt.Errorf("%w: inflates past %d bytes", errBadFrame, p.opts.MaxFrame)
		}
	}
	p.zout = out
	return out, nil
}

// cutSSE splits the first whole event off data: its first data line's
// value (what the stamp and the ID need), or an empty payload for a
// comment-only event (the relay's heartbeat).
func (p *Pool) cutSSE(data []byte) (payload, rest []byte, ok bool, err error) {
	i := bytes.Index(data, []byte("\n\n"))
	if i < 0 {
		if len(data) > p.opts.MaxFrame+16 {
			return nil, nil, false, fmt.Errorf("%w: %d bytes without the end of an event", errBadFrame, len(data))
		}
		return nil, data, false, nil
	}
	event, rest := data[:i+1], data[i+2:]
	if event[0] == ':' {
		return event[:0], rest, true, nil
	}
	if !bytes.HasPrefix(event, []byte("data: ")) {
		return nil, nil, false, fmt.Errorf("%w: event %q", errBadFrame, event[:min(len(event), 40)])
	}
	line, _, _ := bytes.Cut(event[len("data: "):], []byte("\n"))
	return line, rest, true, nil
}
