package bench

import (
	"context"
	"errors"
	"fmt"
	"github.com/pushrelay/pushrelay/pkg/stamp"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/pushrelay/pushrelay/kernel-tuning/doctor"
	"github.com/pushrelay/pushrelay/loadgen"
	"github.com/pushrelay/pushrelay/relay"
)

// clientRun is one load generator run: the clients one step added to a
// server.
type clientRun struct {
	from   int // the connections the server held before it
	cancel context.CancelFunc
	done   chan struct{}
}

// rampServer is one server of the ramp and the clients it holds, which the
// load generator's runs (one per step) keep connected until the end.
type rampServer struct {
	name string
	addr string
	pid  int
	rp   *relayProc // the relay
	c    *child     // the baseline or the floor; one command at a time
	col  *windowCollector

	ctx    context.Context // the load generator runs'
	cancel context.CancelFunc
	runs   []*clientRun // one per step that added clients, in order
	nruns  int

	held       int           // connections held after the last step
	kernel     int64         // the kernel's socket memory growth over this server's quiet connect windows, summed
	sockets    int64         // and its growth in TCP sockets in use
	leftOut    int           // connect windows left out: other processes' sockets came and went
	mem        [2]float64    // RSS and Go heap growth over this server's connects, summed
	prevCPU    time.Duration // the load generator's, at the last step
	prevFailed map[string]int64
	stopped    bool // by its own wall; the ramp goes on without it
}

func startRampServer(ctx context.Context, opts CapacityOptions, name string) (*rampServer, error) {
	s := &rampServer{name: name, col: newWindowCollector(), prevFailed: map[string]int64{}}
	if name == ServerRelay {
		relayLog := &prefixWriter{w: opts.Stderr, prefix: "relay: "}
		p, err := startRelayProc(append(append([]string(nil), opts.RelayCommand...), "--framing", opts.Framing.String()), nil, relayLog)
		if err != nil {
			return nil, err
		}
		s.rp, s.pid, s.addr = p, p.pid, p.addr
	} else {
		c, err := startChild(opts.ChildCommand, name, opts.Framing, nil, opts.Stderr)
		if err != nil {
			return nil, err
		}
		s.c, s.pid, s.addr = c, c.pid, c.addr.String()
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s, nil
}

// counts returns how many connections the server has accepted (the relay:
// or refused over --max-conns) and how many it holds.
func (s *rampServer) counts(ctx context.Context) (accepted int64, open int, err error) {
	if s.rp != nil {
		m, err := s.rp.metrics(ctx)
		if err != nil {
			return 0, 0, err
		}
		return int64(m.sum("pushrelay_connections_accepted_total") + m.sum("pushrelay_connections_rejected_total")),
			int(m.sum("pushrelay_connections_open")), nil
	}
	st, err := s.c.count()
	return int64(st.Accepted), int(st.Conns), err
}

// memory returns the server process's RSS and Go heap in use. A child
// collects its garbage and returns free memory to the system first, so
// what it left from the last measurement's pushes is not read as its
// connections'; the relay cannot be asked to, and allocates next to
// nothing as it pushes.
func (s *rampServer) memory(ctx context.Context) ([2]float64, error) {
	if s.rp != nil {
		m, err := s.rp.settledMetrics(ctx)
		if err != nil {
			return [2]float64{}, err
		}
		return [2]float64{m.sum("pushrelay_process_resident_bytes"), m.sum("pushrelay_go_heap_inuse_bytes")}, nil
	}
	if err := s.c.do("gc"); err != nil {
		return [2]float64{}, err
	}
	st, err := s.c.stats()
	return [2]float64{float64(st.RSSBytes), float64(st.HeapInuse)}, err
}

// grow connects the server's clients up to want and reads its memory.
func (s *rampServer) grow(ctx context.Context, opts CapacityOptions, want int) (ServerStep, error) {
	st := ServerStep{Server: s.name, Want: want}
	delta := want - s.held
	// The kernel frees what the last measurement's traffic held a moment
	// after it: let that happen before the reading this server's growth
	// is charged against.
	if err := rest(ctx, opts.Settle); err != nil {
		return st, err
	}
	k0, kerr := readKernel()
	mem0, err := s.memory(ctx)
	if err != nil {
		return st, err
	}
	acc0, _, err := s.counts(ctx)
	if err != nil {
		return st, err
	}
	start := time.Now()
	acceptedAt := start
	if delta > 0 {
		run := s.nruns
		s.nruns++
		rctx, cancel := context.WithCancel(s.ctx)
		cr := &clientRun{from: s.held, cancel: cancel, done: make(chan struct{})}
		s.runs = append(s.runs, cr)
		go func() {
			defer close(cr.done)
			loadgen.Run(rctx, loadgen.Options{
				Target: s.addr, Conns: delta, Framing: opts.Framing,
				Duration: 24 * time.Hour, Deadline: 24 * time.Hour,
				Executable: opts.LoadgenCommand,
				Progress:   s.col.callback(run),
			})
		}()
		// Wait until this step's connects have all settled. The accept
		// time comes from the server's own count, polled every 20 ms: the
		// load generator reports only twice a second.
		deadline := start.Add(opts.StepTimeout)
		acceptedAt = time.Time{}
		for {
			if acceptedAt.IsZero() {
				if acc, _, err := s.counts(ctx); err == nil && acc-acc0 >= int64(delta) {
					acceptedAt = time.Now()
				}
			}
			if pr, ok := s.col.run(run); ok && pr.Phase == "holding" {
				break
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if acceptedAt.IsZero() {
			acceptedAt = time.Now()
		}
	}
	st.AcceptTime = acceptedAt.Sub(start)
	if err := rest(ctx, opts.Settle); err != nil {
		return st, err
	}
	_, open, err := s.counts(ctx)
	if err != nil {
		return st, err
	}
	st.Held, st.HeldAfter = open, open
	if n := open - s.held; n > 0 && delta > 0 {
		st.AcceptRate = finite(float64(n) / st.AcceptTime.Seconds())
	}
	prev := s.held
	s.held = open
	if k1, err := readKernel(); err == nil && kerr == nil && open > prev {
		sockets, expect := k1.TCPInuse-k0.TCPInuse, 2*int64(open-prev)
		if abs(sockets-expect)*10 > expect {
			s.leftOut++
		} else {
			s.kernel += k1.Sockets() - k0.Sockets()
			s.sockets += sockets
		}
	}
	mem, err := s.memory(ctx)
	if err != nil {
		if open < want && ctx.Err() == nil {
			// At its wall a child may not even open /proc/self/status
			// (EMFILE): the wall is the finding, not the memory.
			return st, nil
		}
		return st, err
	}
	st.RSSBytes, st.HeapBytes = int64(mem[0]), int64(mem[1])
	s.mem[0] += mem[0] - mem0[0]
	s.mem[1] += mem[1] - mem0[1]
	if open > 0 {
		st.RSSPerConn = s.mem[0] / float64(open)
		st.HeapPerConn = s.mem[1] / float64(open)
	}
	st.KernelBytes, st.KernelSockets, st.KernelLeftOut = s.kernel, s.sockets, s.leftOut
	if s.sockets > 0 {
		st.KernelPerConn = 2 * float64(s.kernel) / float64(s.sockets)
	}
	return st, nil
}

// measure runs the step's series against the server's clients: the
// broadcasts, the paced unicasts and the unicasts as fast as it takes them.
func (s *rampServer) measure(ctx context.Context, opts CapacityOptions, st *ServerStep) error {
	n := int64(st.Held)
	if n == 0 {
		return nil
	}
	st.PushErrors = map[string]int64{}
	for range opts.Broadcasts {
		s.col.take()
		if err := s.broadcast(ctx, opts); err != nil {
			return err
		}
		h := s.col.await(ctx, n, opts.StepTimeout)
		st.Broadcasts = append(st.Broadcasts, h.Max())
		st.BroadcastDelivered += int64(h.Count())
	}
	st.BroadcastExpected = int64(opts.Broadcasts) * n
	st.BroadcastTTL = median(st.Broadcasts)

	if opts.Unicasts > 0 {
		s.col.take()
		t := s.paced(ctx, opts)
		if t.err != nil {
			return t.err
		}
		st.UnicastSent, st.UnicastAccepted = t.sent, t.accepted
		addCounts(st.PushErrors, t.errors)
		h := s.col.await(ctx, t.accepted, opts.StepTimeout)
		st.Unicast = h.Summarize()
	}
	if len(st.PushErrors) == 0 {
		st.PushErrors = nil
	}
	_, open, err := s.counts(ctx)
	st.HeldAfter = open
	return err
}

// measureThroughput pushes unicasts to the server's clients as fast as it
// takes them, and counts them as they are read.
func (s *rampServer) measureThroughput(ctx context.Context, opts CapacityOptions, st *ServerStep) error {
	s.col.take()
	t := s.throughput(ctx, opts)
	if t.err != nil {
		return t.err
	}
	st.ThroughputSent, st.ThroughputAccepted, st.ThroughputSeconds = t.sent, t.accepted, t.seconds
	st.Throughput = finite(float64(t.accepted) / t.seconds)
	if len(t.errors) > 0 {
		if st.PushErrors == nil {
			st.PushErrors = map[string]int64{}
		}
		addCounts(st.PushErrors, t.errors)
	}
	h := s.col.await(ctx, t.accepted, opts.StepTimeout)
	st.ThroughputDelivered = int64(h.Count())
	st.ThroughputLatency = h.Summarize()
	_, open, err := s.counts(ctx)
	st.HeldAfter = min(st.HeldAfter, open)
	return err
}

// tally fills the load generator's CPU and failures since the last step.
func (s *rampServer) tally(st *ServerStep) {
	cpu, failed := s.col.totals()
	st.LoadgenCPU = cpu - s.prevCPU
	s.prevCPU = cpu
	st.Failures = countsSince(s.prevFailed, failed)
	s.prevFailed = failed
}

// broadcast pushes one stamped payload to every client: the relay through
// its ingress, the baseline with its Broadcast, the floor with one write(2)
// per socket in turn.
func (s *rampServer) broadcast(ctx context.Context, opts CapacityOptions) error {
	switch s.name {
	case ServerRelay:
		_, err := s.rp.client.Broadcast(ctx, stamp.AppendPadded(nil, time.Now(), opts.Payload))
		return err
	case ServerBaseline:
		var r BroadcastReply
		if err := s.c.call(fmt.Sprintf("broadcast %d", opts.Payload), &r); err != nil {
			return err
		}
		if r.Error != "" {
			return fmt.Errorf("bench: baseline: %s", r.Error)
		}
		return nil
	}
	var run FloorRun
	if err := s.c.callTimeout(fmt.Sprintf("floor-sweep %d", opts.Payload), &run, opts.StepTimeout); err != nil {
		return err
	}
	if run.Error != "" {
		return fmt.Errorf("bench: floor: %s", run.Error)
	}
	return nil
}

// childPush runs a push command on a child and tallies its FloorRun.
func (s *rampServer) childPush(command string, limit time.Duration) pushTally {
	var run FloorRun
	if err := s.c.callTimeout(command, &run, limit); err != nil {
		return pushTally{err: err}
	}
	if run.Error != "" {
		return pushTally{err: fmt.Errorf("bench: %s: %s: %s", s.name, command, run.Error)}
	}
	t := pushTally{sent: run.Writes + run.Errors, accepted: run.Writes, seconds: run.Seconds}
	if run.Errors > 0 {
		t.errors = map[string]int64{"refused": run.Errors}
	}
	return t
}

// paced pushes opts.Unicasts stamped payloads to random clients,
// opts.UnicastRate a second.
func (s *rampServer) paced(ctx context.Context, opts CapacityOptions) pushTally {
	secs := strconv.FormatFloat(float64(opts.Unicasts)/float64(opts.UnicastRate), 'f', -1, 64)
	limit := time.Duration(float64(opts.Unicasts)/float64(opts.UnicastRate)*float64(time.Second)) + time.Minute
	switch s.name {
	case ServerBaseline:
		return s.childPush(fmt.Sprintf("send-paced %d %s %d", opts.UnicastRate, secs, opts.Payload), limit)
	case ServerFloor:
		return s.childPush(fmt.Sprintf("floor-paced %d %s %d", opts.UnicastRate, secs, opts.Payload), limit)
	}
	ids, err := relayIDs(ctx, s.rp)
	if err != nil {
		return pushTally{err: err}
	}
	errs0 := s.rp.errs.snapshot()
	rng := rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	every := time.Second / time.Duration(opts.UnicastRate)
	start := time.Now()
	next := start
	var (
		buf []byte
		t   pushTally
	)
	for k := 0; k < opts.Unicasts && ctx.Err() == nil; k++ {
		time.Sleep(time.Until(next))
		next = next.Add(every)
		buf = stamp.AppendPadded(buf[:0], time.Now(), opts.Payload)
		if err := s.rp.client.SendNoReply(ids[rng.IntN(len(ids))], buf); err != nil {
			return pushTally{err: err}
		}
		t.sent++
	}
	t.seconds = time.Since(start).Seconds()
	// Replies come in order: once the ping's is in, every error reply is.
	if err := s.rp.client.Ping(ctx); err != nil {
		return pushTally{err: err}
	}
	t.errors = countsSince(errs0, s.rp.errs.snapshot())
	t.accepted = t.sent - sumCounts(t.errors)
	return t
}

// throughput pushes stamped payloads to random clients as fast as the
// server takes them for opts.Throughput.
func (s *rampServer) throughput(ctx context.Context, opts CapacityOptions) pushTally {
	secs := strconv.FormatFloat(opts.Throughput.Seconds(), 'f', -1, 64)
	limit := opts.Throughput + time.Minute
	switch s.name {
	case ServerBaseline:
		return s.childPush(fmt.Sprintf("send-rate %s %d", secs, opts.Payload), limit)
	case ServerFloor:
		return s.childPush(fmt.Sprintf("floor-rate %s %d", secs, opts.Payload), limit)
	}
	ids, err := relayIDs(ctx, s.rp)
	if err != nil {
		return pushTally{err: err}
	}
	// The ingress answers a ping once the pushes before it are on their
	// loops' way, not written: the run lasts until the relay's loops have
	// written every push it took (to the kernel, or to gnet's buffer when a
	// socket's is full), as the floor's and the baseline's do.
	m0, err := s.rp.settledMetrics(ctx)
	if err != nil {
		return pushTally{err: err}
	}
	const written = "pushrelay_messages_written_total"
	start := time.Now()
	t := unixThroughput(ctx, s.rp, ids, IngressOptions{Duration: opts.Throughput, UnixWorkers: 4, Batch: 256, Payload: opts.Payload})
	if t.err != nil {
		return t
	}
	for deadline := time.Now().Add(opts.StepTimeout); time.Now().Before(deadline) && ctx.Err() == nil; {
		m, err := s.rp.metrics(ctx)
		if err != nil {
			return pushTally{err: err}
		}
		if int64(m0.delta(m, written)) >= t.accepted {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.seconds = time.Since(start).Seconds()
	return t
}

// stopClients ends the server's load generator runs, which close every
// client.
func (s *rampServer) stopClients() {
	s.cancel()
	for _, r := range s.runs {
		<-r.done
	}
}

// shrink ends the runs that took the server past to connections, newest
// first, and waits until it holds no more than to.
func (s *rampServer) shrink(ctx context.Context, to int, limit time.Duration) error {
	for len(s.runs) > 0 && s.runs[len(s.runs)-1].from >= to {
		r := s.runs[len(s.runs)-1]
		r.cancel()
		<-r.done
		s.runs = s.runs[:len(s.runs)-1]
	}
	deadline := time.Now().Add(limit)
	for {
		if s.name == ServerFloor {
			// The floor never reads, so it never notices a client gone
			// by itself.
			if err := s.c.do("floor-prune"); err != nil {
				return err
			}
		}
		_, open, err := s.counts(ctx)
		if err != nil {
			return err
		}
		s.held = open
		if open <= to {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("bench: %s holds %d connections %v after its clients past %d closed", s.name, open, limit, to)
		}
		if err := rest(ctx, 20*time.Millisecond); err != nil {
			return err
		}
	}
}

// stop ends the clients, then the server.
func (s *rampServer) stop() error {
	s.stopClients()
	if s.rp != nil {
		return s.rp.stop()
	}
	return s.c.quit()
}

// relayIDs lists the relay's clients through its ingress.
func relayIDs(ctx context.Context, p *relayProc) ([]string, error) {
	var ids []string
	for cursor := ""; ; {
		page, next, err := p.client.List(ctx, cursor, relay.MaxListPage)
		if err != nil {
			return nil, fmt.Errorf("bench: relay: list clients: %w", err)
		}
		ids = append(ids, page...)
		if next == "" {
			break
		}
		cursor = next
	}
	if len(ids) == 0 {
		return nil, errors.New("bench: relay: no clients to push to")
	}
	return ids, nil
}

// hitWall records that the server could not hold the relay's count, names
// why, and stops it and its clients; the ramp goes on without it.
func (s *rampServer) hitWall(opts CapacityOptions, res *CapacityResult, st *ServerStep, before HostCounters, say func(string, ...any)) {
	nofile := procNofile(s.pid)
	w := NameWall(WallEvidence{Target: st.Want, Established: st.Held, Failures: st.Failures, Before: before, After: ReadHostCounters()})
	w.Evidence = append(w.Evidence, fmt.Sprintf("the %s held %d of %d connections; its RLIMIT_NOFILE is soft %d, hard %d", s.name, st.Held, st.Want, nofile[0], nofile[1]))
	if h, err := doctor.Read("/"); err == nil {
		w.AddFix(doctor.Analyze(h, doctor.Options{Target: int64(opts.Target)}))
	}
	if res.ServerWalls == nil {
		res.ServerWalls = map[string]Wall{}
	}
	res.ServerWalls[s.name] = w
	say("%s stopped at %s connections (%s); the ramp goes on without it", s.name, fmtInt(int64(st.Held)), w.Name)
	if err := s.stop(); err != nil {
		say("%s: %v", s.name, err)
	}
	s.stopped = true
}
