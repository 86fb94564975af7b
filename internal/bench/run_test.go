package bench

import (
	"context"
	"math"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/pushrelay/pushrelay/relay"
)

func TestAccept4CountsAccepts(t *testing.T) {
	s := NewAccept4("127.0.0.1:0")
	if err := s.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			_ = s.Close()
		}
	})
	const n = 100
	for i := range n {
		c, err := net.DialTimeout("tcp", s.Addr().String(), 5*time.Second)
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		t.Cleanup(func() { c.Close() })
	}
	waitFor(t, "100 accepts", func() bool { return s.Accepted() == n })
	if got := s.Len(); got != n {
		t.Errorf("Len() = %d, want %d", got, n)
	}
	first, last := s.AcceptTimes()
	if first <= 0 || last < first {
		t.Errorf("AcceptTimes() = %d, %d; want 0 < first <= last", first, last)
	}
	closed = true
	if err := s.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}

func TestChildAnswersCommands(t *testing.T) {
	for _, server := range []string{ServerRelay, ServerBaseline, ServerAccept4, ServerAccept4Write} {
		t.Run(server, func(t *testing.T) {
			c, err := startChild(testChildCommand(t), server, relay.FramingLine, nil, os.Stderr)
			if err != nil {
				t.Fatalf("startChild: %v", err)
			}
			defer func() {
				if err := c.quit(); err != nil {
					t.Errorf("quit: %v", err)
				}
			}()
			if !c.addr.Addr().IsLoopback() || c.addr.Port() == 0 || c.pid <= 0 {
				t.Fatalf("hello: addr %v pid %d; want a loopback port and a pid", c.addr, c.pid)
			}
			if server != ServerAccept4 {
				dialTest(t, c.addr.String(), relay.FramingLine, 0) // reads and checks the ID frame
			} else {
				conn, err := net.Dial("tcp", c.addr.String())
				if err != nil {
					t.Fatalf("dial: %v", err)
				}
				defer conn.Close()
			}
			if err := waitConns(context.Background(), c, 1, 5*time.Second); err != nil {
				t.Fatal(err)
			}
			if err := c.do("gc"); err != nil {
				t.Fatalf("gc: %v", err)
			}
			st, err := c.stats()
			if err != nil {
				t.Fatalf("stats: %v", err)
			}
			if st.Conns != 1 || st.Accepted != 1 || st.RSSBytes <= 0 || st.HeapInuse == 0 || st.Goroutines == 0 {
				t.Errorf("stats = %+v; want 1 connection, 1 accepted and memory figures", st)
			}
			if strings.HasPrefix(server, ServerAccept4) && (st.FirstAccept <= 0 || st.LastAccept < st.FirstAccept) {
				t.Errorf("accept4 stats: first %d, last %d; want accept times", st.FirstAccept, st.LastAccept)
			}
			if err := c.do("frobnicate"); err == nil || !strings.Contains(err.Error(), "unknown command") {
				t.Errorf("unknown command: got %v, want an error naming it", err)
			}
		})
	}
}

func checkFinite(t *testing.T, server, name string, v float64) {
	t.Helper()
	if math.IsNaN(v) || math.IsInf(v, 0) {
		t.Errorf("%s: %s = %v, want a finite number", server, name, v)
	}
}

func TestRunIdleSmall(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	const n = 200
	res, err := RunIdle(ctx, IdleOptions{
		Conns:      n,
		Procs:      Procs{ChildCommand: testChildCommand(t), Stderr: testWriter{t}},
		Settle:     50 * time.Millisecond,
		ProfileDir: t.TempDir(),
	})
	if err != nil {
		t.Fatalf("RunIdle: %v", err)
	}
	if len(res.Servers) != 2 || res.Servers[0].Server != ServerRelay || res.Servers[1].Server != ServerBaseline {
		t.Fatalf("servers = %+v, want relay then baseline", res.Servers)
	}
	for _, s := range res.Servers {
		if s.Conns != n || s.After.Conns != n {
			t.Errorf("%s: %d connections, child reports %d open; want %d", s.Server, s.Conns, s.After.Conns, n)
		}
		for name, v := range map[string]float64{
			"RSS/conn": s.RSSPerConn, "heap in use/conn": s.HeapInusePerConn, "heap alloc/conn": s.HeapAllocPerConn,
			"stacks/conn": s.StackInusePerConn, "kernel/socket": s.KernelPerSocket,
		} {
			checkFinite(t, s.Server, name, v)
		}
		if s.Before.RSSBytes <= 0 || s.After.RSSBytes <= 0 || s.KernelAfter.SlabBytes <= 0 {
			t.Errorf("%s: missing readings: before %+v after %+v kernel %+v", s.Server, s.Before, s.After, s.KernelAfter)
		}
	}
	// The baseline runs two goroutines per connection, the relay none.
	if g := res.Servers[1].GoroutinesPerConn; g < 1.9 || g > 2.1 {
		t.Errorf("baseline: %.2f goroutines per connection, want 2", g)
	}
	if g := res.Servers[0].GoroutinesPerConn; g > 0.1 {
		t.Errorf("relay: %.2f goroutines per connection, want 0", g)
	}
	if len(res.Checks) != 4 {
		t.Errorf("%d checks, want 4: %+v", len(res.Checks), res.Checks)
	}
	checkResultFiles(t, res, res.Markdown(), "servers", "| relay |", "| baseline |", "kernel/socket")
}

func TestRunStormSmall(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	const n = 200
	for _, sources := range []int{1, 4} {
		res, err := RunStorm(ctx, StormOptions{
			Conns:   n,
			Sources: sources,
			Rounds:  2,
			Pause:   -1,
			Procs:   Procs{ChildCommand: testChildCommand(t), Stderr: testWriter{t}},
			Timeout: 20 * time.Second,
		})
		if err != nil {
			t.Fatalf("RunStorm with %d sources: %v", sources, err)
		}
		if len(res.Servers) != 2 || res.Servers[0].Server != ServerAccept4 || res.Servers[1].Server != ServerRelay {
			t.Fatalf("servers = %+v, want accept4 then relay", res.Servers)
		}
		if len(res.Runs) != 4 {
			t.Fatalf("%d runs, want 2 rounds of 2 servers", len(res.Runs))
		}
		for _, s := range res.Runs {
			if !s.Complete || s.Accepted != n || s.ConnectErrors != 0 {
				t.Errorf("%s: complete %v, accepted %d, %d connect errors (%s); want all %d accepted", s.Server, s.Complete, s.Accepted, s.ConnectErrors, s.ConnectError, n)
			}
			checkFinite(t, s.Server, "rate", s.Rate)
			if s.Rate <= 0 || s.Seconds <= 0 {
				t.Errorf("%s: rate %v over %vs, want both positive", s.Server, s.Rate, s.Seconds)
			}
			if _, ok := s.NetstatDelta["ListenOverflows"]; !ok {
				t.Errorf("%s: no ListenOverflows delta in %v", s.Server, s.NetstatDelta)
			}
			if _, ok := s.NetstatDelta["ListenDrops"]; !ok {
				t.Errorf("%s: no ListenDrops delta in %v", s.Server, s.NetstatDelta)
			}
		}
		if res.Servers[0].ServerClockRate <= 0 {
			t.Errorf("accept4: server-clock rate %v, want positive", res.Servers[0].ServerClockRate)
		}
		if len(res.Checks) != 2 {
			t.Errorf("%d checks, want 2: %+v", len(res.Checks), res.Checks)
		}
		checkResultFiles(t, res, res.Markdown(), "servers", "| accept4 |", "| relay |", "ListenOverflows")
	}
}

// testWriter sends progress lines to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
