package bench

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/pushrelay/pushrelay/loadgen"
	"github.com/pushrelay/pushrelay/pkg/stamp"
)

// The browser transports' benchmark: what an idle WebSocket and an idle
// SSE connection cost the relay, and how long a broadcast takes to reach
// the last of them, with and without compression, beside raw TCP clients
// of the same relay build in the same run.

// WebOptions configure RunWeb.
type WebOptions struct {
	// Conns is how many clients each transport's run holds. Default 10,000.
	Conns int
	// Transports to measure, in order: tcp, ws, ws-deflate, sse. Default all.
	Transports []string
	// Broadcasts measured per transport (after Warmup). Default 20.
	Broadcasts int
	// Warmup is how many unreported broadcasts come first. Default 2.
	Warmup int
	// Size of the broadcast payload: JSON, timestamped. Default 2048.
	Size int
	// Settle is how long the clients sit idle before memory is read.
	// Default 2s.
	Settle time.Duration
	// Gap between broadcasts. Default 50 ms.
	Gap time.Duration
	// Procs: the relay's command; Stderr. RelayEnv and ChildCommand are
	// not used.
	Procs
}

func (o WebOptions) withDefaults() (WebOptions, error) {
	d := WebDefaults()
	orZero(&o.Conns, d.Conns)
	orEmpty(&o.Transports, d.Transports)
	for _, t := range o.Transports {
		if _, _, err := loadgen.ParseFraming(transportFraming(t)); err != nil {
			return o, fmt.Errorf("bench web: transport %q: want tcp, ws, ws-deflate or sse", t)
		}
	}
	orZero(&o.Broadcasts, d.Broadcasts)
	orZero(&o.Warmup, d.Warmup)
	orZero(&o.Size, d.Size)
	orZero(&o.Settle, d.Settle)
	orZero(&o.Gap, d.Gap)
	if o.Conns < 1 || o.Broadcasts < 1 || o.Size < 64 {
		return o, fmt.Errorf("bench web: want at least 1 connection, 1 broadcast and a 64-byte payload")
	}
	return o, o.fill(true, false)
}

// transportFraming maps a transport name to the load generator's framing.
func transportFraming(t string) string {
	if t == "tcp" {
		return "nul"
	}
	return t
}

// WebResult is a run of RunWeb.
type WebResult struct {
	Machine    Machine   `json:"machine"`
	Conns      int       `json:"conns"`
	Broadcasts int       `json:"broadcasts"`
	Size       int       `json:"size"`
	Runs       []*WebRun `json:"runs"`
	Checks     []Check   `json:"checks"`
	Command    string    `json:"command,omitempty"`
	Started    time.Time `json:"started"`
	Elapsed    float64   `json:"elapsed_seconds"`
	Partial    bool      `json:"partial,omitempty"`
	Error      string    `json:"error,omitempty"`
	Relay      string    `json:"relay"`
}

// WebRun is one transport's figures.
type WebRun struct {
	Transport string `json:"transport"`
	Conns     int    `json:"conns"`
	// Relay memory per idle connection: resident set, and the Go heap in
	// use, from the relay's own metrics before and after the clients.
	RSSPerConn  float64 `json:"rss_per_conn_bytes"`
	HeapPerConn float64 `json:"heap_per_conn_bytes"`
	// Broadcast time to the last client: median and max over broadcasts.
	TTLMedian float64 `json:"ttl_median_seconds"`
	TTLMax    float64 `json:"ttl_max_seconds"`
	// Relay CPU per delivery over the measured broadcasts.
	CPUPerDelivery float64 `json:"relay_cpu_per_delivery_ns"`
	Delivered      int64   `json:"delivered"`
	Expected       int64   `json:"expected"`
	// Bytes the relay wrote per delivery (frame and header), and, with
	// compression, how many compressions the run's broadcasts took.
	BytesPerDelivery float64 `json:"bytes_per_delivery"`
	Compressions     float64 `json:"compressions"`
}

// RunWeb measures each transport in a relay process of its own.
func RunWeb(ctx context.Context, opts WebOptions) (*WebResult, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	res := &WebResult{Machine: readMachine(), Conns: opts.Conns, Broadcasts: opts.Broadcasts, Size: opts.Size,
		Started: time.Now().UTC(), Relay: strings.Join(append(opts.RelayCommand[1:], "--web", "127.0.0.1:0", "--web-compress"), " ")}
	defer func() { res.Elapsed = time.Since(res.Started).Seconds() }()
	for _, t := range opts.Transports {
		run, err := webOne(ctx, opts, t)
		if err != nil {
			res.Partial, res.Error = true, err.Error()
			break
		}
		res.Runs = append(res.Runs, run)
	}
	res.Checks = webChecks(res)
	return res, nil
}

// webPayload is a timestamped JSON payload of about size bytes: a list of
// quotes, as a price feed would push, so compression sees realistic text.
func webPayload(dst []byte, now time.Time, size int) []byte {
	start := len(dst)
	dst = stamp.Append(dst, now)
	dst = append(dst, `{"quotes":[`...)
	for i := 0; len(dst)-start < size-64; i++ {
		dst = fmt.Appendf(dst, `{"symbol":"S%04d","bid":%d.%02d,"ask":%d.%02d,"volume":%d},`, i, 100+i%37, i%100, 101+i%37, (i*7)%100, 1000+i*13)
	}
	dst = append(dst[:len(dst)-1], "]}"...)
	return dst
}

func webOne(ctx context.Context, opts WebOptions, transport string) (_ *WebRun, err error) {
	n := opts.Conns
	fmt.Fprintf(opts.Stderr, "bench web: %s, %d clients: starting\n", transport, n)
	cmd := append(append([]string(nil), opts.RelayCommand...), "--web", "127.0.0.1:0", "--web-compress")
	rp, err := startRelayProc(cmd, nil, io.Discard)
	if err != nil {
		return nil, err
	}
	defer func() {
		if serr := rp.stop(); serr != nil && err == nil {
			err = serr
		}
	}()
	framing, web, _ := loadgen.ParseFraming(transportFraming(transport))
	target := rp.addr
	if web != loadgen.WebNone {
		target = rp.webAddr
	}
	m0, err := rp.settledMetrics(ctx)
	if err != nil {
		return nil, err
	}
	pool, err := loadgen.NewPool(loadgen.PoolOptions{Target: target, Framing: framing, Web: web, Sources: poolSources()})
	if err != nil {
		return nil, fmt.Errorf("bench web: %w", err)
	}
	defer pool.Close()
	err = pool.Open(n, poolOpenRate, time.Now().Add(time.Minute))
	if got := pool.Stats.Established.Load(); err != nil || got != int64(n) {
		fails, first, _, phase := pool.Stats.Failures()
		return nil, fmt.Errorf("bench web: %s: %d of %d clients got an ID (%v; failures %v, first %s while %s)", transport, got, n, err, fails, first, phase)
	}
	if err := pollFor(pool, opts.Settle); err != nil {
		return nil, err
	}
	m1, err := rp.metrics(ctx)
	if err != nil {
		return nil, err
	}
	r := &WebRun{Transport: transport, Conns: n, Expected: int64(opts.Broadcasts) * int64(n)}
	r.RSSPerConn = m0.delta(m1, "pushrelay_process_resident_bytes") / float64(n)
	r.HeapPerConn = m0.delta(m1, "pushrelay_go_heap_inuse_bytes") / float64(n)
	fmt.Fprintf(opts.Stderr, "bench web: %s, %d clients: %s RSS, %s Go heap per connection\n", transport, n, fmtBytes(r.RSSPerConn), fmtBytes(r.HeapPerConn))

	var (
		cpu  *cpuMeter
		mb   relayMetrics
		from int64
		ttl  []float64
	)
	payload := make([]byte, 0, opts.Size+256)
	for i := -opts.Warmup; i < opts.Broadcasts; i++ {
		if err := rest(ctx, opts.Gap); err != nil {
			return nil, err
		}
		if i == 0 {
			if mb, err = rp.settledMetrics(ctx); err != nil {
				return nil, err
			}
			if cpu, err = startCPU(rp.pid); err != nil {
				return nil, err
			}
			from = pool.Stats.Messages.Load() - pool.Stats.Empty.Load()
		}
		resetLatency(pool)
		m := pool.Stats.Stamped.Load()
		payload = webPayload(payload[:0], time.Now(), opts.Size)
		done := make(chan error, 1)
		go func(p []byte) {
			bctx, cancel := context.WithTimeout(ctx, time.Minute)
			defer cancel()
			_, err := rp.client.Broadcast(bctx, p)
			done <- err
		}(payload)
		var last time.Time
		berr, perr := pollWhile(pool, done, &last)
		if err := cmp.Or(perr, berr); err != nil {
			return nil, fmt.Errorf("bench web: %s broadcast %d: %w", transport, i, err)
		}
		if err := pollUntil(pool, 30*time.Second, func() bool { return pool.Stats.Stamped.Load()-m >= int64(n) }); err != nil {
			return nil, fmt.Errorf("bench web: %s broadcast %d: %d of %d clients read it: %w", transport, i, pool.Stats.Stamped.Load()-m, n, err)
		}
		if i >= 0 {
			ttl = append(ttl, windowLatency(pool).Max().Seconds())
		}
	}
	used, err := cpu.since()
	if err != nil {
		return nil, err
	}
	if err := pollFor(pool, 20*time.Millisecond); err != nil {
		return nil, err
	}
	r.Delivered = pool.Stats.Messages.Load() - pool.Stats.Empty.Load() - from
	me, err := rp.settledMetrics(ctx)
	if err != nil {
		return nil, err
	}
	r.TTLMedian, r.TTLMax = median(ttl), slices.Max(ttl)
	r.CPUPerDelivery = finite(used[0] * 1e9 / float64(r.Delivered))
	r.BytesPerDelivery = finite(mb.delta(me, "pushrelay_bytes_written_total") / float64(r.Delivered))
	r.Compressions = mb.delta(me, "pushrelay_web_compressed_total")
	fmt.Fprintf(opts.Stderr, "bench web: %s, %d clients: time to last %s median, %s max; %s CPU and %s written per delivery; %s/%s delivered\n",
		transport, n, fmtDur(secs(r.TTLMedian)), fmtDur(secs(r.TTLMax)), fmtNs(r.CPUPerDelivery), fmtBytes(r.BytesPerDelivery), fmtInt(r.Delivered), fmtInt(r.Expected))
	return r, nil
}

// webChecks are issue #8's targets.
func webChecks(res *WebResult) []Check {
	var out []Check
	for _, r := range res.Runs {
		if r.Transport == "ws" || r.Transport == "sse" {
			out = append(out, Check{Name: "relay memory per idle " + r.Transport + " connection (RSS)", Value: r.RSSPerConn,
				Shown: fmtBytes(r.RSSPerConn), Target: "≤ 1.5 KiB", Met: r.RSSPerConn <= 1536})
		}
		out = append(out, Check{Name: r.Transport + ": every client got every broadcast", Value: float64(r.Delivered),
			Shown: fmt.Sprintf("%d of %d", r.Delivered, r.Expected), Target: "all", Met: r.Delivered == r.Expected})
		if r.Transport == "ws-deflate" {
			out = append(out, Check{Name: "ws-deflate: compressions per broadcast", Value: r.Compressions / float64(res.Broadcasts),
				Shown: fmt.Sprintf("%.2f", r.Compressions/float64(res.Broadcasts)), Target: "≤ 1 (compressed once, shared)",
				Met: r.Compressions <= float64(res.Broadcasts)})
		}
	}
	return out
}

// Markdown renders the result as a table beside its targets.
func (res *WebResult) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "## Browser transports: %d idle clients each, %d broadcasts of a %d-byte JSON payload\n\n", res.Conns, res.Broadcasts, res.Size)
	fmt.Fprintf(&b, "Machine: %s. Relay: `%s`, a fresh process per transport.\n\n", res.Machine, res.Relay)
	b.WriteString("| transport | RSS per conn | Go heap per conn | time to last (median) | (max) | relay CPU per delivery | bytes written per delivery | compressions | delivered |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	var tcp *WebRun
	for _, r := range res.Runs {
		if r.Transport == "tcp" {
			tcp = r
		}
	}
	for _, r := range res.Runs {
		ratio := ""
		if tcp != nil && r != tcp && tcp.TTLMedian > 0 {
			ratio = fmt.Sprintf(" (%.2f× tcp)", r.TTLMedian/tcp.TTLMedian)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s%s | %s | %s | %.0f B | %.0f | %d/%d |\n", r.Transport, fmtBytes(r.RSSPerConn), fmtBytes(r.HeapPerConn),
			fmtDur(secs(r.TTLMedian)), ratio, fmtDur(secs(r.TTLMax)), fmtNs(r.CPUPerDelivery), r.BytesPerDelivery, r.Compressions, r.Delivered, r.Expected)
	}
	if len(res.Checks) > 0 {
		b.WriteString("\n| check | value | target | verdict |\n|---|---:|---|---|\n")
		for _, c := range res.Checks {
			fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", c.Name, c.Shown, c.Target, c.verdict())
		}
	}
	if res.Partial {
		fmt.Fprintf(&b, "\nPartial run: %s\n", res.Error)
	}
	return b.String()
}
