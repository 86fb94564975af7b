package relay

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strings"
	"unicode/utf8"
)

// transport is how a session's client reads frames: the raw listener's
// framing, a WebSocket (with or without permessage-deflate), or Server-Sent
// Events. A web connection is transportHandshake until its HTTP request has
// been answered; only then does it get an ID and join the registry.
type transport uint8

const (
	transportRaw transport = iota
	transportWS
	transportWSDeflate // a WebSocket that negotiated permessage-deflate
	transportSSE
	numTransports
	transportHandshake = numTransports // not yet a client: no ID, no pushes
)

var transportNames = [numTransports]string{
	transportRaw:       "tcp",
	transportWS:        "websocket",
	transportWSDeflate: "websocket_deflate",
	transportSSE:       "sse",
}

func (t transport) String() string { return enumName(t, transportNames[:], "handshake") }

// encodings is a set of a message's encodings, one bit per transport.
type encodings uint8

const (
	encRaw encodings = 1 << iota
	encWS
	encWSDeflate
	encSSE
)

// encodingOf is the encoding a session of transport t reads.
func encodingOf(t transport) encodings { return 1 << t }

// bytesFor returns f's bytes as a session of transport t reads them, or nil
// when the message cannot go to it (see carriers): such a recipient is
// counted Unsupported. A WebSocket that negotiated compression gets the
// uncompressed frame when the message was not compressed (below the
// threshold, or not smaller compressed): RFC 7692 lets each message choose.
func (f *Frame) bytesFor(t transport) []byte {
	switch t {
	case transportRaw:
		if len(f.b) == 0 {
			return nil // a byte the framing forbids: no raw encoding
		}
		return f.b
	case transportWS:
		return f.ws
	case transportWSDeflate:
		if f.wsz != nil {
			return f.wsz
		}
		return f.ws
	case transportSSE:
		return f.sse
	}
	return nil
}

// Which transport carries what. A payload is judged per recipient, by the
// transport it reads:
//
//	raw (tcp)   what the listener's framing allows (Framing.Check)
//	WebSocket   any bytes: a text frame if UTF-8, else a binary frame
//	SSE         UTF-8 text only, and an event no larger than MaxOutbound
//
// A payload is refused as a whole (BadPayload) only when no transport the
// relay serves could carry it: without a web listener, a byte the framing
// forbids. Otherwise each recipient that cannot take it is counted
// Unsupported, in the push's reply and in drops{reason="unsupported"}, and
// the rest get it. encode leaves out the encodings a payload cannot have,
// so the per-recipient test is bytesFor's nil check: no scan, no
// allocation per recipient.

// encode frames payload once in each encoding of set, into one pooled
// buffer (plus one more for the compressed frame), with one reference. A
// unicast asks for its recipient's encoding only, so a push to a browser
// copies the payload once, as a push to a raw client does.
func (s *Server) encode(payload []byte, set encodings) *Frame {
	if set&^encRaw == 0 {
		return encodeFrame(s.cfg.Framing, payload)
	}
	if set&encRaw != 0 && !s.cfg.Framing.Carries(payload) {
		set &^= encRaw // for the browsers only: raw clients count it unsupported
	}
	text := utf8.Valid(payload)
	var ext *Frame
	var wsz []byte
	if set&encWSDeflate != 0 && s.cfg.WebCompress && len(payload) >= s.cfg.WebCompressMin {
		ext, wsz = s.deflate(payload, text)
	}
	rawLen, wsLen, sseLen := 0, 0, 0
	if set&encRaw != 0 {
		rawLen = len(payload) + s.cfg.Framing.Overhead()
	}
	// The plain WebSocket frame: for plain clients, and for compressing
	// ones when the message was not compressed (too short, or no smaller).
	if set&encWS != 0 || set&encWSDeflate != 0 && wsz == nil {
		wsLen = wsHeaderLen(len(payload)) + len(payload)
	}
	if set&encSSE != 0 && text {
		// Each line costs 7 bytes more as SSE: a payload of newlines grows
		// sevenfold. An event over what a connection may hold could never be written
		// and would close (or, under SlowDrop, stall) every SSE client.
		if n := sseEventLen(payload); n <= outboundHold(s.cfg.MaxOutbound) {
			sseLen = n
		}
	}
	f := getFrame(rawLen + wsLen + sseLen)
	f.ext, f.wsz = ext, wsz
	buf := f.b[:0]
	if rawLen > 0 {
		buf = s.cfg.Framing.AppendFrame(buf, payload)
	}
	f.b = buf[:rawLen] // full capacity kept: the pool reuses it
	if wsLen > 0 {
		op := byte(wsOpBinary)
		if text {
			op = wsOpText
		}
		buf = appendWSFrame(buf, op, false, payload)
		f.ws = buf[rawLen : rawLen+wsLen : rawLen+wsLen]
	}
	if sseLen > 0 {
		start := len(buf)
		buf = appendSSEEvent(buf, payload)
		f.sse = buf[start:len(buf):len(buf)]
	}
	return f
}

// unsupportedOpen is how many open clients, by the registry's count per
// transport, cannot read f: the Unsupported count of a broadcast, given
// when the push is accepted. Two atomic loads, not a walk of the clients.
func (s *Server) unsupportedOpen(f *Frame) int {
	n := 0
	if f.bytesFor(transportRaw) == nil {
		n += int(s.counters.transports[transportRaw].Load())
	}
	if f.bytesFor(transportSSE) == nil {
		n += int(s.counters.transports[transportSSE].Load())
	}
	return n
}

// UnsupportedReason explains, for an Unsupported status's error message,
// why the client with that ID cannot take payload, and what could. Not
// for the hot path: it scans the payload again. Safe for concurrent use.
func (s *Server) UnsupportedReason(id string, payload []byte) string {
	t := transportHandshake
	if sess := s.reg.get(id); sess != nil {
		t = sess.transport
	}
	return fmt.Sprintf("client %s cannot take this payload: %s", id, s.unsupportedWhy(t, payload))
}

func (s *Server) unsupportedWhy(t transport, payload []byte) string {
	switch t {
	case transportRaw:
		if err := s.cfg.Framing.Check(payload); err != nil {
			return fmt.Sprintf("it is a tcp client and %s; a WebSocket client, or a relay run with --framing len32, takes any bytes",
				strings.TrimPrefix(err.Error(), ErrBadPayload.Error()+": "))
		}
	case transportSSE:
		if i := invalidUTF8(payload); i >= 0 {
			return fmt.Sprintf("it reads Server-Sent Events, which carry UTF-8 text only, and byte 0x%02x at offset %d is not UTF-8; push text (or base64 it), or have the client use a WebSocket", payload[i], i)
		}
		if n, hold := sseEventLen(payload), outboundHold(s.cfg.MaxOutbound); n > hold {
			return fmt.Sprintf("it reads Server-Sent Events, and the payload as one event is %d bytes (each line costs 7 more), over the %d bytes a connection may hold unsent (4/5 of the largest power of two within --max-outbound, %d)", n, hold, s.cfg.MaxOutbound)
		}
	}
	return "its transport cannot carry it (tcp clients: the framing's forbidden bytes; SSE: UTF-8 text only)"
}

// invalidUTF8 returns the offset of the first byte that is not valid
// UTF-8 in p, or -1.
func invalidUTF8(p []byte) int {
	for i := 0; i < len(p); {
		r, n := utf8.DecodeRune(p[i:])
		if r == utf8.RuneError && n == 1 {
			return i
		}
		i += n
	}
	return -1
}

// webEncodings is the set a fanout encodes: every transport the relay
// serves, since any of its connections may be a recipient (a plain copy
// costs less than knowing), and the compressed frame only while a client
// can use it (compressing costs tens of microseconds).
func (s *Server) webEncodings() encodings {
	if s.cfg.Web == "" {
		return encRaw
	}
	set := encRaw | encWS | encSSE
	// Compress only while a client negotiated it: one that arrives after
	// this check gets the plain frame, which RFC 7692 allows per message.
	if s.cfg.WebCompress && s.counters.transports[transportWSDeflate].Load() > 0 {
		set |= encWSDeflate
	}
	return set
}

// heartbeatFrame is the static heartbeat in every encoding: an empty raw
// frame, a WebSocket ping, an SSE comment.
func heartbeatFrame(framing Framing) *Frame {
	var hb []byte
	switch framing {
	case FramingLine:
		hb = []byte{'\n'}
	default:
		hb = framing.AppendFrame(nil, nil)
	}
	f := staticFrame(hb)
	f.ws = []byte{0x80 | wsOpPing, 0}
	f.sse = []byte(":\n\n")
	return f
}

// Server-Sent Events (the WHATWG HTML standard, "Server-sent events").
// An event is "data: " lines, one per line of the payload, and an empty
// line. CR, LF and CRLF all end a line in the format, so a payload's lines
// are split on each; the browser joins data lines with LF, so CR and CRLF
// arrive as LF (the format cannot carry a CR).

// sseEventLen is the length of payload as one event.
func sseEventLen(payload []byte) int {
	lines := 1
	n := len(payload)
	for i := 0; i < len(payload); i++ {
		switch payload[i] {
		case '\n':
			lines++
			n--
		case '\r':
			lines++
			n--
			if i+1 < len(payload) && payload[i+1] == '\n' {
				i++
				n--
			}
		}
	}
	return n + lines*len("data: \n") + 1
}

// appendSSEEvent appends payload as one event.
func appendSSEEvent(dst, payload []byte) []byte {
	for {
		i := bytes.IndexAny(payload, "\r\n")
		if i < 0 {
			dst = append(dst, "data: "...)
			dst = append(dst, payload...)
			return append(dst, '\n', '\n')
		}
		dst = append(dst, "data: "...)
		dst = append(dst, payload[:i]...)
		dst = append(dst, '\n')
		if payload[i] == '\r' && i+1 < len(payload) && payload[i+1] == '\n' {
			i++
		}
		payload = payload[i+1:]
	}
}

// WebSocket frames (RFC 6455 section 5.2). The relay's frames are never
// masked and never fragmented.
const (
	wsOpContinuation = 0x0
	wsOpText         = 0x1
	wsOpBinary       = 0x2
	wsOpClose        = 0x8
	wsOpPing         = 0x9
	wsOpPong         = 0xA

	wsFin  = 0x80
	wsRSV1 = 0x40 // "compressed", under permessage-deflate
)

// wsHeaderLen is the length of an unmasked frame header for n payload bytes.
func wsHeaderLen(n int) int {
	switch {
	case n < 126:
		return 2
	case n <= 0xFFFF:
		return 4
	}
	return 10
}

// appendWSFrame appends one final, unmasked frame.
func appendWSFrame[T string | []byte](dst []byte, op byte, compressed bool, payload T) []byte {
	b0 := wsFin | op
	if compressed {
		b0 |= wsRSV1
	}
	n := len(payload)
	switch {
	case n < 126:
		dst = append(dst, b0, byte(n))
	case n <= 0xFFFF:
		dst = append(dst, b0, 126)
		dst = binary.BigEndian.AppendUint16(dst, uint16(n))
	default:
		dst = append(dst, b0, 127)
		dst = binary.BigEndian.AppendUint64(dst, uint64(n))
	}
	return append(dst, payload...)
}
