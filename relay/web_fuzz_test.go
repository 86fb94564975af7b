package relay

import (
	"bytes"
	"testing"
)

// FuzzWebRequest: the request-head parser never panics, never reads past
// the head it reports, answers every refusal with a status the relay
// knows, and gives the same answer however the bytes were split.
func FuzzWebRequest(f *testing.F) {
	f.Add([]byte(webRequestText("/ws", wsHeaders("Origin: https://a.example", "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits")...)))
	f.Add([]byte(webRequestText("/sse?x=1", "Origin: http://b")))
	f.Add([]byte("GET / HTTP/1.0\n\n"))
	f.Add([]byte("GET /ws HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n"))
	f.Add([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"))
	f.Add([]byte("GET /ws HTTP/1.1\r\nSec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=\"15\", x\r\n\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		const max = 1024
		var r webRequest
		n, err := parseRequest(b, max, &r)
		if err != nil {
			if n != 0 || webStatusIndex(err.status) == len(webStatuses)-1 && err.status != 503 {
				t.Fatalf("refusal %d %q with n=%d", err.status, err.msg, n)
			}
			return
		}
		if n == 0 {
			if len(b) >= max || headEnd(b) >= 0 {
				t.Fatalf("need more bytes, but %d are there (head end %d)", len(b), headEnd(b))
			}
			return
		}
		if n > len(b) || n > max || !bytes.HasSuffix(b[:n], []byte("\n\n")) && !bytes.HasSuffix(b[:n], []byte("\n\r\n")) {
			t.Fatalf("head of %d bytes in %d: %q", n, len(b), b[:min(n, len(b))])
		}
		if len(r.path) == 0 || r.path[0] != '/' || !isToken(r.method) {
			t.Fatalf("accepted method %q path %q", r.method, r.path)
		}
		// Resuming the search for the head's end where a shorter read left
		// it finds the same end.
		for k := 0; k < n; k += 1 + k/4 {
			if got := headEndFrom(b, k); got != n {
				t.Fatalf("headEndFrom(b, %d) = %d, want %d", k, got, n)
			}
		}
		// Any prefix of the head is "need more".
		for k := 0; k < n; k += 1 + k/3 {
			var r2 webRequest
			if m, e := parseRequest(b[:k], max, &r2); m != 0 || e != nil {
				t.Fatalf("prefix of %d bytes: n=%d err=%v", k, m, e)
			}
		}
		if r.deflate && !acceptsDeflate([]byte("permessage-deflate")) {
			t.Fatal("unreachable")
		}
		if len(r.wsKey) > 0 && validWSKey(r.wsKey) {
			if got := appendWSAccept(nil, r.wsKey); len(got) != 28 {
				t.Fatalf("accept value %q", got)
			}
		}
	})
}

// FuzzWSHeader: the client frame header parser never panics, never claims
// more bytes than it was given, and refuses what RFC 6455 forbids.
func FuzzWSHeader(f *testing.F) {
	f.Add([]byte{0x81, 0x85, 1, 2, 3, 4, 'h', 'e', 'l', 'l', 'o'}, false)
	f.Add([]byte{0x89, 0x80, 1, 2, 3, 4}, false)
	f.Add([]byte{0xc1, 0xfe, 0x01, 0x00, 1, 2, 3, 4}, true)
	f.Add([]byte{0x82, 0xff, 0, 0, 0, 1, 0, 0, 0, 0, 1, 2, 3, 4}, false)
	f.Add([]byte{0x81, 0x05, 'h', 'e', 'l', 'l', 'o'}, false)
	f.Fuzz(func(t *testing.T, b []byte, deflate bool) {
		h, n, code := parseWSHeader(b, deflate)
		switch {
		case code != 0:
			if code != wsCloseProtocol && code != wsCloseTooBig || n != 0 {
				t.Fatalf("code %d n %d", code, n)
			}
		case n == 0:
			if len(b) >= 14 {
				t.Fatalf("need more bytes with %d in hand", len(b))
			}
		default:
			if n > len(b) || n < 6 || n > 14 || b[1]&0x80 == 0 {
				t.Fatalf("header of %d bytes from %x", n, b)
			}
			if h.op >= wsOpClose && h.n > 125 || h.n > 1<<32-1 {
				t.Fatalf("accepted op %d of %d bytes", h.op, h.n)
			}
		}
	})
}
