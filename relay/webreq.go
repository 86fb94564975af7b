package relay

import (
	"bytes"
	"crypto/sha1"
	"encoding/base64"
)

// The web listener's HTTP/1.1 request parser. It reads only a request head
// (a GET has no body), keeps nothing (every field is a slice of the input,
// valid while the input is), and answers each way a head can be wrong with
// the status a browser or proxy expects. It never allocates on the accept
// path.

// webRequest is the part of a request head the relay acts on.
type webRequest struct {
	method []byte
	path   []byte // the target without its query
	http11 bool
	host   bool

	upgradeWS   bool // Upgrade lists websocket
	connUpgrade bool // Connection lists upgrade
	wsKey       []byte
	wsVersion   []byte
	origin      []byte
	deflate     bool // an offer of permessage-deflate the relay can accept
}

// webError is a request the relay refuses, with the HTTP status to answer.
type webError struct {
	status int
	msg    string
}

func (e *webError) Error() string { return e.msg }

var (
	errHeadTooLarge = &webError{431, "request head larger than --web-max-header"}
	errBadLine      = &webError{400, "malformed request line"}
	errBadVersion   = &webError{400, "unsupported HTTP version: want HTTP/1.0 or HTTP/1.1"}
	errBadTarget    = &webError{400, "malformed request target: want a path starting with /"}
	errBadHeader    = &webError{400, "malformed header line"}
	errFolded       = &webError{400, "obsolete header line folding is not accepted"}
)

// parseRequest parses the request head at the start of b into r. It
// returns the head's length once the head is complete, 0 while more bytes
// are needed, or the error to answer. A head may end lines with CRLF or,
// as RFC 9112 allows recipients to accept, a bare LF.
func parseRequest(b []byte, max int, r *webRequest) (int, *webError) {
	end := headEnd(b)
	if end < 0 {
		if len(b) >= max {
			return 0, errHeadTooLarge
		}
		return 0, nil
	}
	if end > max {
		return 0, errHeadTooLarge
	}
	*r = webRequest{}
	head := b[:end]
	line, rest := nextLine(head)
	if err := parseRequestLine(line, r); err != nil {
		return 0, err
	}
	for len(rest) > 0 {
		line, rest = nextLine(rest)
		if len(line) == 0 {
			break // the empty line that ends the head
		}
		if line[0] == ' ' || line[0] == '\t' {
			return 0, errFolded
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 || !isToken(line[:colon]) {
			return 0, errBadHeader
		}
		name, value := line[:colon], bytes.Trim(line[colon+1:], " \t")
		for _, c := range value {
			if c < ' ' && c != '\t' || c == 0x7f {
				return 0, errBadHeader
			}
		}
		r.header(name, value)
	}
	return end, nil
}

// headEnd returns the length of the head in b, through its empty line, or
// -1 if b does not hold one yet.
func headEnd(b []byte) int { return headEndFrom(b, 0) }

// headEndFrom is headEnd for a b whose first from bytes were searched
// before, as a shorter b, without finding the end. The end's first line
// feed is at most 3 bytes before the end, so the search resumes 3 bytes
// back.
func headEndFrom(b []byte, from int) int {
	for i := max(0, min(from, len(b))-3); ; {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			return -1
		}
		i += j + 1
		switch {
		case i < len(b) && b[i] == '\n':
			return i + 1
		case i+1 < len(b) && b[i] == '\r' && b[i+1] == '\n':
			return i + 2
		}
	}
}

// nextLine splits off the first line of b, without its line end.
func nextLine(b []byte) (line, rest []byte) {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		return b, nil
	}
	line, rest = b[:i], b[i+1:]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, rest
}

// parseRequestLine reads "METHOD SP target SP HTTP/1.x".
func parseRequestLine(line []byte, r *webRequest) *webError {
	sp := bytes.IndexByte(line, ' ')
	if sp <= 0 || !isToken(line[:sp]) {
		return errBadLine
	}
	r.method = line[:sp]
	line = line[sp+1:]
	sp = bytes.IndexByte(line, ' ')
	if sp <= 0 {
		return errBadLine
	}
	target, version := line[:sp], line[sp+1:]
	switch string(version) {
	case "HTTP/1.1":
		r.http11 = true
	case "HTTP/1.0":
	default:
		if bytes.HasPrefix(version, []byte("HTTP/")) {
			return errBadVersion
		}
		return errBadLine
	}
	if target[0] != '/' {
		return errBadTarget
	}
	for _, c := range target {
		if c <= ' ' || c >= 0x7f {
			return errBadTarget
		}
	}
	if q := bytes.IndexAny(target, "?#"); q >= 0 {
		target = target[:q]
	}
	r.path = target
	return nil
}

// header records one header field the relay cares about.
func (r *webRequest) header(name, value []byte) {
	switch {
	case bytes.EqualFold(name, []byte("Host")):
		r.host = true
	case bytes.EqualFold(name, []byte("Upgrade")):
		r.upgradeWS = r.upgradeWS || hasToken(value, "websocket")
	case bytes.EqualFold(name, []byte("Connection")):
		r.connUpgrade = r.connUpgrade || hasToken(value, "upgrade")
	case bytes.EqualFold(name, []byte("Sec-WebSocket-Key")):
		r.wsKey = value
	case bytes.EqualFold(name, []byte("Sec-WebSocket-Version")):
		r.wsVersion = value
	case bytes.EqualFold(name, []byte("Origin")):
		r.origin = value
	case bytes.EqualFold(name, []byte("Sec-WebSocket-Extensions")):
		r.deflate = r.deflate || acceptsDeflate(value)
	}
}

// hasToken reports whether the comma-separated list v holds token t
// (case-insensitive).
func hasToken(v []byte, t string) bool {
	for len(v) > 0 {
		var item []byte
		item, v = cutComma(v)
		if bytes.EqualFold(bytes.Trim(item, " \t"), []byte(t)) {
			return true
		}
	}
	return false
}

// cutComma splits a comma-separated list after its first item: the item,
// and the rest (nil after the last item).
func cutComma(v []byte) (item, rest []byte) {
	if i := bytes.IndexByte(v, ','); i >= 0 {
		return v[:i], v[i+1:]
	}
	return v, nil
}

// acceptsDeflate reports whether the Sec-WebSocket-Extensions value holds
// a permessage-deflate offer the relay can take: one whose parameters are
// all known, not repeated, and do not ask the server for a window smaller
// than 32 KiB (the relay's compressor always uses the full window; RFC 7692
// section 7.1.2.1 lets it decline such an offer).
func acceptsDeflate(v []byte) bool {
	for len(v) > 0 {
		var offer []byte
		offer, v = cutComma(v)
		if deflateOfferOK(offer) {
			return true
		}
	}
	return false
}

func deflateOfferOK(offer []byte) bool {
	name, params, _ := bytes.Cut(offer, []byte(";"))
	if !bytes.EqualFold(bytes.Trim(name, " \t"), []byte("permessage-deflate")) {
		return false
	}
	var seen [4]bool
	for len(params) > 0 {
		var p []byte
		p, params, _ = bytes.Cut(params, []byte(";"))
		key, val, hasVal := bytes.Cut(bytes.Trim(p, " \t"), []byte("="))
		key = bytes.Trim(key, " \t")
		val = bytes.Trim(bytes.Trim(val, " \t"), `"`)
		var k int
		switch {
		case bytes.EqualFold(key, []byte("server_no_context_takeover")):
			k = 0
			if hasVal {
				return false
			}
		case bytes.EqualFold(key, []byte("client_no_context_takeover")):
			k = 1
			if hasVal {
				return false
			}
		case bytes.EqualFold(key, []byte("client_max_window_bits")):
			k = 2
			if hasVal && !windowBits(val) {
				return false
			}
		case bytes.EqualFold(key, []byte("server_max_window_bits")):
			k = 3
			if !hasVal || string(val) != "15" {
				return false
			}
		default:
			return false
		}
		if seen[k] {
			return false
		}
		seen[k] = true
	}
	return true
}

// windowBits reports whether v is a window size of 8 to 15.
func windowBits(v []byte) bool {
	return len(v) == 1 && v[0] >= '8' && v[0] <= '9' || len(v) == 2 && v[0] == '1' && v[1] >= '0' && v[1] <= '5'
}

// isToken reports whether b is an RFC 9110 token.
func isToken(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if c >= 0x80 || !tokenChar[c] {
			return false
		}
	}
	return true
}

var tokenChar = func() (t [128]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = true, true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

// wsGUID is the fixed string of RFC 6455 section 1.3.
const wsGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// validWSKey reports whether key is the base64 of 16 bytes.
func validWSKey(key []byte) bool {
	var raw [18]byte
	if len(key) != 24 {
		return false
	}
	n, err := base64.StdEncoding.Decode(raw[:], key)
	return err == nil && n == 16
}

// appendWSAccept appends the Sec-WebSocket-Accept value for key.
func appendWSAccept(dst, key []byte) []byte {
	var in [24 + len(wsGUID)]byte
	copy(in[copy(in[:], key):], wsGUID)
	sum := sha1.Sum(in[:len(key)+len(wsGUID)])
	return base64.StdEncoding.AppendEncode(dst, sum[:])
}
