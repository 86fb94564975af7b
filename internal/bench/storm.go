package bench

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// StormOptions configures RunStorm. Zero values mean the defaults.
type StormOptions struct {
	// Conns is how many connections the storm opens against each server.
	// Default 18,000: close to RLIMIT_NOFILE (20,000 here) on both sides.
	Conns int
	// Servers to measure, in order. Default accept4, then relay.
	Servers []string
	// Rounds is how many storms each server gets, the servers taking turns
	// so that drift on the host hits them alike. Default 5; the summary
	// takes each server's median round, and the relay/accept4 ratio is
	// the median of the rounds' ratios.
	Rounds int
	// Dialers is how many goroutines issue connects. Default 2.
	Dialers int
	// Sources is how many loopback source addresses the client binds to in
	// turn, from 127.0.0.2 on. Default 8; 1 or less leaves the source to
	// the kernel (127.0.0.1 and one ephemeral port range).
	Sources int
	// Warmup is how many storms against the first server run, unreported
	// in the summary, before round 1: the first storm after a quiet spell
	// grows the kernel's socket caches and is slower than any after it,
	// whichever server takes it. Default 1; negative means none.
	Warmup int
	// Pause is how long the host gets to itself before each storm: the
	// kernel frees the previous storm's sockets in the background, and
	// that work would otherwise land on the next server's time. Default
	// 1 s.
	Pause time.Duration
	// Timeout bounds each server's storm. Default 60 s.
	Timeout time.Duration
	// Poll is how often the child is asked how many it accepted. Default
	// 5 ms, the resolution of the measured duration.
	Poll time.Duration
	// ProfileDir, if set, receives a CPU profile of each child during its
	// storm (SERVER-cpu.pprof).
	ProfileDir string
	// OwnAccept runs the relay child with relay.Config.OwnAccept (serve
	// --own-accept), to measure what accepting in the relay costs.
	OwnAccept bool `json:",omitempty"`
	// Procs: the children's command; Stderr.
	Procs
}

func (o StormOptions) withDefaults() (StormOptions, error) {
	d := StormDefaults()
	if err := fillCount("storm", "conns", &o.Conns, d.Conns); err != nil {
		return o, err
	}
	if err := fillServers("storm", &o.Servers, d.Servers, ServerAccept4, ServerAccept4Write, ServerRelay, ServerBaseline); err != nil {
		return o, err
	}
	if err := o.fill(false, true); err != nil {
		return o, err
	}
	orPositive(&o.Dialers, d.Dialers)
	orPositive(&o.Rounds, d.Rounds)
	orNone(&o.Warmup, d.Warmup)
	orZero(&o.Sources, d.Sources)
	if o.Sources > 250 {
		return o, fmt.Errorf("bench: storm: sources %d: want at most 250 (127.0.0.2 to 127.0.0.251)", o.Sources)
	}
	orPositive(&o.Timeout, d.Timeout)
	orZero(&o.Pause, d.Pause)
	orPositive(&o.Poll, d.Poll)
	return o, nil
}

// sourceAddrs returns the addresses the client binds to, none if the
// kernel is to choose.
func (o StormOptions) sourceAddrs() []netip.Addr {
	if o.Sources <= 1 {
		return nil
	}
	out := make([]netip.Addr, o.Sources)
	for i := range out {
		out[i] = netip.AddrFrom4([4]byte{127, 0, 0, byte(2 + i)})
	}
	return out
}

// StormResult is what RunStorm measured.
type StormResult struct {
	Started time.Time `json:"started"`
	Machine Machine   `json:"machine"`
	Conns   int       `json:"conns"`
	Dialers int       `json:"dialers"`
	Sources []string  `json:"sources,omitempty"`
	Rounds  int       `json:"rounds"`
	// SummaryRounds are the rounds the summary and the checks use: those
	// no other process disturbed, if at least minQuietRounds were not, or
	// else every round.
	SummaryRounds []int `json:"summary_rounds"`
	// Servers holds each server's median round (by rate) among
	// SummaryRounds, in the order the servers ran.
	Servers []StormServer `json:"servers"`
	// Runs holds every round of every server, in the order they ran.
	Runs []StormServer `json:"runs"`
	// Warmup holds the warm-up storms (round 0), left out of the summary.
	Warmup []StormServer `json:"warmup,omitempty"`
	// Checks compare the relay's median round with its targets; the ratio
	// needs accept4 to have run too.
	Checks []Check  `json:"checks,omitempty"`
	Notes  []string `json:"notes"`
}

// StormServer is one server's storm.
type StormServer struct {
	Server   string `json:"server"`
	Round    int    `json:"round"` // from 1; 0 for a warm-up
	Conns    int    `json:"conns"`
	Accepted uint64 `json:"accepted"`
	Complete bool   `json:"complete"` // Accepted reached Conns within the timeout
	// From before the first connect to the poll that saw every connection
	// accepted.
	Seconds float64 `json:"seconds"`
	Rate    float64 `json:"rate"` // Conns / Seconds
	// How long the client took to issue every connect.
	ConnectSeconds float64 `json:"connect_seconds"`
	ConnectErrors  int     `json:"connect_errors"`
	ConnectError   string  `json:"connect_error,omitempty"` // the first one
	// CPU time over the storm: the client (this process, connect loop and
	// polling) and the server child.
	ClientUserSeconds float64 `json:"client_user_seconds"`
	ClientSysSeconds  float64 `json:"client_sys_seconds"`
	ServerUserSeconds float64 `json:"server_user_seconds"`
	ServerSysSeconds  float64 `json:"server_sys_seconds"`
	// How long the server's and the client's threads waited for a CPU
	// while runnable, summed over threads: the server or client starved,
	// by the other or by anything else on the host.
	ServerRunqWaitSeconds float64 `json:"server_runq_wait_seconds"`
	ClientRunqWaitSeconds float64 `json:"client_runq_wait_seconds"`
	// The server's CPU time per connection accepted, in microseconds.
	ServerMicrosPerConn float64 `json:"server_us_per_conn"`
	// The whole host's CPU over the storm (/proc/stat, 10 ms ticks): with
	// little idle left, the client and server were sharing saturated cores.
	Host HostCPU `json:"host_cpu"`
	// OtherCPUSeconds is the host's busy CPU time over the storm minus the
	// client's and the server's: CPU that something else on the host took.
	// A storm is CPU-bound on a small machine, so a round where it is
	// large (Disturbed) measured the neighbour, not the server.
	OtherCPUSeconds float64 `json:"other_cpu_seconds"`
	Disturbed       bool    `json:"disturbed"`
	// TcpExt counters, after - before, host-wide.
	ListenOverflows uint64            `json:"listen_overflows"`
	ListenDrops     uint64            `json:"listen_drops"`
	NetstatDelta    map[string]uint64 `json:"netstat_delta"`
	// accept4 only: its own clock from first to last accept.
	ServerClockSeconds float64 `json:"server_clock_seconds,omitempty"`
	ServerClockRate    float64 `json:"server_clock_rate,omitempty"`
	Error              string  `json:"error,omitempty"`
}

// netstatCounters are the TcpExt counters a storm reports: the two that say
// the accept queue overflowed, and those that say the SYN queue did.
var netstatCounters = []string{"ListenOverflows", "ListenDrops", "TCPReqQFullDrop", "TCPReqQFullDoCookies", "SyncookiesSent"}

// RunStorm measures how fast each server accepts a storm of connections:
// the client opens opts.Conns non-blocking connects as fast as it can,
// reading nothing, while polling the child for its accept count. ctx bounds
// the whole run. A storm that does not complete is reported, not an error.
func RunStorm(ctx context.Context, opts StormOptions) (*StormResult, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	res := &StormResult{
		Started: time.Now().UTC(),
		Machine: readMachine(),
		Conns:   opts.Conns,
		Dialers: opts.Dialers,
		Notes: []string{
			"Rate is connections over the time from before the first connect to the first poll (every few ms) that saw them all accepted.",
			"The client's connect loop is the same for every server, so the rates compare the servers. On loopback the kernel does most of the handshake inside the client's connect(2), so client CPU is mostly system time; a client near 100% of a core per dialer was the bottleneck.",
			"Server CPU is the child's user + system time over the storm (its own accepts and writes; the kernel's handshake work mostly lands on the client or in softirq). Run-queue wait is the time the server's (or the client's) threads were runnable but had no CPU, summed over threads (schedstat). Host CPU busy is the share of all cores not idle during the storm, from /proc/stat.",
			fmt.Sprintf("Other processes' CPU is the host's busy time over the storm minus the client's and the server's. This machine's two cores are shared, and a storm is CPU-bound, so a round where other processes took more than %.1f CPU-seconds is marked disturbed; the summary leaves disturbed rounds out when at least %d rounds were not.", disturbedCPU, minQuietRounds),
			"ListenOverflows and ListenDrops are host-wide TcpExt counters (after - before); anything else on the host that overflowed a listen queue meanwhile is in them.",
		},
	}
	for _, a := range opts.sourceAddrs() {
		res.Sources = append(res.Sources, a.String())
	}
	res.Rounds = opts.Rounds
	for range opts.Warmup {
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case <-time.After(opts.Pause):
		}
		s, err := stormOne(ctx, opts, opts.Servers[0])
		if err != nil {
			return res, err
		}
		res.Warmup = append(res.Warmup, *s)
	}
	for round := 1; round <= opts.Rounds; round++ {
		for _, name := range opts.Servers {
			select {
			case <-ctx.Done():
				return res, ctx.Err()
			case <-time.After(opts.Pause):
			}
			s, err := stormOne(ctx, opts, name)
			if err != nil {
				return res, err
			}
			s.Round = round
			res.Runs = append(res.Runs, *s)
		}
	}
	basis := summaryRuns(res.Runs)
	for _, r := range basis {
		if !slices.Contains(res.SummaryRounds, r.Round) {
			res.SummaryRounds = append(res.SummaryRounds, r.Round)
		}
	}
	for _, name := range opts.Servers {
		res.Servers = append(res.Servers, medianRun(basis, name))
	}
	res.Checks = stormChecks(res.Servers, basis)
	return res, nil
}

func stormOne(ctx context.Context, opts StormOptions, name string) (_ *StormServer, err error) {
	fmt.Fprintf(opts.Stderr, "bench storm: %s: starting child\n", name)
	var env []string
	if opts.OwnAccept && name == ServerRelay {
		env = []string{OwnAcceptEnv + "=1"}
	}
	c, err := startChild(opts.ChildCommand, name, 0, env, opts.Stderr)
	if err != nil {
		return nil, err
	}
	fds := make([]int, opts.Conns)
	for i := range fds {
		fds[i] = -1
	}
	defer func() {
		closeFds(fds)
		c.quitInto(&err)
	}()
	r := &StormServer{Server: name, Conns: opts.Conns}
	before, err := c.stats()
	if err != nil {
		return nil, err
	}
	nsBefore, err := readNetstat("TcpExt", netstatCounters...)
	if err != nil {
		return nil, err
	}
	if _, ok := nsBefore["ListenOverflows"]; !ok {
		return nil, fmt.Errorf("bench: storm: this kernel's /proc/net/netstat has no TcpExt ListenOverflows")
	}
	if opts.ProfileDir != "" {
		if err := os.MkdirAll(opts.ProfileDir, 0o755); err != nil {
			return nil, fmt.Errorf("bench storm: profile dir: %w", err)
		}
		path, _ := filepath.Abs(filepath.Join(opts.ProfileDir, name+"-cpu.pprof"))
		if err := c.do("cpu-start " + path); err != nil {
			return nil, err
		}
		defer func() {
			if perr := c.do("cpu-stop"); perr != nil && err == nil {
				err = perr
			}
			fmt.Fprintf(opts.Stderr, "bench storm: %s: CPU profile in %s\n", name, path)
		}()
	}

	sctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	host0, err := readCPUTicks()
	if err != nil {
		return nil, err
	}
	u0, s0 := cpuTime()
	w0, _ := readRunqWait()
	start := time.Now()
	storm := startStorm(sctx, c.addr, opts, fds)

	// Poll the child until it has accepted every connection.
	tick := time.NewTicker(opts.Poll)
	defer tick.Stop()
poll:
	for {
		st, err := c.count()
		if err != nil {
			cancel()
			<-storm.done
			return nil, err
		}
		r.Accepted = st.Accepted
		if st.Accepted >= uint64(opts.Conns) {
			r.Complete = true
			r.Seconds = time.Since(start).Seconds()
			break
		}
		select {
		case <-sctx.Done():
			r.Seconds = time.Since(start).Seconds()
			r.Error = fmt.Sprintf("%d of %d accepted when the %v timeout ran out", st.Accepted, opts.Conns, opts.Timeout)
			break poll
		case <-tick.C:
		}
	}
	host1, herr := readCPUTicks()
	<-storm.done
	u1, s1 := cpuTime()
	w1, _ := readRunqWait()
	r.ClientRunqWaitSeconds = (w1 - w0).Seconds()
	if herr != nil {
		return nil, herr
	}
	r.Host = hostCPU(host0, host1)
	r.ConnectSeconds = storm.elapsed.Seconds()
	r.ConnectErrors = int(storm.errors.Load())
	if storm.firstErr != nil {
		r.ConnectError = storm.firstErr.Error()
	}
	r.ClientUserSeconds, r.ClientSysSeconds = (u1 - u0).Seconds(), (s1 - s0).Seconds()
	if r.Complete {
		r.Rate = finite(float64(opts.Conns) / r.Seconds)
	}

	nsAfter, err := readNetstat("TcpExt", netstatCounters...)
	if err != nil {
		return nil, err
	}
	r.NetstatDelta = map[string]uint64{}
	for k, v := range nsAfter {
		r.NetstatDelta[k] = v - nsBefore[k]
	}
	r.ListenOverflows, r.ListenDrops = r.NetstatDelta["ListenOverflows"], r.NetstatDelta["ListenDrops"]
	after, err := c.stats()
	if err != nil {
		return nil, err
	}
	r.ServerUserSeconds = float64(after.CPUUserNs-before.CPUUserNs) / 1e9
	r.ServerSysSeconds = float64(after.CPUSysNs-before.CPUSysNs) / 1e9
	r.ServerRunqWaitSeconds = float64(after.RunqWaitNs-before.RunqWaitNs) / 1e9
	r.OtherCPUSeconds = max(0, r.Host.BusySeconds-r.ClientUserSeconds-r.ClientSysSeconds-r.ServerUserSeconds-r.ServerSysSeconds)
	r.Disturbed = r.OtherCPUSeconds > disturbedCPU
	if after.Accepted > before.Accepted {
		r.ServerMicrosPerConn = (r.ServerUserSeconds + r.ServerSysSeconds) * 1e6 / float64(after.Accepted-before.Accepted)
	}
	if after.FirstAccept > 0 && after.LastAccept > after.FirstAccept {
		r.ServerClockSeconds = float64(after.LastAccept-after.FirstAccept) / 1e9
		r.ServerClockRate = finite(float64(after.Accepted-1) / r.ServerClockSeconds)
	}
	if r.Complete {
		fmt.Fprintf(opts.Stderr, "bench storm: %s: %d accepted in %.3fs (%s)\n", name, opts.Conns, r.Seconds, fmtRate(r.Rate))
	} else {
		fmt.Fprintf(opts.Stderr, "bench storm: %s: %s\n", name, r.Error)
	}
	return r, nil
}

// storm is a running connect loop.
type storm struct {
	done     chan struct{} // closed when every dialer has returned
	elapsed  time.Duration // valid after done
	errors   atomic.Int64
	firstErr error // valid after done
}

// disturbedCPU is how much CPU time other processes may take during a
// storm before the round is called disturbed. Undisturbed rounds here show
// 0 to 0.05 s (the 10 ms ticks of /proc/stat and the wider window of the
// server's CPU reading make up the rest); a concurrent compile shows 0.3 s
// and more.
const disturbedCPU = 0.1

// maxConnectErrors bounds the retries of a storm whose connects fail.
const maxConnectErrors = 1000

// startStorm connects fds' worth of non-blocking sockets to dst from
// opts.Dialers goroutines and stores each descriptor in fds. It never
// waits for a handshake: the kernel completes it while the loop goes on.
func startStorm(ctx context.Context, dst netip.AddrPort, opts StormOptions, fds []int) *storm {
	s := &storm{done: make(chan struct{})}
	srcs := opts.sourceAddrs()
	var (
		wg      sync.WaitGroup
		errOnce sync.Once
	)
	start := time.Now()
	for g := range opts.Dialers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; i < len(fds); i += opts.Dialers {
				if (i/opts.Dialers)%256 == 0 && ctx.Err() != nil {
					return
				}
				var src netip.Addr
				if len(srcs) > 0 {
					src = srcs[i%len(srcs)]
				}
				for {
					fd, err := connectNB(dst, src)
					if err == nil {
						fds[i] = fd
						break
					}
					errOnce.Do(func() { s.firstErr = fmt.Errorf("connection %d: %w", i, err) })
					if s.errors.Add(1) > maxConnectErrors || ctx.Err() != nil {
						return
					}
					time.Sleep(time.Millisecond)
				}
			}
		}()
	}
	go func() {
		wg.Wait()
		s.elapsed = time.Since(start)
		close(s.done)
	}()
	return s
}

// minQuietRounds is how many undisturbed rounds the summary needs to leave
// the disturbed ones out.
const minQuietRounds = 3

// summaryRuns returns the runs of the rounds in which no storm was
// disturbed, if there are at least minQuietRounds such rounds; otherwise
// every run. Whole rounds go, so the relay/accept4 pairs stay intact.
func summaryRuns(runs []StormServer) []StormServer {
	bad := map[int]bool{}
	rounds := map[int]bool{}
	for _, r := range runs {
		rounds[r.Round] = true
		if r.Disturbed {
			bad[r.Round] = true
		}
	}
	if len(rounds)-len(bad) < minQuietRounds {
		return runs
	}
	var out []StormServer
	for _, r := range runs {
		if !bad[r.Round] {
			out = append(out, r)
		}
	}
	return out
}

// medianRun returns the server's round with the median rate (the lower of
// the middle two for an even count); an incomplete round ranks lowest.
func medianRun(runs []StormServer, server string) StormServer {
	var mine []StormServer
	for _, r := range runs {
		if r.Server == server {
			mine = append(mine, r)
		}
	}
	slices.SortStableFunc(mine, func(a, b StormServer) int { return cmp.Compare(a.Rate, b.Rate) })
	return mine[(len(mine)-1)/2]
}

// rateSpread returns the lowest and highest rate of the server's rounds.
func rateSpread(runs []StormServer, server string) (lo, hi float64) {
	lo = math.Inf(1)
	for _, r := range runs {
		if r.Server == server {
			lo, hi = min(lo, r.Rate), max(hi, r.Rate)
		}
	}
	return finite(lo), hi
}

// roundRatios returns, sorted, each round's relay rate over the accept4
// rate of the same round: the two ran seconds apart, so a ratio within a
// round cancels most of the host's drift (this is a VM, and the client's
// connect rate alone varies by half from one second to the next). An
// incomplete storm has rate 0.
func roundRatios(runs []StormServer) []float64 {
	rates := map[int]map[string]float64{}
	for _, r := range runs {
		if rates[r.Round] == nil {
			rates[r.Round] = map[string]float64{}
		}
		rates[r.Round][r.Server] = r.Rate
	}
	var out []float64
	for _, m := range rates {
		rl, ok1 := m[ServerRelay]
		a4, ok2 := m[ServerAccept4]
		if ok1 && ok2 {
			out = append(out, finite(rl/a4))
		}
	}
	slices.Sort(out)
	return out
}

// overflows sums the server's ListenOverflows and ListenDrops over its
// rounds.
func overflows(runs []StormServer, server string) (over, drops uint64) {
	for _, r := range runs {
		if r.Server == server {
			over += r.ListenOverflows
			drops += r.ListenDrops
		}
	}
	return over, drops
}

func stormChecks(servers, runs []StormServer) []Check {
	var rl, a4 *StormServer
	for i := range servers {
		switch servers[i].Server {
		case ServerRelay:
			rl = &servers[i]
		case ServerAccept4:
			a4 = &servers[i]
		}
	}
	if rl == nil {
		return nil
	}
	var checks []Check
	if a4 != nil {
		ratios := roundRatios(runs)
		med := ratios[(len(ratios)-1)/2]
		checks = append(checks, Check{
			Name:   "relay accept rate / accept4 accept rate (median of the rounds' ratios)",
			Value:  med,
			Shown:  fmt.Sprintf("%.2f (rounds %.2f to %.2f)", med, ratios[0], ratios[len(ratios)-1]),
			Target: "≥ 0.7",
			Met:    med >= targetStormVsAccept4,
		})
	}
	over, drops := overflows(runs, ServerRelay)
	checks = append(checks, Check{
		Name:   "ListenOverflows + ListenDrops during the relay's storms (summary rounds)",
		Value:  float64(over + drops),
		Shown:  fmt.Sprintf("%d + %d", over, drops),
		Target: "0",
		Met:    over == 0 && drops == 0,
	})
	return checks
}

// Markdown renders the result as the tables docs/benchmarks.md shows.
func (r *StormResult) Markdown() string {
	var w doc
	src := "127.0.0.1 (kernel's choice)"
	if len(r.Sources) > 0 {
		src = fmt.Sprintf("%s to %s, round-robin", r.Sources[0], r.Sources[len(r.Sources)-1])
	}
	fmt.Fprintf(&w, "### Reconnect storm: %s connections, %d dialers, sources %s\n\n", fmtInt(int64(r.Conns)), r.Dialers, src)
	fmt.Fprintf(&w, "Measured %s on %s.\n\n", r.Started.Format("2006-01-02 15:04 UTC"), r.Machine)
	basis := fmt.Sprintf("all %d rounds", r.Rounds)
	if len(r.SummaryRounds) < r.Rounds {
		basis = fmt.Sprintf("the %d undisturbed rounds of %d (rounds %s; see the other-CPU column below)", len(r.SummaryRounds), r.Rounds, strings.Trim(fmt.Sprint(r.SummaryRounds), "[]"))
	}
	fmt.Fprintf(&w, "Median per server (by accept rate) over %s, the servers taking turns:\n\n", basis)
	rows := [][]string{}
	for _, s := range r.Servers {
		lo, hi := rateSpread(r.summaryRuns(), s.Server)
		over, drops := overflows(r.summaryRuns(), s.Server)
		rows = append(rows, []string{
			s.Server,
			stormRate(s),
			fmt.Sprintf("%s to %s", fmtRate(lo), fmtRate(hi)),
			fmt.Sprintf("%.1f µs", s.ServerMicrosPerConn),
			fmt.Sprintf("%d / %d", over, drops),
		})
	}
	w.table([]string{"server", "accept rate (median round)", "rounds' range", "server CPU/conn (median round)", "ListenOverflows / ListenDrops (summed)"}, rows)
	w.checks(r.Checks)
	w.WriteString("Every round (round 0 is the warm-up, left out of the summary):\n\n")
	rows = rows[:0]
	for _, s := range append(append([]StormServer(nil), r.Warmup...), r.Runs...) {
		clock := "—"
		if s.ServerClockRate > 0 {
			clock = fmtRate(s.ServerClockRate)
		}
		rows = append(rows, []string{
			fmt.Sprint(s.Round),
			s.Server,
			fmtInt(int64(s.Accepted)),
			fmt.Sprintf("%.3f s", s.Seconds),
			stormRate(s),
			clock,
			fmt.Sprintf("%d / %d", s.ListenOverflows, s.ListenDrops),
			fmt.Sprintf("%.3f s", s.ConnectSeconds),
			fmt.Sprintf("%.2f s (%.2f user + %.2f sys)", s.ClientUserSeconds+s.ClientSysSeconds, s.ClientUserSeconds, s.ClientSysSeconds),
			fmt.Sprintf("%.2f s (%.2f user + %.2f sys)", s.ServerUserSeconds+s.ServerSysSeconds, s.ServerUserSeconds, s.ServerSysSeconds),
			fmt.Sprintf("%.1f µs", s.ServerMicrosPerConn),
			fmt.Sprintf("%.0f / %.0f ms", 1000*s.ServerRunqWaitSeconds, 1000*s.ClientRunqWaitSeconds),
			fmt.Sprintf("%.0f%% (softirq %.0f%%)", 100*(1-s.Host.Idle), 100*s.Host.Softirq),
			otherCPU(s),
			fmt.Sprint(s.ConnectErrors),
		})
	}
	w.table([]string{"round", "server", "accepted", "time", "accept rate", "server-clock rate", "ListenOverflows / ListenDrops", "connect loop", "client CPU", "server CPU", "server CPU/conn", "run-queue wait, server / client", "host CPU busy", "other processes' CPU", "connect errors"}, rows)
	w.notes(r.Notes)
	return w.String()
}

// summaryRuns returns the runs of SummaryRounds.
func (r *StormResult) summaryRuns() []StormServer {
	var out []StormServer
	for _, s := range r.Runs {
		if slices.Contains(r.SummaryRounds, s.Round) {
			out = append(out, s)
		}
	}
	return out
}

func otherCPU(s StormServer) string {
	if s.Disturbed {
		return fmt.Sprintf("**%.2f s: disturbed**", s.OtherCPUSeconds)
	}
	return fmt.Sprintf("%.2f s", s.OtherCPUSeconds)
}

func stormRate(s StormServer) string {
	if !s.Complete {
		return "incomplete: " + s.Error
	}
	return fmtRate(s.Rate)
}
