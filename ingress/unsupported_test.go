package ingress

import (
	"bufio"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pushrelay/pushrelay/ingress/client"
	"github.com/pushrelay/pushrelay/ingress/wire"
	"github.com/pushrelay/pushrelay/relay"
)

// browser is a web client of the relay (WebSocket or SSE) on a real
// loopback connection: just enough of each protocol to read what the
// relay writes.
type browser struct {
	t  *testing.T
	nc net.Conn
	br *bufio.Reader
	id string
	ws bool
}

func dialBrowser(t *testing.T, srv *relay.Server, ws bool) *browser {
	t.Helper()
	nc, err := net.DialTimeout("tcp", srv.WebAddr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	req := "GET /sse HTTP/1.1\r\nHost: relay.test\r\n\r\n"
	if ws {
		req = "GET /ws HTTP/1.1\r\nHost: relay.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
			"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	}
	if _, err := io.WriteString(nc, req); err != nil {
		t.Fatal(err)
	}
	b := &browser{t: t, nc: nc, br: bufio.NewReader(nc), ws: ws}
	nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(b.br, nil)
	if err != nil || resp.StatusCode/100 > 2 {
		t.Fatalf("web handshake: %v %v", resp, err)
	}
	op, id := b.next()
	if !relay.ValidID(string(id)) || ws && op != 1 {
		t.Fatalf("first message: op %d %q, want an ID", op, id)
	}
	b.id = string(id)
	return b
}

// next returns the next message: a WebSocket frame's opcode and payload,
// or an SSE event's data (opcode 0).
func (b *browser) next() (op byte, payload []byte) {
	b.t.Helper()
	b.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if b.ws {
		var h [2]byte
		if _, err := io.ReadFull(b.br, h[:]); err != nil {
			b.t.Fatalf("ws read: %v", err)
		}
		n := int(h[1] & 0x7f)
		if n == 126 {
			var l [2]byte
			io.ReadFull(b.br, l[:])
			n = int(binary.BigEndian.Uint16(l[:]))
		}
		p := make([]byte, n)
		if _, err := io.ReadFull(b.br, p); err != nil {
			b.t.Fatalf("ws read: %v", err)
		}
		if h[0]&0x0f == 9 { // a heartbeat ping
			return b.next()
		}
		return h[0] & 0x0f, p
	}
	var data []string
	for {
		line, err := b.br.ReadString('\n')
		if err != nil {
			b.t.Fatalf("sse read: %v", err)
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "" && data != nil:
			return 0, []byte(strings.Join(data, "\n"))
		case strings.HasPrefix(line, "data: "):
			data = append(data, line[len("data: "):])
		}
	}
}

// TestUnsupportedThroughBothIngresses: under the default nul framing with
// a web listener, a payload with 0x00 goes to the WebSocket and SSE
// clients and not the tcp one, and both ingresses say so: a send to that
// one client fails with its own status (wire unsupported, HTTP 422
// "unsupported") naming the byte; a fanout counts it in "unsupported".
// The data_base64 example of docs/http.md works (found in issue 15: it
// was refused for every client).
func TestUnsupportedThroughBothIngresses(t *testing.T) {
	e := newEnv(t, relay.Config{Web: "127.0.0.1:0"}, Config{})
	h := httpStart(t, e.rel, e.rel.Config().MaxMessage, HTTPConfig{})
	api := newHTTPAPI(t, "http://"+h.Addr(), nil, "")
	raw := e.connect()
	ws := dialBrowser(t, e.rel, true)
	sse := dialBrowser(t, e.rel, false)
	cl := e.dial()
	x := ctx(t)
	nul := []byte("a\x00b")
	bin := []byte{0x00, 0x01, 0x02, 0xff} // docs/http.md's AAEC/w==

	// Unix socket, one client.
	_, err := cl.Send(x, raw.id, nul)
	if client.StatusOf(err) != wire.StatusUnsupported || !strings.Contains(err.Error(), "0x00 (at offset 1)") || !strings.Contains(err.Error(), "WebSocket") {
		t.Fatalf("Send to the tcp client: %v (status %v), want unsupported naming the byte and what could take it", err, client.StatusOf(err))
	}
	_, err = cl.Send(x, sse.id, bin)
	if client.StatusOf(err) != wire.StatusUnsupported || !strings.Contains(err.Error(), "not UTF-8") {
		t.Fatalf("Send of bytes to the SSE client: %v, want unsupported: not UTF-8", err)
	}
	if c, err := cl.Send(x, ws.id, bin); err != nil || c != (client.Counts{Queued: 1}) {
		t.Fatalf("Send of bytes to the WebSocket client: %+v %v", c, err)
	}
	// Unix socket, many.
	if c, err := cl.Broadcast(x, nul); err != nil || c != (client.Counts{Queued: 2, Unsupported: 1}) {
		t.Fatalf("Broadcast: %+v %v, want 2 queued, 1 unsupported", c, err)
	}
	if c, err := cl.SendMany(x, []string{raw.id, ws.id, sse.id}, bin); err != nil || c != (client.Counts{Queued: 1, Unsupported: 2}) {
		t.Fatalf("SendMany: %+v %v, want 1 queued, 2 unsupported", c, err)
	}

	// HTTP, one client.
	r := api.do("POST", "/v1/send/"+raw.id, nul)
	r.wantError(t, 422, "unsupported", "nul framing cannot carry byte 0x00")
	api.do("POST", "/v1/send/"+sse.id, bin).wantError(t, 422, "unsupported", "Server-Sent Events")
	// HTTP, many: the documented data_base64 example, and a broadcast.
	body := fmt.Sprintf(`{"ids":[%q,%q,%q],"data_base64":%q}`, raw.id, ws.id, sse.id, base64.StdEncoding.EncodeToString(bin))
	wantJSON(t, api.do("POST", "/v1/send", []byte(body)), `{"queued":1,"unknown":0,"dropped":0,"overloaded":0,"unsupported":2}`)
	wantJSON(t, api.do("POST", "/v1/broadcast", nul), `{"queued":2,"unknown":0,"dropped":0,"overloaded":0,"unsupported":1}`)
	// docs/http.md's two data_base64 examples, to the tcp client alone.
	wantJSON(t, api.do("POST", "/v1/send", []byte(`{"ids":["`+raw.id+`"],"data_base64":"AQL/"}`)), `{"queued":1,"unknown":0,"dropped":0,"overloaded":0,"unsupported":0}`)
	wantJSON(t, api.do("POST", "/v1/send", []byte(`{"ids":["`+raw.id+`"],"data_base64":"AAEC/w=="}`)), `{"queued":0,"unknown":0,"dropped":0,"overloaded":0,"unsupported":1}`)
	if got := raw.next(t); string(got) != "\x01\x02\xff" {
		t.Fatalf("the tcp client read %q, want 01 02 ff", got)
	}

	// What each client read.
	for _, want := range []struct {
		op byte
		p  []byte
	}{{2, bin}, {1, nul}, {2, bin}, {2, bin}, {1, nul}} {
		if op, p := ws.next(); op != want.op || string(p) != string(want.p) {
			t.Fatalf("ws: op %d %q, want op %d %q", op, p, want.op, want.p)
		}
	}
	for range 2 {
		if _, p := sse.next(); string(p) != string(nul) {
			t.Fatalf("sse: %q, want %q", p, nul)
		}
	}
	if c, err := cl.Send(x, raw.id, []byte("end")); err != nil || c.Queued != 1 {
		t.Fatalf("Send: %+v %v", c, err)
	}
	if got := raw.next(t); string(got) != "end" {
		t.Fatalf("the tcp client read %q, want only %q", got, "end")
	}
	// Every left-out recipient is counted in /metrics.
	m := parsePrometheus(t, string(api.do("GET", "/metrics", nil).want(t, 200).body))
	deadline := time.Now().Add(5 * time.Second)
	for m[`pushrelay_drops_total{reason="unsupported"}`] != 11 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
		m = parsePrometheus(t, string(api.do("GET", "/metrics", nil).want(t, 200).body))
	}
	if n := m[`pushrelay_drops_total{reason="unsupported"}`]; n != 11 {
		t.Fatalf(`pushrelay_drops_total{reason="unsupported"} = %v, want 11`, n)
	}
}

// wantJSON checks a 200 reply's body against want, compared as JSON.
func wantJSON(t *testing.T, r httpResponse, want string) {
	t.Helper()
	r.want(t, 200)
	var got, exp any
	if err := json.Unmarshal(r.body, &got); err != nil {
		t.Fatalf("reply %q: %v", r.body, err)
	}
	json.Unmarshal([]byte(want), &exp)
	if fmt.Sprint(got) != fmt.Sprint(exp) {
		t.Fatalf("reply %s, want %s", r.body, want)
	}
}
