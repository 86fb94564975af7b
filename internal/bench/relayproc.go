package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pushrelay/pushrelay/ingress/client"
	"github.com/pushrelay/pushrelay/internal/readyfile"
	"github.com/pushrelay/pushrelay/internal/relayproc"
	"github.com/pushrelay/pushrelay/loadgen"
)

// DefaultRelayCommand is the command that starts the relay under test: this
// executable's `serve`, the real binary with its defaults. The listen,
// ingress, HTTP and log flags are appended.
func DefaultRelayCommand() ([]string, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("bench: find own executable: %w", err)
	}
	return []string{exe, "serve"}, nil
}

// relayProc is a running `pushrelay serve`: the relay in a process of its
// own, with its own file limit, reached like a web app reaches it (ingress
// socket, HTTP API) by a client that holds its clients in another
// process. Not safe for concurrent use, except client, which is.
type relayProc struct {
	proc     *relayproc.Proc
	pid      int
	dir      string // temporary; holds the ingress socket
	sock     string
	addr     string // client listener, HOST:PORT
	httpAddr string // HTTP API, HOST:PORT
	webAddr  string // web listener, HOST:PORT, if the command turned it on
	client   *client.Client
	errs     *statusCounts // error replies to requests sent without waiting
}

// relayStartTimeout bounds the relay's start-up.
const relayStartTimeout = 20 * time.Second

// startRelayProc runs command (DefaultRelayCommand) with the relay's
// listeners on free loopback ports and its ingress socket in a fresh
// temporary directory, waits until it is ready (serve --ready-file, in the
// same directory) and connects an ingress client. The relay's log goes to
// logw. The child gets this process's environment without PUSHRELAY_
// variables, so it runs with its defaults whatever the shell holds, plus
// env (NAME=VALUE each), which comes last and so wins.
func startRelayProc(command, env []string, logw io.Writer) (*relayProc, error) {
	if len(command) == 0 {
		return nil, errors.New("bench: empty relay command")
	}
	dir, err := os.MkdirTemp("", "prbench-")
	if err != nil {
		return nil, fmt.Errorf("bench: relay: temporary directory: %w", err)
	}
	p := &relayProc{dir: dir, sock: filepath.Join(dir, "r.sock"), errs: newStatusCounts()}
	args := append([]string(nil), command...)
	if !slices.Contains(command, "--listen") { // a shared port (bench cluster) comes in the command
		args = append(args, "--listen", "127.0.0.1:0")
	}
	args = append(args, "--ingress", p.sock, "--http", "127.0.0.1:0", "--log-level", "info")
	if !slices.Contains(command, "--web") {
		args = append(args, "--web", "") // the web listener only when asked for
	}
	var childEnv []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PUSHRELAY_") {
			childEnv = append(childEnv, kv)
		}
	}
	// One write per line: logw may prefix each (capacity's relay log).
	logLine := func(line string) { fmt.Fprintln(logw, line) }
	p.proc, err = relayproc.Start(args, append(childEnv, env...), filepath.Join(dir, "ready.json"), logLine, relayStartTimeout)
	if err != nil {
		os.RemoveAll(dir) // the process is gone
		switch {
		case p.proc == nil:
			return nil, fmt.Errorf("bench: start relay %q: %w", command[0], err)
		case errors.Is(err, readyfile.ErrExited):
			return nil, fmt.Errorf("bench: relay exited before it was ready (%v)", p.proc.Err())
		case errors.Is(err, readyfile.ErrTimeout):
			return nil, fmt.Errorf("bench: relay did not write its ready file within %v; killed", relayStartTimeout)
		}
		return nil, fmt.Errorf("bench: relay: %w", err)
	}
	p.pid = p.proc.Cmd.Process.Pid
	p.addr, p.httpAddr, p.webAddr = p.proc.Ready.Listen, p.proc.Ready.HTTP, p.proc.Ready.Web
	if _, err := netip.ParseAddrPort(p.addr); err != nil {
		p.kill()
		return nil, fmt.Errorf("bench: relay listens on %q: %w", p.addr, err)
	}
	p.client, err = client.Dial(p.sock, client.Options{OnError: p.errs.add})
	if err != nil {
		p.kill()
		return nil, fmt.Errorf("bench: relay: %w", err)
	}
	return p, nil
}

// metrics returns the relay's counters and gauges, keyed "name{labels}"
// (or "name" without labels).
func (p *relayProc) metrics(ctx context.Context) (relayMetrics, error) {
	stats, err := p.client.Stats(ctx)
	if err != nil {
		return nil, fmt.Errorf("bench: relay stats: %w", err)
	}
	m := relayMetrics{}
	for _, s := range stats {
		k := s.Name
		if s.Labels != "" {
			k += "{" + s.Labels + "}"
		}
		m[k] = s.Value
	}
	return m, nil
}

// settledMetrics returns the relay's metrics once its write counters have
// stopped moving: each event loop publishes its counts at the end of a
// drain, a moment after the writes a client may already have read.
func (p *relayProc) settledMetrics(ctx context.Context) (relayMetrics, error) {
	m, err := p.metrics(ctx)
	for i := 0; err == nil && i < 100; i++ {
		if err := rest(ctx, 10*time.Millisecond); err != nil {
			return nil, err
		}
		var next relayMetrics
		if next, err = p.metrics(ctx); err != nil {
			break
		}
		still := true
		for _, k := range []string{"pushrelay_messages_written_total", "pushrelay_writes_total", "pushrelay_fanout_recipients_total"} {
			still = still && next.sum(k) == m.sum(k)
		}
		m = next
		if still {
			return m, nil
		}
	}
	return m, err
}

// relaySetup describes how the relay was run, for a report: the serve
// command's extra flags and environment, if any.
func relaySetup(args, env []string) string {
	if len(args) <= 1 && len(env) == 0 {
		return ""
	}
	s := "The relay ran as `pushrelay " + strings.Join(args, " ") + "`"
	if len(env) > 0 {
		s += " with " + strings.Join(env, " ")
	}
	return s + " (besides its listener flags): an experiment, not the defaults.\n\n"
}

// disturbedOther is how much CPU other processes may take during a phase
// before the report calls it disturbed: quiet phases here show 0 to 0.05 s
// (ticks of 10 ms, and kernel threads); a compile nearby shows seconds.
const disturbedOther = 0.2

// fmtOther prints other processes' CPU, marking a disturbed phase.
func fmtOther(sec float64) string {
	if sec > disturbedOther {
		return fmt.Sprintf("**%.2f s: disturbed**", sec)
	}
	return fmt.Sprintf("%.2f s", sec)
}

// relayMetrics are the relay's metrics at one moment.
type relayMetrics map[string]float64

// sum adds up every series of the metric name, whatever its labels.
func (m relayMetrics) sum(name string) float64 {
	var t float64
	for k, v := range m {
		if k == name || strings.HasPrefix(k, name+"{") {
			t += v
		}
	}
	return t
}

// delta returns after's sum of name minus m's.
func (m relayMetrics) delta(after relayMetrics, name string) float64 {
	return after.sum(name) - m.sum(name)
}

// stop ends the relay as an operator would (SIGTERM: it drains and exits 0)
// and removes its directory; it kills the relay if it does not exit in
// time.
func (p *relayProc) stop() error {
	if p.client != nil {
		p.client.Close()
	}
	defer os.RemoveAll(p.dir)
	_ = p.proc.Signal(syscall.SIGTERM)
	select {
	case <-p.proc.Done():
	case <-time.After(childQuitTimeout):
		p.kill()
		return fmt.Errorf("bench: relay (pid %d) did not exit within %v of SIGTERM; killed", p.pid, childQuitTimeout)
	}
	if err := p.proc.Err(); err != nil {
		return fmt.Errorf("bench: relay: %w", err)
	}
	return nil
}

// kill ends the relay at once and reaps it.
func (p *relayProc) kill() {
	if p.client != nil {
		p.client.Close()
	}
	_ = p.proc.Signal(syscall.SIGKILL)
	select {
	case <-p.proc.Done():
	case <-time.After(childQuitTimeout):
	}
	os.RemoveAll(p.dir)
}

// statusCounts counts error replies by status. Safe for concurrent use.
type statusCounts struct {
	mu sync.Mutex
	m  map[string]int64 // guarded by mu
}

func newStatusCounts() *statusCounts { return &statusCounts{m: map[string]int64{}} }

func (s *statusCounts) add(err error) {
	s.mu.Lock()
	s.m[client.StatusOf(err).String()]++
	s.mu.Unlock()
}

// snapshot returns a copy of the counts.
func (s *statusCounts) snapshot() map[string]int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int64, len(s.m))
	for k, v := range s.m {
		out[k] = v
	}
	return out
}

// countsSince returns after - before, by status, leaving out zeros.
func countsSince(before, after map[string]int64) map[string]int64 {
	out := map[string]int64{}
	for k, v := range after {
		if d := v - before[k]; d != 0 {
			out[k] = d
		}
	}
	return out
}

func sumCounts(m map[string]int64) int64 {
	var t int64
	for _, v := range m {
		t += v
	}
	return t
}

// ProcCPU is a process's CPU time at one moment, read from /proc.
type ProcCPU struct {
	// Ticks is user + system time from /proc/PID/stat: 10 ms ticks,
	// threads that have exited included.
	Ticks time.Duration
	// Threads is each live thread's run time from
	// /proc/PID/task/TID/schedstat, in nanoseconds.
	Threads map[int]int64
}

// readProcCPU reads the CPU time of process pid.
func readProcCPU(pid int) (ProcCPU, error) {
	var c ProcCPU
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return c, fmt.Errorf("bench: read CPU time of pid %d: %w", pid, err)
	}
	// The command name (field 2) may hold spaces: fields count from the
	// last ')'.
	i := strings.LastIndexByte(string(b), ')')
	f := strings.Fields(string(b[i+1:]))
	if i < 0 || len(f) < 13 {
		return c, fmt.Errorf("bench: /proc/%d/stat: %q is not a stat line", pid, b)
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64) // field 14
	stime, _ := strconv.ParseInt(f[12], 10, 64) // field 15
	c.Ticks = time.Duration(utime+stime) * (time.Second / userHZ)
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return c, fmt.Errorf("bench: list threads of pid %d: %w", pid, err)
	}
	c.Threads = make(map[int]int64, len(tasks))
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		s, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/schedstat", pid, tid))
		if err != nil {
			continue // the thread exited meanwhile
		}
		if fs := strings.Fields(string(s)); len(fs) > 0 {
			if ns, err := strconv.ParseInt(fs[0], 10, 64); err == nil {
				c.Threads[tid] = ns
			}
		}
	}
	return c, nil
}

// cpuBetween returns the CPU time a process used from reading a to reading
// b: the threads' run times to the nanosecond, unless threads that exited
// meanwhile took more than the ticks' resolution, when the coarser ticks
// (which keep dead threads' time) are the better figure.
func cpuBetween(a, b ProcCPU) time.Duration {
	var ns int64
	for tid, v := range b.Threads {
		ns += v - a.Threads[tid] // a thread born meanwhile started from 0
	}
	precise := time.Duration(ns)
	if ticks := b.Ticks - a.Ticks; ticks > precise+3*(time.Second/userHZ) {
		return ticks
	}
	return precise
}

// cpuMeter reads the CPU time of several processes at once.
type cpuMeter struct {
	pids   []int
	before []ProcCPU
}

func startCPU(pids ...int) (*cpuMeter, error) {
	m := &cpuMeter{pids: pids}
	for _, pid := range pids {
		c, err := readProcCPU(pid)
		if err != nil {
			return nil, err
		}
		m.before = append(m.before, c)
	}
	return m, nil
}

// since returns each process's CPU time since startCPU, in seconds.
func (m *cpuMeter) since() ([]float64, error) {
	out := make([]float64, len(m.pids))
	for i, pid := range m.pids {
		c, err := readProcCPU(pid)
		if err != nil {
			return nil, err
		}
		out[i] = cpuBetween(m.before[i], c).Seconds()
	}
	return out, nil
}

// Pools of bench clients.

// poolSources are the loopback addresses the bench's clients connect from,
// in turn, so no one ephemeral port range runs short across the runs.
func poolSources() []netip.Addr {
	out := make([]netip.Addr, 8)
	for i := range out {
		out[i] = netip.AddrFrom4([4]byte{127, 0, 0, byte(2 + i)})
	}
	return out
}

// poolOpenRate is how fast a pool connects: below what the relay accepts
// without overflowing its listen queues on a small machine.
const poolOpenRate = 20000

// openPool connects n clients to target from one epoll loop and returns
// once each has its ID. The caller's goroutine becomes the pool's owner.
func openPool(target string, n int, limit time.Duration) (*loadgen.Pool, error) {
	p, err := loadgen.NewPool(loadgen.PoolOptions{Target: target, Sources: poolSources()})
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	err = p.Open(n, poolOpenRate, time.Now().Add(limit))
	if got := p.Stats.Established.Load(); err != nil || got != int64(n) {
		fails, first, _, phase := p.Stats.Failures()
		p.Close()
		return nil, fmt.Errorf("bench: %d of %d clients of %s got an ID (%v; failures %v, first %s while %s)", got, n, target, err, fails, first, phase)
	}
	return p, nil
}

// resetLatency starts a new latency window, so the next windowLatency
// covers one phase. Only the pool's owner may call it.
func resetLatency(p *loadgen.Pool) { p.TakeWindow() }

// windowLatency returns the latency of the stamped frames read since
// resetLatency, and starts a new window. Only the pool's owner may call
// it.
func windowLatency(p *loadgen.Pool) *loadgen.Histogram {
	w := p.TakeWindow()
	return &w
}

// pollUntil handles the pool's events until cond holds; it fails after
// limit. Only the pool's owner may call it.
func pollUntil(p *loadgen.Pool, limit time.Duration, cond func() bool) error {
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("bench: condition not reached within %v", limit)
		}
		if _, err := p.Poll(time.Millisecond); err != nil {
			return err
		}
	}
	return nil
}

// pollFor handles the pool's events for d. Only the pool's owner may call
// it.
func pollFor(p *loadgen.Pool, d time.Duration) error {
	for end := time.Now().Add(d); time.Now().Before(end); {
		if _, err := p.Poll(time.Millisecond); err != nil {
			return err
		}
	}
	return nil
}

// pollWhile handles the pool's events until done is closed or receives,
// then returns. It notes the time of the last poll that read a new
// message. Only the pool's owner may call it.
func pollWhile[T any](p *loadgen.Pool, done <-chan T, lastGrowth *time.Time) (T, error) {
	last := p.Stats.Messages.Load()
	for {
		select {
		case v := <-done:
			return v, nil
		default:
		}
		if _, err := p.Poll(time.Millisecond); err != nil {
			var zero T
			return zero, err
		}
		if m := p.Stats.Messages.Load(); m != last {
			last, *lastGrowth = m, time.Now()
		}
	}
}

// drainPool polls until the pool has read want messages since from, or no
// message arrived for quiet, or limit passed. It returns how many arrived
// and the time of the last poll that read one. Only the pool's owner may
// call it.
func drainPool(p *loadgen.Pool, from, want int64, quiet, limit time.Duration, lastGrowth time.Time) (int64, time.Time, error) {
	deadline := time.Now().Add(limit)
	last := p.Stats.Messages.Load()
	for last-from < want {
		now := time.Now()
		if now.After(deadline) || now.Sub(lastGrowth) > quiet {
			break
		}
		if _, err := p.Poll(time.Millisecond); err != nil {
			return last - from, lastGrowth, err
		}
		if m := p.Stats.Messages.Load(); m != last {
			last, lastGrowth = m, time.Now()
		}
	}
	return last - from, lastGrowth, nil
}
