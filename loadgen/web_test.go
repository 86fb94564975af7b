package loadgen

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/flate"

	"github.com/pushrelay/pushrelay/pkg/stamp"
	"github.com/pushrelay/pushrelay/relay"
)

// TestPoolSpeaksWebTransports: pools of WebSocket (plain and compressed)
// and SSE clients against a real relay's web listener get their IDs,
// count heartbeats as empty messages, and time stamped pushes, including
// a compressed one they must inflate.
func TestPoolSpeaksWebTransports(t *testing.T) {
	srv, err := relay.New(relay.Config{Listen: "127.0.0.1:0", Web: "127.0.0.1:0", WebCompress: true,
		Heartbeat: 50 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	for _, name := range []string{"ws", "ws-deflate", "sse"} {
		t.Run(name, func(t *testing.T) {
			framing, web, err := ParseFraming(name)
			if err != nil || web == WebNone {
				t.Fatalf("ParseFraming(%q): %v %v", name, web, err)
			}
			const n = 100
			p := openPool(t, PoolOptions{Target: srv.WebAddr().String(), Framing: framing, Web: web}, n)
			for _, id := range p.IDs() {
				if !srv.Connected(id) {
					t.Fatalf("pool has ID %s the relay does not know", id)
				}
			}
			payload := stamp.Append(nil, time.Now())
			payload = append(payload, strings.Repeat(`{"k":"v"},`, 200)...) // 2 KB: compressed
			for _, id := range p.IDs() {
				srv.Send(id, payload)
			}
			if err := p.Open(0, 0, time.Now()); err != nil && err != ErrDeadline {
				t.Fatal(err)
			}
			deadline := time.Now().Add(10 * time.Second)
			for (p.Stats.Stamped.Load() < n || p.Stats.Empty.Load() < n) && time.Now().Before(deadline) {
				p.Poll(20 * time.Millisecond)
			}
			if got := p.Stats.Stamped.Load(); got != n {
				t.Fatalf("stamped messages %d, want %d", got, n)
			}
			if p.Stats.Empty.Load() < n {
				t.Fatalf("heartbeats seen %d, want at least one per client", p.Stats.Empty.Load())
			}
			if kinds, _, _, _ := p.Stats.Failures(); len(kinds) != 0 {
				t.Fatalf("failures %v", kinds)
			}
		})
	}
	if srv.Stats().Compressed == 0 {
		t.Fatal("the ws-deflate pool never received a compressed message")
	}
}

// TestPoolRefusesAWrongAnswer: a client pointed at a path that does not
// upgrade fails as BAD_HANDSHAKE, naming the status line.
func TestPoolRefusesAWrongAnswer(t *testing.T) {
	srv, err := relay.New(relay.Config{Listen: "127.0.0.1:0", Web: "127.0.0.1:0", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	// ws-deflate against a relay without --web-compress: 101, but no extension.
	p, err := NewPool(PoolOptions{Target: srv.WebAddr().String(), Web: WebWSDeflate})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	p.Open(3, 0, time.Now().Add(10*time.Second))
	kinds, _, _, phase := p.Stats.Failures()
	if kinds["BAD_HANDSHAKE"] != 3 || phase != "connect" {
		t.Fatalf("failures %v in phase %q, want 3 BAD_HANDSHAKE while connecting", kinds, phase)
	}
}

// TestPoolInflateRefusesGarbage: a compressed frame that does not inflate
// fails that connection as BAD_FRAME, and the next good one still works.
func TestPoolInflateRefusesGarbage(t *testing.T) {
	p := &Pool{opts: PoolOptions{Web: WebWSDeflate, MaxFrame: 1 << 20}}
	if _, err := p.inflate([]byte{0xff, 0xff, 0xff, 0x07, 0x01}); ErrnoName(err) != "BAD_FRAME" {
		t.Fatalf("garbage: %v, want BAD_FRAME", err)
	}
	// "hello" compressed as the relay does, without the sync-flush tail
	// (RFC 7692 7.2.1).
	var z bytes.Buffer
	fw, _ := flate.NewWriter(&z, 6)
	fw.Write([]byte("hello"))
	fw.Flush()
	good := bytes.TrimSuffix(z.Bytes(), []byte{0, 0, 0xff, 0xff})
	got, err := p.inflate(good)
	if err != nil || string(got) != "hello" {
		t.Fatalf("after garbage: %q, %v", got, err)
	}
}
