package cluster

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/pushrelay/pushrelay/relay"
)

// Config configures a Node. Zero values mean the defaults.
type Config struct {
	// NATS is the NATS server URL, or several separated by commas.
	// Required.
	NATS string
	// Prefix begins every subject the cluster uses, so several clusters
	// can share one NATS. Default "pushrelay".
	Prefix string
	// Timeout bounds how long a push waits for the nodes it involves to
	// answer. Default 250ms.
	Timeout time.Duration
	// Hello is how often a node announces itself. A node not heard from
	// for three of them is taken for silent (its clients unreachable); a
	// silent node is forgotten (its clients unknown) after Forget. Defaults
	// 1s and 1 minute.
	Hello  time.Duration
	Forget time.Duration
	// CompressMin: payloads of at least this many bytes cross NATS
	// compressed (s2) when that saves bytes. Default 1 KiB; Off never
	// compresses.
	CompressMin int
	// Events is the size of the cluster event log (rounded up to a power
	// of two). Default relay.DefaultEventLog.
	Events int
	// Inbox bounds the requests from other nodes waiting to be served;
	// past it NATS drops them (counted) and their senders time out.
	// Default 65,536.
	Inbox int
	// Logger for lifecycle logs. Default slog.Default().
	Logger *slog.Logger
}

// Off turns off compression (CompressMin).
const Off = -1

// Defaults of Config.
const (
	DefaultPrefix  = "pushrelay"
	DefaultTimeout = 250 * time.Millisecond
	DefaultHello   = time.Second
	DefaultForget  = time.Minute
	DefaultInbox   = 1 << 16
	// DefaultCompressMin is the payload size from which compression is
	// tried: below it s2 rarely saves more than it costs.
	DefaultCompressMin = 1 << 10
)

// ErrBadConfig: a configuration value is out of range.
var ErrBadConfig = errors.New("invalid cluster configuration")

// ErrNodeTaken: another live node has this node ID.
var ErrNodeTaken = errors.New("node ID taken")

func (cfg Config) withDefaults() (Config, error) {
	bad := func(format string, args ...any) (Config, error) {
		return Config{}, fmt.Errorf("%w: "+format, append([]any{ErrBadConfig}, args...)...)
	}
	if cfg.NATS == "" {
		return bad("no NATS URL")
	}
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	for _, tok := range strings.Split(cfg.Prefix, ".") {
		if tok == "" || strings.ContainsAny(tok, " \t\r\n*>") {
			return bad("subject prefix %q: want dot-separated tokens without spaces, '*' or '>'", cfg.Prefix)
		}
	}
	cfg.Timeout = cmp.Or(cfg.Timeout, DefaultTimeout)
	cfg.Hello = cmp.Or(cfg.Hello, DefaultHello)
	cfg.Forget = cmp.Or(cfg.Forget, DefaultForget)
	if cfg.Timeout < 0 || cfg.Hello < 0 || cfg.Forget < 0 {
		return bad("durations must be positive (timeout %v, hello %v, forget %v)", cfg.Timeout, cfg.Hello, cfg.Forget)
	}
	if cfg.CompressMin == 0 {
		cfg.CompressMin = DefaultCompressMin
	} else if cfg.CompressMin < 0 && cfg.CompressMin != Off {
		return bad("compress-min %d: want a byte count, or Off", cfg.CompressMin)
	}
	cfg.Events = cmp.Or(cfg.Events, relay.DefaultEventLog)
	cfg.Inbox = cmp.Or(cfg.Inbox, DefaultInbox)
	if cfg.Events < 0 || cfg.Events > 1<<24 || cfg.Inbox < 0 {
		return bad("events %d (1 to %d) or inbox %d out of range", cfg.Events, 1<<24, cfg.Inbox)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return cfg, nil
}

// waitFor waits for c and reports true, or false once stop is closed.
func waitFor[T any](c <-chan T, stop <-chan struct{}) bool {
	select {
	case <-c:
		return true
	case <-stop:
		return false
	}
}

// Node is one relay process in a cluster: the local relay plus a NATS
// connection. It implements ingress.Relay: the ingress calls it as it
// would call the relay, and it routes each operation to the nodes
// involved. Every exported method is safe for concurrent use.
type Node struct {
	// Fixed after New.
	cfg      Config
	local    *relay.Server
	id       uint16
	log      *slog.Logger
	subjAll  string // PREFIX.all
	subjHelo string // PREFIX.hello
	subjEvts string // PREFIX.events
	subjMine string // PREFIX.node.ID
	peers    *peers
	events   *relay.EventLog
	encoders sync.Pool // *encoder for requests from ingress goroutines

	// Fixed after Start. NATS callbacks may run before Start sets nc:
	// they use the connection they are given.
	nc    *nats.Conn
	calls *calls
	inbox chan *nats.Msg // requests for this node, served in order by serve
	subs  []*nats.Subscription

	nodeSubjects sync.Map // uint16 → string: PREFIX.node.N

	started  atomic.Bool
	stop     chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup

	counters counters
}

// New returns a Node for local, which must have a node ID
// (relay.Config.NodeID). Start connects it.
func New(cfg Config, local *relay.Server) (*Node, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	id := local.Config().NodeID
	if id == 0 {
		return nil, fmt.Errorf("%w: the relay has no node ID (1 to 65535)", ErrBadConfig)
	}
	n := &Node{
		cfg:      cfg,
		local:    local,
		id:       id,
		log:      cfg.Logger.With("node", id),
		subjAll:  cfg.Prefix + ".all",
		subjHelo: cfg.Prefix + ".hello",
		subjEvts: cfg.Prefix + ".events",
		subjMine: cfg.Prefix + ".node." + strconv.Itoa(int(id)),
		peers:    newPeers(3*cfg.Hello, cfg.Forget),
		events:   relay.NewEventLog(cfg.Events),
		stop:     make(chan struct{}),
	}
	n.encoders.New = func() any { return new(encoder) }
	return n, nil
}

// ID returns the node's ID.
func (n *Node) ID() uint16 { return n.id }

// Local returns the node's own relay.
func (n *Node) Local() *relay.Server { return n.local }

// Start connects to NATS, checks that no live node has this node's ID,
// subscribes, and starts announcing the node. If NATS cannot be reached
// the node starts anyway, serving its own clients, and keeps trying: it
// joins the cluster when NATS comes. Call it after the relay's Start.
func (n *Node) Start() error {
	if !n.started.CompareAndSwap(false, true) {
		return errors.New("cluster: Start called twice")
	}
	n.calls = newCalls(fmt.Sprintf("%s.reply.%d.%s.", n.cfg.Prefix, n.id, n.local.Instance()))
	n.inbox = make(chan *nats.Msg, n.cfg.Inbox)
	opts := []nats.Option{
		nats.Name(fmt.Sprintf("pushrelay node %d", n.id)),
		// A node never needs its own messages: its own clients are
		// served locally.
		nats.NoEcho(),
		// Pushes must not wait in a buffer for a reconnection that may
		// never come: while NATS is down they answer unreachable at once.
		nats.ReconnectBufSize(-1),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectJitter(100*time.Millisecond, time.Second),
		nats.RetryOnFailedConnect(true),
		nats.PingInterval(2 * time.Second),
		nats.MaxPingsOutstanding(2),
		nats.Timeout(2 * time.Second),
		nats.ConnectHandler(func(nc *nats.Conn) {
			n.log.Info("cluster connected to NATS")
			n.helloOn(nc, false)
		}),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err == nil {
				return // our own Close, at shutdown: nothing was lost
			}
			n.counters.disconnects.Add(1)
			n.peers.freeze()
			n.log.Warn("cluster lost NATS: pushes to other nodes answer unreachable until it is back", "err", err)
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			n.counters.reconnects.Add(1)
			n.peers.thaw(time.Now())
			n.log.Info("cluster reconnected to NATS", "url", nc.ConnectedUrlRedacted())
			n.helloOn(nc, false)
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			if errors.Is(err, nats.ErrSlowConsumer) {
				return // counted per subscription: pushrelay_cluster_dropped_total
			}
			n.log.Warn("cluster NATS error", "err", err)
		}),
	}
	nc, err := nats.Connect(n.cfg.NATS, opts...)
	if err != nil {
		return fmt.Errorf("cluster: connect to NATS at %s: %w", n.cfg.NATS, err)
	}
	n.nc = nc
	if nc.IsConnected() {
		if err := n.checkNodeFree(); err != nil {
			nc.Close()
			return err
		}
	} else {
		n.log.Warn("cluster: NATS not reachable yet; serving local clients and retrying", "nats", n.cfg.NATS)
	}
	sub := func(subj string, cb nats.MsgHandler) error {
		s, err := nc.Subscribe(subj, cb)
		if err == nil {
			err = s.SetPendingLimits(n.cfg.Inbox, 256<<20)
		}
		if err != nil {
			return fmt.Errorf("cluster: subscribe %s: %w", subj, err)
		}
		n.subs = append(n.subs, s)
		return nil
	}
	chanSub := func(subj string) error {
		s, err := nc.ChanSubscribe(subj, n.inbox)
		if err != nil {
			return fmt.Errorf("cluster: subscribe %s: %w", subj, err)
		}
		n.subs = append(n.subs, s)
		return nil
	}
	// Requests to this node and to all nodes share one channel and one
	// goroutine: what one node publishes is served here in the order it
	// was published, whichever of the two subjects it took.
	err = errors.Join(
		chanSub(n.subjMine),
		chanSub(n.subjAll),
		sub(n.calls.prefix+">", n.calls.deliver),
		sub(n.subjHelo, n.onHello),
		sub(n.subjEvts, n.onEvents),
	)
	if err != nil {
		nc.Close()
		return err
	}
	if nc.IsConnected() {
		_ = nc.FlushTimeout(2 * time.Second) // subscriptions in place before we announce
	}
	n.wg.Add(3)
	go n.serve()
	go n.announce()
	go n.pumpEvents()
	n.hello(false)
	n.log.Info("cluster node started", "nats", n.cfg.NATS, "prefix", n.cfg.Prefix, "timeout", n.cfg.Timeout.String())
	return nil
}

// checkNodeFree asks whoever holds this node's subject to answer.
func (n *Node) checkNodeFree() error {
	msg, err := n.nc.Request(n.subjMine, []byte{byte(opPing), 0, byte(n.id >> 8), byte(n.id)}, max(n.cfg.Timeout, time.Second))
	switch {
	case errors.Is(err, nats.ErrNoResponders), errors.Is(err, nats.ErrTimeout):
		return nil
	case err != nil:
		return fmt.Errorf("cluster: check node ID %d: %w", n.id, err)
	}
	d := decoder{maxPayload: n.local.Config().MaxMessage}
	env, _ := d.decode(msg.Data)
	return fmt.Errorf("%w: node %d is already in the cluster (instance %q); give each relay its own --node", ErrNodeTaken, n.id, env.instance)
}

// Close announces that the node leaves (peers then answer "unknown" for
// its clients at once), and closes the NATS connection. Call it before the
// relay's Shutdown: pushes from other nodes are then refused, not queued
// for clients about to be closed.
func (n *Node) Close() error {
	if !n.started.Load() {
		return nil
	}
	n.stopOnce.Do(func() {
		n.hello(true)
		close(n.stop)
		for _, s := range n.subs {
			_ = s.Unsubscribe()
		}
		if n.nc.IsConnected() {
			_ = n.nc.FlushTimeout(time.Second)
		}
		n.nc.Close()
		n.wg.Wait()
	})
	return nil
}

// nodeSubject returns PREFIX.node.N.
func (n *Node) nodeSubject(node uint16) string {
	if s, ok := n.nodeSubjects.Load(node); ok {
		return s.(string)
	}
	s := n.cfg.Prefix + ".node." + strconv.Itoa(int(node))
	n.nodeSubjects.Store(node, s)
	return s
}

// hello announces the node (or its leaving) on PREFIX.hello.
func (n *Node) hello(leaving bool) { n.helloOn(n.nc, leaving) }

func (n *Node) helloOn(nc *nats.Conn, leaving bool) {
	if nc == nil || !nc.IsConnected() {
		return
	}
	var e encoder
	e.begin(opHello, n.id)
	e.str8(n.local.Instance())
	e.u32(uint32(n.local.Len()))
	if leaving {
		e.u8(1)
	} else {
		e.u8(0)
	}
	if nc.Publish(n.subjHelo, e.b) == nil {
		n.counters.sent(opHello, len(e.b))
	}
}

// announce says hello every Config.Hello until Close.
func (n *Node) announce() {
	defer n.wg.Done()
	t := time.NewTicker(n.cfg.Hello)
	defer t.Stop()
	for waitFor(t.C, n.stop) {
		n.hello(false)
	}
}

// receive decodes a message of kind o that another node published, and
// counts it, or counts a bad envelope and returns false.
func (n *Node) receive(m *nats.Msg, o op) (envelope, bool) {
	d := decoder{}
	env, err := d.decode(m.Data)
	if err != nil || env.op != o {
		n.counters.badEnvelopes.Add(1)
		return envelope{}, false
	}
	n.counters.received(o, len(m.Data))
	return env, true
}

func (n *Node) onHello(m *nats.Msg) {
	env, ok := n.receive(m, opHello)
	if !ok {
		return
	}
	switch {
	case env.from == n.id:
		n.counters.conflicts.Add(1)
		n.log.Error("another relay announces this node ID: give each relay its own --node", "other_instance", env.instance)
	case env.leaving:
		n.peers.left(env.from)
		n.log.Info("cluster node left", "peer", env.from)
	default:
		if n.peers.seen(env.from, env.instance, env.open, time.Now()) {
			n.log.Info("cluster node joined", "peer", env.from, "instance", env.instance)
			n.hello(false) // let the newcomer learn of us now, not in a second
		}
	}
}

func (n *Node) isAlive(node uint16, alive []uint16) bool {
	for _, a := range alive {
		if a == node {
			return true
		}
	}
	return false
}

// Instance returns the local relay's instance: the cluster event log is
// this process's, and starts over when it restarts.
func (n *Node) Instance() string { return n.local.Instance() }

// CheckPayload checks a payload against the local relay's limits.
func (n *Node) CheckPayload(payload []byte) error { return n.local.CheckPayload(payload) }

// Serving is the local relay's: a node without NATS still serves its own
// clients.
func (n *Node) Serving() error { return n.local.Serving() }

// Connected reports whether the node's NATS connection is up.
func (n *Node) Connected() bool { return n.nc != nil && n.nc.IsConnected() }

// Wait blocks until the node knows want other nodes alive, or ctx ends.
// For tests and scripts that start several nodes.
func (n *Node) Wait(ctx context.Context, want int) error {
	for {
		alive, _, _ := n.peers.snapshot(nil, nil, time.Now())
		if len(alive) >= want {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster: %d other nodes alive, want %d: %w", len(alive), want, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}
