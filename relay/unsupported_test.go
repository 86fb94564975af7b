package relay

import (
	"strings"
	"testing"
	"time"
)

// TestPayloadJudgedPerTransport: under the default nul framing a payload
// with a 0x00 byte reaches the WebSocket client (as a binary frame) and the
// SSE client (valid UTF-8), and only the raw client, which cannot read it,
// is counted unsupported; a payload that is not UTF-8 reaches the WebSocket
// client alone. Each push says so in its reply (found in issue 15: the
// payload was refused for everyone, and a non-UTF-8 push to an SSE client
// answered queued and never arrived).
func TestPayloadJudgedPerTransport(t *testing.T) {
	srv := startWeb(t, Config{}) // nul framing
	raw := dial(t, srv)
	ws := dialWS(t, srv)
	sse := dialSSE(t, srv)
	all := []string{raw.id, ws.id, sse.id}
	for _, id := range all {
		if _, err := srv.Subscribe(id, "news"); err != nil {
			t.Fatal(err)
		}
	}
	nul := []byte("a\x00b")         // UTF-8, but nul framing cannot carry it
	bin := []byte{0xff, 0x00, 0x01} // neither UTF-8 nor nul-free

	// Unicasts: each recipient's own answer.
	for _, c := range []struct {
		id      string
		payload []byte
		want    Status
	}{
		{raw.id, nul, Unsupported},
		{ws.id, nul, Queued},
		{sse.id, nul, Queued},
		{raw.id, bin, Unsupported},
		{ws.id, bin, Queued},
		{sse.id, bin, Unsupported},
	} {
		if got := srv.Send(c.id, c.payload); got != c.want {
			t.Fatalf("Send(%q) to %s: %v, want %v", c.payload, srv.reg.get(c.id).transport, got, c.want)
		}
	}
	// Fanouts: counted per transport when accepted.
	for _, c := range []struct {
		name    string
		push    func([]byte) (Counts, Status)
		payload []byte
		want    Counts
	}{
		{"broadcast", srv.Broadcast, nul, Counts{Queued: 2, Unsupported: 1}},
		{"publish", func(p []byte) (Counts, Status) { return srv.Publish("news", p) }, nul, Counts{Queued: 2, Unsupported: 1}},
		{"send_many", func(p []byte) (Counts, Status) { return srv.SendMany(all, p) }, nul, Counts{Queued: 2, Unsupported: 1}},
		{"broadcast", srv.Broadcast, bin, Counts{Queued: 1, Unsupported: 2}},
		{"publish", func(p []byte) (Counts, Status) { return srv.Publish("news", p) }, bin, Counts{Queued: 1, Unsupported: 2}},
		{"send_many", func(p []byte) (Counts, Status) { return srv.SendMany(all, p) }, bin, Counts{Queued: 1, Unsupported: 2}},
	} {
		got, st := c.push(c.payload)
		if st != Queued || got != c.want {
			t.Fatalf("%s %q: %+v %v, want %+v", c.name, c.payload, got, st, c.want)
		}
	}
	srv.Broadcast([]byte("end"))

	// What each client read, in order.
	if got, err := raw.next(5 * time.Second); err != nil || string(got) != "end" {
		t.Fatalf("raw client read %q %v, want only %q", got, err, "end")
	}
	wsWant := [][]byte{nul, bin, nul, nul, nul, bin, bin, bin, []byte("end")}
	for i, want := range wsWant {
		f := ws.frame()
		op := byte(wsOpText)
		if string(want) == string(bin) {
			op = wsOpBinary
		}
		if string(f.payload) != string(want) || f.op != op {
			t.Fatalf("ws frame %d: op %d %q, want op %d %q", i, f.op, f.payload, op, want)
		}
	}
	for i, want := range []string{"a\x00b", "a\x00b", "a\x00b", "a\x00b", "end"} {
		if got := sse.event(); got != want {
			t.Fatalf("sse event %d: %q, want %q", i, got, want)
		}
	}
	// Every recipient left out is one drop of reason unsupported: 6 by
	// the unicasts and send_many, at once; 6 by the fanouts' loops.
	waitFor(t, 5*time.Second, "drops{unsupported} to reach 12", func() bool { return srv.Stats().Drops[DropUnsupported] >= 12 })
	if d := srv.Stats().Drops; d[DropUnsupported] != 12 {
		t.Fatalf("drops %v", d)
	}
}

// TestPayloadNoTransportCanCarry: without a web listener, a payload the
// framing forbids is refused as a whole, with the reason and the fix.
func TestPayloadNoTransportCanCarry(t *testing.T) {
	srv := startServer(t, Config{})
	c := dial(t, srv)
	if st := srv.Send(c.id, []byte("a\x00b")); st != BadPayload {
		t.Fatalf("Send: %v, want %v", st, BadPayload)
	}
	if _, st := srv.Broadcast([]byte("a\x00b")); st != BadPayload {
		t.Fatalf("Broadcast: %v, want %v", st, BadPayload)
	}
	err := srv.CheckPayload([]byte("a\x00b"))
	if err == nil || !strings.Contains(err.Error(), "--web") || !strings.Contains(err.Error(), "offset 1") {
		t.Fatalf("CheckPayload: %v, want the offset and the fix", err)
	}
	if st := srv.Send(c.id, []byte("ok")); st != Queued {
		t.Fatalf("Send: %v", st)
	}
	c.expect("ok")
}

// TestUnsupportedReason: the message an ingress gives names the client's
// transport, the byte and what would take it.
func TestUnsupportedReason(t *testing.T) {
	srv := startWeb(t, Config{MaxMessage: 16 << 10, MaxOutbound: 64 << 10})
	raw := dial(t, srv)
	sse := dialSSE(t, srv)
	for _, c := range []struct {
		id      string
		payload string
		want    []string
	}{
		{raw.id, "ab\x00", []string{"tcp client", "0x00", "offset 2", "WebSocket"}},
		{sse.id, "ab\xfe", []string{"Server-Sent Events", "0xfe", "offset 2", "WebSocket"}},
		{sse.id, strings.Repeat("\n", 10000), []string{"--max-outbound", "70008 bytes"}},
	} {
		got := srv.UnsupportedReason(c.id, []byte(c.payload))
		for _, w := range c.want {
			if !strings.Contains(got, w) {
				t.Fatalf("UnsupportedReason(%.20q) = %q, want it to say %q", c.payload, got, w)
			}
		}
	}
}
