package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/pushrelay/pushrelay/loadgen"
	"github.com/pushrelay/pushrelay/relay"
)

// IngressOptions configures RunIngress. Zero values mean the defaults.
type IngressOptions struct {
	// Conns are the idle-client counts to measure at, in order. Default
	// 1,000 and 18,000 (the bench holds every client socket in one
	// process, so the largest must stay below RLIMIT_NOFILE).
	Conns []int
	// Rate is the pace of the latency phases, in pushes a second. Default
	// 1,000.
	Rate float64
	// Duration is how long each phase pushes. Default 5 s.
	Duration time.Duration
	// Payload is the size of each pushed payload in bytes, timestamp
	// included. Default 64.
	Payload int
	// UnixWorkers is how many goroutines push through the one ingress
	// client in the throughput phase. Default 4.
	UnixWorkers int
	// Batch is how many pushes a Unix worker sends without replies before
	// a ping waits for the relay to have taken them: the bound on what is
	// in flight. It is also the pushes in one POST /v1/batch request of
	// the HTTP batch phase. Default 256.
	Batch int
	// HTTPWorkers is how many goroutines push over HTTP keep-alive
	// connections in the throughput phase. Default 8.
	HTTPWorkers int
	// Pause is how long the host rests before each phase. Default 500 ms.
	Pause time.Duration
	// Procs: the relay's command and environment, the floor child's
	// command; Stderr.
	Procs
}

func (o IngressOptions) withDefaults() (IngressOptions, error) {
	d := IngressDefaults()
	if err := fillCounts("ingress", "conns", &o.Conns, d.Conns); err != nil {
		return o, err
	}
	orZero(&o.Rate, d.Rate)
	if o.Rate < 0 {
		return o, fmt.Errorf("bench: ingress: rate %v: want a positive rate", o.Rate)
	}
	orZero(&o.Duration, d.Duration)
	if o.Duration < 0 || o.Duration > 10*time.Minute {
		return o, fmt.Errorf("bench: ingress: duration %v: want more than 0 and at most 10m", o.Duration)
	}
	if err := fillPayload("ingress", &o.Payload, d.Payload); err != nil {
		return o, err
	}
	orPositive(&o.UnixWorkers, d.UnixWorkers)
	orPositive(&o.Batch, d.Batch)
	orPositive(&o.HTTPWorkers, d.HTTPWorkers)
	orZero(&o.Pause, d.Pause)
	return o, o.fill(true, true)
}

// Paths a push takes in the ingress bench.
const (
	PathFloor = "floor" // FloorServer: one write(2) per frame
	PathUnix  = "unix"  // the relay, through its Unix-socket ingress
	PathHTTP  = "http"  // the relay, through POST /v1/send/{id}
	// PathHTTPBatch is the relay through POST /v1/batch, Batch pushes a
	// request (throughput only).
	PathHTTPBatch = "http-batch"
)

// Modes of an ingress phase.
const (
	ModeThroughput = "throughput" // as fast as the pushers can
	ModePaced      = "paced"      // Rate pushes a second
)

// IngressResult is what RunIngress measured.
type IngressResult struct {
	Started     time.Time     `json:"started"`
	Machine     Machine       `json:"machine"`
	Rate        float64       `json:"rate"`
	Duration    float64       `json:"duration_seconds"`
	Payload     int           `json:"payload_bytes"`
	UnixWorkers int           `json:"unix_workers"`
	Batch       int           `json:"batch"`
	HTTPWorkers int           `json:"http_workers"`
	Sizes       []IngressSize `json:"sizes"`
	// RelayArgs and RelayEnv are the relay's command line and the
	// environment added for it.
	RelayArgs []string `json:"relay_args"`
	RelayEnv  []string `json:"relay_env,omitempty"`
	Checks    []Check  `json:"checks,omitempty"`
	Notes     []string `json:"notes"`
}

// IngressSize holds the phases measured with one count of idle clients.
type IngressSize struct {
	Conns  int            `json:"conns"`
	Phases []IngressPhase `json:"phases"`
}

// IngressPhase is one path pushed in one mode.
type IngressPhase struct {
	Path string `json:"path"`
	Mode string `json:"mode"`
	// Pushes made, and those the server took (the floor: frames
	// written whole; the relay: pushes not answered with an error).
	Sent     int64            `json:"sent"`
	Accepted int64            `json:"accepted"`
	Errors   map[string]int64 `json:"errors,omitempty"`
	// PushSeconds is the pushers' time, from the first push to the last
	// reply (the floor: its own clock). AcceptRate is Accepted over it.
	PushSeconds float64 `json:"push_seconds"`
	AcceptRate  float64 `json:"accept_rate"`
	// Delivered is what the clients read; DeliverSeconds runs from the
	// start of the phase to the poll that read the last of it.
	Delivered      int64   `json:"delivered"`
	DeliverSeconds float64 `json:"deliver_seconds"`
	DeliveryRate   float64 `json:"delivery_rate"`
	Missing        int64   `json:"missing"` // Accepted - Delivered
	// Latency is from the stamp (taken just before each push) to the
	// client's read of the frame.
	Latency loadgen.Summary `json:"latency"`
	// CPU over the phase: the server process (relay or floor child) and
	// this process (pushers and clients), and the server's per push.
	ServerCPUSeconds float64 `json:"server_cpu_seconds"`
	ClientCPUSeconds float64 `json:"client_cpu_seconds"`
	ServerCPUPerPush float64 `json:"server_cpu_per_push_ns"`
	ClientCPUPerPush float64 `json:"client_cpu_per_push_ns"`
	// OtherCPUSeconds is the host's busy CPU time over the phase (10 ms
	// ticks) minus the server's and this process's: what anything else on
	// the host took.
	OtherCPUSeconds float64 `json:"other_cpu_seconds"`
	// The relay's counters over the phase.
	MessagesWritten float64 `json:"messages_written,omitempty"`
	Writes          float64 `json:"writes,omitempty"`
	Drops           float64 `json:"drops,omitempty"`
	// Floor is the floor child's own account of the run.
	Floor *FloorRun `json:"floor,omitempty"`
}

// pushTally is what a phase's pushers report.
type pushTally struct {
	sent, accepted int64
	errors         map[string]int64
	seconds        float64
	floor          *FloorRun
	err            error
}

// RunIngress measures the relay's ingress: for each client count it holds
// that many idle clients, against a floor child first and then against the
// real relay binary, and pushes to random clients as fast as it can and at
// a steady pace, reporting throughput, latency from push to read, and the
// server's CPU per push. ctx bounds the whole run.
func RunIngress(ctx context.Context, opts IngressOptions) (*IngressResult, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	res := &IngressResult{
		Started: time.Now().UTC(), Machine: readMachine(),
		Rate: opts.Rate, Duration: opts.Duration.Seconds(), Payload: opts.Payload,
		UnixWorkers: opts.UnixWorkers, Batch: opts.Batch, HTTPWorkers: opts.HTTPWorkers,
		RelayArgs: opts.RelayCommand[1:], RelayEnv: opts.RelayEnv,
		Notes: []string{
			"The relay is the real binary (`pushrelay serve`, every default, nul framing) in a process of its own; the floor is a child that writes each frame with one blocking write(2) from one thread (bench.FloorServer). The clients are one loadgen.Pool (one epoll loop, raw sockets) in the bench process, for both.",
			"Each payload starts with a loadgen timestamp taken just before the push (or, for the floor, the write); latency is from that stamp to the client's read of the frame, on the same clock.",
			"Throughput: Unix pushers send without replies (FlagNoReply) through one ingress client, each pinging after every batch so no more than workers × batch pushes are in flight; accepted pushes are those not answered with an error. HTTP pushers are net/http keep-alive clients, one request at a time each. The floor writes to random sockets as fast as one thread can. Delivered is what the clients read, counted until the last frame arrived (or 2 s passed with none).",
			"Paced: one pusher at the given rate, to random clients; the Unix path waits for each reply (client.Send), HTTP for each response.",
			"CPU is read from /proc (per-thread schedstat) for the server process and for the bench process (pushers and clients together) over each phase. Other processes' CPU is the host's busy time (/proc/stat, 10 ms ticks) minus those two: anything else that ran meanwhile; past 0.2 s the phase is marked disturbed, and its figures measured the neighbour as much as the relay.",
		},
	}
	for _, n := range opts.Conns {
		sz := IngressSize{Conns: n}
		floor, err := ingressFloor(ctx, opts, n)
		sz.Phases = append(sz.Phases, floor...)
		if err != nil {
			res.Sizes = append(res.Sizes, sz)
			return res, err
		}
		rel, err := ingressRelay(ctx, opts, n)
		sz.Phases = append(sz.Phases, rel...)
		res.Sizes = append(res.Sizes, sz)
		if err != nil {
			return res, err
		}
	}
	res.Checks = ingressChecks(res.Sizes)
	return res, nil
}

// rest pauses before a phase.
func rest(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// ingressFloor runs the floor child's phases with n clients.
func ingressFloor(ctx context.Context, opts IngressOptions, n int) (_ []IngressPhase, err error) {
	fmt.Fprintf(opts.Stderr, "bench ingress: %d clients: floor: starting child\n", n)
	c, err := startChild(opts.ChildCommand, ServerFloor, relay.FramingNUL, nil, opts.Stderr)
	if err != nil {
		return nil, err
	}
	defer c.quitInto(&err)
	pool, err := openPool(c.addr.String(), n, time.Minute)
	if err != nil {
		return nil, err
	}
	defer pool.Close()
	secs := strconv.FormatFloat(opts.Duration.Seconds(), 'f', -1, 64)
	floorPush := func(command string) func() pushTally {
		return func() pushTally {
			var run FloorRun
			if err := c.callTimeout(command, &run, opts.Duration+time.Minute); err != nil {
				return pushTally{err: err}
			}
			if run.Error != "" {
				return pushTally{err: fmt.Errorf("bench: floor: %s: %s", command, run.Error)}
			}
			t := pushTally{sent: run.Writes + run.Errors, accepted: run.Writes, seconds: run.Seconds, floor: &run}
			if run.Errors > 0 {
				t.errors = map[string]int64{"write": run.Errors}
			}
			return t
		}
	}
	var phases []IngressPhase
	for _, ph := range []struct{ mode, command string }{
		{ModeThroughput, fmt.Sprintf("floor-rate %s %d", secs, opts.Payload)},
		{ModePaced, fmt.Sprintf("floor-paced %g %s %d", opts.Rate, secs, opts.Payload)},
	} {
		if err := rest(ctx, opts.Pause); err != nil {
			return phases, err
		}
		r, err := runIngressPhase(ctx, opts, pool, c.pid, nil, PathFloor, ph.mode, floorPush(ph.command))
		if err != nil {
			return phases, err
		}
		phases = append(phases, r)
	}
	return phases, nil
}

// relayWithClients starts the relay binary and holds n idle clients against
// it. stop closes the clients first, so the relay has nothing to drain, then
// stops the relay; its error goes to *err unless that holds one already.
func relayWithClients(command, env []string, logw io.Writer, n int) (rp *relayProc, pool *loadgen.Pool, stop func(err *error), err error) {
	if rp, err = startRelayProc(command, env, logw); err != nil {
		return nil, nil, nil, err
	}
	if pool, err = openPool(rp.addr, n, time.Minute); err != nil {
		rp.kill()
		return nil, nil, nil, err
	}
	return rp, pool, func(err *error) {
		pool.Close()
		if serr := rp.stop(); serr != nil && *err == nil {
			*err = serr
		}
	}, nil
}

// ingressRelay runs the relay's phases with n clients.
func ingressRelay(ctx context.Context, opts IngressOptions, n int) (_ []IngressPhase, err error) {
	fmt.Fprintf(opts.Stderr, "bench ingress: %d clients: relay: starting\n", n)
	rp, pool, stop, err := relayWithClients(opts.RelayCommand, opts.RelayEnv, opts.Stderr, n)
	if err != nil {
		return nil, err
	}
	defer stop(&err)
	ids := pool.IDs()
	if len(ids) != n {
		return nil, fmt.Errorf("bench: ingress: %d IDs for %d clients", len(ids), n)
	}
	tr := &http.Transport{MaxIdleConnsPerHost: opts.HTTPWorkers, MaxConnsPerHost: opts.HTTPWorkers, DisableCompression: true}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	base := "http://" + rp.httpAddr + "/v1/send/"

	var phases []IngressPhase
	for _, ph := range []struct {
		path, mode string
		push       func(context.Context) pushTally
	}{
		{PathUnix, ModeThroughput, func(ctx context.Context) pushTally { return unixThroughput(ctx, rp, ids, opts) }},
		{PathHTTP, ModeThroughput, func(ctx context.Context) pushTally { return httpThroughput(ctx, hc, base, ids, opts) }},
		{PathHTTPBatch, ModeThroughput, func(ctx context.Context) pushTally {
			return httpBatchThroughput(ctx, hc, "http://"+rp.httpAddr+"/v1/batch", ids, opts)
		}},
		{PathUnix, ModePaced, func(ctx context.Context) pushTally { return unixPaced(ctx, rp.client, ids, opts) }},
		{PathHTTP, ModePaced, func(ctx context.Context) pushTally { return httpPaced(ctx, hc, base, ids, opts) }},
	} {
		if err := rest(ctx, opts.Pause); err != nil {
			return phases, err
		}
		pctx, cancel := context.WithTimeout(ctx, opts.Duration+time.Minute)
		r, err := runIngressPhase(ctx, opts, pool, rp.pid, rp, ph.path, ph.mode, func() pushTally { return ph.push(pctx) })
		cancel()
		if err != nil {
			return phases, err
		}
		phases = append(phases, r)
	}
	return phases, nil
}

// seriesStart reads what a measured series starts from: the relay's settled
// metrics (none without a relay), the CPU of the server's process pid and
// of this one, and the host's CPU ticks.
func seriesStart(ctx context.Context, rp *relayProc, pid int) (m0 relayMetrics, cpu *cpuMeter, host0 cpuTicks, err error) {
	if rp != nil {
		if m0, err = rp.settledMetrics(ctx); err != nil {
			return m0, nil, host0, err
		}
	}
	if cpu, err = startCPU(pid, os.Getpid()); err != nil {
		return m0, nil, host0, err
	}
	host0, err = readCPUTicks()
	return m0, cpu, host0, err
}

// seriesEnd reads the CPU the server and this process used since
// seriesStart, and what other processes took meanwhile.
func seriesEnd(cpu *cpuMeter, host0 cpuTicks) (used []float64, other float64, err error) {
	if used, err = cpu.since(); err != nil {
		return nil, 0, err
	}
	host1, err := readCPUTicks()
	if err != nil {
		return nil, 0, err
	}
	return used, max(0, hostCPU(host0, host1).BusySeconds-used[0]-used[1]), nil
}

// runIngressPhase runs push in a goroutine while the calling goroutine
// (the pool's owner) reads the clients, then waits for the stragglers.
// rp, if set, is the relay, whose counters are read too.
func runIngressPhase(ctx context.Context, opts IngressOptions, pool *loadgen.Pool, pid int, rp *relayProc, path, mode string, push func() pushTally) (IngressPhase, error) {
	r := IngressPhase{Path: path, Mode: mode}
	m0, cpu, host0, err := seriesStart(ctx, rp, pid)
	if err != nil {
		return r, err
	}
	resetLatency(pool)
	from := pool.Stats.Messages.Load()
	start := time.Now()
	lastGrowth := start
	done := make(chan pushTally, 1)
	go func() { done <- push() }()
	tally, err := pollWhile(pool, done, &lastGrowth)
	if err != nil {
		<-done
		return r, err
	}
	if tally.err != nil {
		return r, fmt.Errorf("bench ingress: %s %s: %w", path, mode, tally.err)
	}
	delivered, lastGrowth, err := drainPool(pool, from, tally.accepted, 2*time.Second, 30*time.Second, lastGrowth)
	if err != nil {
		return r, err
	}
	used, other, err := seriesEnd(cpu, host0)
	if err != nil {
		return r, err
	}
	r.OtherCPUSeconds = other
	r.Sent, r.Accepted, r.Errors, r.Floor = tally.sent, tally.accepted, tally.errors, tally.floor
	r.PushSeconds = tally.seconds
	r.AcceptRate = finite(float64(r.Accepted) / r.PushSeconds)
	r.Delivered, r.Missing = delivered, tally.accepted-delivered
	r.DeliverSeconds = lastGrowth.Sub(start).Seconds()
	r.DeliveryRate = finite(float64(delivered) / r.DeliverSeconds)
	r.Latency = windowLatency(pool).Summarize()
	r.ServerCPUSeconds, r.ClientCPUSeconds = used[0], used[1]
	r.ServerCPUPerPush = finite(used[0] * 1e9 / float64(r.Accepted))
	r.ClientCPUPerPush = finite(used[1] * 1e9 / float64(r.Accepted))
	if rp != nil {
		m1, err := rp.settledMetrics(ctx)
		if err != nil {
			return r, err
		}
		r.MessagesWritten = m0.delta(m1, "pushrelay_messages_written_total")
		r.Writes = m0.delta(m1, "pushrelay_writes_total")
		r.Drops = m0.delta(m1, "pushrelay_drops_total")
	}
	fmt.Fprintf(opts.Stderr, "bench ingress: %s %s: %s accepted (%s), %s delivered (%s), p50 %v p99 %v, server CPU %.2f µs/push\n",
		path, mode, fmtInt(r.Accepted), fmtRate(r.AcceptRate), fmtInt(r.Delivered), fmtRate(r.DeliveryRate),
		r.Latency.P50, r.Latency.P99, r.ServerCPUPerPush/1e3)
	return r, nil
}

// Ingress targets.
const (
	targetUnixVsFloor = 0.5                    // relay Unix pushes/s ÷ floor writes/s
	targetBatchVsUnix = 0.5                    // relay HTTP batch pushes/s ÷ relay Unix pushes/s
	targetAddedP50    = 50 * time.Microsecond  // relay p50 − floor p50, paced
	targetAddedP99    = 500 * time.Microsecond // relay p99 − floor p99, paced
)

// phase returns the size's phase for path and mode, nil if it did not run.
func (s *IngressSize) phase(path, mode string) *IngressPhase {
	for i := range s.Phases {
		if s.Phases[i].Path == path && s.Phases[i].Mode == mode {
			return &s.Phases[i]
		}
	}
	return nil
}

func ingressChecks(sizes []IngressSize) []Check {
	var checks []Check
	for _, s := range sizes {
		n := fmtInt(int64(s.Conns))
		ft, ut := s.phase(PathFloor, ModeThroughput), s.phase(PathUnix, ModeThroughput)
		if ft != nil && ut != nil {
			checks = append(checks, ratioCheck(n+" clients: relay Unix pushes accepted/s ÷ floor writes/s",
				ut.AcceptRate, ft.AcceptRate, fmtRate, true, targetUnixVsFloor))
		}
		if bt := s.phase(PathHTTPBatch, ModeThroughput); bt != nil && ut != nil {
			checks = append(checks, ratioCheck(n+" clients: relay HTTP batch pushes accepted/s ÷ Unix pushes accepted/s",
				bt.AcceptRate, ut.AcceptRate, fmtRate, true, targetBatchVsUnix))
		}
		fp, up := s.phase(PathFloor, ModePaced), s.phase(PathUnix, ModePaced)
		if fp != nil && up != nil {
			for _, q := range []struct {
				name        string
				relay, flr  time.Duration
				target      time.Duration
				targetShown string
			}{
				{"p50", up.Latency.P50, fp.Latency.P50, targetAddedP50, "≤ 50 µs"},
				{"p99", up.Latency.P99, fp.Latency.P99, targetAddedP99, "≤ 500 µs"},
			} {
				added := q.relay - q.flr
				checks = append(checks, Check{
					Name:   fmt.Sprintf("%s clients: relay-added latency %s, Unix path, paced", n, q.name),
					Value:  float64(added),
					Shown:  fmt.Sprintf("%s (%s − %s)", fmtDur(added), fmtDur(q.relay), fmtDur(q.flr)),
					Target: q.targetShown,
					Met:    added <= q.target,
				})
			}
		}
	}
	return checks
}

// fmtDur prints a latency in µs below 10 ms, else in ms.
func fmtDur(d time.Duration) string {
	switch a := max(d, -d); {
	case a < 10*time.Millisecond:
		return fmt.Sprintf("%.0f µs", float64(d)/1e3)
	default:
		return fmt.Sprintf("%.1f ms", float64(d)/1e6)
	}
}

// fmtNs prints a CPU time per item given in nanoseconds.
func fmtNs(ns float64) string {
	if ns < 10e3 {
		return fmt.Sprintf("%.2f µs", ns/1e3)
	}
	return fmt.Sprintf("%.1f µs", ns/1e3)
}

func pathName(path string) string {
	switch path {
	case PathFloor:
		return "floor (write(2))"
	case PathUnix:
		return "relay, Unix ingress"
	case PathHTTP:
		return "relay, HTTP"
	case PathHTTPBatch:
		return "relay, HTTP batch"
	}
	return path
}

// Markdown renders the result as the tables docs/benchmarks.md shows.
func (r *IngressResult) Markdown() string {
	var w doc
	fmt.Fprintf(&w, "### Ingress: pushes to random idle clients, %d-byte payloads\n\n", r.Payload)
	fmt.Fprintf(&w, "Measured %s on %s. Each phase pushes for %gs.\n\n", r.Started.Format("2006-01-02 15:04 UTC"), r.Machine, r.Duration)
	w.WriteString(relaySetup(r.RelayArgs, r.RelayEnv))
	fmt.Fprintf(&w, "Throughput (Unix: %d workers × batches of %d; HTTP: %d workers; HTTP batch: %d workers × %d pushes a request):\n\n", r.UnixWorkers, r.Batch, r.HTTPWorkers, r.HTTPWorkers, r.Batch)
	rows := [][]string{}
	for _, s := range r.Sizes {
		for _, p := range s.Phases {
			if p.Mode != ModeThroughput {
				continue
			}
			rows = append(rows, []string{
				fmtInt(int64(s.Conns)), pathName(p.Path),
				fmtRate(p.AcceptRate), fmtRate(p.DeliveryRate),
				fmt.Sprintf("%s / %s", fmtInt(p.Delivered), fmtInt(p.Accepted)),
				fmtNs(p.ServerCPUPerPush), fmtNs(p.ClientCPUPerPush),
				fmt.Sprintf("%s / %s", fmtDur(p.Latency.P50), fmtDur(p.Latency.P99)),
				fmtOther(p.OtherCPUSeconds),
			})
		}
	}
	w.table([]string{"clients", "path", "pushes accepted/s", "deliveries/s", "delivered / accepted", "server CPU/push", "bench CPU/push", "latency p50 / p99 under load", "other processes' CPU"}, rows)
	fmt.Fprintf(&w, "Latency at %s pushes/s, push (stamp) to the client's read:\n\n", fmtInt(int64(r.Rate)))
	rows = rows[:0]
	for _, s := range r.Sizes {
		for _, p := range s.Phases {
			if p.Mode != ModePaced {
				continue
			}
			l := p.Latency
			rows = append(rows, []string{
				fmtInt(int64(s.Conns)), pathName(p.Path), fmtInt(int64(l.Count)),
				fmtDur(l.P50), fmtDur(l.P90), fmtDur(l.P99), fmtDur(l.P999), fmtDur(l.Max),
				fmtNs(p.ServerCPUPerPush),
				fmtOther(p.OtherCPUSeconds),
			})
		}
	}
	w.table([]string{"clients", "path", "frames read", "p50", "p90", "p99", "p99.9", "max", "server CPU/push", "other processes' CPU"}, rows)
	w.WriteString("The relay beside the floor (rate: pushes accepted/s ÷ floor writes/s; added latency: relay percentile − floor percentile, paced):\n\n")
	rows = rows[:0]
	for _, s := range r.Sizes {
		ft, fp := s.phase(PathFloor, ModeThroughput), s.phase(PathFloor, ModePaced)
		for _, path := range []string{PathUnix, PathHTTP, PathHTTPBatch} {
			t, p := s.phase(path, ModeThroughput), s.phase(path, ModePaced)
			row := []string{fmtInt(int64(s.Conns)), pathName(path), "—", "—", "—", "—", "—"}
			if t != nil && ft != nil {
				row[2] = fmt.Sprintf("%.2f", finite(t.AcceptRate/ft.AcceptRate))
				row[3] = fmt.Sprintf("%.2f×", finite(t.ServerCPUPerPush/ft.ServerCPUPerPush))
			}
			if p != nil && fp != nil {
				row[4] = fmtDur(p.Latency.P50 - fp.Latency.P50)
				row[5] = fmtDur(p.Latency.P90 - fp.Latency.P90)
				row[6] = fmtDur(p.Latency.P99 - fp.Latency.P99)
			}
			rows = append(rows, row)
		}
	}
	w.table([]string{"clients", "path", "rate ÷ floor", "server CPU/push ÷ floor's", "added p50", "added p90", "added p99"}, rows)
	w.checks(r.Checks)
	var errs []string
	for _, s := range r.Sizes {
		for _, p := range s.Phases {
			if len(p.Errors) > 0 || p.Drops > 0 || p.Missing != 0 {
				errs = append(errs, fmt.Sprintf("%s clients, %s %s: errors %v, relay drops %.0f, missing %d", fmtInt(int64(s.Conns)), p.Path, p.Mode, p.Errors, p.Drops, p.Missing))
			}
		}
	}
	if len(errs) == 0 {
		errs = append(errs, "No push failed, the relay dropped nothing, and every accepted push was read by its client.")
	}
	w.notes(append(r.Notes, errs...))
	return w.String()
}
