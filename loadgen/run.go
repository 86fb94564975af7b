package loadgen

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pushrelay/pushrelay/pkg/framing"
)

// Options configure a load run.
type Options struct {
	Target   string          // relay client address, HOST:PORT
	Conns    int             // connections to open in all
	Rate     float64         // connects per second in all; 0: as fast as possible
	Framing  framing.Framing // the target's framing
	Web      Web             // or a browser transport of its web listener
	Duration time.Duration   // how long to hold the connections once open
	// Deadline bounds the whole run, connecting included. Default:
	// Duration plus one minute.
	Deadline time.Duration
	Procs    int          // worker processes; 0: as many as the file limit needs
	Sources  []netip.Addr // local addresses to connect from, in turn
	RecvBuf  int          // SO_RCVBUF for each client socket, if positive
	WantIDs  bool         // carry every connection's ID in the report
	// FailFast ends the run at once, with the reason as its error, when no
	// connection can succeed: the first connects all failed before any ID
	// came, or no ID frame came within Handshake (default
	// DefaultHandshake): the target is not a relay, or speaks another
	// framing. Off, a failing run is data (the benchmarks' walls).
	FailFast  bool
	Handshake time.Duration
	// IDsReady, if set with WantIDs, receives the IDs of the connections
	// established once every worker has finished connecting, before the
	// hold: what a pusher pushes to during the run.
	IDsReady func(ids []string)
	// Executable runs the workers: it is called with WorkerArg and the
	// worker's options as JSON on standard input. Default: this process's
	// own executable with the arguments "loadgen --worker".
	Executable []string
	// Progress, if set, receives the running totals about twice a second.
	Progress func(Progress)
}

// Progress is a running total across workers.
type Progress struct {
	Elapsed     time.Duration `json:"elapsed_ns"`
	Attempts    int64         `json:"attempts"`
	Established int64         `json:"established"`
	Failed      int64         `json:"failed"`
	Messages    int64         `json:"messages"`
	Phase       string        `json:"phase"` // "connecting", "holding", "done"
	// FailedBy counts failures by kind (EMFILE, ECONNREFUSED, ...), and
	// CPU is the load generator's own CPU time, summed over workers.
	FailedBy map[string]int64 `json:"failed_by,omitempty"`
	CPU      time.Duration    `json:"cpu_ns"`
	// Window is the latency of stamped messages received since the
	// previous progress (merged across workers), nil if none.
	Window *Histogram `json:"-"`
	// window is one worker's, as it travels on the progress line.
	WorkerWindow *SparseHistogram `json:"window,omitempty"`
}

// Report is the result of a run, or of one worker.
type Report struct {
	Target         string           `json:"target"`
	Framing        string           `json:"framing"`
	Requested      int              `json:"requested"`
	Established    int64            `json:"established"`
	HeldAtEnd      int64            `json:"held_at_end"`
	Failed         map[string]int64 `json:"failed_by_errno"`
	FirstFailure   string           `json:"first_failure,omitempty"`
	FirstFailureAt time.Duration    `json:"first_failure_after_ns,omitempty"`
	FirstPhase     string           `json:"first_failure_phase,omitempty"`
	ConnectTime    time.Duration    `json:"connect_time_ns"`
	ConnectRate    float64          `json:"connect_rate_per_s"`
	Messages       int64            `json:"messages"`
	Heartbeats     int64            `json:"heartbeats"`
	Stamped        int64            `json:"stamped"`
	Bytes          int64            `json:"bytes"`
	Latency        Summary          `json:"latency"`
	Reading        string           `json:"reading"`
	CPU            time.Duration    `json:"cpu_ns"`
	RSS            int64            `json:"rss_bytes"`
	BytesPerConn   float64          `json:"rss_bytes_per_conn"`
	Interrupted    bool             `json:"interrupted,omitempty"`
	Sources        []string         `json:"sources,omitempty"`
	Workers        []Report         `json:"workers,omitempty"`
	IDs            []string         `json:"ids,omitempty"`
	Hist           []uint64         `json:"hist,omitempty"` // workers: raw buckets, merged by the parent
	Error          string           `json:"error,omitempty"`
	hist           Histogram
}

// DefaultHandshake is Options.Handshake's default.
const DefaultHandshake = 5 * time.Second

// failFastAfter is how many connects, all failed with no ID received, make
// a worker give up: no connection can succeed, so waiting out --deadline
// would only hide the reason.
const failFastAfter = 16

// CheckTarget checks that target is HOST:PORT with a port, and that HOST
// resolves, before any worker starts.
func CheckTarget(target string) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(target); err == nil {
		if ap.Port() == 0 {
			return ap, fmt.Errorf("target %q: port 0 is no one's port; want HOST:PORT such as 127.0.0.1:8843", target)
		}
		return ap, nil
	}
	host, port, err := splitTarget(target)
	if err != nil {
		return netip.AddrPort{}, err
	}
	ta, err := net.ResolveTCPAddr("tcp", net.JoinHostPort(host, port))
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("target %q: %w", target, err)
	}
	return ta.AddrPort(), nil
}

// splitTarget splits HOST:PORT, refusing a missing or zero port (what
// CheckTarget checks before resolving HOST).
func splitTarget(target string) (host, port string, err error) {
	host, port, err = net.SplitHostPort(target)
	if err != nil || port == "" || strings.TrimLeft(port, "0") == "" {
		return "", "", fmt.Errorf("target %q: want HOST:PORT such as 127.0.0.1:8843", target)
	}
	return host, port, nil
}

// WorkerArg is the argument that makes the executable act as a worker.
const WorkerArg = "--worker"

// fileReserve is what a worker keeps back from RLIMIT_NOFILE for itself.
const fileReserve = 64

// Run opens the connections (in worker processes when one process may not
// hold them all), holds them for Duration, and reports. It stops early when
// ctx is done, with a partial report (Interrupted).
func Run(ctx context.Context, opts Options) (*Report, error) {
	if opts.Conns <= 0 {
		return nil, errors.New("loadgen: want at least one connection")
	}
	if opts.Deadline <= 0 {
		opts.Deadline = opts.Duration + time.Minute
	}
	if opts.Handshake <= 0 {
		opts.Handshake = DefaultHandshake
	}
	if _, err := CheckTarget(opts.Target); err != nil {
		return nil, err
	}
	if len(opts.Sources) == 0 {
		opts.Sources = AutoSources(opts.Target, opts.Conns)
	}
	perProc := fileLimit() - fileReserve
	if opts.Procs <= 0 {
		opts.Procs = max(1, (opts.Conns+perProc-1)/perProc)
	}
	if (opts.Conns+opts.Procs-1)/opts.Procs > perProc {
		return nil, fmt.Errorf("loadgen: %d connections over %d processes is %d each, but one process may hold %d (RLIMIT_NOFILE %d minus %d): use --procs %d or more",
			opts.Conns, opts.Procs, (opts.Conns+opts.Procs-1)/opts.Procs, perProc, fileLimit(), fileReserve, (opts.Conns+perProc-1)/perProc)
	}
	if len(opts.Executable) == 0 {
		exe, err := os.Executable()
		if err != nil {
			return nil, err
		}
		opts.Executable = []string{exe, "loadgen"}
	}
	start := time.Now()
	workers := make([]*worker, opts.Procs)
	for i := range workers {
		share := opts.Conns / opts.Procs
		if i < opts.Conns%opts.Procs {
			share++
		}
		wo := WorkerOptions{
			Target: opts.Target, Conns: share, Rate: opts.Rate / float64(opts.Procs), Framing: FramingName(opts.Framing, opts.Web),
			Duration: opts.Duration, Deadline: opts.Deadline, RecvBuf: opts.RecvBuf, WantIDs: opts.WantIDs,
			FailFast: opts.FailFast, Handshake: opts.Handshake,
		}
		for _, s := range opts.Sources {
			wo.Sources = append(wo.Sources, s.String())
		}
		w, err := startWorker(opts.Executable, wo)
		if err != nil {
			for _, w := range workers[:i] {
				w.stop()
			}
			return nil, fmt.Errorf("loadgen: start worker %d: %w", i, err)
		}
		workers[i] = w
	}
	// The IDs, as soon as every worker has them.
	idsDone := make(chan struct{})
	go func() {
		defer close(idsDone)
		if !opts.WantIDs || opts.IDsReady == nil {
			return
		}
		var ids []string
		for _, w := range workers {
			select {
			case <-w.idsReady:
				w.mu.Lock()
				ids = append(ids, w.ids...)
				w.mu.Unlock()
			case <-w.ended:
			}
		}
		opts.IDsReady(ids)
	}()
	// Progress and interruption.
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				for _, w := range workers {
					w.interrupt()
				}
				<-done
				return
			case <-t.C:
				if opts.Progress != nil {
					var p Progress
					var win Histogram
					p.Elapsed = time.Since(start)
					p.Phase = "holding"
					for _, w := range workers {
						wp, ww := w.progress()
						win.Merge(&ww)
						p.Attempts += wp.Attempts
						p.Established += wp.Established
						p.Failed += wp.Failed
						p.Messages += wp.Messages
						p.CPU += wp.CPU
						for k, v := range wp.FailedBy {
							if p.FailedBy == nil {
								p.FailedBy = map[string]int64{}
							}
							p.FailedBy[k] += v
						}
						if wp.Phase != "holding" {
							p.Phase = "connecting" // or not reporting yet
						}
					}
					if win.Count() > 0 {
						p.Window = &win
					}
					opts.Progress(p)
				}
			}
		}
	}()
	rep := &Report{Target: opts.Target, Framing: FramingName(opts.Framing, opts.Web), Requested: opts.Conns, Failed: map[string]int64{}, Reading: readingNote}
	for _, a := range opts.Sources {
		rep.Sources = append(rep.Sources, a.String())
	}
	var firstErr error
	for i, w := range workers {
		wr, err := w.wait()
		if err != nil && firstErr == nil {
			firstErr = err
			if len(workers) > 1 {
				firstErr = fmt.Errorf("worker %d: %w", i, err)
			}
		}
		if wr == nil {
			continue
		}
		rep.merge(wr)
	}
	close(done)
	wg.Wait()
	<-idsDone
	rep.Interrupted = rep.Interrupted || ctx.Err() != nil
	rep.Latency = rep.hist.Summarize()
	if rep.HeldAtEnd > 0 {
		rep.BytesPerConn = float64(rep.RSS) / float64(rep.HeldAtEnd)
	}
	if opts.Progress != nil {
		final := Progress{Elapsed: time.Since(start), Attempts: int64(opts.Conns), Established: rep.Established, Messages: rep.Messages, Phase: "done", FailedBy: rep.Failed}
		for _, n := range rep.Failed {
			final.Failed += n
		}
		var win Histogram
		for _, w := range workers {
			_, ww := w.progress()
			win.Merge(&ww)
		}
		if win.Count() > 0 {
			final.Window = &win
		}
		opts.Progress(final)
	}
	return rep, firstErr
}

const readingNote = "every connection on epoll (level-triggered), one reader goroutine per process"

// merge adds a worker's report.
func (r *Report) merge(w *Report) {
	r.Established += w.Established
	r.HeldAtEnd += w.HeldAtEnd
	for k, v := range w.Failed {
		r.Failed[k] += v
	}
	if w.FirstFailure != "" && (r.FirstFailure == "" || w.FirstFailureAt < r.FirstFailureAt) {
		r.FirstFailure, r.FirstFailureAt, r.FirstPhase = w.FirstFailure, w.FirstFailureAt, w.FirstPhase
	}
	r.ConnectTime = max(r.ConnectTime, w.ConnectTime)
	r.ConnectRate += w.ConnectRate
	r.Messages += w.Messages
	r.Heartbeats += w.Heartbeats
	r.Stamped += w.Stamped
	r.Bytes += w.Bytes
	r.CPU += w.CPU
	r.RSS += w.RSS
	r.Interrupted = r.Interrupted || w.Interrupted
	r.IDs = append(r.IDs, w.IDs...)
	if len(w.Hist) == len(r.hist.counts) {
		var h Histogram
		h.restore(w.Hist, w.Latency)
		r.hist.Merge(&h)
	}
	w.IDs, w.Hist = nil, nil
	r.Workers = append(r.Workers, *w)
}

// restore rebuilds a histogram from its buckets and summary.
func (h *Histogram) restore(counts []uint64, s Summary) {
	copy(h.counts[:], counts)
	h.n = s.Count
	h.sum = float64(s.Mean) * float64(s.Count)
	h.max = int64(s.Max)
	h.min = 0
	for b, c := range h.counts {
		if c > 0 {
			h.min = lowerBound(b)
			break
		}
	}
}

// sourcesEach is how many connections AutoSources puts on one source
// address: connect(2) slows down sharply as one address's ephemeral port
// range (28,232 ports by default) fills, from about two thirds on
// (measured: 19,000 connections from one address at 3,900/s, from four at
// 24,700/s).
const sourcesEach = 8000

// AutoSources spreads connections to a loopback target over 127.0.0.1 and
// the addresses after it, one per sourcesEach connections; any other
// target is left to the kernel (nil).
func AutoSources(target string, conns int) []netip.Addr {
	ap, err := netip.ParseAddrPort(target)
	if err != nil || !ap.Addr().Unmap().Is4() || !ap.Addr().IsLoopback() || conns <= sourcesEach {
		return nil
	}
	n := min((conns+sourcesEach-1)/sourcesEach, 250)
	out := make([]netip.Addr, 0, n)
	for a := netip.AddrFrom4([4]byte{127, 0, 0, 1}); len(out) < n; a = a.Next() {
		out = append(out, a)
	}
	return out
}

// ParseSources reads "127.0.0.1-127.0.0.50" ranges and comma-separated
// addresses.
func ParseSources(s string) ([]netip.Addr, error) {
	var out []netip.Addr
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := netip.ParseAddr(lo)
		if err != nil {
			return nil, fmt.Errorf("source %q: %v", lo, err)
		}
		if !isRange {
			out = append(out, a)
			continue
		}
		b, err := netip.ParseAddr(hi)
		if err != nil {
			return nil, fmt.Errorf("source range end %q: %v", hi, err)
		}
		if a.BitLen() != b.BitLen() || b.Less(a) {
			return nil, fmt.Errorf("source range %q: the end must follow the start in the same family", part)
		}
		for x := a; ; x = x.Next() {
			out = append(out, x)
			if x == b || len(out) > 65536 {
				break
			}
		}
	}
	if len(out) > 65536 {
		return nil, errors.New("more than 65536 source addresses")
	}
	return out, nil
}

// fileLimit is RLIMIT_NOFILE's soft limit (Go raises it to the hard one).
func fileLimit() int {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil || rl.Cur > 1<<24 {
		return 1 << 24
	}
	return int(rl.Cur)
}

// selfRSS reads VmRSS from /proc/self/status, in bytes.
func selfRSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// selfCPU is this process's user plus system time.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
