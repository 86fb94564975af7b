package relay

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/flate"
)

// startWeb starts a relay with a web listener on a free loopback port.
func startWeb(t testing.TB, cfg Config) *Server {
	t.Helper()
	if cfg.Web == "" {
		cfg.Web = "127.0.0.1:0"
	}
	return startServer(t, cfg)
}

// webConn is a test client of the web listener: a real TCP connection.
type webConn struct {
	t    testing.TB
	conn net.Conn
	br   *bufio.Reader
	resp *http.Response
	id   string
}

const testWSKey = "dGhlIHNhbXBsZSBub25jZQ=="

// webRequestText builds a GET request head with extra header lines.
func webRequestText(path string, headers ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "GET %s HTTP/1.1\r\nHost: relay.test\r\n", path)
	for _, h := range headers {
		b.WriteString(h + "\r\n")
	}
	b.WriteString("\r\n")
	return b.String()
}

func wsHeaders(extra ...string) []string {
	return append([]string{"Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Key: " + testWSKey, "Sec-WebSocket-Version: 13"}, extra...)
}

// webDo sends raw request bytes and reads the response head.
func webDo(t testing.TB, srv *Server, request string) *webConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", srv.WebAddr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, request); err != nil {
		t.Fatal(err)
	}
	w := &webConn{t: t, conn: c, br: bufio.NewReader(c)}
	w.resp, err = http.ReadResponse(w.br, nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	return w
}

// dialWS opens a WebSocket and reads the ID message.
func dialWS(t testing.TB, srv *Server, extra ...string) *webConn {
	t.Helper()
	w := webDo(t, srv, webRequestText("/ws", wsHeaders(extra...)...))
	if w.resp.StatusCode != 101 {
		body, _ := io.ReadAll(w.resp.Body)
		t.Fatalf("upgrade: %s %s", w.resp.Status, body)
	}
	sum := sha1.Sum([]byte(testWSKey + wsGUID))
	if got, want := w.resp.Header.Get("Sec-WebSocket-Accept"), base64.StdEncoding.EncodeToString(sum[:]); got != want {
		t.Fatalf("Sec-WebSocket-Accept %q, want %q", got, want)
	}
	f := w.frame()
	if f.op != wsOpText || f.rsv != 0 || !ValidID(string(f.payload)) {
		t.Fatalf("first frame: op %d rsv %x %q, want a text frame with an ID", f.op, f.rsv, f.payload)
	}
	w.id = string(f.payload)
	return w
}

type testFrame struct {
	op, rsv byte
	payload []byte
}

// frame reads one server frame, checking what a client must check.
func (w *webConn) frame() testFrame {
	w.t.Helper()
	f, err := w.readFrame()
	if err != nil {
		w.t.Fatalf("read frame: %v", err)
	}
	return f
}

func (w *webConn) readFrame() (testFrame, error) {
	var h [2]byte
	if _, err := io.ReadFull(w.br, h[:]); err != nil {
		return testFrame{}, err
	}
	if h[0]&0x80 == 0 {
		return testFrame{}, errors.New("fragmented frame (FIN unset)")
	}
	if h[1]&0x80 != 0 {
		return testFrame{}, errors.New("masked server frame")
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var b [2]byte
		io.ReadFull(w.br, b[:])
		n = uint64(binary.BigEndian.Uint16(b[:]))
		if n < 126 {
			return testFrame{}, errors.New("non-minimal length")
		}
	case 127:
		var b [8]byte
		io.ReadFull(w.br, b[:])
		n = binary.BigEndian.Uint64(b[:])
		if n <= 0xffff {
			return testFrame{}, errors.New("non-minimal length")
		}
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(w.br, p); err != nil {
		return testFrame{}, err
	}
	return testFrame{op: h[0] & 0x0f, rsv: h[0] & 0x70, payload: p}, nil
}

// send writes one client frame.
func (w *webConn) send(b0 byte, payload []byte, masked bool) {
	w.t.Helper()
	if err := w.write(b0, payload, masked); err != nil {
		w.t.Fatalf("write frame: %v", err)
	}
}

// write writes one client frame, masked unless told otherwise.
func (w *webConn) write(b0 byte, payload []byte, masked bool) error {
	out := []byte{b0}
	mb := byte(0)
	if masked {
		mb = 0x80
	}
	switch n := len(payload); {
	case n < 126:
		out = append(out, mb|byte(n))
	case n <= 0xffff:
		out = append(out, mb|126)
		out = binary.BigEndian.AppendUint16(out, uint16(n))
	default:
		out = append(out, mb|127)
		out = binary.BigEndian.AppendUint64(out, uint64(n))
	}
	if masked {
		mask := [4]byte{0x37, 0xfa, 0x21, 0x3d}
		out = append(out, mask[:]...)
		for i, c := range payload {
			out = append(out, c^mask[i&3])
		}
	} else {
		out = append(out, payload...)
	}
	_, err := w.conn.Write(out)
	return err
}

// closed reports whether the server closed the connection (EOF or reset)
// within a few seconds, reading past any frames still in flight.
func (w *webConn) closed() bool {
	w.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := io.Copy(io.Discard, w.br)
	var ne net.Error
	return err == nil || !(errors.As(err, &ne) && ne.Timeout())
}

// dialSSE opens an event stream and reads the ID event.
func dialSSE(t testing.TB, srv *Server, extra ...string) *webConn {
	t.Helper()
	w := webDo(t, srv, webRequestText("/sse", extra...))
	if w.resp.StatusCode != 200 || !strings.HasPrefix(w.resp.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("sse: %s %v", w.resp.Status, w.resp.Header)
	}
	id := w.event()
	if !ValidID(id) {
		t.Fatalf("first event %q is not an ID", id)
	}
	w.id = id
	return w
}

// event reads one SSE event (as a browser would: data lines joined by LF),
// skipping comments.
func (w *webConn) event() string {
	w.t.Helper()
	var data []string
	seen := false
	for {
		line, err := w.br.ReadString('\n')
		if err != nil {
			w.t.Fatalf("read event: %v (so far %q)", err, data)
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "":
			if seen {
				return strings.Join(data, "\n")
			}
		case strings.HasPrefix(line, ":"):
		case strings.HasPrefix(line, "data: "):
			data, seen = append(data, line[len("data: "):]), true
		default:
			w.t.Fatalf("unexpected SSE line %q", line)
		}
	}
}

func TestWebSocketDeliversTextAndBinary(t *testing.T) {
	srv := startWeb(t, Config{Framing: FramingLen32, MaxMessage: 100 << 10, MaxOutbound: 1 << 20})
	w := dialWS(t, srv)
	if got := srv.Stats().Transports[transportWS]; got != 1 {
		t.Fatalf("open websockets %d, want 1", got)
	}
	cases := []struct {
		payload []byte
		op      byte
	}{
		{[]byte("hello"), wsOpText},
		{[]byte("héllo ✓"), wsOpText},
		{[]byte{0xff, 0x00, 0x01}, wsOpBinary},
		{bytes.Repeat([]byte("a"), 200), wsOpText},      // 16-bit length
		{bytes.Repeat([]byte("b"), 70_000), wsOpText},   // 64-bit length
		{append([]byte("x"), 0xc3, 0x28), wsOpBinary},   // invalid UTF-8
		{[]byte(strings.Repeat("z", 125)), wsOpText},    // the 7-bit edge
		{[]byte(strings.Repeat("z", 126)), wsOpText},    // the 16-bit edge
		{[]byte(strings.Repeat("y", 65_536)), wsOpText}, // the 64-bit edge
	}
	for _, c := range cases {
		if st := srv.Send(w.id, c.payload); st != Queued {
			t.Fatalf("Send: %v", st)
		}
	}
	for i, c := range cases {
		f := w.frame()
		if f.op != c.op || f.rsv != 0 || !bytes.Equal(f.payload, c.payload) {
			t.Fatalf("message %d: op %d rsv %x, %d bytes; want op %d, %d bytes", i, f.op, f.rsv, len(f.payload), c.op, len(c.payload))
		}
	}
}

func TestWebSocketControlFrames(t *testing.T) {
	srv := startWeb(t, Config{})
	w := dialWS(t, srv)
	// A ping gets a pong with the same payload.
	w.send(0x80|wsOpPing, []byte("are you there"), true)
	if f := w.frame(); f.op != wsOpPong || string(f.payload) != "are you there" {
		t.Fatalf("pong: op %d %q", f.op, f.payload)
	}
	// Data frames, fragmented or not, are discarded; pushes still flow.
	w.send(wsOpText, []byte("part one, "), true)
	w.send(0x80|wsOpContinuation, []byte("part two"), true)
	w.send(0x80|wsOpBinary, []byte{1, 2, 3}, true)
	srv.Send(w.id, []byte("still here"))
	if f := w.frame(); string(f.payload) != "still here" {
		t.Fatalf("after client data: %q", f.payload)
	}
	// A close gets a close with the same code, then the connection ends.
	w.send(0x80|wsOpClose, []byte{0x03, 0xe8, 'b', 'y', 'e'}, true)
	if f := w.frame(); f.op != wsOpClose || !bytes.Equal(f.payload, []byte{0x03, 0xe8}) {
		t.Fatalf("close reply: op %d %x", f.op, f.payload)
	}
	if !w.closed() {
		t.Fatal("connection still open after the close handshake")
	}
	waitFor(t, 5*time.Second, "the relay to count it", func() bool { return srv.Stats().Closed[ReasonPeerClosed] == 1 && srv.Len() == 0 })
}

func TestWebSocketProtocolErrors(t *testing.T) {
	srv := startWeb(t, Config{})
	for _, c := range []struct {
		name    string
		b0      byte
		payload []byte
		masked  bool
	}{
		{"unmasked", 0x80 | wsOpText, []byte("hi"), false},
		{"reserved opcode", 0x80 | 0x3, nil, true},
		{"reserved bit", 0x80 | 0x20 | wsOpText, []byte("hi"), true},
		{"compressed without the extension", 0x80 | wsRSV1 | wsOpText, []byte("hi"), true},
		{"fragmented ping", wsOpPing, nil, true},
		{"long ping", 0x80 | wsOpPing, make([]byte, 126), true},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := dialWS(t, srv)
			w.send(c.b0, c.payload, c.masked)
			f := w.frame()
			if f.op != wsOpClose || binary.BigEndian.Uint16(f.payload) != wsCloseProtocol {
				t.Fatalf("got op %d %x, want close 1002", f.op, f.payload)
			}
			if !w.closed() {
				t.Fatal("connection still open")
			}
		})
	}
	waitFor(t, 5*time.Second, "the relay to count it", func() bool { return srv.Stats().Closed[ReasonProtocol] == 6 })
}

func TestWebSocketFloodHitsInboundBudget(t *testing.T) {
	srv := startWeb(t, Config{MaxInbound: 4096})
	w := dialWS(t, srv)
	chunk := bytes.Repeat([]byte("x"), 1000)
	go func() {
		for i := 0; i < 100; i++ {
			if w.write(0x80|wsOpBinary, chunk, true) != nil {
				return // closed by the relay, as it should be
			}
		}
	}()
	if !w.closed() {
		t.Fatal("a client flooding frames was not disconnected")
	}
	waitFor(t, 5*time.Second, "the relay to count it", func() bool { return srv.Stats().Closed[ReasonInbound] == 1 })
}

func TestWebSocketPongsToHeartbeatsAreFree(t *testing.T) {
	srv := startWeb(t, Config{MaxInbound: 64, Heartbeat: 20 * time.Millisecond})
	w := dialWS(t, srv)
	// 40 pongs of 6 bytes each would pass a 64-byte budget four times
	// over if they counted.
	for i := 0; i < 40; i++ {
		f := w.frame()
		if f.op != wsOpPing || len(f.payload) != 0 {
			t.Fatalf("heartbeat %d: op %d %q, want an empty ping", i, f.op, f.payload)
		}
		w.send(0x80|wsOpPong, nil, true)
	}
	if srv.Len() != 1 {
		t.Fatal("a client answering heartbeats was disconnected")
	}
	// Unasked-for pongs do count.
	for i := 0; i < 20; i++ {
		if w.write(0x80|wsOpPong, []byte("unasked"), true) != nil {
			break // reset by the relay
		}
	}
	if !w.closed() {
		t.Fatal("unasked-for pongs passed the inbound budget unnoticed")
	}
}

func TestWebHandshakeErrors(t *testing.T) {
	srv := startWeb(t, Config{WebOrigins: []string{"https://app.example"}, WebMaxHeader: 1024})
	long := "X-Filler: " + strings.Repeat("f", 1100)
	for _, c := range []struct {
		name, request string
		code          int
		header        string // a header the answer must carry, "Name: value"
	}{
		{"unknown path", webRequestText("/nope"), 404, ""},
		{"POST to /ws", strings.Replace(webRequestText("/ws", wsHeaders()...), "GET", "POST", 1), 405, "Allow: GET"},
		{"PUT to /sse", strings.Replace(webRequestText("/sse"), "GET", "PUT", 1), 405, "Allow: GET, OPTIONS"},
		{"no upgrade", webRequestText("/ws"), 426, "Upgrade: websocket"},
		{"old version", webRequestText("/ws", "Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Key: "+testWSKey, "Sec-WebSocket-Version: 8"), 426, "Sec-WebSocket-Version: 13"},
		{"bad key", webRequestText("/ws", "Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Key: short", "Sec-WebSocket-Version: 13"), 400, ""},
		{"no connection upgrade", webRequestText("/ws", "Upgrade: websocket", "Sec-WebSocket-Key: "+testWSKey, "Sec-WebSocket-Version: 13"), 400, ""},
		{"forbidden origin", webRequestText("/ws", wsHeaders("Origin: https://evil.example")...), 403, ""},
		{"forbidden origin sse", webRequestText("/sse", "Origin: https://evil.example"), 403, ""},
		{"head too large", webRequestText("/sse", long), 431, ""},
		{"malformed line", "GARBAGE\r\n\r\n", 400, ""},
		{"HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400, ""},
		{"folded header", "GET /sse HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", 400, ""},
		{"bad header name", "GET /sse HTTP/1.1\r\nHo st: x\r\n\r\n", 400, ""},
		{"websocket over HTTP/1.0", "GET /ws HTTP/1.0\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + testWSKey + "\r\nSec-WebSocket-Version: 13\r\n\r\n", 400, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := webDo(t, srv, c.request)
			body, _ := io.ReadAll(w.resp.Body)
			if w.resp.StatusCode != c.code {
				t.Fatalf("status %s (%s), want %d", w.resp.Status, body, c.code)
			}
			if len(bytes.TrimSpace(body)) == 0 {
				t.Fatal("error answer without a message")
			}
			if c.header != "" {
				name, value, _ := strings.Cut(c.header, ": ")
				if got := w.resp.Header.Get(name); got != value {
					t.Fatalf("%s: %q, want %q", name, got, value)
				}
			}
			if !w.closed() {
				t.Fatal("connection left open after an error")
			}
		})
	}
	// An allowed origin passes, on both transports.
	dialWS(t, srv, "Origin: https://app.example")
	s := dialSSE(t, srv, "Origin: https://app.example")
	if got := s.resp.Header.Get("Access-Control-Allow-Origin"); got != "https://app.example" {
		t.Fatalf("CORS: Access-Control-Allow-Origin %q", got)
	}
	if srv.Stats().WebResponses[webStatusIndex(403)] != 2 {
		t.Fatal("403 answers not counted")
	}
	waitFor(t, 5*time.Second, "the relay to count it", func() bool { return srv.Len() == 2 }) // every refused connection freed its slot
}

func TestWebHandshakeDeadline(t *testing.T) {
	srv := startWeb(t, Config{WebHandshakeTimeout: 300 * time.Millisecond})
	c, err := net.Dial("tcp", srv.WebAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET /sse HTTP/1.1\r\nHost: x\r\n") // and then nothing
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no answer to a stalled handshake: %v", err)
	}
	if resp.StatusCode != 408 {
		t.Fatalf("status %s, want 408", resp.Status)
	}
	waitFor(t, 5*time.Second, "the relay to count it", func() bool { return srv.Stats().Open == 0 })
}

func TestWebDemoPage(t *testing.T) {
	srv := startWeb(t, Config{})
	w := webDo(t, srv, webRequestText("/"))
	body, _ := io.ReadAll(w.resp.Body)
	if w.resp.StatusCode != 200 || !strings.HasPrefix(w.resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("page: %s %v", w.resp.Status, w.resp.Header)
	}
	for _, want := range []string{"new WebSocket(", "new EventSource(", "pushrelay send "} {
		if !bytes.Contains(body, []byte(want)) {
			t.Fatalf("demo page lacks %q", want)
		}
	}
	if srv.Stats().Accepted != 0 {
		t.Fatal("a page request counted as a client")
	}
}

func TestSSEEvents(t *testing.T) {
	srv := startWeb(t, Config{Framing: FramingLen32, Heartbeat: 50 * time.Millisecond})
	w := dialSSE(t, srv)
	for _, p := range []string{"one line", "two\nlines", "crlf\r\nand cr\rend", "trailing\n", "\n\nblank start", "ünïcödé"} {
		if st := srv.Send(w.id, []byte(p)); st != Queued {
			t.Fatalf("Send: %v", st)
		}
		want := strings.NewReplacer("\r\n", "\n", "\r", "\n").Replace(p)
		if got := w.event(); got != want {
			t.Fatalf("event %q, want %q", got, want)
		}
	}
	// Not UTF-8: refused for this client at once and counted, never mangled.
	if st := srv.Send(w.id, []byte{'a', 0xff, 'b'}); st != Unsupported {
		t.Fatalf("Send of a non-UTF-8 payload to SSE: %v, want %v", st, Unsupported)
	}
	srv.Send(w.id, []byte("after"))
	if got := w.event(); got != "after" {
		t.Fatalf("event %q, want the next valid one", got)
	}
	if n := srv.Stats().Drops[DropUnsupported]; n != 1 {
		t.Fatalf("drops{unsupported} = %d, want 1", n)
	}
	// Heartbeats are comment lines: the raw stream shows them.
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		line, err := w.br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if line == ":\n" {
			return
		}
	}
	t.Fatal("no heartbeat comment")
}

func TestFanoutReachesEveryTransport(t *testing.T) {
	srv := startWeb(t, Config{})
	raw := dial(t, srv)
	ws := dialWS(t, srv)
	sse := dialSSE(t, srv)
	for _, id := range []string{raw.id, ws.id, sse.id} {
		if _, err := srv.Subscribe(id, "news"); err != nil {
			t.Fatal(err)
		}
	}
	srv.Broadcast([]byte("to all"))
	srv.Publish("news", []byte("topic"))
	srv.SendMany([]string{raw.id, ws.id, sse.id}, []byte("many"))
	for _, want := range []string{"to all", "topic", "many"} {
		if got, err := raw.next(5 * time.Second); err != nil || string(got) != want {
			t.Fatalf("raw: %q %v, want %q", got, err, want)
		}
		if f := ws.frame(); string(f.payload) != want {
			t.Fatalf("ws: %q, want %q", f.payload, want)
		}
		if got := sse.event(); got != want {
			t.Fatalf("sse: %q, want %q", got, want)
		}
	}
	st := srv.Stats()
	if st.Transports != [numTransports]int64{1, 1, 0, 1} {
		t.Fatalf("open by transport %v", st.Transports)
	}
	ws.conn.Close()
	sse.conn.Close()
	waitFor(t, 5*time.Second, "the relay to count it", func() bool {
		st := srv.Stats()
		return st.Transports[transportWS] == 0 && st.Transports[transportSSE] == 0
	})
}

func TestWebSocketCompressesOnce(t *testing.T) {
	srv := startWeb(t, Config{WebCompress: true})
	offer := "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits"
	var clients []*webConn
	for i := 0; i < 3; i++ {
		w := dialWS(t, srv, offer)
		if got := w.resp.Header.Get("Sec-WebSocket-Extensions"); !strings.HasPrefix(got, "permessage-deflate") || !strings.Contains(got, "server_no_context_takeover") {
			t.Fatalf("extension answer %q", got)
		}
		clients = append(clients, w)
	}
	plain := dialWS(t, srv) // offers nothing: gets plain frames
	refused := dialWS(t, srv, "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=10")
	if got := refused.resp.Header.Get("Sec-WebSocket-Extensions"); got != "" {
		t.Fatalf("an offer asking for a small window was accepted: %q", got)
	}
	var payload bytes.Buffer
	for payload.Len() < 2048 {
		fmt.Fprintf(&payload, `{"symbol":"XYZ","price":%d.25,"volume":%d},`, payload.Len(), payload.Len()*7)
	}
	srv.Broadcast(payload.Bytes())
	srv.Broadcast([]byte("short")) // below the threshold: sent plain
	for _, w := range clients {
		f := w.frame()
		if f.rsv != wsRSV1 || f.op != wsOpText {
			t.Fatalf("compressed frame: rsv %x op %d", f.rsv, f.op)
		}
		if len(f.payload) >= payload.Len()/2 {
			t.Fatalf("compressed to %d of %d bytes", len(f.payload), payload.Len())
		}
		r := flate.NewReader(io.MultiReader(bytes.NewReader(f.payload), bytes.NewReader(deflateTail)))
		got, err := io.ReadAll(r)
		if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("inflate: %v", err)
		}
		if !bytes.Equal(got, payload.Bytes()) {
			t.Fatalf("inflated %d bytes differ from the %d pushed", len(got), payload.Len())
		}
		if f := w.frame(); f.rsv != 0 || string(f.payload) != "short" {
			t.Fatalf("short message: rsv %x %q", f.rsv, f.payload)
		}
	}
	for _, w := range []*webConn{plain, refused} {
		if f := w.frame(); f.rsv != 0 || !bytes.Equal(f.payload, payload.Bytes()) {
			t.Fatal("a client without the extension got a compressed frame")
		}
	}
	if n := srv.Stats().Compressed; n != 1 {
		t.Fatalf("compressed %d times, want once for all clients", n)
	}
}

// TestWebSocketKickSendsClose: a kicked browser gets what was queued for
// it, then a close frame (1000, "kicked"), not a bare disconnect.
func TestWebSocketKickSendsClose(t *testing.T) {
	srv := startWeb(t, Config{})
	w := dialWS(t, srv)
	srv.Send(w.id, []byte("last words"))
	if st := srv.Kick(w.id); st != Queued {
		t.Fatalf("Kick: %v", st)
	}
	if f := w.frame(); string(f.payload) != "last words" {
		t.Fatalf("before the close: %q", f.payload)
	}
	f := w.frame()
	if f.op != wsOpClose || binary.BigEndian.Uint16(f.payload) != wsCloseNormal || string(f.payload[2:]) != "kicked" {
		t.Fatalf("got op %d %q, want close 1000 \"kicked\"", f.op, f.payload)
	}
	if !w.closed() {
		t.Fatal("connection still open after a kick")
	}
}

// TestWebSocketShutdownSendsGoingAway: at shutdown a browser gets what was
// queued, then a close frame (1001), then the end of the connection.
func TestWebSocketShutdownSendsGoingAway(t *testing.T) {
	srv := startWeb(t, Config{})
	w := dialWS(t, srv)
	srv.Send(w.id, []byte("before shutdown"))
	done := make(chan error, 1)
	go func() { done <- srv.Shutdown(context.Background()) }()
	if f := w.frame(); string(f.payload) != "before shutdown" {
		t.Fatalf("queued message: %q", f.payload)
	}
	f := w.frame()
	if f.op != wsOpClose || binary.BigEndian.Uint16(f.payload) != wsCloseGoingAway {
		t.Fatalf("got op %d %q, want close 1001", f.op, f.payload)
	}
	if !w.closed() {
		t.Fatal("connection still open after shutdown")
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestSSEOversizedEventIsDroppedNotTheClient: a payload of newlines grows
// sevenfold as SSE; past --max-outbound it is dropped for SSE clients and
// counted, and the clients stay (found in review: every SSE client was
// closed as slow by one such push).
func TestSSEOversizedEventIsDroppedNotTheClient(t *testing.T) {
	srv := startWeb(t, Config{}) // nul framing, 64 KiB messages, 256 KiB outbound cap
	sse := dialSSE(t, srv)
	ws := dialWS(t, srv)
	payload := bytes.Repeat([]byte("\n"), 40000) // a 280 KB event
	if c, st := srv.Broadcast(payload); st != Queued || c.Queued != 1 || c.Unsupported != 1 {
		t.Fatalf("Broadcast: %+v %v, want 1 queued (ws), 1 unsupported (sse)", c, st)
	}
	expectSSESkipped(t, srv, ws, sse, payload)
}

// TestWebSocketCloseCodes: a client's close code is echoed only when RFC
// 6455 lets it be sent (found in review: 1005, 1006, 1015 came back).
func TestWebSocketCloseCodes(t *testing.T) {
	srv := startWeb(t, Config{})
	for _, c := range []struct {
		payload []byte
		want    uint16
	}{
		{nil, 1000},
		{[]byte{0x03, 0xe9}, 1001},
		{[]byte{0x0f, 0xa0}, 4000},
		{[]byte{0x03, 0xed}, 1002}, // 1005
		{[]byte{0x03, 0xee}, 1002}, // 1006
		{[]byte{0x03, 0xf7}, 1002}, // 1015
		{[]byte{0x00, 0x00}, 1002},
		{[]byte{0x03, 0xe7}, 1002}, // 999
		{[]byte{0x03, 0xe8, 0xff}, 1007},
	} {
		w := dialWS(t, srv)
		w.send(0x80|wsOpClose, c.payload, true)
		f := w.frame()
		if f.op != wsOpClose || binary.BigEndian.Uint16(f.payload) != c.want {
			t.Errorf("close %x: answered op %d %x, want close %d", c.payload, f.op, f.payload, c.want)
		}
	}
}

// TestWebSocketNothingAfterItsClose: once the relay wrote its close frame
// (shutdown's 1001), the browser's answering close gets no second close.
func TestWebSocketNothingAfterItsClose(t *testing.T) {
	for attempt := 0; attempt < 10; attempt++ {
		srv := startWeb(t, Config{})
		w := dialWS(t, srv)
		done := make(chan error, 1)
		go func() { done <- srv.Shutdown(context.Background()) }()
		f := w.frame()
		if f.op != wsOpClose || binary.BigEndian.Uint16(f.payload) != wsCloseGoingAway {
			t.Fatalf("got op %d %q, want close 1001", f.op, f.payload)
		}
		_ = w.write(0x80|wsOpClose, f.payload[:2], true) // a browser answers the close
		_ = w.write(0x80|wsOpPing, []byte("p"), true)
		w.conn.SetReadDeadline(time.Now().Add(3 * time.Second))
		if f2, err := w.readFrame(); err == nil {
			t.Fatalf("attempt %d: after its own close frame the relay sent op %d %x", attempt, f2.op, f2.payload)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}

// TestWebSocketFreePongUnderInboundOff: with --max-inbound off (any byte
// closes), the pong a heartbeat asked for does not (found in review).
func TestWebSocketFreePongUnderInboundOff(t *testing.T) {
	srv := startWeb(t, Config{MaxInbound: Off, Heartbeat: 30 * time.Millisecond})
	w := dialWS(t, srv)
	for i := 0; i < 3; i++ {
		if f := w.frame(); f.op != wsOpPing {
			t.Fatalf("op %d, want the heartbeat ping", f.op)
		}
		w.send(0x80|wsOpPong, nil, true)
	}
	srv.Send(w.id, []byte("still here"))
	for {
		f := w.frame()
		if f.op == wsOpText {
			if string(f.payload) != "still here" {
				t.Fatalf("got %q", f.payload)
			}
			break
		}
	}
	// A data byte still closes at once.
	w.send(0x80|wsOpText, []byte("x"), true)
	if !w.closed() {
		t.Fatal("a data frame under --max-inbound off did not close the client")
	}
}

// TestWebSocketGoodbyeDespiteAStalledClient: one raw client with bytes
// stuck at shutdown does not cost the browsers their close frames (found
// in review).
func TestWebSocketGoodbyeDespiteAStalledClient(t *testing.T) {
	srv := startWeb(t, Config{DrainTimeout: 300 * time.Millisecond, SendBuffer: 4096})
	stalled := dial(t, srv, dialOpts{rcvbuf: 4096}) // never reads again
	w := dialWS(t, srv)
	chunk := bytes.Repeat([]byte("x"), 32<<10)
	for i := 0; i < 6; i++ {
		srv.Send(stalled.id, chunk)
	}
	time.Sleep(100 * time.Millisecond)
	if err := srv.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	w.conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	if f, err := w.readFrame(); err != nil || f.op != wsOpClose {
		t.Fatalf("no close frame at shutdown (err %v, op %d)", err, f.op)
	}
}

// TestWebHeadSentByteByByte: a head dribbled a few bytes per segment is
// answered once whole, and an HTTP/1.1 head without Host is refused.
func TestWebHeadSentByteByByte(t *testing.T) {
	srv := startWeb(t, Config{})
	c, err := net.Dial("tcp", srv.WebAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.(*net.TCPConn).SetNoDelay(true)
	head := webRequestText("/sse", "X-Pad: "+strings.Repeat("p", 300))
	for i := 0; i < len(head); i += 7 {
		if _, err := io.WriteString(c, head[i:min(i+7, len(head))]); err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Microsecond)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("dribbled head: %v %v", resp, err)
	}
	w := webDo(t, srv, "GET /sse HTTP/1.1\r\n\r\n")
	if w.resp.StatusCode != 400 {
		t.Fatalf("no Host: %s, want 400", w.resp.Status)
	}
}

// BenchmarkWebHeadDribble: the CPU a head costs the loop when it arrives
// one 5-byte header line per read. The search for its end is linear; each
// read also copies the bytes buffered so far (as gnet's Peek does when a
// head spans reads), which is what remains quadratic in the head's size;
// figures in docs/benchmarks.md.
func BenchmarkWebHeadDribble(b *testing.B) {
	for _, size := range []int{8 << 10, 64 << 10} {
		b.Run(fmt.Sprintf("%dKiB", size>>10), func(b *testing.B) {
			head := "GET /ws HTTP/1.1\r\n" + strings.Repeat("a:b\r\n", (size-40)/5) + "\r\n"
			for b.Loop() {
				from := 0
				for n := 18; n < len(head); n += 5 {
					if headEndFrom([]byte(head[:n]), from) >= 0 {
						b.Fatal("early end")
					}
					from = n
				}
				var r webRequest
				if _, err := parseRequest([]byte(head), size, &r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestWebSocketIncompressibleGoesPlain: a message that compression would
// not shrink goes to a compressing client as a plain frame, byte for byte.
func TestWebSocketIncompressibleGoesPlain(t *testing.T) {
	srv := startWeb(t, Config{WebCompress: true, Framing: FramingLen32})
	w := dialWS(t, srv, "Sec-WebSocket-Extensions: permessage-deflate")
	payload := make([]byte, 2048)
	for i := range payload {
		payload[i] = byte(i*131 + i*i*7 + i>>3) // no repeats deflate can use
	}
	srv.Send(w.id, payload)
	f := w.frame()
	if f.rsv != 0 || f.op != wsOpBinary || !bytes.Equal(f.payload, payload) {
		t.Fatalf("rsv %x op %d, %d bytes; want a plain binary frame of the payload", f.rsv, f.op, len(f.payload))
	}
	if n := srv.Stats().Compressed; n != 0 {
		t.Fatalf("%d compressions counted for a message sent plain", n)
	}
}

// expectSSESkipped checks that a fanout of payload reached ws whole and
// skipped sse, counted as unsupported: sse gets the next push, and nobody
// was closed as slow.
func expectSSESkipped(t *testing.T, srv *Server, ws, sse *webConn, payload []byte) {
	t.Helper()
	if f := ws.frame(); len(f.payload) != len(payload) {
		t.Fatalf("ws got %d bytes", len(f.payload))
	}
	srv.Send(sse.id, []byte("after"))
	if got := sse.event(); got != "after" {
		t.Fatalf("SSE event %q, want the next one", got)
	}
	waitFor(t, 5*time.Second, "the drop to be counted", func() bool { return srv.Stats().Drops[DropUnsupported] == 1 })
	if n := srv.Stats().Closed[ReasonSlow]; n != 0 {
		t.Fatalf("%d clients closed as slow", n)
	}
}
