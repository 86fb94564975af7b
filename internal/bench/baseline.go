package bench

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"hash/maphash"
	"math"
	mrand "math/rand/v2"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pushrelay/pushrelay/pkg/stamp"
	"github.com/pushrelay/pushrelay/relay"
)

// Baseline is the push server most Go developers would write, and it exists
// to be measured against: the relay's claims are ratios to it. It speaks the
// relay's protocol (same framing, same IDs, ID as the first frame, inbound
// bytes discarded up to a budget) with the idiomatic design for Go's net
// package, the readPump/writePump pair of gorilla/websocket's chat example:
// per connection, one goroutine reads and discards (to notice the close)
// and one writes frames from a bounded channel. A full channel closes the
// connection, as the relay's default slow-consumer policy does.
//
// It is honest, not tuned: no buffer pooling, no epoll of its own. Its push
// methods are safe to call from any goroutine.
type Baseline struct {
	// Fixed after NewBaseline.
	cfg  BaselineConfig
	seed maphash.Seed

	// Fixed after Start.
	ln net.Listener

	shards   [baselineShards]baselineShard
	open     atomic.Int64  // connections registered now
	accepted atomic.Uint64 // connections that got an ID
	written  atomic.Uint64 // pushed frames written whole (ID frames not counted)
	closing  atomic.Bool
	wg       sync.WaitGroup // the accept loop and every pump
}

// BaselineConfig configures a Baseline. Zero values mean the relay's
// defaults.
type BaselineConfig struct {
	// Listen is the HOST:PORT to listen on; port 0 picks a free port.
	Listen string
	// Framing of every frame written, the ID frame included.
	Framing relay.Framing
	// MaxInbound is how many bytes a client may send before it is closed.
	// Default relay.DefaultMaxInbound; relay.Off closes on the first byte.
	MaxInbound int
	// Queue is how many frames may wait for one connection's writer before
	// a push closes it. Default 64.
	Queue int
}

// DefaultBaselineQueue is the default per-connection channel length: the
// order of magnitude chat examples use.
const DefaultBaselineQueue = 64

// baselineShards spreads the registry over locks so Sends from many
// goroutines and registrations from accepts rarely meet.
const baselineShards = 64

type baselineShard struct {
	mu sync.RWMutex
	m  map[string]*baselineConn // guarded by mu
}

// baselineConn is one client connection and its two pumps.
type baselineConn struct {
	// Fixed at accept.
	srv *Baseline
	id  string
	c   net.Conn
	out chan []byte   // frames for writePump; never closed, so a late Send cannot panic
	die chan struct{} // closed once, by close

	closeOnce sync.Once
}

// NewBaseline validates cfg and returns a server ready to Start.
func NewBaseline(cfg BaselineConfig) (*Baseline, error) {
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	if cfg.Framing > relay.FramingLen32 {
		return nil, fmt.Errorf("bench: baseline: framing %d unknown", cfg.Framing)
	}
	switch {
	case cfg.MaxInbound == 0:
		cfg.MaxInbound = relay.DefaultMaxInbound
	case cfg.MaxInbound < 0 && cfg.MaxInbound != relay.Off:
		return nil, fmt.Errorf("bench: baseline: max inbound %d: want a byte count or relay.Off", cfg.MaxInbound)
	}
	if cfg.Queue == 0 {
		cfg.Queue = DefaultBaselineQueue
	} else if cfg.Queue < 0 {
		return nil, fmt.Errorf("bench: baseline: queue %d: want a positive frame count", cfg.Queue)
	}
	return &Baseline{cfg: cfg, seed: maphash.MakeSeed()}, nil
}

// Start listens and starts accepting in a goroutine of its own.
func (b *Baseline) Start() error {
	ln, err := net.Listen("tcp", b.cfg.Listen)
	if err != nil {
		return fmt.Errorf("bench: baseline: listen on %s: %w", b.cfg.Listen, err)
	}
	b.ln = ln
	b.wg.Add(1)
	go b.acceptLoop()
	return nil
}

// Addr returns the listener's address. Nil before Start.
func (b *Baseline) Addr() *net.TCPAddr {
	if b.ln == nil {
		return nil
	}
	return b.ln.Addr().(*net.TCPAddr)
}

// Len returns the number of open connections. Safe for concurrent use.
func (b *Baseline) Len() int { return int(b.open.Load()) }

// Accepted returns how many connections were given an ID since Start. Safe
// for concurrent use.
func (b *Baseline) Accepted() uint64 { return b.accepted.Load() }

func (b *Baseline) acceptLoop() {
	defer b.wg.Done()
	for {
		c, err := b.ln.Accept()
		if err != nil {
			if b.closing.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of descriptors, most likely: what net/http does, back off
			// and try again rather than spin or give up.
			time.Sleep(5 * time.Millisecond)
			continue
		}
		b.wg.Add(1)
		go b.serve(c)
	}
}

// serve registers a fresh connection, starts its writer and becomes its
// reader.
func (b *Baseline) serve(c net.Conn) {
	defer b.wg.Done()
	var raw [relay.IDBytes]byte
	_, _ = rand.Read(raw[:]) // never fails on Linux since Go 1.24
	bc := &baselineConn{
		srv: b,
		id:  base64.RawURLEncoding.EncodeToString(raw[:]),
		c:   c,
		out: make(chan []byte, b.cfg.Queue),
		die: make(chan struct{}),
	}
	sh := b.shard(bc.id)
	sh.mu.Lock()
	if sh.m == nil {
		sh.m = make(map[string]*baselineConn)
	}
	sh.m[bc.id] = bc
	sh.mu.Unlock()
	b.open.Add(1)
	b.accepted.Add(1)
	if b.closing.Load() {
		// Close may have swept the shards before this one registered.
		bc.close()
	}
	b.wg.Add(1)
	go bc.writePump()
	bc.readPump()
}

func (b *Baseline) shard(id string) *baselineShard {
	return &b.shards[maphash.String(b.seed, id)%baselineShards]
}

func (b *Baseline) lookup(id string) *baselineConn {
	sh := b.shard(id)
	sh.mu.RLock()
	bc := sh.m[id]
	sh.mu.RUnlock()
	return bc
}

// readPump reads and discards until the peer closes or passes the inbound
// budget.
func (bc *baselineConn) readPump() {
	defer bc.close()
	buf := make([]byte, 512)
	total := 0
	for {
		n, err := bc.c.Read(buf)
		total += n
		if total > bc.srv.cfg.MaxInbound { // MaxInbound is Off (-1) when any byte must close
			if tc, ok := bc.c.(*net.TCPConn); ok {
				_ = tc.SetLinger(0) // reset: a flooding client gets no graceful close
			}
			return
		}
		if err != nil {
			return
		}
	}
}

// writePump writes the ID frame, then every frame pushed, until the
// connection dies. The write deadline mirrors the relay's 30 s
// TCP_USER_TIMEOUT.
func (bc *baselineConn) writePump() {
	defer bc.srv.wg.Done()
	defer bc.close()
	idFrame := bc.srv.cfg.Framing.AppendFrame(nil, []byte(bc.id))
	if !bc.write(idFrame) {
		return
	}
	for {
		select {
		case f := <-bc.out:
			if !bc.write(f) {
				return
			}
			bc.srv.written.Add(1)
		case <-bc.die:
			return
		}
	}
}

func (bc *baselineConn) write(f []byte) bool {
	_ = bc.c.SetWriteDeadline(time.Now().Add(relay.DefaultWriteTimeout))
	_, err := bc.c.Write(f)
	return err == nil
}

// close tears the connection down once: it wakes the writer, closes the
// socket (which wakes the reader) and leaves the registry.
func (bc *baselineConn) close() {
	bc.closeOnce.Do(func() {
		close(bc.die)
		_ = bc.c.Close()
		b := bc.srv
		sh := b.shard(bc.id)
		sh.mu.Lock()
		if sh.m[bc.id] == bc {
			delete(sh.m, bc.id)
		}
		sh.mu.Unlock()
		b.open.Add(-1)
	})
}

// offer queues frame f for bc without blocking; a full queue closes the
// connection.
func (bc *baselineConn) offer(f []byte) relay.Status {
	select {
	case <-bc.die:
		return relay.UnknownID
	default:
	}
	select {
	case bc.out <- f:
		return relay.Queued
	default:
		bc.close()
		return relay.DroppedSlow
	}
}

// check validates a payload as the relay does.
func (b *Baseline) check(payload []byte) relay.Status {
	if b.closing.Load() {
		return relay.Closed
	}
	if len(payload) > relay.DefaultMaxMessage {
		return relay.TooLarge
	}
	if b.cfg.Framing.Check(payload) != nil {
		return relay.BadPayload
	}
	return relay.Queued
}

// Send queues payload for the connection with that ID. A connection whose
// queue is full is closed (DroppedSlow). Safe for concurrent use.
func (b *Baseline) Send(id string, payload []byte) relay.Status {
	if st := b.check(payload); st != relay.Queued {
		return st
	}
	bc := b.lookup(id)
	if bc == nil {
		return relay.UnknownID
	}
	return bc.offer(b.cfg.Framing.AppendFrame(nil, payload))
}

// Broadcast queues payload, framed once, for every open connection. Safe
// for concurrent use.
func (b *Baseline) Broadcast(payload []byte) (relay.Counts, relay.Status) {
	var c relay.Counts
	if st := b.check(payload); st != relay.Queued {
		return c, st
	}
	f := b.cfg.Framing.AppendFrame(nil, payload)
	var conns []*baselineConn
	for i := range b.shards {
		sh := &b.shards[i]
		// Offer outside the lock: a full queue closes the connection,
		// and close takes the shard's lock.
		sh.mu.RLock()
		conns = conns[:0]
		for _, bc := range sh.m {
			conns = append(conns, bc)
		}
		sh.mu.RUnlock()
		for _, bc := range conns {
			switch bc.offer(f) {
			case relay.Queued:
				c.Queued++
			case relay.DroppedSlow:
				c.DroppedSlow++
			}
		}
	}
	return c, relay.Queued
}

// ids returns the IDs of the connections open now.
func (b *Baseline) ids() []string {
	var out []string
	for i := range b.shards {
		sh := &b.shards[i]
		sh.mu.RLock()
		for id := range sh.m {
			out = append(out, id)
		}
		sh.mu.RUnlock()
	}
	return out
}

// errNoClients: a push run with no connection to push to.
var errNoClients = errors.New("bench: baseline: no connections to push to")

// BaselineInflight bounds the pushes SendRate has queued but its
// connections' writers have not yet written: the same bound the relay's
// ingress pushers keep (4 workers × batches of 256, each batch waiting for
// its ping), so neither server is measured by how deep its queues can grow.
// With few clients it is lower (a quarter of their queues' room), so random
// pushes do not fill one client's queue and close it as slow.
const BaselineInflight = 1024

// SendRate pushes stamped size-byte payloads to connections chosen at
// random, with Send, from one goroutine as fast as it can for d, keeping at
// most BaselineInflight of them unwritten. Writes counts the pushes queued,
// Errors those refused; Seconds runs until the writers had written every
// push queued (or a second more passed), so Writes ÷ Seconds is pushes
// written per second; CPUSeconds is the whole process's CPU over the run,
// its writers' included.
func (b *Baseline) SendRate(d time.Duration, size int) (FloorRun, error) {
	ids := b.ids()
	if len(ids) == 0 {
		return FloorRun{}, errNoClients
	}
	inflight := uint64(min(BaselineInflight, max(1, len(ids)*b.cfg.Queue/4)))
	rng := mrand.New(mrand.NewPCG(mrand.Uint64(), mrand.Uint64()))
	payload := make([]byte, 0, size+32)
	var run FloorRun
	u0, s0 := cpuTime()
	w0 := b.written.Load()
	start := time.Now()
	end := start.Add(d)
	now := start
	var queued uint64
	for now.Before(end) {
		for queued-(b.written.Load()-w0) >= inflight && now.Before(end) {
			runtime.Gosched() // the writers need the CPU more than this loop
			now = time.Now()
		}
		payload = stamp.AppendPadded(payload[:0], now, size)
		if b.Send(ids[rng.IntN(len(ids))], payload) == relay.Queued {
			queued++
			run.Writes++
			run.Bytes += int64(len(payload))
		} else {
			run.Errors++
		}
		now = time.Now()
	}
	// A push queued to a connection closed meanwhile is never written:
	// wait a second at most.
	for last := now.Add(time.Second); b.written.Load()-w0 < queued && now.Before(last); now = time.Now() {
		runtime.Gosched()
	}
	run.Seconds = now.Sub(start).Seconds()
	u1, s1 := cpuTime()
	run.CPUSeconds = (u1 - u0 + s1 - s0).Seconds()
	return run, nil
}

// SendPaced pushes rate stamped size-byte payloads a second for d, each to
// a connection chosen at random and stamped just before its Send.
func (b *Baseline) SendPaced(rate float64, d time.Duration, size int) (FloorRun, error) {
	ids := b.ids()
	if len(ids) == 0 {
		return FloorRun{}, errNoClients
	}
	if rate <= 0 {
		return FloorRun{}, fmt.Errorf("bench: baseline: rate %v: want a positive rate", rate)
	}
	rng := mrand.New(mrand.NewPCG(mrand.Uint64(), mrand.Uint64()))
	payload := make([]byte, 0, size+32)
	var run FloorRun
	u0, s0 := cpuTime()
	start := time.Now()
	last := start
	n := int64(math.Round(rate * d.Seconds()))
	for i := range n {
		due := start.Add(time.Duration(float64(i) * float64(time.Second) / rate))
		if wait := time.Until(due); wait > 0 {
			time.Sleep(wait)
		}
		last = time.Now()
		payload = stamp.AppendPadded(payload[:0], last, size)
		if b.Send(ids[rng.IntN(len(ids))], payload) == relay.Queued {
			run.Writes++
			run.Bytes += int64(len(payload))
		} else {
			run.Errors++
		}
	}
	run.Seconds = last.Sub(start).Seconds()
	u1, s1 := cpuTime()
	run.CPUSeconds = (u1 - u0 + s1 - s0).Seconds()
	return run, nil
}

// Close stops accepting, closes every connection and waits for every
// goroutine to end. Safe to call more than once.
func (b *Baseline) Close() error {
	if !b.closing.CompareAndSwap(false, true) {
		return nil
	}
	var err error
	if b.ln != nil {
		err = b.ln.Close()
	}
	for i := range b.shards {
		sh := &b.shards[i]
		sh.mu.RLock()
		conns := make([]*baselineConn, 0, len(sh.m))
		for _, bc := range sh.m {
			conns = append(conns, bc)
		}
		sh.mu.RUnlock()
		for _, bc := range conns {
			bc.close()
		}
	}
	b.wg.Wait()
	if err != nil {
		return fmt.Errorf("bench: baseline: close listener: %w", err)
	}
	return nil
}
