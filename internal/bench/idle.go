package bench

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pushrelay/pushrelay/relay"
)

// IdleOptions configures RunIdle. Zero values mean the defaults.
type IdleOptions struct {
	// Conns is how many idle connections each server holds. Default
	// 10,000. Client and server each hold one descriptor per connection,
	// in separate processes, so it may come close to RLIMIT_NOFILE.
	Conns int
	// Framing of the ID frame the clients read.
	Framing relay.Framing
	// Servers to measure, in order. Default relay, then baseline.
	Servers []string
	// Workers is how many goroutines open connections. Default 32.
	Workers int
	// Warmup is how many unreported rounds against the first server run
	// first: the first server to open thousands of sockets after a quiet
	// spell grows the kernel's slab caches, and would be charged more
	// kernel memory per socket than the servers after it. Default 1;
	// negative means none.
	Warmup int
	// Settle is how long the connections sit idle before the final
	// reading. Default 2 s.
	Settle time.Duration
	// ProfileDir, if set, receives a heap profile of each child with its
	// connections open (SERVER-heap.pprof). The children then record every
	// allocation, which slows them and adds to their RSS: profile in a run
	// of its own, not in the one whose figures are kept.
	ProfileDir string
	// Procs: the children's command; Stderr.
	Procs
}

func (o IdleOptions) withDefaults() (IdleOptions, error) {
	d := IdleDefaults()
	if err := fillCount("idle", "conns", &o.Conns, d.Conns); err != nil {
		return o, err
	}
	if err := fillServers("idle", &o.Servers, d.Servers, ServerRelay, ServerBaseline); err != nil {
		return o, err
	}
	if err := o.fill(false, true); err != nil {
		return o, err
	}
	orPositive(&o.Workers, d.Workers)
	orNone(&o.Warmup, d.Warmup)
	orZero(&o.Settle, d.Settle)
	return o, nil
}

// IdleResult is what RunIdle measured.
type IdleResult struct {
	Started time.Time    `json:"started"`
	Machine Machine      `json:"machine"`
	Conns   int          `json:"conns"`
	Framing string       `json:"framing"`
	Servers []IdleServer `json:"servers"`
	// Checks compare the relay with its targets; empty unless both the
	// relay and the baseline ran.
	Checks []Check  `json:"checks,omitempty"`
	Notes  []string `json:"notes"`
}

// IdleServer is one server's idle-connection cost.
type IdleServer struct {
	Server       string     `json:"server"`
	Conns        int        `json:"conns"`
	DialSeconds  float64    `json:"dial_seconds"`
	Before       ChildStats `json:"before"`
	After        ChildStats `json:"after"`
	KernelBefore Kernel     `json:"kernel_before"`
	KernelAfter  Kernel     `json:"kernel_after"`
	// Per connection, in the server process: (after - before) / conns.
	RSSPerConn        float64 `json:"rss_per_conn"`
	HeapInusePerConn  float64 `json:"heap_inuse_per_conn"`
	HeapAllocPerConn  float64 `json:"heap_alloc_per_conn"`
	StackInusePerConn float64 `json:"stack_inuse_per_conn"`
	GoroutinesPerConn float64 `json:"goroutines_per_conn"`
	// Per socket, in the kernel: (after - before) / (2 * conns), since
	// both ends of each loopback connection live on this host.
	KernelPerSocket   float64            `json:"kernel_per_socket"`
	SlabPerSocket     float64            `json:"slab_per_socket"`
	TCPMemPerSocket   float64            `json:"tcp_mem_per_socket"`
	CachesPerSocket   map[string]float64 `json:"slab_caches_per_socket,omitempty"`
	CacheSumPerSocket float64            `json:"slab_caches_sum_per_socket,omitempty"`
}

// RunIdle measures what an idle connection costs each server: it starts the
// server in a child process, opens opts.Conns connections that read their ID
// and then sit idle, and compares the child's memory and the kernel's before
// and after. ctx bounds the whole run.
func RunIdle(ctx context.Context, opts IdleOptions) (*IdleResult, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	res := &IdleResult{
		Started: time.Now().UTC(),
		Machine: readMachine(),
		Conns:   opts.Conns,
		Framing: opts.Framing.String(),
		Notes: []string{
			"RSS, Go heap and stacks are the server process's, after two GCs and FreeOSMemory, minus the same before any connection, divided by the connections.",
			"Kernel per socket is the growth of slab memory (SReclaimable + SUnreclaim) plus TCP's buffer pages (sockstat mem), divided by twice the connections: both ends of each loopback connection live on this host. The clients hold bare descriptors with no epoll entry; the server's epoll entry is counted. Anything else the host did meanwhile is in it too.",
		},
	}
	if opts.Warmup > 0 {
		res.Notes = append(res.Notes, fmt.Sprintf("%d unreported warm-up round(s) against %s ran first, so that the kernel's slab caches had grown before any server was measured.", opts.Warmup, opts.Servers[0]))
	}
	for range opts.Warmup {
		if _, err := idleOne(ctx, opts, opts.Servers[0]); err != nil {
			return res, fmt.Errorf("bench idle: warm-up: %w", err)
		}
	}
	for _, name := range opts.Servers {
		s, err := idleOne(ctx, opts, name)
		if err != nil {
			return res, err
		}
		res.Servers = append(res.Servers, *s)
	}
	res.Checks = idleChecks(res.Servers)
	return res, nil
}

func idleOne(ctx context.Context, opts IdleOptions, name string) (_ *IdleServer, err error) {
	fmt.Fprintf(opts.Stderr, "bench idle: %s: starting child\n", name)
	var env []string
	if opts.ProfileDir != "" {
		// Record every allocation, not one per 512 KiB: the profile is
		// then an exact account of where each connection's bytes go.
		env = append(env, MemProfileRateEnv+"=1")
	}
	c, err := startChild(opts.ChildCommand, name, opts.Framing, env, opts.Stderr)
	if err != nil {
		return nil, err
	}
	var fds []int
	defer func() {
		closeFds(fds)
		c.quitInto(&err)
	}()
	r := &IdleServer{Server: name, Conns: opts.Conns}
	if err := c.do("gc"); err != nil {
		return nil, err
	}
	if r.Before, err = c.stats(); err != nil {
		return nil, err
	}
	if r.KernelBefore, err = readKernel(); err != nil {
		return nil, err
	}

	t0 := time.Now()
	fds, err = dialIdle(ctx, c.addr, opts)
	r.DialSeconds = time.Since(t0).Seconds()
	if err != nil {
		return nil, fmt.Errorf("bench idle: %s: %w", name, err)
	}
	fmt.Fprintf(opts.Stderr, "bench idle: %s: %d connections opened in %.2fs\n", name, opts.Conns, r.DialSeconds)
	if err := waitConns(ctx, c, opts.Conns, 30*time.Second); err != nil {
		return nil, err
	}
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(opts.Settle):
	}
	if err := c.do("gc"); err != nil {
		return nil, err
	}
	if r.After, err = c.stats(); err != nil {
		return nil, err
	}
	if r.KernelAfter, err = readKernel(); err != nil {
		return nil, err
	}
	if int(r.After.Conns) != opts.Conns {
		return nil, fmt.Errorf("bench idle: %s: %d connections open after settling, want %d", name, r.After.Conns, opts.Conns)
	}
	if opts.ProfileDir != "" {
		path, _ := filepath.Abs(filepath.Join(opts.ProfileDir, name+"-heap.pprof"))
		if err := os.MkdirAll(opts.ProfileDir, 0o755); err != nil {
			return nil, fmt.Errorf("bench idle: profile dir: %w", err)
		}
		if err := c.do("heap " + path); err != nil {
			return nil, err
		}
		fmt.Fprintf(opts.Stderr, "bench idle: %s: heap profile in %s\n", name, path)
	}
	r.compute()
	return r, nil
}

// compute fills the per-connection and per-socket figures.
func (r *IdleServer) compute() {
	n := r.Conns
	r.RSSPerConn = perEach(r.After.RSSBytes, r.Before.RSSBytes, n)
	r.HeapInusePerConn = perEach(r.After.HeapInuse, r.Before.HeapInuse, n)
	r.HeapAllocPerConn = perEach(r.After.HeapAlloc, r.Before.HeapAlloc, n)
	r.StackInusePerConn = perEach(r.After.StackInuse, r.Before.StackInuse, n)
	r.GoroutinesPerConn = perEach(r.After.Goroutines, r.Before.Goroutines, n)
	kb, ka := r.KernelBefore, r.KernelAfter
	r.KernelPerSocket = perEach(ka.Total(), kb.Total(), 2*n)
	r.SlabPerSocket = perEach(ka.SlabBytes, kb.SlabBytes, 2*n)
	r.TCPMemPerSocket = perEach(ka.TCPMemBytes, kb.TCPMemBytes, 2*n)
	if ka.Caches != nil && kb.Caches != nil {
		r.CachesPerSocket = map[string]float64{}
		for name, a := range ka.Caches {
			d := perEach(a.Bytes, kb.Caches[name].Bytes, 2*n)
			r.CachesPerSocket[name] = d
			r.CacheSumPerSocket += d
		}
	}
}

// dialIdle opens opts.Conns connections to addr from a pool of workers,
// each reading and checking its ID frame, and returns their descriptors.
// On error it closes what it opened.
func dialIdle(ctx context.Context, dst netip.AddrPort, opts IdleOptions) ([]int, error) {
	fds := make([]int, opts.Conns)
	for i := range fds {
		fds[i] = -1
	}
	var (
		next     atomic.Int64
		failed   atomic.Bool
		firstErr error
		errOnce  sync.Once
		ids      = make([]string, opts.Conns)
		wg       sync.WaitGroup
	)
	for range opts.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !failed.Load() && ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= len(fds) {
					return
				}
				fd, id, err := dialID(dst, opts.Framing, 10*time.Second)
				if err != nil {
					errOnce.Do(func() { firstErr = fmt.Errorf("connection %d: %w", i, err) })
					failed.Store(true)
					return
				}
				fds[i], ids[i] = fd, id
			}
		}()
	}
	wg.Wait()
	err := firstErr
	if err == nil {
		err = ctx.Err()
	}
	if err == nil {
		// Every ID must be distinct: a clash would mean two clients share
		// one address in the registry.
		sort.Strings(ids)
		for i := 1; i < len(ids); i++ {
			if ids[i] == ids[i-1] {
				err = fmt.Errorf("two connections got the same ID %q", ids[i])
				break
			}
		}
	}
	if err != nil {
		closeFds(fds)
		return nil, err
	}
	return fds, nil
}

// waitConns polls the child until it reports want open connections.
func waitConns(ctx context.Context, c *child, want int, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		st, err := c.count()
		if err != nil {
			return err
		}
		if int(st.Conns) == want {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("bench: %s child holds %d connections after %v, want %d", c.name, st.Conns, limit, want)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Idle-connection targets.
const (
	targetRelayHeap       = 1024    // bytes of Go heap per connection
	targetHeapVsBaseline  = 1.0 / 7 // relay heap / baseline heap
	targetRelayPlusKernel = 1.3     // (relay RSS + kernel) / kernel, per connection
	targetStormVsAccept4  = 0.7     // relay accept rate / accept4's
)

func idleChecks(servers []IdleServer) []Check {
	var rl, bl *IdleServer
	for i := range servers {
		switch servers[i].Server {
		case ServerRelay:
			rl = &servers[i]
		case ServerBaseline:
			bl = &servers[i]
		}
	}
	var checks []Check
	if rl == nil {
		return nil
	}
	checks = append(checks, Check{
		Name:   "relay Go heap in use per connection",
		Value:  rl.HeapInusePerConn,
		Shown:  fmtBytes(rl.HeapInusePerConn),
		Target: "≤ 1 KiB",
		Met:    rl.HeapInusePerConn <= targetRelayHeap,
	})
	if bl != nil {
		// In use counts whole spans, so it moves by a few bytes per
		// connection from run to run; live (allocated) bytes do not.
		for _, h := range []struct {
			what     string
			rel, bas float64
		}{
			{"in use", rl.HeapInusePerConn, bl.HeapInusePerConn},
			{"live", rl.HeapAllocPerConn, bl.HeapAllocPerConn},
		} {
			ratio := finite(h.rel / h.bas)
			checks = append(checks, Check{
				Name:   "relay Go heap " + h.what + " / baseline's, per connection",
				Value:  ratio,
				Shown:  fmt.Sprintf("%.4f (1/%.2f)", ratio, finite(1/ratio)),
				Target: "≤ 1/7 (0.1429)",
				Met:    ratio > 0 && ratio <= targetHeapVsBaseline,
			})
		}
	}
	over := finite((rl.RSSPerConn + rl.KernelPerSocket) / rl.KernelPerSocket)
	checks = append(checks, Check{
		Name:   "(relay RSS per connection + kernel per socket) / kernel per socket",
		Value:  over,
		Shown:  fmt.Sprintf("%.2f×", over),
		Target: "≤ 1.3×",
		Met:    over > 0 && over <= targetRelayPlusKernel,
	})
	return checks
}

// Markdown renders the result as the tables docs/benchmarks.md shows.
func (r *IdleResult) Markdown() string {
	var w doc
	fmt.Fprintf(&w, "### Idle connections: %s each, %s framing\n\n", fmtInt(int64(r.Conns)), r.Framing)
	fmt.Fprintf(&w, "Measured %s on %s.\n\n", r.Started.Format("2006-01-02 15:04 UTC"), r.Machine)
	rows := [][]string{}
	for _, s := range r.Servers {
		rows = append(rows, []string{
			s.Server,
			fmtBytes(s.RSSPerConn),
			fmtBytes(s.HeapInusePerConn),
			fmtBytes(s.HeapAllocPerConn),
			fmtBytes(s.StackInusePerConn),
			fmt.Sprintf("%.2f", s.GoroutinesPerConn),
			fmtBytes(s.KernelPerSocket),
			fmtBytes(s.RSSPerConn + s.KernelPerSocket),
		})
	}
	w.table([]string{"server", "RSS/conn", "Go heap in use/conn", "Go heap live/conn", "goroutine stacks/conn", "goroutines/conn", "kernel/socket", "RSS/conn + kernel/socket"}, rows)
	w.checks(r.Checks)
	w.WriteString("Kernel per socket, by part (bytes per socket; slab caches are active objects × object size):\n\n")
	cacheNames := []string{}
	for _, s := range r.Servers {
		for n := range s.CachesPerSocket {
			if !slices.Contains(cacheNames, n) {
				cacheNames = append(cacheNames, n)
			}
		}
	}
	slices.SortFunc(cacheNames, func(a, b string) int {
		return slices.Index(slabCaches, a) - slices.Index(slabCaches, b)
	})
	hdr := append([]string{"server", "slab (meminfo)", "TCP buffers (sockstat)"}, cacheNames...)
	hdr = append(hdr, "listed caches, sum")
	rows = rows[:0]
	for _, s := range r.Servers {
		row := []string{s.Server, fmtBytes(s.SlabPerSocket), fmtBytes(s.TCPMemPerSocket)}
		for _, n := range cacheNames {
			row = append(row, fmtBytes(s.CachesPerSocket[n]))
		}
		row = append(row, fmtBytes(s.CacheSumPerSocket))
		rows = append(rows, row)
	}
	w.table(hdr, rows)
	w.notes(r.Notes)
	return w.String()
}
