package bench

import (
	"bufio"
	"context"
	"fmt"
	"github.com/pushrelay/pushrelay/pkg/stamp"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pushrelay/pushrelay/ingress/wire"
	"github.com/pushrelay/pushrelay/loadgen"
)

// coalesceTopic is the topic of the coalescing phase.
const coalesceTopic = "bench-coalesce"

// coalesce measures how the relay writes bursts of publishes to one topic:
// each burst goes out as one write on a raw ingress connection (Burst
// publishes without replies, then a ping), and the next waits until every
// subscriber has read the last.
func coalesce(ctx context.Context, opts FanoutOptions) (_ *CoalesceResult, err error) {
	n := opts.CoalesceClients
	fmt.Fprintf(opts.Stderr, "bench fanout: coalescing, %d subscribers, bursts of %d: starting\n", n, opts.Burst)
	rp, pool, stop, err := relayWithClients(opts.RelayCommand, opts.RelayEnv, opts.Stderr, n)
	if err != nil {
		return nil, err
	}
	defer stop(&err)
	for _, id := range pool.IDs() {
		if _, err := rp.client.Subscribe(ctx, id, coalesceTopic); err != nil {
			return nil, fmt.Errorf("bench fanout: subscribe: %w", err)
		}
	}
	nc, err := net.Dial("unix", rp.sock)
	if err != nil {
		return nil, fmt.Errorf("bench fanout: ingress: %w", err)
	}
	defer nc.Close()
	br := bufio.NewReader(nc)
	res := &CoalesceResult{Clients: n, Burst: opts.Burst, Bursts: opts.Bursts, Expected: int64(opts.Bursts * opts.Burst * n)}
	var (
		cpu   *cpuMeter
		host0 cpuTicks
		m0    relayMetrics
		from  int64
		buf   []byte
		req   uint32
		hist  loadgen.Histogram
	)
	for i := -opts.Warmup; i < opts.Bursts; i++ {
		if i == 0 {
			if m0, cpu, host0, err = seriesStart(ctx, rp, rp.pid); err != nil {
				return nil, err
			}
			from = pool.Stats.Messages.Load()
		}
		resetLatency(pool)
		m := pool.Stats.Messages.Load()
		buf = buf[:0]
		now := time.Now()
		for range opts.Burst {
			req++
			var start int
			buf, start = wire.BeginFrame(buf, uint8(wire.OpPublish), wire.FlagNoReply, req)
			buf = wire.AppendStr8(buf, coalesceTopic)
			buf = stamp.AppendPadded(buf, now, opts.Payload)
			wire.PatchLen(buf, start)
		}
		req++
		ping := req
		var start int
		buf, start = wire.BeginFrame(buf, uint8(wire.OpPing), 0, ping)
		wire.PatchLen(buf, start)
		done := make(chan pingResult, 1)
		go func() { done <- writeAndAwait(nc, br, buf, ping) }()
		lastGrowth := time.Now()
		pr, err := pollWhile(pool, done, &lastGrowth)
		if err == nil {
			err = pr.err
		}
		if err != nil {
			return nil, fmt.Errorf("bench fanout: coalescing burst %d: %w", i, err)
		}
		res.Errors += pr.errors
		want := int64(opts.Burst * n)
		if err := pollUntil(pool, 30*time.Second, func() bool { return pool.Stats.Messages.Load()-m >= want }); err != nil {
			return nil, fmt.Errorf("bench fanout: coalescing burst %d: %d of %d frames read: %w", i, pool.Stats.Messages.Load()-m, want, err)
		}
		if i >= 0 {
			hist.Merge(windowLatency(pool))
		}
	}
	used, other, err := seriesEnd(cpu, host0)
	if err != nil {
		return nil, err
	}
	res.OtherCPUSeconds = other
	m1, err := rp.settledMetrics(ctx)
	if err != nil {
		return nil, err
	}
	res.Delivered = pool.Stats.Messages.Load() - from
	res.MessagesWritten = m0.delta(m1, "pushrelay_messages_written_total")
	res.Writes = m0.delta(m1, "pushrelay_writes_total")
	res.MessagesPerWrite = finite(res.MessagesWritten / res.Writes)
	res.CPUSeconds = used[0]
	res.MessagesPerCPUSecond = finite(res.MessagesWritten / used[0])
	res.Latency = hist.Summarize()
	fmt.Fprintf(opts.Stderr, "bench fanout: coalescing: %.2f messages per write, %s messages per CPU-second\n", res.MessagesPerWrite, fmtRate(res.MessagesPerCPUSecond))
	return res, nil
}

type pingResult struct {
	errors int64 // error replies before the ping's
	err    error
}

// writeAndAwait writes b to the ingress connection and reads replies until
// the one to request ping, counting error replies before it.
func writeAndAwait(nc net.Conn, br *bufio.Reader, b []byte, ping uint32) pingResult {
	var r pingResult
	_ = nc.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := nc.Write(b); err != nil {
		r.err = err
		return r
	}
	var hdr [wire.HeaderLen]byte
	for {
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			r.err = err
			return r
		}
		h, err := wire.ParseHeader(hdr[:], 1<<24)
		if err != nil {
			r.err = err
			return r
		}
		if _, err := br.Discard(h.BodyLen()); err != nil {
			r.err = err
			return r
		}
		if h.Request == ping && h.Kind == uint8(wire.OpPing)|wire.ReplyBit {
			return r
		}
		r.errors++
	}
}

// busyPayload is what the busy phase broadcasts: no stamp, so only the
// unicasts reach the latency histogram.
func busyPayload(size int) []byte {
	b := []byte("busy-broadcast")
	for len(b) < size {
		b = append(b, 'x')
	}
	return b
}

// busyQueues are the broadcast queues the busy phase runs with: 0, each
// broadcast sent once every client has read the last (the loops are
// always in a fanout but for the bench's reaction time, and nothing
// waits in their mailboxes behind it); 1, one more broadcast queued
// behind the one being written.
var busyQueues = []int{0, 1}

// busyProbes is how many of the busy phase's clients are probes: held by a
// reader of their own, so a unicast's latency is the relay's and not the
// time the big pool's reader takes to reach the socket through the
// broadcast's backlog.
const busyProbes = 200

// busy measures unicast latency while broadcasts keep the relay's loops
// busy: a broadcaster sends broadcast after broadcast, at most queue of
// them waiting behind the one being written, while two pacers send
// stamped unicasts, one to random probe clients (a small pool read by a
// goroutine of its own), one to random clients of the big pool.
func busy(ctx context.Context, opts FanoutOptions, queue int) (_ *BusyResult, err error) {
	n := opts.BusyClients
	probes := min(busyProbes, max(1, n/10))
	fmt.Fprintf(opts.Stderr, "bench fanout: unicasts during broadcasts, %d clients, %d broadcast(s) queued: starting\n", n, queue)
	rp, err := startRelayProc(opts.RelayCommand, opts.RelayEnv, opts.Stderr)
	if err != nil {
		return nil, err
	}
	pool, err := openPool(rp.addr, n-probes, time.Minute)
	if err != nil {
		rp.kill()
		return nil, err
	}
	probe, err := openPool(rp.addr, probes, time.Minute)
	if err != nil {
		pool.Close()
		rp.kill()
		return nil, err
	}
	defer func() {
		probe.Close()
		pool.Close()
		if serr := rp.stop(); serr != nil && err == nil {
			err = serr
		}
	}()
	res := &BusyResult{Clients: n, Probes: probes, Queue: queue, Rate: opts.BusyRate, Errors: map[string]int64{}}
	m0, err := rp.settledMetrics(ctx)
	if err != nil {
		return nil, err
	}
	resetLatency(pool)
	resetLatency(probe)
	msgs0, stamped0 := pool.Stats.Messages.Load(), pool.Stats.Stamped.Load()
	pmsgs0 := probe.Stats.Messages.Load()
	big := n - probes
	broadcastsRead := func() int64 {
		return (pool.Stats.Messages.Load() - msgs0) - (pool.Stats.Stamped.Load() - stamped0)
	}
	cpu, err := startCPU(rp.pid, os.Getpid())
	if err != nil {
		return nil, err
	}
	host0, err := readCPUTicks()
	if err != nil {
		return nil, err
	}
	bctx, cancel := context.WithTimeout(ctx, opts.BusyDuration+time.Minute)
	defer cancel()
	var (
		stop       atomic.Bool
		broadcasts atomic.Int64
		bErr       error
		wg         sync.WaitGroup
	)
	payload := busyPayload(opts.Payload)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for !stop.Load() && bctx.Err() == nil {
			// Broadcast k may go once all but queue of the k before it
			// have been read by every client of the big pool.
			k := broadcasts.Load()
			for broadcastsRead() < (k-int64(queue))*int64(big) && !stop.Load() && bctx.Err() == nil {
				time.Sleep(100 * time.Microsecond)
			}
			if stop.Load() {
				return
			}
			if _, err := rp.client.Broadcast(bctx, payload); err != nil {
				bErr = err
				return
			}
			broadcasts.Add(1)
		}
	}()
	// The probe pool's owner, until it is told to stop.
	probeStop := make(chan struct{})
	probeDone := make(chan error, 1)
	go func() {
		var last time.Time
		_, err := pollWhile(probe, probeStop, &last)
		probeDone <- err
	}()
	iopts := IngressOptions{Rate: opts.BusyRate, Duration: opts.BusyDuration, Payload: opts.Payload}
	probeTally := make(chan pushTally, 1)
	go func() { probeTally <- unixPaced(bctx, rp.client, probe.IDs(), iopts) }()
	start := time.Now()
	done := make(chan pushTally, 1)
	go func() { done <- unixPaced(bctx, rp.client, pool.IDs(), iopts) }()
	lastGrowth := start
	tally, err := pollWhile(pool, done, &lastGrowth)
	ptally := <-probeTally
	res.Seconds = time.Since(start).Seconds()
	readAtEnd := broadcastsRead()
	stop.Store(true)
	if _, other, err := seriesEnd(cpu, host0); err == nil {
		res.OtherCPUSeconds = other
	}
	// The broadcaster may be waiting for the clients to read: keep
	// reading until it has returned.
	waitDone := make(chan struct{})
	go func() { wg.Wait(); close(waitDone) }()
	if _, perr := pollWhile(pool, waitDone, &lastGrowth); err == nil {
		err = perr
	}
	close(probeStop)
	if perr := <-probeDone; err == nil {
		err = perr
	}
	if err == nil {
		err = bErr
	}
	if err != nil {
		return nil, fmt.Errorf("bench fanout: unicasts during broadcasts: %w", err)
	}
	res.Broadcasts = broadcasts.Load()
	res.Unicasts, res.Accepted = ptally.sent+tally.sent, ptally.accepted+tally.accepted
	for _, t := range []pushTally{tally, ptally} {
		for k, v := range t.errors {
			res.Errors[k] += v
		}
	}
	want := res.Broadcasts*int64(big) + tally.accepted
	got, _, err := drainPool(pool, msgs0, want, 5*time.Second, time.Minute, time.Now())
	if err != nil {
		return nil, err
	}
	pwant := res.Broadcasts*int64(probes) + ptally.accepted
	pgot, _, err := drainPool(probe, pmsgs0, pwant, 5*time.Second, time.Minute, time.Now())
	if err != nil {
		return nil, err
	}
	res.Missing = want + pwant - got - pgot
	res.BroadcastRate = finite(float64(readAtEnd) / res.Seconds)
	res.Latency = windowLatency(probe).Summarize()
	res.BigPoolLatency = windowLatency(pool).Summarize()
	m1, err := rp.settledMetrics(ctx)
	if err != nil {
		return nil, err
	}
	res.FanoutMaxSecond = m1.sum("pushrelay_fanout_seconds_max")
	if d := m0.delta(m1, "pushrelay_drops_total"); d > 0 {
		res.Errors["relay_drops"] = int64(d)
	}
	fmt.Fprintf(opts.Stderr, "bench fanout: unicasts during %d broadcasts (%d queued): probes p50 %v, p99 %v, max %v; big pool p50 %v, p99 %v\n",
		res.Broadcasts, queue, res.Latency.P50, res.Latency.P99, res.Latency.Max, res.BigPoolLatency.P50, res.BigPoolLatency.P99)
	return res, nil
}

func busyQueueName(q int) string {
	if q == 0 {
		return "each once the last was read"
	}
	return fmt.Sprintf("%d queued behind the one being written", q)
}
