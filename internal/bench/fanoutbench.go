package bench

import (
	"cmp"
	"context"
	"fmt"
	"github.com/pushrelay/pushrelay/pkg/stamp"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/pushrelay/pushrelay/loadgen"
	"github.com/pushrelay/pushrelay/relay"
)

// FanoutOptions configures RunFanout. Zero values mean the defaults.
type FanoutOptions struct {
	// Sizes are the client counts each server broadcasts to, in order.
	// Default 1,000, 5,000, 10,000 and 19,000 (the bench holds every
	// client socket in one process and the server the other end in
	// another, so the largest must stay below RLIMIT_NOFILE on both
	// sides, and below the relay's --max-conns).
	Sizes []int
	// Servers to measure at each size, in order. Default relay, baseline,
	// floor.
	Servers []string
	// Broadcasts is how many measured broadcasts each server makes at each
	// size, one after the other, each once the last has reached every
	// client. Default 20.
	Broadcasts int
	// Warmup is how many unreported broadcasts come first. Default 2;
	// negative means none.
	Warmup int
	// Payload is the broadcast payload's size in bytes, timestamp
	// included. Default 32.
	Payload int
	// Gap is how long the host rests between broadcasts. Default 20 ms.
	Gap time.Duration
	// CoalesceClients is how many clients subscribe to one topic in the
	// coalescing phase. Default 1,000; negative skips the phase.
	CoalesceClients int
	// Burst is how many publishes to that topic go out back to back, in
	// one write of the ingress socket. Default 8.
	Burst int
	// Bursts is how many bursts the coalescing phase measures, each once
	// the last has been read. Default 200.
	Bursts int
	// BusyClients is how many clients the unicast-during-broadcast phase
	// holds. Default 18,000; negative skips the phase.
	BusyClients int
	// BusyRate is the pace of that phase's unicasts, per second. Default
	// 1,000.
	BusyRate float64
	// BusyDuration is how long it sends them. Default 5 s.
	BusyDuration time.Duration
	// Procs: the relay's command and environment, the baseline and floor
	// children's command; Stderr.
	Procs
}

func (o FanoutOptions) withDefaults() (FanoutOptions, error) {
	d := FanoutDefaults()
	if err := fillCounts("fanout", "size", &o.Sizes, d.Sizes); err != nil {
		return o, err
	}
	if err := fillServers("fanout", &o.Servers, d.Servers, ServerRelay, ServerBaseline, ServerFloor); err != nil {
		return o, err
	}
	orPositive(&o.Broadcasts, d.Broadcasts)
	orNone(&o.Warmup, d.Warmup)
	if err := fillPayload("fanout", &o.Payload, d.Payload); err != nil {
		return o, err
	}
	orZero(&o.Gap, d.Gap)
	orZero(&o.CoalesceClients, d.CoalesceClients)
	orPositive(&o.Burst, d.Burst)
	orPositive(&o.Bursts, d.Bursts)
	orZero(&o.BusyClients, d.BusyClients)
	orPositive(&o.BusyRate, d.BusyRate)
	orPositive(&o.BusyDuration, d.BusyDuration)
	if o.BusyDuration > 10*time.Minute {
		return o, fmt.Errorf("bench: fanout: busy duration %v: want at most 10m", o.BusyDuration)
	}
	return o, o.fill(true, true)
}

// FanoutResult is what RunFanout measured.
type FanoutResult struct {
	Started    time.Time       `json:"started"`
	Machine    Machine         `json:"machine"`
	Broadcasts int             `json:"broadcasts"`
	Warmup     int             `json:"warmup"`
	Payload    int             `json:"payload_bytes"`
	Servers    []FanoutRun     `json:"servers"`
	Coalesce   *CoalesceResult `json:"coalesce,omitempty"`
	Busy       []BusyResult    `json:"busy,omitempty"`
	// RelayArgs and RelayEnv are the relay's command line and the
	// environment added for it.
	RelayArgs []string `json:"relay_args"`
	RelayEnv  []string `json:"relay_env,omitempty"`
	Checks    []Check  `json:"checks,omitempty"`
	Notes     []string `json:"notes"`
}

// FanoutRun is one server's broadcasts to one count of clients.
type FanoutRun struct {
	Server string       `json:"server"`
	Conns  int          `json:"conns"`
	Shots  []FanoutShot `json:"shots"`
	// Time to last: per broadcast, from the stamp taken just before the
	// push to the read of the frame by the last client to get it. Median
	// and largest over the broadcasts.
	TTLMedian float64 `json:"ttl_median_seconds"`
	TTLMax    float64 `json:"ttl_max_seconds"`
	// RecipientP50 is the median over broadcasts of the median client's
	// latency.
	RecipientP50 float64 `json:"recipient_p50_seconds"`
	// DeliveriesPerSec is Conns / TTLMedian.
	DeliveriesPerSec float64 `json:"deliveries_per_second"`
	// Delivered is what the clients read over the measured broadcasts;
	// Expected is broadcasts × conns.
	Delivered int64 `json:"delivered"`
	Expected  int64 `json:"expected"`
	// CPU over the measured broadcasts (gaps included): the server
	// process and this one (the clients).
	CPUSeconds             float64 `json:"cpu_seconds"`
	CPUPerDelivery         float64 `json:"cpu_per_delivery_ns"`
	DeliveriesPerCPUSecond float64 `json:"deliveries_per_cpu_second"`
	ClientCPUPerDelivery   float64 `json:"client_cpu_per_delivery_ns"`
	// OtherCPUSeconds is the host's busy CPU time over the measured
	// broadcasts minus the server's and this process's.
	OtherCPUSeconds float64 `json:"other_cpu_seconds"`
	// The relay's counters over the measured broadcasts. LoopRate is
	// FanoutRecipients / FanoutSeconds: deliveries per second of an event
	// loop's time inside fanouts (start of a loop's share to its last
	// write there, summed over loops).
	MessagesWritten  float64 `json:"messages_written,omitempty"`
	Writes           float64 `json:"writes,omitempty"`
	FanoutRecipients float64 `json:"fanout_recipients,omitempty"`
	FanoutSeconds    float64 `json:"fanout_seconds,omitempty"`
	LoopRate         float64 `json:"loop_deliveries_per_second,omitempty"`
	// The floor's own account: the median sweep's writes per second on
	// its one thread, and its thread's CPU per write.
	FloorWritesPerSec float64 `json:"floor_writes_per_second,omitempty"`
	FloorCPUPerWrite  float64 `json:"floor_cpu_per_write_ns,omitempty"`
}

// FanoutShot is one broadcast.
type FanoutShot struct {
	TimeToLast float64 `json:"ttl_seconds"`
	P50        float64 `json:"p50_seconds"`
	// Wall is from before the push to the poll that saw the last frame,
	// on the bench's clock.
	Wall float64 `json:"wall_seconds"`
	// FloorSeconds is the floor's sweep, first write to last, on its
	// clock.
	FloorSeconds float64 `json:"floor_seconds,omitempty"`
}

// CoalesceResult is the coalescing phase: bursts of publishes to one
// topic.
type CoalesceResult struct {
	Clients   int   `json:"clients"`
	Burst     int   `json:"burst"`
	Bursts    int   `json:"bursts"`
	Delivered int64 `json:"delivered"`
	Expected  int64 `json:"expected"`
	// The relay's counters over the measured bursts.
	MessagesWritten  float64 `json:"messages_written"`
	Writes           float64 `json:"writes"`
	MessagesPerWrite float64 `json:"messages_per_write"`
	CPUSeconds       float64 `json:"cpu_seconds"`
	// MessagesPerCPUSecond is MessagesWritten / CPUSeconds: messages
	// delivered per second of one core.
	MessagesPerCPUSecond float64 `json:"messages_per_cpu_second"`
	// Latency from each publish's stamp to its read.
	Latency loadgen.Summary `json:"latency"`
	Errors  int64           `json:"errors"`
	// OtherCPUSeconds is the host's busy CPU time over the bursts minus
	// the relay's and this process's.
	OtherCPUSeconds float64 `json:"other_cpu_seconds"`
}

// BusyResult is the unicast-during-broadcast phase.
type BusyResult struct {
	Clients int `json:"clients"`
	// Queue is how many broadcasts may wait behind the one being written.
	Queue      int     `json:"queue"`
	Rate       float64 `json:"rate"`
	Seconds    float64 `json:"seconds"`
	Broadcasts int64   `json:"broadcasts"`
	// Broadcast deliveries per second over the phase.
	BroadcastRate float64 `json:"broadcast_deliveries_per_second"`
	Unicasts      int64   `json:"unicasts"`
	Accepted      int64   `json:"accepted"`
	// Probes is how many of the clients are probes, read by a pool of
	// their own; Latency is of the unicasts to them, stamp to read, and
	// BigPoolLatency of as many unicasts to random clients of the big
	// pool, which its reader reaches only through the broadcasts'
	// backlog.
	Probes          int              `json:"probes"`
	Latency         loadgen.Summary  `json:"latency"`
	BigPoolLatency  loadgen.Summary  `json:"big_pool_latency"`
	Errors          map[string]int64 `json:"errors,omitempty"`
	Missing         int64            `json:"missing"`
	FanoutMaxSecond float64          `json:"fanout_max_seconds"`
	// OtherCPUSeconds is the host's busy CPU time over the phase minus
	// the relay's and this process's.
	OtherCPUSeconds float64 `json:"other_cpu_seconds"`
}

// RunFanout measures broadcasts: for each size, each server (the relay
// binary, the goroutine-per-connection baseline and the bare sequential
// writer) holds that many clients and broadcasts a stamped payload to them
// again and again, and the bench reports the time until the last client
// read it and the CPU each delivery cost. Then it measures how the relay
// coalesces a burst of publishes, and how long a unicast waits while
// broadcasts keep the relay's loops busy. ctx bounds the whole run.
func RunFanout(ctx context.Context, opts FanoutOptions) (*FanoutResult, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	res := &FanoutResult{
		Started: time.Now().UTC(), Machine: readMachine(),
		Broadcasts: opts.Broadcasts, Warmup: opts.Warmup, Payload: opts.Payload,
		RelayArgs: opts.RelayCommand[1:], RelayEnv: opts.RelayEnv,
		Notes: []string{
			"relay is the real binary (`pushrelay serve`, every default) broadcasting through its Unix ingress (client.Broadcast); baseline is bench.Baseline in a child (`broadcast` command: one frame, offered to every connection's 64-frame channel, each written by that connection's goroutine); floor is a child writing the frame to each socket in turn with one blocking write(2) on one thread. The clients are one loadgen.Pool (one epoll loop, raw sockets) in the bench process.",
			"Time to last is, per broadcast, from the stamp taken just before the push to the client read that came last; the median and largest over the measured broadcasts. Each broadcast starts once the last has been read, after a short rest.",
			"CPU is each server process's (per-thread schedstat, /proc) over the measured broadcasts, rests included; CPU per delivery divides it by the deliveries. Other processes' CPU is the host's busy time over the same span (/proc/stat, 10 ms ticks) minus the server's and the bench's: anything else that ran meanwhile; past 0.2 s the run is marked disturbed. Per core, the relay's deliveries per CPU-second are set beside the floor's writes per second on its one thread, which is busy throughout a sweep; the relay's deliveries per second of its loops' time inside fanouts (pushrelay_fanout_seconds_total: from a loop starting its share to its last write there, summed over loops) are shown too, but that is wall time, and counts the time a loop's thread waited while the other loop and the bench's reader had the two cores.",
		},
	}
	for _, n := range opts.Sizes {
		for _, server := range opts.Servers {
			if err := rest(ctx, 500*time.Millisecond); err != nil {
				return res, err
			}
			r, err := fanoutOne(ctx, opts, server, n)
			if err != nil {
				return res, err
			}
			res.Servers = append(res.Servers, *r)
		}
	}
	if opts.CoalesceClients > 0 {
		if err := rest(ctx, 500*time.Millisecond); err != nil {
			return res, err
		}
		if res.Coalesce, err = coalesce(ctx, opts); err != nil {
			return res, err
		}
	}
	if opts.BusyClients > 0 {
		for _, q := range busyQueues {
			if err := rest(ctx, 500*time.Millisecond); err != nil {
				return res, err
			}
			b, err := busy(ctx, opts, q)
			if err != nil {
				return res, err
			}
			res.Busy = append(res.Busy, *b)
		}
	}
	res.Checks = fanoutChecks(res)
	return res, nil
}

// fanoutTarget is a server holding the pool's clients, able to broadcast.
type fanoutTarget struct {
	pid       int
	addr      string
	broadcast func(ctx context.Context) (FloorRun, error) // the floor's run, for the floor
	rp        *relayProc                                  // the relay, if it is one
	stop      func() error
}

// startFanoutTarget starts server, ready for a pool to connect.
func startFanoutTarget(opts FanoutOptions, server string) (*fanoutTarget, error) {
	if server == ServerRelay {
		rp, err := startRelayProc(opts.RelayCommand, opts.RelayEnv, opts.Stderr)
		if err != nil {
			return nil, err
		}
		return &fanoutTarget{
			pid: rp.pid, addr: rp.addr, rp: rp, stop: rp.stop,
			broadcast: func(ctx context.Context) (FloorRun, error) {
				_, err := rp.client.Broadcast(ctx, stamp.AppendPadded(nil, time.Now(), opts.Payload))
				return FloorRun{}, err
			},
		}, nil
	}
	c, err := startChild(opts.ChildCommand, server, relay.FramingNUL, nil, opts.Stderr)
	if err != nil {
		return nil, err
	}
	t := &fanoutTarget{pid: c.pid, addr: c.addr.String(), stop: c.quit}
	if server == ServerFloor {
		t.broadcast = func(context.Context) (FloorRun, error) {
			var run FloorRun
			if err := c.callTimeout(fmt.Sprintf("floor-sweep %d", opts.Payload), &run, time.Minute); err != nil {
				return run, err
			}
			if run.Error != "" {
				return run, fmt.Errorf("bench: floor: %s", run.Error)
			}
			return run, nil
		}
	} else {
		t.broadcast = func(context.Context) (FloorRun, error) {
			var r BroadcastReply
			if err := c.call(fmt.Sprintf("broadcast %d", opts.Payload), &r); err != nil {
				return FloorRun{}, err
			}
			if r.Error != "" {
				return FloorRun{}, fmt.Errorf("bench: %s: %s", server, r.Error)
			}
			return FloorRun{}, nil
		}
	}
	return t, nil
}

// shotResult is what a broadcast's pusher reports.
type shotResult struct {
	run FloorRun
	err error
}

// fanoutOne measures one server's broadcasts to n clients.
func fanoutOne(ctx context.Context, opts FanoutOptions, server string, n int) (_ *FanoutRun, err error) {
	fmt.Fprintf(opts.Stderr, "bench fanout: %s, %d clients: starting\n", server, n)
	t, err := startFanoutTarget(opts, server)
	if err != nil {
		return nil, err
	}
	pool, err := openPool(t.addr, n, time.Minute)
	if err != nil {
		_ = t.stop()
		return nil, err
	}
	defer func() {
		pool.Close()
		if serr := t.stop(); serr != nil && err == nil {
			err = serr
		}
	}()
	r := &FanoutRun{Server: server, Conns: n, Expected: int64(opts.Broadcasts) * int64(n)}
	var (
		cpu      *cpuMeter
		host0    cpuTicks
		m0       relayMetrics
		from     int64
		cpuUsed  []float64
		floorCPU float64
	)
	for i := -opts.Warmup; i < opts.Broadcasts; i++ {
		if err := rest(ctx, opts.Gap); err != nil {
			return nil, err
		}
		if i == 0 {
			if m0, cpu, host0, err = seriesStart(ctx, t.rp, t.pid); err != nil {
				return nil, err
			}
			from = pool.Stats.Messages.Load()
		}
		resetLatency(pool)
		m := pool.Stats.Messages.Load()
		start := time.Now()
		lastGrowth := start
		done := make(chan shotResult, 1)
		go func() {
			bctx, cancel := context.WithTimeout(ctx, time.Minute)
			defer cancel()
			run, err := t.broadcast(bctx)
			done <- shotResult{run, err}
		}()
		shot, err := pollWhile(pool, done, &lastGrowth)
		if err == nil {
			err = shot.err
		}
		if err != nil {
			return nil, fmt.Errorf("bench fanout: %s, %d clients, broadcast %d: %w", server, n, i, err)
		}
		if err := pollUntil(pool, 30*time.Second, func() bool { return pool.Stats.Messages.Load()-m >= int64(n) }); err != nil {
			return nil, fmt.Errorf("bench fanout: %s, %d clients, broadcast %d: %d of %d clients read it: %w", server, n, i, pool.Stats.Messages.Load()-m, n, err)
		}
		wall := time.Since(start)
		if i < 0 {
			continue
		}
		h := windowLatency(pool)
		s := FanoutShot{TimeToLast: h.Max().Seconds(), P50: h.Quantile(0.5).Seconds(), Wall: wall.Seconds()}
		if server == ServerFloor {
			s.FloorSeconds = shot.run.Seconds
			floorCPU += shot.run.CPUSeconds
		}
		r.Shots = append(r.Shots, s)
	}
	if cpuUsed, r.OtherCPUSeconds, err = seriesEnd(cpu, host0); err != nil {
		return nil, err
	}
	// Anything late (a duplicate, a heartbeat) would show here.
	if err := pollFor(pool, 20*time.Millisecond); err != nil {
		return nil, err
	}
	r.Delivered = pool.Stats.Messages.Load() - from
	deliveries := float64(r.Delivered)
	r.CPUSeconds = cpuUsed[0]
	r.CPUPerDelivery = finite(cpuUsed[0] * 1e9 / deliveries)
	r.DeliveriesPerCPUSecond = finite(deliveries / cpuUsed[0])
	r.ClientCPUPerDelivery = finite(cpuUsed[1] * 1e9 / deliveries)
	ttl := make([]float64, 0, len(r.Shots))
	p50 := make([]float64, 0, len(r.Shots))
	fl := make([]float64, 0, len(r.Shots))
	for _, s := range r.Shots {
		ttl, p50 = append(ttl, s.TimeToLast), append(p50, s.P50)
		fl = append(fl, s.FloorSeconds)
	}
	r.TTLMedian, r.TTLMax = median(ttl), slices.Max(ttl)
	r.RecipientP50 = median(p50)
	r.DeliveriesPerSec = finite(float64(n) / r.TTLMedian)
	if t.rp != nil {
		m1, err := t.rp.settledMetrics(ctx)
		if err != nil {
			return nil, err
		}
		r.MessagesWritten = m0.delta(m1, "pushrelay_messages_written_total")
		r.Writes = m0.delta(m1, "pushrelay_writes_total")
		r.FanoutRecipients = m0.delta(m1, "pushrelay_fanout_recipients_total")
		r.FanoutSeconds = m0.delta(m1, "pushrelay_fanout_seconds_total")
		r.LoopRate = finite(r.FanoutRecipients / r.FanoutSeconds)
	}
	if server == ServerFloor {
		r.FloorWritesPerSec = finite(float64(n) / median(fl))
		r.FloorCPUPerWrite = finite(floorCPU * 1e9 / deliveries)
	}
	fmt.Fprintf(opts.Stderr, "bench fanout: %s, %d clients: time to last %s median, %s max; %s CPU per delivery; %s/%s delivered\n",
		server, n, fmtDur(secs(r.TTLMedian)), fmtDur(secs(r.TTLMax)), fmtNs(r.CPUPerDelivery), fmtInt(r.Delivered), fmtInt(r.Expected))
	return r, nil
}

func secs(s float64) time.Duration { return time.Duration(s * 1e9) }

// median returns the middle value (the lower of the middle two), 0 for
// none.
func median[T cmp.Ordered](v []T) T {
	if len(v) == 0 {
		var zero T
		return zero
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[(len(s)-1)/2]
}

// fmtErrors prints error counts, "none" for none.
func fmtErrors(m map[string]int64) string {
	if len(m) == 0 {
		return "none"
	}
	keys := slices.Sorted(maps.Keys(m))
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

// Fanout targets.
const (
	targetCPUVsBaseline   = 0.65
	targetLoopVsFloor     = 0.75
	targetTTLVsFloor      = 1.25
	targetMessagesPerWrt  = 0.8 // × the burst
	targetMessagesPerCore = 1e6
	targetBusyP99         = 5 * time.Millisecond
)

// run returns the server's run at size n, nil if none.
func (r *FanoutResult) run(server string, n int) *FanoutRun {
	for i := range r.Servers {
		if r.Servers[i].Server == server && r.Servers[i].Conns == n {
			return &r.Servers[i]
		}
	}
	return nil
}

// sizes returns the sizes measured, in order.
func (r *FanoutResult) sizes() []int {
	var out []int
	for _, s := range r.Servers {
		if !slices.Contains(out, s.Conns) {
			out = append(out, s.Conns)
		}
	}
	return out
}

func fanoutChecks(r *FanoutResult) []Check {
	var checks []Check
	for _, n := range r.sizes() {
		rl, bl, fl := r.run(ServerRelay, n), r.run(ServerBaseline, n), r.run(ServerFloor, n)
		if rl == nil {
			continue
		}
		pre := fmtInt(int64(n)) + " clients: "
		if bl != nil {
			checks = append(checks, ratioCheck(pre+"relay CPU per delivery ÷ baseline's",
				rl.CPUPerDelivery, bl.CPUPerDelivery, fmtNs, false, targetCPUVsBaseline))
		}
		if fl != nil {
			checks = append(checks,
				ratioCheck(pre+"relay deliveries per CPU-second ÷ bare sequential writer's writes/s (one thread)",
					rl.DeliveriesPerCPUSecond, fl.FloorWritesPerSec, fmtRate, true, targetLoopVsFloor),
				ratioCheck(pre+"relay time to last ÷ bare sequential writer's (medians)",
					rl.TTLMedian, fl.TTLMedian, func(s float64) string { return fmtDur(secs(s)) }, false, targetTTLVsFloor))
		}
	}
	if c := r.Coalesce; c != nil {
		want := targetMessagesPerWrt * float64(c.Burst)
		checks = append(checks, Check{
			Name:   fmt.Sprintf("bursts of %d publishes to %s subscribers: messages per write", c.Burst, fmtInt(int64(c.Clients))),
			Value:  c.MessagesPerWrite,
			Shown:  fmt.Sprintf("%.2f", c.MessagesPerWrite),
			Target: fmt.Sprintf("≥ %.1f", want),
			Met:    c.MessagesPerWrite >= want,
		})
		checks = append(checks, Check{
			Name:   "the same: messages delivered per second per core (relay CPU)",
			Value:  c.MessagesPerCPUSecond,
			Shown:  fmtRate(c.MessagesPerCPUSecond),
			Target: "≥ 1,000,000/s",
			Met:    c.MessagesPerCPUSecond >= targetMessagesPerCore,
		})
	}
	for _, b := range r.Busy {
		checks = append(checks, Check{
			Name:   fmt.Sprintf("unicast latency p99 (probes) during back-to-back broadcasts to %s clients, %s", fmtInt(int64(b.Clients)), busyQueueName(b.Queue)),
			Value:  float64(b.Latency.P99),
			Shown:  fmtDur(b.Latency.P99),
			Target: "< 5 ms",
			Met:    b.Latency.Count > 0 && b.Latency.P99 < targetBusyP99,
		})
	}
	return checks
}

// Markdown renders the result as the tables docs/benchmarks.md shows.
func (r *FanoutResult) Markdown() string {
	var w doc
	fmt.Fprintf(&w, "### Fanout: broadcasts of a %d-byte payload\n\n", r.Payload)
	fmt.Fprintf(&w, "Measured %s on %s. %d measured broadcasts per server and size, after %d unreported.\n\n", r.Started.Format("2006-01-02 15:04 UTC"), r.Machine, r.Broadcasts, r.Warmup)
	w.WriteString(relaySetup(r.RelayArgs, r.RelayEnv))
	rows := [][]string{}
	for _, s := range r.Servers {
		rows = append(rows, []string{
			fmtInt(int64(s.Conns)), s.Server,
			fmtDur(secs(s.TTLMedian)), fmtDur(secs(s.TTLMax)), fmtDur(secs(s.RecipientP50)),
			fmtRate(s.DeliveriesPerSec),
			fmtNs(s.CPUPerDelivery), fmtRate(s.DeliveriesPerCPUSecond),
			fmtNs(s.ClientCPUPerDelivery),
			fmt.Sprintf("%s / %s", fmtInt(s.Delivered), fmtInt(s.Expected)),
			fmtOther(s.OtherCPUSeconds),
		})
	}
	w.table([]string{"clients", "server", "time to last (median)", "time to last (max)", "median client's latency", "deliveries/s (clients ÷ median time to last)", "server CPU/delivery", "deliveries per server CPU-second", "bench (clients) CPU/delivery", "read / expected", "other processes' CPU"}, rows)
	rows = rows[:0]
	for _, n := range r.sizes() {
		rl, fl := r.run(ServerRelay, n), r.run(ServerFloor, n)
		if rl == nil || fl == nil {
			continue
		}
		rows = append(rows, []string{
			fmtInt(int64(n)),
			fmtRate(rl.DeliveriesPerCPUSecond), fmtRate(rl.LoopRate), fmt.Sprintf("%.2f", finite(rl.MessagesWritten/rl.Writes)),
			fmtRate(fl.FloorWritesPerSec), fmtNs(fl.FloorCPUPerWrite),
			fmt.Sprintf("%.2f", finite(rl.DeliveriesPerCPUSecond/fl.FloorWritesPerSec)),
			fmt.Sprintf("%.2f", finite(rl.LoopRate/fl.FloorWritesPerSec)),
		})
	}
	if len(rows) > 0 {
		w.WriteString("Per core: the relay's deliveries per second of its process's CPU, and per second of its loops' time inside fanouts (wall time, which counts the time a loop's thread waited for a core), beside the bare sequential writer's one thread:\n\n")
		w.table([]string{"clients", "relay deliveries per CPU-second", "relay deliveries per loop-second in fanouts", "relay messages per write", "floor writes/s (one thread)", "floor CPU/write", "relay per CPU-second ÷ floor", "relay per loop-second ÷ floor"}, rows)
	}
	if c := r.Coalesce; c != nil {
		fmt.Fprintf(&w, "Coalescing: %s clients subscribed to one topic; %d bursts of %d publishes, each burst one write of the ingress socket, the next once every client has read the last:\n\n", fmtInt(int64(c.Clients)), c.Bursts, c.Burst)
		w.table([]string{"messages written", "writes", "messages per write", "relay CPU", "messages per CPU-second", "publish latency p50 / p99", "read / expected", "error replies", "other processes' CPU"}, [][]string{{
			fmtInt(int64(c.MessagesWritten)), fmtInt(int64(c.Writes)), fmt.Sprintf("%.2f", c.MessagesPerWrite),
			fmt.Sprintf("%.3f s", c.CPUSeconds), fmtRate(c.MessagesPerCPUSecond),
			fmt.Sprintf("%s / %s", fmtDur(c.Latency.P50), fmtDur(c.Latency.P99)),
			fmt.Sprintf("%s / %s", fmtInt(c.Delivered), fmtInt(c.Expected)), fmtInt(c.Errors),
			fmtOther(c.OtherCPUSeconds),
		}})
	}
	if len(r.Busy) > 0 {
		b0 := r.Busy[0]
		fmt.Fprintf(&w, "Unicasts during broadcasts: %s clients; broadcasts back to back while unicasts go at %s/s to random probe clients (%d of the clients, read by a pool of their own) and at %s/s to random clients of the big pool; latency of the unicasts, stamp to read:\n\n", fmtInt(int64(b0.Clients)), fmtInt(int64(b0.Rate)), b0.Probes, fmtInt(int64(b0.Rate)))
		rows = rows[:0]
		for _, b := range r.Busy {
			for _, u := range []struct {
				to string
				l  loadgen.Summary
			}{{"probes", b.Latency}, {"big pool", b.BigPoolLatency}} {
				l := u.l
				rows = append(rows, []string{
					busyQueueName(b.Queue), u.to, fmtInt(b.Broadcasts), fmtRate(b.BroadcastRate), fmtInt(int64(l.Count)),
					fmtDur(l.P50), fmtDur(l.P90), fmtDur(l.P99), fmtDur(l.P999), fmtDur(l.Max),
					fmtDur(secs(b.FanoutMaxSecond)), fmtInt(b.Missing), fmtErrors(b.Errors),
					fmtOther(b.OtherCPUSeconds),
				})
			}
		}
		w.table([]string{"broadcasts sent", "unicasts to", "broadcasts", "broadcast deliveries/s", "unicasts read", "p50", "p90", "p99", "p99.9", "max", "longest fanout on one loop", "missing", "errors", "other processes' CPU"}, rows)
	}
	w.checks(r.Checks)
	w.notes(r.Notes)
	return w.String()
}
