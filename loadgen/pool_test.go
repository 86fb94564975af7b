package loadgen

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pushrelay/pushrelay/pkg/stamp"
	"github.com/pushrelay/pushrelay/relay"
)

func startRelay(t *testing.T, framing relay.Framing) *relay.Server {
	t.Helper()
	srv, err := relay.New(relay.Config{Listen: "127.0.0.1:0", Framing: framing, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	return srv
}

func TestPoolHoldsConnectionsAndTimesMessages(t *testing.T) {
	for _, f := range []relay.Framing{relay.FramingNUL, relay.FramingLine, relay.FramingLen32} {
		t.Run(f.String(), func(t *testing.T) {
			srv := startRelay(t, f)
			const n = 500
			p := openPool(t, PoolOptions{
				Target:  srv.Addr().String(),
				Framing: f,
				Sources: []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.2")},
			}, n)
			ids := p.IDs()
			for _, id := range ids {
				if !srv.Connected(id) {
					t.Fatalf("pool has ID %s the relay does not know", id)
				}
			}
			// Both source addresses were used.
			seen := map[string]bool{}
			rids, _, _ := srv.List("", n)
			for _, id := range rids {
				info, _ := srv.Info(id)
				seen[info.Remote.Addr().String()] = true
			}
			if !seen["127.0.0.1"] || !seen["127.0.0.2"] {
				t.Fatalf("source addresses used: %v", seen)
			}
			// Stamped pushes are counted and timed; a big one spans reads.
			big := make([]byte, 200<<10)
			for i := range big {
				big[i] = 'b'
			}
			for i, id := range ids[:100] {
				payload := stamp.Append(nil, time.Now())
				payload = append(payload, "hello"...)
				if i == 0 && f == relay.FramingLen32 {
					payload = append(payload, big[:60<<10]...)
				}
				if st := srv.Send(id, payload); st != relay.Queued {
					t.Fatalf("Send: %v", st)
				}
			}
			srv.Broadcast([]byte("unstamped"))
			deadline := time.Now().Add(10 * time.Second)
			for p.Stats.Messages.Load() < 100+n && time.Now().Before(deadline) {
				p.Poll(10 * time.Millisecond)
			}
			if got := p.Stats.Messages.Load(); got != 100+n {
				t.Fatalf("messages %d, want %d", got, 100+n)
			}
			if got := p.Latency().Count(); got != 100 {
				t.Fatalf("timed %d messages, want 100", got)
			}
			if lat := p.Latency().Quantile(0.5); lat <= 0 || lat > 5*time.Second {
				t.Fatalf("median latency %v", lat)
			}
			if per := p.MessagesPerConn(); per[ids[0]] != 2 || per[ids[n-1]] != 1 {
				t.Fatalf("per-connection counts %d and %d, want 2 and 1", per[ids[0]], per[ids[n-1]])
			}
		})
	}
}

func TestPoolReportsRefusalByErrno(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	p, err := NewPool(PoolOptions{Target: addr})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	p.Open(3, 0, time.Now().Add(5*time.Second))
	kinds, first, at, phase := p.Stats.Failures()
	if kinds["ECONNREFUSED"] != 3 || first != "ECONNREFUSED" || at.IsZero() || phase != "connect" {
		t.Fatalf("failures %v, first %q at %v in %q; want 3 ECONNREFUSED while connecting", kinds, first, at, phase)
	}
}

func TestPoolNoticesAClosedConnection(t *testing.T) {
	srv := startRelay(t, relay.FramingNUL)
	p, _ := NewPool(PoolOptions{Target: srv.Addr().String()})
	defer p.Close()
	p.Open(2, 0, time.Now().Add(5*time.Second))
	srv.Kick(p.IDs()[0])
	deadline := time.Now().Add(5 * time.Second)
	for p.Stats.Established.Load() != 1 && time.Now().Before(deadline) {
		p.Poll(10 * time.Millisecond)
	}
	kinds, _, _, phase := p.Stats.Failures()
	if kinds["EOF"] != 1 || phase != "established" {
		t.Fatalf("failures %v in %q; want one EOF after establishment", kinds, phase)
	}
}

func TestHistogramQuantiles(t *testing.T) {
	var h Histogram
	for i := 1; i <= 1000; i++ {
		h.Record(time.Duration(i) * time.Microsecond)
	}
	for _, tc := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 500 * time.Microsecond}, {0.99, 990 * time.Microsecond}, {1, 1000 * time.Microsecond}} {
		got := h.Quantile(tc.q)
		if diff := float64(got-tc.want) / float64(tc.want); diff > 0.07 || diff < -0.07 {
			t.Errorf("q%.2f = %v, want %v within 7%%", tc.q, got, tc.want)
		}
	}
	var o Histogram
	o.Record(time.Second)
	h.Merge(&o)
	if h.Count() != 1001 || h.Max() != time.Second {
		t.Fatalf("merged count %d max %v", h.Count(), h.Max())
	}
}

// openPool opens n connections with opts and fails the test unless all of
// them hold an ID. The pool closes with the test.
func openPool(t *testing.T, opts PoolOptions, n int) *Pool {
	t.Helper()
	p, err := NewPool(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	if err := p.Open(n, 0, time.Now().Add(20*time.Second)); err != nil {
		t.Fatal(err)
	}
	if got := p.Stats.Established.Load(); got != int64(n) {
		kinds, first, _, _ := p.Stats.Failures()
		t.Fatalf("established %d of %d; failures %v (first %s)", got, n, kinds, first)
	}
	return p
}
