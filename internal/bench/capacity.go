package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/pushrelay/pushrelay/kernel-tuning/doctor"
	"github.com/pushrelay/pushrelay/loadgen"
	"github.com/pushrelay/pushrelay/relay"
)

// CapacityOptions configure the capacity ramp.
type CapacityOptions struct {
	// Steps are the connection counts to hold, in order. Default 1,000,
	// 2,000, 5,000, 10,000, then every 10,000 up to Target.
	Steps []int
	// Target ends the ramp when reached (a wall ends it earlier). Default
	// 50,000.
	Target int
	// Framing of every server's frames. Default nul.
	Framing relay.Framing
	// Servers are measured at each step, in order: the relay first (the
	// ramp is its ramp), then any of the baseline and the floor. Default
	// relay, baseline, floor.
	Servers []string
	// Broadcasts is how many broadcasts each server makes at each step,
	// each once every client has read the last. Default 3.
	Broadcasts int
	// Payload is the size of every pushed payload in bytes, timestamp
	// included. Default 64.
	Payload int
	// UnicastRate and Unicasts set each step's paced unicast series: that
	// many stamped pushes to random clients, UnicastRate a second, from
	// each server; and as many bare loopback writes for the latency
	// probe. Defaults 500/s and 500; negative Unicasts skips both.
	UnicastRate int
	Unicasts    int
	// Throughput is how long each server pushes unicasts to random clients
	// as fast as it takes them, at each step. Default 1 s; negative skips
	// the phase.
	Throughput time.Duration
	// Settle is how long a step's connections sit before the server's
	// memory is read. Default 1 s.
	Settle time.Duration
	// StepTimeout bounds each server's connecting at a step and each
	// measurement. Default 60 s.
	StepTimeout time.Duration
	// LoadgenCommand starts the load generator's workers (it is run with
	// loadgen.WorkerArg); default this executable's `loadgen`.
	LoadgenCommand []string
	// OnStep, if set, is called with each step once it is measured.
	OnStep func(CapacityStep)
	// Procs: the relay's and the baseline and floor children's commands;
	// Stderr. RelayEnv is not used.
	Procs
}

func (o CapacityOptions) withDefaults() (CapacityOptions, error) {
	d := CapacityDefaults()
	if err := fillCount("capacity", "target", &o.Target, d.Target); err != nil {
		return o, err
	}
	if len(o.Steps) == 0 {
		for _, n := range []int{1000, 2000, 5000, 10000} {
			if n <= o.Target {
				o.Steps = append(o.Steps, n)
			}
		}
		for n := 20000; n <= o.Target; n += 10000 {
			o.Steps = append(o.Steps, n)
		}
		if len(o.Steps) == 0 || o.Steps[len(o.Steps)-1] != o.Target {
			o.Steps = append(o.Steps, o.Target)
		}
	}
	for i, n := range o.Steps {
		if n <= 0 || (i > 0 && n <= o.Steps[i-1]) {
			return o, fmt.Errorf("bench: capacity: steps %v: want increasing positive counts", o.Steps)
		}
	}
	orEmpty(&o.Servers, d.Servers)
	if o.Servers[0] != ServerRelay {
		return o, fmt.Errorf("bench: capacity: servers %v: the relay comes first", o.Servers)
	}
	for i, s := range o.Servers[1:] {
		if (s != ServerBaseline && s != ServerFloor) || slices.Contains(o.Servers[1:i+1], s) {
			return o, fmt.Errorf("bench: capacity: servers %v: after the relay, want %s and %s, each once", o.Servers, ServerBaseline, ServerFloor)
		}
	}
	orZero(&o.Broadcasts, d.Broadcasts)
	orZero(&o.UnicastRate, d.UnicastRate)
	orZero(&o.Unicasts, d.Unicasts)
	if o.Broadcasts < 0 || o.UnicastRate < 0 || o.UnicastRate > 1e6 {
		return o, fmt.Errorf("bench: capacity: broadcasts %d, unicasts %d at %d/s: want positive counts, at most 1,000,000/s", o.Broadcasts, o.Unicasts, o.UnicastRate)
	}
	if err := fillPayload("capacity", &o.Payload, d.Payload); err != nil {
		return o, err
	}
	orZero(&o.Throughput, d.Throughput)
	if o.Throughput > 10*time.Minute {
		return o, fmt.Errorf("bench: capacity: throughput phase %v: want at most 10m", o.Throughput)
	}
	orZero(&o.Settle, d.Settle)
	orZero(&o.StepTimeout, d.StepTimeout)
	// The relay alone needs no child.
	return o, o.fill(true, len(o.Servers) > 1)
}

// ServerStep is what one server measured at one step of the ramp.
type ServerStep struct {
	Server string `json:"server"`
	// Want is how many connections the server was to hold at this step;
	// Held is how many held an ID once its connects had settled,
	// HeldAfter how many once its measurements were over.
	Want      int `json:"want"`
	Held      int `json:"held"`
	HeldAfter int `json:"held_after"`
	// AcceptTime runs from the step's first connect until the server had
	// accepted (the relay: accepted or refused) every new connection;
	// AcceptRate is the new connections held over it.
	AcceptTime time.Duration `json:"accept_time_ns"`
	AcceptRate float64       `json:"accept_rate_per_s"`
	// Memory per connection held: the growth of the server process's RSS
	// and Go heap in use across its connects (read just before and once
	// they settled), summed over the steps, over the connections it
	// holds; what the traffic between the connects left behind (buffers,
	// pools) is not charged to the connections. RSSBytes and HeapBytes
	// are the process's whole RSS and heap in use at the reading.
	RSSBytes      int64   `json:"rss_bytes"`
	HeapBytes     int64   `json:"heap_inuse_bytes"`
	RSSPerConn    float64 `json:"rss_per_conn"`
	HeapPerConn   float64 `json:"heap_inuse_per_conn"`
	KernelPerConn float64 `json:"kernel_per_conn"`
	// KernelBytes and KernelSockets are the kernel's growth over this
	// server's connects so far: socket memory, and TCP sockets in use
	// (sockstat), which its clients alone grow by two per connection.
	// A connect window in which other processes moved the count of
	// sockets by more than a tenth of that is left out of both
	// (KernelLeftOut counts them), and KernelPerConn is 2 × KernelBytes
	// ÷ KernelSockets over the windows kept: what two sockets cost.
	KernelBytes   int64 `json:"kernel_bytes"`
	KernelSockets int64 `json:"kernel_sockets"`
	KernelLeftOut int   `json:"kernel_windows_left_out,omitempty"`
	// Broadcasts holds each broadcast's time from its stamp to the last
	// client's read; BroadcastTTL is their median. Delivered counts the
	// frames read, Expected is broadcasts × Held.
	Broadcasts         []time.Duration `json:"broadcast_times_to_last_ns"`
	BroadcastTTL       time.Duration   `json:"broadcast_time_to_last_ns"`
	BroadcastDelivered int64           `json:"broadcast_delivered"`
	BroadcastExpected  int64           `json:"broadcast_expected"`
	// The paced unicast series: latency from stamp to read (its Count is
	// the frames read), and the pushes made and taken.
	Unicast         loadgen.Summary `json:"unicast"`
	UnicastSent     int64           `json:"unicast_sent"`
	UnicastAccepted int64           `json:"unicast_accepted"`
	// Unicasts as fast as the server takes them: pushes written per second,
	// from the first push until the server had written every push it took
	// (to the kernel; the relay: or to gnet's buffer when a socket's is
	// full), and the frames read.
	Throughput          float64         `json:"unicast_throughput_per_s"`
	ThroughputSeconds   float64         `json:"throughput_seconds"`
	ThroughputSent      int64           `json:"throughput_sent"`
	ThroughputAccepted  int64           `json:"throughput_accepted"`
	ThroughputDelivered int64           `json:"throughput_delivered"`
	ThroughputLatency   loadgen.Summary `json:"throughput_latency"`
	// PushErrors counts pushes the server refused, by reason.
	PushErrors map[string]int64 `json:"push_errors,omitempty"`
	// The load generator's CPU and failures over this server's part of
	// the step.
	LoadgenCPU time.Duration    `json:"loadgen_cpu_ns"`
	Failures   map[string]int64 `json:"failures,omitempty"`
}

// ProcessPerConn is the server process's memory per connection: its RSS
// growth, or its Go heap's where that grew more. A process's resident
// memory cannot grow by less than its heap: when its RSS did, the heap
// reused pages it already held (what a collected burst left free).
func (s *ServerStep) ProcessPerConn() float64 { return max(s.RSSPerConn, s.HeapPerConn) }

// MemoryPerConn is the connection's whole cost: the process's and the
// kernel's.
func (s *ServerStep) MemoryPerConn() float64 { return s.ProcessPerConn() + s.KernelPerConn }

// Delivered returns the frames read over the step's series, and the frames
// expected: broadcasts × clients, and every push the server took.
func (s *ServerStep) Delivered() (read, expected int64) {
	return s.BroadcastDelivered + int64(s.Unicast.Count) + s.ThroughputDelivered,
		s.BroadcastExpected + s.UnicastAccepted + s.ThroughputAccepted
}

// CapacityStep is what one step of the ramp measured.
type CapacityStep struct {
	Conns    int         `json:"conns"` // the step's count
	Relay    ServerStep  `json:"relay"`
	Baseline *ServerStep `json:"baseline,omitempty"`
	Floor    *ServerStep `json:"floor,omitempty"`
	// Loopback is the bare loopback write to a waiting reader: the floor
	// of one message's latency.
	Loopback *loadgen.Summary `json:"loopback_probe,omitempty"`
	Ratios   Ratios           `json:"ratios"`
	Counters HostCounters     `json:"counters"`
	Elapsed  time.Duration    `json:"elapsed_ns"` // since the ramp began, at the step's end
}

// RatioPair is a relay figure divided by the baseline's and by the floor's;
// zero where either was not measured.
type RatioPair struct {
	Baseline float64 `json:"vs_baseline,omitempty"`
	Floor    float64 `json:"vs_floor,omitempty"`
}

// Ratios set a step's relay figures beside the baseline's and the floor's:
// relay ÷ other. Below 1 is better for memory, time and latency, above 1
// for rates.
type Ratios struct {
	Memory     RatioPair `json:"memory_per_conn"` // process + kernel
	RSS        RatioPair `json:"process_per_conn"`
	Heap       RatioPair `json:"heap_per_conn"`
	Accept     RatioPair `json:"accept_rate"`
	Broadcast  RatioPair `json:"broadcast_time_to_last"`
	Throughput RatioPair `json:"unicast_throughput"`
	UnicastP50 RatioPair `json:"unicast_p50"`
	UnicastP99 RatioPair `json:"unicast_p99"`
	// The relay's paced unicast percentiles ÷ the bare loopback write's.
	LoopbackP50 float64 `json:"unicast_p50_vs_loopback,omitempty"`
	LoopbackP99 float64 `json:"unicast_p99_vs_loopback,omitempty"`
}

// ratio is a ÷ b, zero unless both are positive.
func ratio(a, b float64) float64 {
	if a <= 0 || b <= 0 {
		return 0
	}
	return finite(a / b)
}

func (s *CapacityStep) ratios() Ratios {
	var r Ratios
	rl := &s.Relay
	for _, o := range []struct {
		st *ServerStep
		to func(*RatioPair) *float64
	}{
		{s.Baseline, func(p *RatioPair) *float64 { return &p.Baseline }},
		{s.Floor, func(p *RatioPair) *float64 { return &p.Floor }},
	} {
		x := o.st
		if x == nil {
			continue
		}
		if rl.KernelSockets > 0 && x.KernelSockets > 0 {
			*o.to(&r.Memory) = ratio(rl.MemoryPerConn(), x.MemoryPerConn())
		}
		*o.to(&r.Accept) = ratio(rl.AcceptRate, x.AcceptRate)
		*o.to(&r.Broadcast) = ratio(float64(rl.BroadcastTTL), float64(x.BroadcastTTL))
		*o.to(&r.Throughput) = ratio(rl.Throughput, x.Throughput)
		*o.to(&r.UnicastP50) = ratio(float64(rl.Unicast.P50), float64(x.Unicast.P50))
		*o.to(&r.UnicastP99) = ratio(float64(rl.Unicast.P99), float64(x.Unicast.P99))
	}
	if b := s.Baseline; b != nil {
		// The floor holds a descriptor per connection and next to nothing
		// else: its RSS and heap are no yardstick, its kernel memory is.
		r.RSS.Baseline = ratio(rl.ProcessPerConn(), b.ProcessPerConn())
		r.Heap.Baseline = ratio(rl.HeapPerConn, b.HeapPerConn)
	}
	if lb := s.Loopback; lb != nil {
		r.LoopbackP50 = ratio(float64(rl.Unicast.P50), float64(lb.P50))
		r.LoopbackP99 = ratio(float64(rl.Unicast.P99), float64(lb.P99))
	}
	return r
}

// CapacityResult is a ramp's report.
type CapacityResult struct {
	Machine     Machine  `json:"machine"`
	Options     string   `json:"options"`
	Servers     []string `json:"servers"`
	Broadcasts  int      `json:"broadcasts"`
	Payload     int      `json:"payload_bytes"`
	UnicastRate int      `json:"unicast_rate"`
	Unicasts    int      `json:"unicasts"`
	Throughput  float64  `json:"throughput_seconds"`
	// Nofile is each process's RLIMIT_NOFILE, soft and hard: the relay,
	// the baseline and floor children, and the bench itself (whose
	// load generator workers inherit it).
	Nofile map[string][2]uint64 `json:"rlimit_nofile"`
	Steps  []CapacityStep       `json:"steps"`
	// Wall is what stopped the relay's ramp; ServerWalls what stopped
	// another server earlier (the ramp goes on without it).
	Wall        Wall            `json:"wall"`
	ServerWalls map[string]Wall `json:"server_walls,omitempty"`
	Interrupted bool            `json:"interrupted,omitempty"`
	Started     time.Time       `json:"started"`
	Notes       []string        `json:"notes"`
}

func abs(n int64) int64 {
	if n < 0 {
		return -n
	}
	return n
}

func addCounts(dst, src map[string]int64) {
	for k, v := range src {
		dst[k] += v
	}
}

// capacityNotes say how the ramp measures, for its report.
func capacityNotes(opts CapacityOptions) []string {
	return []string{
		"Each server runs in a process of its own and keeps its clients from step to step: the relay is the real binary (`pushrelay serve`, every default); the baseline is bench.Baseline (goroutines per connection on Go's net package, same framing and IDs) and the floor is bench.FloorServer (one thread: blocking accept4 and an ID write; bare write(2) calls on command), each in `pushrelay bench child`. Each server's clients are held by load generator worker processes of their own (one run per step, raw sockets on epoll).",
		"At each step the relay grows first and is measured; then the baseline and the floor grow to the count the relay held and are measured in turn. While one server is measured the others sit idle with their clients connected: no traffic, so no CPU, and every process stays under its own RLIMIT_NOFILE. A server that cannot hold the relay's count stops there, its wall named, and the ramp goes on without it.",
		"Memory per connection: the growth of the server process's RSS and Go heap in use across its connects (read just before them and once they had settled), summed over the steps, over the connections it holds. What the traffic between connects left behind (the relay's frame pools and write buffers after a burst, say) is thus not charged to the connections; the whole process's RSS and heap at each reading are in results.json. The children collect garbage and return free memory to the system before each reading (two GCs and FreeOSMemory), so the baseline's figures are live memory; the relay cannot be asked to, and allocates next to nothing as it pushes; but after a burst it holds frames in pools that a later collection frees, and its heap then grows into those pages without growing its RSS, so the process's memory per connection is its RSS growth or its heap's, whichever is larger. Kernel: the growth of the slab caches sockets draw on (TCP, sock_inode_cache, dentry, filp, eventpoll; active objects × size; TCP's buffer pages are left out, as idle sockets hold next to none and other processes' traffic moves them by megabytes) over that server's own connects, divided by the growth in TCP sockets in use (sockstat) over the same windows and doubled (both loopback ends), summed over the steps. A connect window in which other processes moved the count of TCP sockets by more than a tenth of the two per new connection is left out, and a figure marked * averages the windows that were not. The memory ratios compare process + kernel per connection.",
		"The steps go up first, each server's memory, accepts, broadcasts and paced unicasts measured at each; the unicasts as fast as taken run on the way back down, from the last step to the first, each step down closing the clients the step above added: such a burst leaves buffers and pools behind in a server, which would otherwise be read as the next step's memory. A server stopped at its own wall is gone by then and has none.",
		"Accept rate: the step's new connections over the time from its first connect until the server had accepted them all (the relay's counters, or the child's count, polled every 20 ms).",
		fmt.Sprintf("Broadcasts: %d per server per step, each once every client had read the last; the relay's through its Unix ingress, the baseline's with its Broadcast (one frame offered to every connection's channel), the floor's one write(2) per socket in turn. Time to last is from the stamp taken just before the push to the read of the last client, median over the broadcasts.", opts.Broadcasts),
		fmt.Sprintf("Unicasts: %d to random clients at %d/s, latency from the stamp to the client's read; the relay's through its Unix ingress (SendNoReply), the baseline's with its Send and the floor's with one write(2) each, inside their own processes: they pay no ingress hop, the relay does. Throughput: %v as fast as each takes them, the relay from 4 pushers in batches of 256 each awaiting a ping, the baseline from one goroutine with at most 1,024 pushes unwritten, the floor from one thread; the rate is the pushes taken over the time from the first push until the server had written the last of them (the relay's written-messages counter and the baseline's written count, polled), and every one is counted again as it is read.", opts.Unicasts, opts.UnicastRate, opts.Throughput),
		"The bare loopback write is one loopback TCP connection with a thread blocked in read(2): the latency floor of one message, with no epoll and no other socket on the path.",
		"This machine's two cores are shared with the load generator, which reads every frame; on a busy host the time figures measured the neighbours too. The ratios, measured seconds apart by the same clients, carry over; the absolute figures do not.",
	}
}

// RunCapacity ramps connections to the real relay step by step, and to the
// goroutine-per-connection baseline and the kernel floor beside it, until
// the target or the relay's first wall, which it names with its evidence and
// the doctor's fix. Every step measures each server's memory per
// connection, accept rate, broadcasts and unicasts, and a bare loopback
// write; every relay figure is also a ratio to the baseline's and the
// floor's. It stops early, with a partial report of the steps completed
// (Interrupted), when ctx ends. Everything it starts it stops.
func RunCapacity(ctx context.Context, opts CapacityOptions) (res *CapacityResult, err error) {
	opts, err = opts.withDefaults()
	if err != nil {
		return nil, err
	}
	began := time.Now()
	say := func(format string, args ...any) {
		fmt.Fprintf(opts.Stderr, "bench capacity [%s]: %s\n", time.Since(began).Round(time.Second), fmt.Sprintf(format, args...))
	}
	res = &CapacityResult{
		Machine: readMachine(), Started: began.UTC(), Servers: opts.Servers,
		Options:    fmt.Sprintf("steps %v, target %d, %s framing, servers %s, %d broadcasts, %d unicasts at %d/s and %v of unicast throughput per server per step, %d-byte payloads", opts.Steps, opts.Target, opts.Framing, strings.Join(opts.Servers, ", "), opts.Broadcasts, opts.Unicasts, opts.UnicastRate, max(0, opts.Throughput), opts.Payload),
		Broadcasts: opts.Broadcasts, Payload: opts.Payload, UnicastRate: opts.UnicastRate, Unicasts: opts.Unicasts, Throughput: max(0, opts.Throughput.Seconds()),
		Nofile: map[string][2]uint64{"bench": procNofile(os.Getpid())},
		Wall:   Wall{ID: WallNone, Name: wallNames[WallNone]},
		Notes:  capacityNotes(opts),
	}
	var servers []*rampServer
	defer func() {
		// Clients first, so no server has anything left to write.
		for _, s := range servers {
			if !s.stopped {
				s.stopClients()
			}
		}
		for _, s := range servers {
			if s.stopped {
				continue
			}
			if serr := s.stop(); serr != nil && err == nil && !res.Interrupted {
				err = serr
			}
		}
	}()
	interrupted := func() bool {
		if ctx.Err() != nil {
			res.Interrupted = true
			say("interrupted: the report holds the steps completed (%d)", len(res.Steps))
			return true
		}
		return false
	}
	for _, name := range opts.Servers {
		say("starting %s", name)
		s, err := startRampServer(ctx, opts, name)
		if err != nil {
			if interrupted() {
				return res, nil
			}
			return res, err
		}
		servers = append(servers, s)
		res.Nofile[name] = procNofile(s.pid)
	}
	rl := servers[0]
	m, err := rl.rp.metrics(ctx)
	if err != nil {
		if interrupted() {
			return res, nil
		}
		return res, err
	}
	prevRejected := m.sum(`pushrelay_connections_rejected_total{reason="max_conns"}`)
	for i, target := range opts.Steps {
		if interrupted() {
			break
		}
		say("step %d of %d: %s connections", i+1, len(opts.Steps), fmtInt(int64(target)))
		step := CapacityStep{Conns: target}
		before := ReadHostCounters()
		rs, err := rl.grow(ctx, opts, target)
		if err == nil {
			say("relay: %s held; measuring", fmtInt(int64(rs.Held)))
			err = rl.measure(ctx, opts, &rs)
		}
		if interrupted() {
			break
		}
		if err != nil {
			return res, err
		}
		rl.tally(&rs)
		step.Relay = rs
		say("relay: %s", serverLine(&rs))
		m, err := rl.rp.metrics(ctx)
		if err != nil {
			if interrupted() {
				break
			}
			return res, err
		}
		rejected := m.sum(`pushrelay_connections_rejected_total{reason="max_conns"}`)
		wall := NameWall(WallEvidence{
			Target: target, Established: rs.Held, Failures: rs.Failures,
			RelayRejectedFull: uint64(rejected - prevRejected), RelayMaxConns: int(m.sum("pushrelay_connections_max")),
			RelayNofile: procNofile(rl.pid), Before: before, After: ReadHostCounters(),
		})
		prevRejected = rejected

		for _, s := range servers[1:] {
			if s.stopped || rs.Held == 0 {
				continue
			}
			b := ReadHostCounters()
			ss, err := s.grow(ctx, opts, rs.Held)
			if err == nil && ss.Held < rs.Held {
				s.tally(&ss)
				s.hitWall(opts, res, &ss, b, say)
				continue
			}
			if err == nil {
				say("%s: %s held; measuring", s.name, fmtInt(int64(ss.Held)))
				err = s.measure(ctx, opts, &ss)
			}
			if interrupted() {
				break
			}
			if err != nil {
				return res, err
			}
			s.tally(&ss)
			say("%s: %s", s.name, serverLine(&ss))
			if s.name == ServerBaseline {
				step.Baseline = &ss
			} else {
				step.Floor = &ss
			}
		}
		if res.Interrupted {
			break
		}
		if opts.Unicasts > 0 {
			lb, err := LoopbackProbe(opts.Unicasts, opts.Payload, time.Second/time.Duration(opts.UnicastRate), opts.Framing)
			if err != nil {
				return res, err
			}
			step.Loopback = &lb
		}
		if interrupted() {
			break
		}
		step.Counters = ReadHostCounters()
		step.Elapsed = time.Since(began)
		step.Ratios = step.ratios()
		res.Steps = append(res.Steps, step)
		say("step %d done: %s", i+1, ratioLine(&step))
		if opts.OnStep != nil {
			opts.OnStep(step)
		}
		if wall.ID != WallNone {
			if h, err := doctor.Read("/"); err == nil {
				wall.AddFix(doctor.Analyze(h, doctor.Options{Target: int64(opts.Target)}))
			}
			res.Wall = wall
			say("the relay stopped at %s connections: %s", fmtInt(int64(rs.Held)), wall.Name)
			break
		}
	}
	if opts.Throughput > 0 && !res.Interrupted {
		if err := descend(ctx, opts, res, servers, say); err != nil && !interrupted() {
			return res, err
		}
	}
	return res, nil
}

// descend measures unicasts as fast as each server takes them, at each
// step from the last down: such a burst leaves buffers and pools behind in
// a server, so it runs once every memory reading is done, and each step
// down closes the clients the step above added.
func descend(ctx context.Context, opts CapacityOptions, res *CapacityResult, servers []*rampServer, say func(string, ...any)) error {
	for i := len(res.Steps) - 1; i >= 0; i-- {
		step := &res.Steps[i]
		for _, s := range servers {
			st := step.server(s.name)
			if s.stopped || st == nil {
				continue
			}
			if err := s.shrink(ctx, st.Held, opts.StepTimeout); err != nil {
				return err
			}
			if err := s.measureThroughput(ctx, opts, st); err != nil {
				return err
			}
		}
		step.Ratios = step.ratios()
		var parts []string
		for _, x := range step.servers() {
			parts = append(parts, fmt.Sprintf("%s %s (%s of %s read)", x.Server, fmtRate(x.Throughput), fmtInt(x.ThroughputDelivered), fmtInt(x.ThroughputAccepted)))
		}
		say("step %d: unicasts as fast as taken: %s", i+1, strings.Join(parts, ", "))
	}
	return nil
}

// server returns the step's figures for the named server, nil if it was
// not measured.
func (s *CapacityStep) server(name string) *ServerStep {
	switch name {
	case ServerRelay:
		return &s.Relay
	case ServerBaseline:
		return s.Baseline
	case ServerFloor:
		return s.Floor
	}
	return nil
}

// serverLine is a server's step on one progress line.
func serverLine(s *ServerStep) string {
	read, want := s.Delivered()
	return fmt.Sprintf("%s held, accept %s, %s process + %s kernel per connection, broadcast to the last client %s, unicast p50 %s p99 %s, %s of %s frames read",
		fmtInt(int64(s.Held)), fmtRate(s.AcceptRate), fmtBytes(s.ProcessPerConn()), fmtBytes(s.KernelPerConn), fmtDur(s.BroadcastTTL),
		fmtDur(s.Unicast.P50), fmtDur(s.Unicast.P99), fmtInt(read), fmtInt(want))
}

// ratioLine is a step's main ratios on one progress line.
func ratioLine(s *CapacityStep) string {
	r := s.Ratios
	return fmt.Sprintf("relay ÷ baseline: memory %s, broadcast %s, unicast p50 %s; relay ÷ floor: memory %s, broadcast %s, unicast p50 %s",
		fmtRatio(r.Memory.Baseline), fmtRatio(r.Broadcast.Baseline), fmtRatio(r.UnicastP50.Baseline),
		fmtRatio(r.Memory.Floor), fmtRatio(r.Broadcast.Floor), fmtRatio(r.UnicastP50.Floor))
}

// fmtRatio prints a ratio, "—" for one not measured.
func fmtRatio(v float64) string {
	if v == 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f", v)
}

// procNofile reads a process's RLIMIT_NOFILE from /proc/PID/limits.
func procNofile(pid int) [2]uint64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	if err != nil {
		return [2]uint64{}
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "Max open files") {
			f := strings.Fields(line)
			if len(f) >= 5 {
				var soft, hard uint64
				fmt.Sscan(f[3], &soft)
				fmt.Sscan(f[4], &hard)
				return [2]uint64{soft, hard}
			}
		}
	}
	return [2]uint64{}
}

// prefixWriter prefixes each write (a line of the relay's log).
type prefixWriter struct {
	mu     sync.Mutex
	w      io.Writer
	prefix string
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, err := io.WriteString(p.w, p.prefix+string(b)); err != nil {
		return 0, err
	}
	return len(b), nil
}
