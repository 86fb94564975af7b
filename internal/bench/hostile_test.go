package bench

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pushrelay/pushrelay/relay"
)

// hostile turns on TestHostile, the probe behind docs/hardening.md. It
// takes about ten seconds and thousands of descriptors, so the default `make test` leaves it out:
//
//	go test ./internal/bench -run TestHostile -hostile -v
var hostile = flag.Bool("hostile", false, "run TestHostile: hostile inputs against the real binary, printing the table of docs/hardening.md (PUSHRELAY_HOSTILE_TABLE=file writes it)")

// hostileRow is one line of the table: what was tried and what the relay
// held.
type hostileRow struct {
	input, held string
}

// TestHostile runs hostile inputs against the real binary, one relay
// process per policy, with a healthy client connected throughout that must
// receive a broadcast after each input (other clients unaffected). It
// measures the relay process's RSS and descriptors from /proc before,
// during and after, and fails when the relay does not hold: a healthy
// client that misses its message, descriptors that do not come back, or
// memory past the stated bound. Every load is bounded in count and time.
func TestHostile(t *testing.T) {
	if !*hostile {
		t.Skip("run with -hostile: go test ./internal/bench -run TestHostile -hostile -v")
	}
	cmd := testRelayCommand(t)
	var rows []hostileRow
	add := func(input, format string, args ...any) {
		rows = append(rows, hostileRow{input, fmt.Sprintf(format, args...)})
		t.Logf("%s: %s", input, rows[len(rows)-1].held)
	}

	// One relay with the defaults (--slow=close) and the web listener;
	// --sndbuf 4096 keeps the kernel memory of the stalled clients below
	// small (autotuned buffers are the doctor's business, see
	// docs/kernel-tuning.md).
	p := startHostileRelay(t, append(cmd, "--web", "127.0.0.1:0", "--sndbuf", "4096"))
	h := newHealthy(t, p)
	p.warm(t)

	t.Run("inbound flood", func(t *testing.T) {
		const clients, each = 20, 4 << 20
		base := p.snap(t)
		var sent atomic.Int64
		var wg sync.WaitGroup
		for i := 0; i < clients; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c := hostileDial(t, p.addr, 0)
				if c == nil {
					return
				}
				defer c.Close()
				c.SetWriteDeadline(time.Now().Add(10 * time.Second))
				chunk := bytes.Repeat([]byte{'x'}, 64<<10)
				for n := 0; n < each; n += len(chunk) {
					m, err := c.Write(chunk)
					sent.Add(int64(m))
					if err != nil {
						return // reset by the relay: the expected end
					}
				}
			}()
		}
		wg.Wait()
		peak := p.snap(t)
		h.check(t, p)
		after := p.settle(t, base.fds)
		m := p.metrics(t)
		closed := m.sum(`pushrelay_connections_closed_total{reason="inbound_limit"}`)
		if closed < clients {
			t.Errorf("closed for --max-inbound: got %v, want %d", closed, clients)
		}
		add(fmt.Sprintf("%d clients each write up to %s as fast as they can", clients, mib(each)),
			"their writes took %s in all (kernel buffers; the relay reads nothing) before the relay reset each past --max-inbound (`closed{reason=\"inbound_limit\"}` %v); RSS %s → %s; descriptors %d → %d → %d; healthy client served",
			mib(sent.Load()), closed, mib(base.rss), mib(peak.rss), base.fds, peak.fds, after.fds)
	})

	t.Run("reset storm", func(t *testing.T) {
		const conns = 3000
		base := p.snap(t)
		start := time.Now()
		parallel(8, conns, func(int) {
			if c := hostileDial(t, p.addr, 0); c != nil {
				_ = c.SetLinger(0) // close sends RST
				c.Close()
			}
		})
		elapsed := time.Since(start)
		h.check(t, p)
		after := p.settle(t, base.fds)
		add(fmt.Sprintf("%d connections opened and reset (SO_LINGER 0) by 8 goroutines", conns),
			"all accepted and released in %v; RSS %s → %s; descriptors %d → %d; healthy client served",
			elapsed.Round(time.Millisecond), mib(base.rss), mib(after.rss), base.fds, after.fds)
	})

	t.Run("connect storm", func(t *testing.T) {
		const conns = 5000
		base := p.snap(t)
		held := make([]*net.TCPConn, conns)
		start := time.Now()
		parallel(8, conns, func(i int) { held[i] = hostileDial(t, p.addr, 0) })
		elapsed := time.Since(start)
		waitUntil(t, 10*time.Second, "every storm connection open", func() bool { return p.snap(t).fds >= base.fds+conns })
		peak := p.snap(t)
		h.check(t, p)
		for _, c := range held {
			if c != nil {
				c.Close()
			}
		}
		after := p.settle(t, base.fds)
		add(fmt.Sprintf("%d connections opened by 8 goroutines and held", conns),
			"all accepted in %v; RSS %s → %s (%d bytes per connection); descriptors %d → %d → %d after they closed; healthy client served",
			elapsed.Round(time.Millisecond), mib(base.rss), mib(peak.rss), (peak.rss-base.rss)/conns, base.fds, peak.fds, after.fds)
	})

	t.Run("web slowloris", func(t *testing.T) {
		const conns = 300
		base := p.snap(t)
		held := make([]*net.TCPConn, conns)
		parallel(8, conns, func(i int) {
			c := hostileDial(t, p.webAddr, 0)
			if c == nil {
				return
			}
			if _, err := c.Write([]byte("GET /ws HTTP/1.1\r\nHost: x\r\nX-Slow: ")); err != nil {
				t.Errorf("slowloris write: %v", err)
			}
			held[i] = c
		})
		start := time.Now()
		// One header byte a second each, until the relay gives up on them.
		var wg sync.WaitGroup
		var lasted atomic.Int64
		for _, c := range held {
			if c == nil {
				continue
			}
			wg.Add(1)
			go func(c *net.TCPConn) {
				defer wg.Done()
				defer c.Close()
				for i := 0; i < 30; i++ {
					if _, err := c.Write([]byte{'a'}); err != nil {
						break
					}
					c.SetReadDeadline(time.Now().Add(time.Second))
					if _, err := c.Read(make([]byte, 512)); err != nil && !isTimeoutErr(err) {
						break // answered 408 and closed
					}
				}
				lasted.Store(max(lasted.Load(), int64(time.Since(start))))
			}(c)
		}
		h.check(t, p) // during the attack
		wg.Wait()
		if d := time.Duration(lasted.Load()); d > 15*time.Second {
			t.Errorf("slowloris connections lasted %v, want them closed by --web-handshake-timeout (5 s)", d)
		}
		after := p.settle(t, base.fds)
		add(fmt.Sprintf("%d web connections send a request head one byte a second", conns),
			"each answered 408 and closed within %v (--web-handshake-timeout 5 s); descriptors %d → %d; healthy client served during it",
			time.Duration(lasted.Load()).Round(100*time.Millisecond), base.fds, after.fds)
	})

	t.Run("web oversized headers", func(t *testing.T) {
		const conns = 200
		base := p.snap(t)
		var answered431 atomic.Int64
		head := "GET /ws HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("b", 1<<20) + "\r\n\r\n"
		parallel(8, conns, func(int) {
			c := hostileDial(t, p.webAddr, 0)
			if c == nil {
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			_, _ = c.Write([]byte(head))
			line, err := bufio.NewReader(c).ReadString('\n')
			if err == nil && strings.Contains(line, " 431 ") {
				answered431.Add(1)
			}
		})
		h.check(t, p)
		after := p.settle(t, base.fds)
		if answered431.Load() == 0 {
			t.Errorf("no 431 answers to 1 MiB request heads")
		}
		add(fmt.Sprintf("%d web connections send a 1 MiB request header", conns),
			"%d of %d read a 431 answer, then the close; RSS %s → %s; descriptors %d → %d; healthy client served",
			answered431.Load(), conns, mib(base.rss), mib(after.rss), base.fds, after.fds)
	})

	t.Run("clients that never read", func(t *testing.T) {
		const stalled, msgs, size = 200, 400, 1000
		base := p.snap(t)
		frozen := make([]*net.TCPConn, stalled)
		parallel(8, stalled, func(i int) { frozen[i] = hostileDialID(t, p.addr, 4096) })
		got := h.broadcasts(t, p, msgs, size)
		peak := p.snap(t)
		m := p.metrics(t)
		closed := m.sum(`pushrelay_connections_closed_total{reason="slow_consumer"}`)
		for _, c := range frozen {
			if c != nil {
				c.Close()
			}
		}
		after := p.settle(t, base.fds)
		if closed < stalled {
			t.Errorf("closed as slow consumers: got %v, want %d", closed, stalled)
		}
		add(fmt.Sprintf("%d clients with a 4 KiB receive buffer never read; %d broadcasts of %d bytes (--slow=close, the default; --sndbuf 4096)", stalled, msgs, size),
			"all %v closed as slow consumers (reset); the healthy client got %d of %d in order; RSS %s → %s at the peak (%s per stalled client) → %s after (the Go runtime returns freed pages over minutes); descriptors %d → %d",
			closed, got, msgs, mib(base.rss), mib(peak.rss), kib((peak.rss-base.rss)/stalled), mib(after.rss), base.fds, after.fds)
	})
	p.stop(t)

	t.Run("slow=drop stalled clients", func(t *testing.T) {
		const stalled, msgs, size = 200, 400, 1000
		d := startHostileRelay(t, append(cmd, "--slow", "drop", "--sndbuf", "4096"))
		hd := newHealthy(t, d)
		d.warm(t)
		base := d.snap(t)
		frozen := make([]*net.TCPConn, stalled)
		parallel(8, stalled, func(i int) { frozen[i] = hostileDialID(t, d.addr, 4096) })
		idle := d.snap(t)
		got := hd.broadcasts(t, d, msgs, size)
		full := d.snap(t)
		m := d.metrics(t)
		open := m.sum("pushrelay_connections_open")
		drops := m.sum(`pushrelay_drops_total{reason="slow_consumer"}`)
		per := (full.rss - idle.rss) / stalled
		if open != stalled+1 || drops == 0 {
			t.Errorf("got %v open and %v slow drops, want %d open and drops", open, drops, stalled+1)
		}
		// RSS also counts the Go heap's headroom (GOGC) and freed pages
		// not yet returned: the heap itself is checked to the byte by
		// relay's TestStalledClientMemoryWithinMaxOutbound.
		if per > 3*relay.DefaultMaxOutbound {
			t.Errorf("RSS per stalled client %s, want at most three times --max-outbound", kib(per))
		}
		for _, c := range frozen {
			if c != nil {
				c.Close()
			}
		}
		after := d.settle(t, base.fds)
		add(fmt.Sprintf("%d clients with a 4 KiB receive buffer never read; %d broadcasts of %d bytes (--slow=drop --sndbuf 4096)", stalled, msgs, size),
			"all stayed connected, %v messages dropped for them (`drops{reason=\"slow_consumer\"}`); the healthy client got %d of %d in order; RSS %s idle → %s stalled: %s per stalled client (heap: 256 KiB, the --max-outbound bound); descriptors %d → %d after they left",
			drops, got, msgs, mib(idle.rss), mib(full.rss), kib(per), base.fds, after.fds)
		d.stop(t)
	})

	var b strings.Builder
	b.WriteString("| hostile input | what the relay held |\n| --- | --- |\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s | %s |\n", r.input, r.held)
	}
	t.Logf("table for docs/hardening.md:\n%s", b.String())
	if name := os.Getenv("PUSHRELAY_HOSTILE_TABLE"); name != "" {
		if err := os.WriteFile(name, []byte(b.String()), 0o644); err != nil {
			t.Error(err)
		}
	}
}

// hostileRelay is a relay process under attack.
type hostileRelay struct{ *relayProc }

func startHostileRelay(t *testing.T, command []string) *hostileRelay {
	t.Helper()
	p, err := startRelayProc(command, nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.kill)
	return &hostileRelay{p}
}

func (p *hostileRelay) stop(t *testing.T) {
	if err := p.relayProc.stop(); err != nil {
		t.Errorf("relay exit: %v", err)
	}
}

func (p *hostileRelay) metrics(t *testing.T) relayMetrics {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m, err := p.settledMetrics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// warm puts a connection on every event loop once, so that each loop's
// doorbell (made when its first client arrives) is counted in the
// descriptors every measurement starts from.
func (p *hostileRelay) warm(t *testing.T) {
	t.Helper()
	for i := 0; i < 16; i++ {
		if c := hostileDialID(t, p.addr, 0); c != nil {
			c.Close()
		}
	}
	time.Sleep(200 * time.Millisecond)
}

// procSnap is the relay process's resident memory and open descriptors.
type procSnap struct {
	rss int64
	fds int
}

func (p *hostileRelay) snap(t *testing.T) procSnap {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.pid))
	if err != nil {
		t.Fatal(err)
	}
	var s procSnap
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			s.rss = kb << 10
		}
	}
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", p.pid))
	if err != nil {
		t.Fatal(err)
	}
	s.fds = len(ents)
	return s
}

// settle waits until the relay's descriptors are back to want (the
// clients of an input have gone), failing after a bound.
func (p *hostileRelay) settle(t *testing.T, want int) procSnap {
	t.Helper()
	waitUntil(t, 20*time.Second, fmt.Sprintf("relay descriptors back to %d", want), func() bool { return p.snap(t).fds <= want })
	return p.snap(t)
}

// healthy is a client that reads everything, connected throughout.
type healthy struct {
	c   *net.TCPConn
	fr  *relay.FrameReader
	seq int
}

func newHealthy(t *testing.T, p *hostileRelay) *healthy {
	t.Helper()
	c := hostileDial(t, p.addr, 0)
	h := &healthy{c: c, fr: relay.NewFrameReader(c, relay.FramingNUL, 0)}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if id, err := h.fr.Next(); err != nil || !relay.ValidID(string(id)) {
		t.Fatalf("healthy client: ID frame %q, %v", id, err)
	}
	return h
}

// check broadcasts one message and fails unless the healthy client gets it.
func (h *healthy) check(t *testing.T, p *hostileRelay) {
	t.Helper()
	if got := h.broadcasts(t, p, 1, 16); got != 1 {
		t.Fatalf("healthy client did not get the check broadcast")
	}
}

// broadcasts pushes n broadcasts of size bytes at the healthy client's
// pace and returns how many it got, in order.
func (h *healthy) broadcasts(t *testing.T, p *hostileRelay, n, size int) int {
	t.Helper()
	got := 0
	for i := 0; i < n; i++ {
		h.seq++
		payload := []byte(fmt.Sprintf("%08d", h.seq))
		payload = append(payload, bytes.Repeat([]byte{'p'}, max(size-len(payload), 0))...)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := p.client.Broadcast(ctx, payload)
		cancel()
		if err != nil {
			t.Fatalf("broadcast %d: %v", i, err)
		}
		h.c.SetReadDeadline(time.Now().Add(10 * time.Second))
		f, err := h.fr.Next()
		if err != nil {
			t.Fatalf("healthy client, broadcast %d: %v", i, err)
		}
		if !bytes.Equal(f, payload) {
			t.Fatalf("healthy client, broadcast %d: got %.20q, want %.20q", i, f, payload)
		}
		got++
	}
	return got
}

// hostileDial connects to addr, with SO_RCVBUF set before the handshake
// when rcvbuf is positive, so the window stays small.
func hostileDial(t *testing.T, addr string, rcvbuf int) *net.TCPConn {
	d := net.Dialer{Timeout: 10 * time.Second}
	if rcvbuf > 0 {
		d.Control = func(_, _ string, rc syscall.RawConn) error {
			var serr error
			if err := rc.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, rcvbuf)
			}); err != nil {
				return err
			}
			return serr
		}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Errorf("dial %s: %v", addr, err)
		return nil
	}
	return c.(*net.TCPConn)
}

// hostileDialID connects and waits for the ID frame, so the connection is
// admitted before the broadcasts start; then it never reads again.
func hostileDialID(t *testing.T, addr string, rcvbuf int) *net.TCPConn {
	c := hostileDial(t, addr, rcvbuf)
	if c == nil {
		return nil
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := relay.NewFrameReader(c, relay.FramingNUL, 0).Next(); err != nil {
		t.Errorf("ID frame: %v", err)
	}
	return c
}

// parallel runs f(0..n-1) on workers goroutines.
func parallel(workers, n int, f func(i int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
				f(i)
			}
		}()
	}
	wg.Wait()
}

func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func isTimeoutErr(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
func kib(n int64) string { return fmt.Sprintf("%.0f KiB", float64(n)/(1<<10)) }
