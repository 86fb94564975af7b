package cluster

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

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
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Hello == 0 {
		cfg.Hello = DefaultHello
	}
	if cfg.Forget == 0 {
		cfg.Forget = DefaultForget
	}
	if cfg.Timeout < 0 || cfg.Hello < 0 || cfg.Forget < 0 {
		return bad("durations must be positive (timeout %v, hello %v, forget %v)", cfg.Timeout, cfg.Hello, cfg.Forget)
	}
	if cfg.CompressMin == 0 {
		cfg.CompressMin = DefaultCompressMin
	} else if cfg.CompressMin < 0 && cfg.CompressMin != Off {
		return bad("compress-min %d: want a byte count, or Off", cfg.CompressMin)
	}
	if cfg.Events == 0 {
		cfg.Events = relay.DefaultEventLog
	}
	if cfg.Inbox == 0 {
		cfg.Inbox = DefaultInbox
	}
	if cfg.Events < 0 || cfg.Events > 1<<24 || cfg.Inbox < 0 {
		return bad("events %d (1 to %d) or inbox %d out of range", cfg.Events, 1<<24, cfg.Inbox)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return cfg, nil
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
	for {
		select {
		case <-n.stop:
			return
		case <-t.C:
			n.hello(false)
		}
	}
}

func (n *Node) onHello(m *nats.Msg) {
	d := decoder{}
	env, err := d.decode(m.Data)
	if err != nil || env.op != opHello {
		n.counters.badEnvelopes.Add(1)
		return
	}
	n.counters.received(opHello, len(m.Data))
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

// precheck refuses, before anything crosses NATS, a payload this node
// would refuse; the owner node checks it again against its own limits.
func (n *Node) precheck(payload []byte) relay.Status {
	if n.local.Serving() != nil {
		return relay.Closed
	}
	if err := n.local.CheckPayload(payload); err != nil {
		if errors.Is(err, relay.ErrTooLarge) {
			return relay.TooLarge
		}
		return relay.BadPayload
	}
	return relay.Queued
}

// request publishes one request per target and waits, at most
// Config.Timeout, for each one's reply. build appends request i's body to
// an envelope already begun with o. res gets one outcome per target; the
// replies' data stays valid after the call.
func (n *Node) request(o op, targets []uint16, res []result, build func(i int, e *encoder)) []result {
	res = res[:0]
	for range targets {
		res = append(res, result{})
	}
	if n.nc == nil || !n.nc.IsConnected() {
		for i := range res {
			res[i].out = outUnsent
		}
		n.counters.unsent.Add(uint64(len(targets)))
		return res
	}
	c := n.calls.start(n.cfg.Timeout)
	defer n.calls.finish(c)
	e := n.encoders.Get().(*encoder)
	waiting := 0
	for i, node := range targets {
		e.begin(o, n.id)
		build(i, e)
		if e.b[1]&flagCompressed != 0 {
			n.counters.compressed.Add(1)
		}
		if err := n.nc.PublishRequest(n.nodeSubject(node), n.calls.subject(c, i), e.b); err != nil {
			res[i].out = outUnsent
			n.counters.unsent.Add(1)
			continue
		}
		n.counters.sent(o, len(e.b))
		waiting++
	}
	n.encoders.Put(e)
	for waiting > 0 {
		select {
		case r := <-c.ch:
			if r.base != c.base || r.idx >= len(res) || res[r.idx].out != outPending {
				n.calls.late.Add(1)
				continue
			}
			waiting--
			if r.noResp {
				res[r.idx].out = outNoResponders
				continue
			}
			res[r.idx].out, res[r.idx].data = outReplied, r.data
		case <-c.timer.C:
			for i := range res {
				if res[i].out == outPending {
					res[i].out = outTimeout
					n.counters.timeouts.Add(1)
				}
			}
			waiting = 0
		}
	}
	return res
}

// result is one request's outcome.
type result struct {
	out  outcome
	data []byte
}

// unreached answers a request that got no reply: a node that left cleanly
// or was never seen holds no clients (unknown); one that went silent, or
// that we could not ask, may (unreachable).
func (n *Node) unreached(node uint16, out outcome) relay.Status {
	if out == outNoResponders && n.peers.state(node, time.Now()) == peerUnknown {
		return relay.UnknownID
	}
	n.counters.unreachable.Add(1)
	return relay.Unreachable
}

// SendPipelined is Send for a caller with more pushes right behind: a
// client of this node gets it through relay.Server.SendPipelined.
func (n *Node) SendPipelined(id string, payload []byte) relay.Status {
	if node, ok := relay.NodeOf(id); !ok || node == n.id {
		return n.local.SendPipelined(id, payload)
	}
	return n.Send(id, payload)
}

// Send pushes to one client, on whichever node holds it. A client of
// another node costs one NATS round trip: the call returns the owner's
// answer, or Unreachable within Config.Timeout.
func (n *Node) Send(id string, payload []byte) relay.Status {
	node, ok := relay.NodeOf(id)
	if !ok || node == n.id {
		return n.local.Send(id, payload)
	}
	if st := n.precheck(payload); st != relay.Queued {
		return st
	}
	raw, ok := relay.ParseID(id)
	if !ok {
		return relay.UnknownID
	}
	var resBuf [1]result
	targets := [1]uint16{node}
	res := n.request(opSend, targets[:], resBuf[:0], func(_ int, e *encoder) {
		e.id(&raw)
		e.payload(payload, n.cfg.CompressMin)
	})
	if res[0].out != outReplied {
		return n.unreached(node, res[0].out)
	}
	env, err := (&decoder{}).decode(res[0].data)
	if err != nil || env.op != opSend|replyBit {
		n.counters.badEnvelopes.Add(1)
		return n.unreached(node, outTimeout)
	}
	n.peers.touch(node, time.Now())
	return env.status
}

// UnsupportedReason explains an Unsupported status for id: in this
// node's words for its own clients, in general ones for another node's.
func (n *Node) UnsupportedReason(id string, payload []byte) string {
	if node, ok := relay.NodeOf(id); !ok || node == n.id {
		return n.local.UnsupportedReason(id, payload)
	}
	return fmt.Sprintf("client %s cannot take this payload: its transport cannot carry it (tcp clients: the bytes the framing forbids; SSE: UTF-8 text only)", id)
}

// SendMany pushes one payload to many clients: its own at once, and one
// request per other node involved, all in flight together.
func (n *Node) SendMany(ids []string, payload []byte) (relay.Counts, relay.Status) {
	var c relay.Counts
	if st := n.precheck(payload); st != relay.Queued {
		return c, st
	}
	// Group by node: local IDs stay strings; others are parsed to bytes.
	var local []string
	groups := map[uint16][][relay.IDBytes]byte{}
	for _, id := range ids {
		node, ok := relay.NodeOf(id)
		if !ok || node == n.id {
			local = append(local, id)
			continue
		}
		raw, ok := relay.ParseID(id)
		if !ok {
			c.UnknownID++
			continue
		}
		groups[node] = append(groups[node], raw)
	}
	if len(local) > 0 {
		lc, st := n.local.SendMany(local, payload)
		if st != relay.Queued {
			return relay.Counts{}, st
		}
		c.Merge(lc)
	}
	if len(groups) == 0 {
		return c, relay.Queued
	}
	targets := make([]uint16, 0, len(groups))
	for node := range groups {
		targets = append(targets, node)
	}
	res := n.request(opSendMany, targets, nil, func(i int, e *encoder) {
		g := groups[targets[i]]
		e.u16(uint16(len(g)))
		for j := range g {
			e.id(&g[j])
		}
		e.payload(payload, n.cfg.CompressMin)
	})
	for i, r := range res {
		node, count := targets[i], len(groups[targets[i]])
		if r.out == outReplied {
			env, err := (&decoder{}).decode(r.data)
			if err == nil && env.op == opSendMany|replyBit {
				n.peers.touch(node, time.Now())
				if env.status == relay.Queued {
					c.Merge(env.counts)
				} else {
					// The node refused the payload as a whole (its own
					// limits, or it is closing): none of its IDs got it.
					switch env.status {
					case relay.Closed, relay.Overloaded:
						c.Overloaded += count
					default:
						c.UnknownID += count
					}
				}
				continue
			}
			n.counters.badEnvelopes.Add(1)
		}
		if n.unreached(node, r.out) == relay.UnknownID {
			c.UnknownID += count
		} else {
			c.Unreachable += count
		}
	}
	return c, relay.Queued
}

// fanout runs a publish or broadcast: locally, and once through NATS on
// PREFIX.all, which every other node receives once. It waits, at most
// Config.Timeout, for an answer from every node known alive; the counts
// sum the answers, and Unreachable counts the nodes that did not answer
// (alive ones past the timeout, and silent ones).
func (n *Node) fanout(o op, topic string, payload []byte, local func() (relay.Counts, relay.Status)) (relay.Counts, relay.Status) {
	if st := n.precheck(payload); st != relay.Queued {
		return relay.Counts{}, st
	}
	c, st := local()
	if st != relay.Queued {
		return c, st
	}
	now := time.Now()
	alive, silent, _ := n.peers.snapshot(nil, nil, now)
	c.Unreachable += len(silent)
	if n.nc == nil || !n.nc.IsConnected() {
		c.Unreachable += len(alive)
		n.counters.unsent.Add(1)
		n.counters.unreachable.Add(uint64(len(alive) + len(silent)))
		return c, relay.Queued
	}
	call := n.calls.start(n.cfg.Timeout)
	defer n.calls.finish(call)
	e := n.encoders.Get().(*encoder)
	e.begin(o, n.id)
	if o == opPublish {
		e.str8(topic)
	}
	if e.payload(payload, n.cfg.CompressMin) {
		n.counters.compressed.Add(1)
	}
	err := n.nc.PublishRequest(n.subjAll, n.calls.subject(call, 0), e.b)
	n.counters.sent(o, len(e.b))
	n.encoders.Put(e)
	if err != nil {
		c.Unreachable += len(alive)
		n.counters.unsent.Add(1)
		return c, relay.Queued
	}
	answered := make(map[uint16]bool, len(alive))
	missing := len(alive)
	var d decoder
wait:
	for missing > 0 {
		select {
		case r := <-call.ch:
			if r.noResp {
				break wait // no other node subscribes: none will answer
			}
			env, err := d.decode(r.data)
			if err != nil || env.op != o|replyBit {
				n.counters.badEnvelopes.Add(1)
				continue
			}
			if answered[env.from] {
				continue
			}
			answered[env.from] = true
			n.peers.touch(env.from, time.Now())
			if env.status == relay.Queued {
				c.Merge(env.counts)
			} else {
				c.Unreachable++ // it refused as a whole (closing, full): not delivered there
			}
			if n.isAlive(env.from, alive) {
				missing--
			}
		case <-call.timer.C:
			n.counters.timeouts.Add(1)
			break wait
		}
	}
	if missing > 0 {
		c.Unreachable += missing
		n.counters.unreachable.Add(uint64(missing))
	}
	return c, relay.Queued
}

func (n *Node) isAlive(node uint16, alive []uint16) bool {
	for _, a := range alive {
		if a == node {
			return true
		}
	}
	return false
}

// Publish pushes to a topic's subscribers on every node.
func (n *Node) Publish(topic string, payload []byte) (relay.Counts, relay.Status) {
	return n.fanout(opPublish, topic, payload, func() (relay.Counts, relay.Status) { return n.local.Publish(topic, payload) })
}

// Broadcast pushes to every client of every node.
func (n *Node) Broadcast(payload []byte) (relay.Counts, relay.Status) {
	return n.fanout(opBroadcast, "", payload, func() (relay.Counts, relay.Status) { return n.local.Broadcast(payload) })
}

// Subscribe adds a client, on whichever node holds it, to topics.
func (n *Node) Subscribe(id string, topics ...string) (int, error) {
	return n.topicOp(opSubscribe, id, topics)
}

// Unsubscribe removes a client, on whichever node holds it, from topics.
func (n *Node) Unsubscribe(id string, topics ...string) (int, error) {
	return n.topicOp(opUnsubscribe, id, topics)
}

func (n *Node) topicOp(o op, id string, topics []string) (int, error) {
	node, ok := relay.NodeOf(id)
	if !ok || node == n.id {
		if o == opSubscribe {
			return n.local.Subscribe(id, topics...)
		}
		return n.local.Unsubscribe(id, topics...)
	}
	for _, t := range topics {
		if err := relay.CheckTopic(t); err != nil {
			return 0, err
		}
	}
	raw, ok := relay.ParseID(id)
	if !ok {
		return 0, fmt.Errorf("%w: %q", relay.ErrUnknownID, id)
	}
	var resBuf [1]result
	res := n.request(o, []uint16{node}, resBuf[:0], func(_ int, e *encoder) {
		e.id(&raw)
		e.u16(uint16(len(topics)))
		for _, t := range topics {
			e.str8(t)
		}
	})
	if res[0].out != outReplied {
		if n.unreached(node, res[0].out) == relay.UnknownID {
			return 0, fmt.Errorf("%w: %q (its node %d is not in the cluster)", relay.ErrUnknownID, id, node)
		}
		return 0, fmt.Errorf("%w: node %d, within %v", relay.ErrUnreachable, node, n.cfg.Timeout)
	}
	env, err := (&decoder{}).decode(res[0].data)
	if err != nil || env.op != o|replyBit {
		n.counters.badEnvelopes.Add(1)
		return 0, fmt.Errorf("%w: node %d answered with a bad envelope", relay.ErrUnreachable, node)
	}
	n.peers.touch(node, time.Now())
	if env.errKind == errNone {
		return env.changed, nil
	}
	return env.changed, kindError(env.errKind, env.message)
}

// kindError rebuilds a relay error from a reply's error kind and message.
func kindError(kind uint8, msg string) error {
	if int(kind) < len(errKinds) && errKinds[kind] != nil {
		base := errKinds[kind].Error()
		return fmt.Errorf("%w%s", errKinds[kind], strings.TrimPrefix(msg, base))
	}
	return errors.New(msg)
}

// Kick closes a client's connection, on whichever node holds it.
func (n *Node) Kick(id string) relay.Status {
	node, ok := relay.NodeOf(id)
	if !ok || node == n.id {
		return n.local.Kick(id)
	}
	raw, ok := relay.ParseID(id)
	if !ok {
		return relay.UnknownID
	}
	var resBuf [1]result
	res := n.request(opKick, []uint16{node}, resBuf[:0], func(_ int, e *encoder) { e.id(&raw) })
	if res[0].out != outReplied {
		return n.unreached(node, res[0].out)
	}
	env, err := (&decoder{}).decode(res[0].data)
	if err != nil || env.op != opKick|replyBit {
		n.counters.badEnvelopes.Add(1)
		return n.unreached(node, outTimeout)
	}
	n.peers.touch(node, time.Now())
	return env.status
}

// Info describes a client, on whichever node holds it. A client whose node
// does not answer is reported as not connected.
func (n *Node) Info(id string) (relay.ClientInfo, bool) {
	node, ok := relay.NodeOf(id)
	if !ok || node == n.id {
		return n.local.Info(id)
	}
	raw, ok := relay.ParseID(id)
	if !ok {
		return relay.ClientInfo{}, false
	}
	var resBuf [1]result
	res := n.request(opInfo, []uint16{node}, resBuf[:0], func(_ int, e *encoder) { e.id(&raw) })
	if res[0].out != outReplied {
		n.unreached(node, res[0].out)
		return relay.ClientInfo{}, false
	}
	env, err := (&decoder{}).decode(res[0].data)
	if err != nil || env.op != opInfo|replyBit || !env.found {
		return relay.ClientInfo{}, false
	}
	env.info.ID = id
	return env.info, true
}

// List pages through the connected IDs of the whole cluster, one node at
// a time in ascending node order. The cursor is "NODE:LOCAL", where LOCAL
// is that node's own cursor; a page may be empty while the cursor is not.
// A node that does not answer makes the call fail (retry with the same
// cursor); a node that left is skipped.
func (n *Node) List(cursor string, limit int) ([]string, string, error) {
	from, localCursor, err := parseCursor(cursor)
	if err != nil {
		return nil, "", err
	}
	alive, _, _ := n.peers.snapshot(nil, nil, time.Now())
	nodes := mergeSorted(alive, n.id)
	i := 0
	for i < len(nodes) && nodes[i] < from {
		i++
	}
	if i == len(nodes) {
		return nil, "", nil
	}
	node := nodes[i]
	if node != from {
		localCursor = "" // the cursor's node left: start the next from its top
	}
	var ids []string
	var next string
	if node == n.id {
		ids, next, err = n.local.List(localCursor, limit)
		if err != nil {
			return nil, "", err
		}
	} else {
		var resBuf [1]result
		res := n.request(opList, []uint16{node}, resBuf[:0], func(_ int, e *encoder) {
			e.str8(localCursor)
			e.u16(uint16(min(max(limit, 0), relay.MaxListPage)))
		})
		if res[0].out != outReplied {
			n.unreached(node, res[0].out)
			return nil, "", fmt.Errorf("%w: node %d did not answer the listing within %v; retry with the same cursor", relay.ErrUnreachable, node, n.cfg.Timeout)
		}
		env, err := (&decoder{}).decode(res[0].data)
		if err != nil || env.op != opList|replyBit {
			n.counters.badEnvelopes.Add(1)
			return nil, "", fmt.Errorf("%w: node %d answered the listing with a bad envelope", relay.ErrUnreachable, node)
		}
		if env.errKind != errNone {
			return nil, "", kindError(env.errKind, env.message)
		}
		ids = make([]string, len(env.ids))
		for j := range env.ids {
			ids[j] = relay.FormatID(&env.ids[j])
		}
		next = env.message
	}
	switch {
	case next != "":
		next = strconv.Itoa(int(node)) + ":" + next
	case i+1 < len(nodes):
		next = strconv.Itoa(int(nodes[i+1])) + ":"
	}
	return ids, next, nil
}

// Presence pages through the subscribers of topic on the whole cluster,
// one node at a time in ascending node order, as List does (same cursor
// shape, "NODE:LOCAL"); count is the sum of every node's subscribers,
// asked of all of them in the same round. A node that does not answer makes
// the call fail (retry with the same cursor); a node that left is skipped.
func (n *Node) Presence(topic, cursor string, limit int) ([]string, string, int, error) {
	if err := relay.CheckTopic(topic); err != nil {
		return nil, "", 0, err
	}
	from, localCursor, err := parseCursor(cursor)
	if err != nil {
		return nil, "", 0, err
	}
	alive, _, _ := n.peers.snapshot(nil, nil, time.Now())
	nodes := mergeSorted(alive, n.id)
	i := 0
	for i < len(nodes) && nodes[i] < from {
		i++
	}
	page := uint16(0) // the node whose subscribers this page lists; 0 (no node has it): none left
	if i < len(nodes) {
		page = nodes[i]
		if page != from {
			localCursor = ""
		}
	}
	if limit <= 0 || limit > relay.MaxPresencePage {
		limit = relay.MaxPresencePage
	}
	var ids []string
	var next string
	count := 0
	if page == n.id {
		ids, next, count, err = n.local.Presence(topic, localCursor, limit)
		if err != nil {
			return nil, "", 0, err
		}
	} else {
		count = n.local.Subscribers(topic)
	}
	others := make([]uint16, 0, len(alive))
	for _, node := range alive {
		if node != n.id {
			others = append(others, node)
		}
	}
	res := n.request(opPresence, others, make([]result, 0, len(others)), func(j int, e *encoder) {
		e.str8(topic)
		if others[j] == page {
			e.str8(localCursor)
			e.u16(uint16(limit))
		} else {
			e.str8("")
			e.u16(0) // the count only
		}
	})
	var d decoder
	for j, node := range others {
		if res[j].out != outReplied {
			if n.unreached(node, res[j].out) == relay.UnknownID {
				continue // it left: its subscribers left with it
			}
			return nil, "", 0, fmt.Errorf("%w: node %d did not answer the presence query within %v; retry with the same cursor", relay.ErrUnreachable, node, n.cfg.Timeout)
		}
		env, err := d.decode(res[j].data)
		if err != nil || env.op != opPresence|replyBit {
			n.counters.badEnvelopes.Add(1)
			return nil, "", 0, fmt.Errorf("%w: node %d answered the presence query with a bad envelope", relay.ErrUnreachable, node)
		}
		if env.errKind != errNone {
			return nil, "", 0, kindError(env.errKind, env.message)
		}
		count += env.changed
		if node == page {
			ids = make([]string, len(env.ids))
			for k := range env.ids {
				ids[k] = relay.FormatID(&env.ids[k])
			}
			next = env.message
		}
	}
	switch {
	case page == 0: // past the last node
	case next != "":
		next = strconv.Itoa(int(page)) + ":" + next
	case i+1 < len(nodes):
		next = strconv.Itoa(int(nodes[i+1])) + ":"
	}
	return ids, next, count, nil
}

// parseCursor reads a cluster listing cursor.
func parseCursor(c string) (node uint16, local string, err error) {
	if c == "" {
		return 0, "", nil
	}
	num, local, ok := strings.Cut(c, ":")
	v, err := strconv.ParseUint(num, 10, 16)
	if !ok || err != nil {
		return 0, "", fmt.Errorf("invalid cursor %q: pass back the cursor a previous page returned, or nothing to start", c)
	}
	return uint16(v), local, nil
}

// mergeSorted returns sorted with v inserted in order.
func mergeSorted(sorted []uint16, v uint16) []uint16 {
	out := make([]uint16, 0, len(sorted)+1)
	done := false
	for _, s := range sorted {
		if !done && v < s {
			out = append(out, v)
			done = true
		}
		if s != v {
			out = append(out, s)
		}
	}
	if !done {
		out = append(out, v)
	}
	return out
}

// EventsSince reads the cluster's event log: every node's connects and
// disconnects, each marked with its node (relay.Event.Node).
func (n *Node) EventsSince(from uint64, dst []relay.Event, max int) ([]relay.Event, uint64, uint64, <-chan struct{}) {
	return n.events.Since(from, dst, max)
}

// LastEventSeq returns the sequence number of the cluster log's latest
// event.
func (n *Node) LastEventSeq() uint64 { return n.events.Last() }

// Instance returns the local relay's instance: the cluster event log is
// this process's, and starts over when it restarts.
func (n *Node) Instance() string { return n.local.Instance() }

// CheckPayload checks a payload against the local relay's limits.
func (n *Node) CheckPayload(payload []byte) error { return n.local.CheckPayload(payload) }

// Serving is the local relay's: a node without NATS still serves its own
// clients.
func (n *Node) Serving() error { return n.local.Serving() }

// pumpEvents copies the local relay's events into the cluster log and
// publishes them, in batches, to the other nodes.
func (n *Node) pumpEvents() {
	defer n.wg.Done()
	buf := make([]relay.Event, 0, maxEventBatch)
	var e encoder
	from := uint64(1)
	for {
		evs, next, lost, wait := n.local.EventsSince(from, buf[:0], maxEventBatch)
		if lost > 0 {
			n.counters.eventsLost.Add(lost)
		}
		from = next
		if len(evs) > 0 {
			n.events.Append(evs...)
			if n.nc.IsConnected() {
				e.begin(opEvents, n.id)
				e.u64(evs[0].Seq)
				e.u16(uint16(len(evs)))
				for i := range evs {
					ev := &evs[i]
					e.u8(uint8(ev.Kind))
					e.u8(uint8(ev.Reason))
					e.u64(uint64(ev.Time))
					raw, _ := relay.ParseID(ev.ID)
					e.id(&raw)
					e.addr(ev.Remote)
				}
				if n.nc.Publish(n.subjEvts, e.b) == nil {
					n.counters.sent(opEvents, len(e.b))
				}
			}
		}
		if wait != nil {
			select {
			case <-wait:
			case <-n.stop:
				return
			}
		}
	}
}

// onEvents takes another node's batch of events into the cluster log.
func (n *Node) onEvents(m *nats.Msg) {
	d := decoder{}
	env, err := d.decode(m.Data)
	if err != nil || env.op != opEvents {
		n.counters.badEnvelopes.Add(1)
		return
	}
	n.counters.received(opEvents, len(m.Data))
	n.events.Append(env.events...)
}

// serve answers other nodes' requests, in the order they arrive, until
// Close.
func (n *Node) serve() {
	defer n.wg.Done()
	d := decoder{maxPayload: n.local.Config().MaxMessage}
	w := &worker{n: n}
	for {
		select {
		case <-n.stop:
			return
		case m := <-n.inbox:
			env, err := d.decode(m.Data)
			if err != nil || env.op&replyBit != 0 || env.op >= opHello {
				n.counters.badEnvelopes.Add(1)
				if n.counters.badEnvelopes.Load()%1000 == 1 {
					n.log.Warn("cluster: bad envelope from another node (counted; logged once per 1000)", "subject", m.Subject, "err", err)
				}
				continue
			}
			n.counters.received(env.op, len(m.Data))
			if m.Reply == "" {
				continue
			}
			w.answer(&env)
			if err := n.nc.Publish(m.Reply, w.e.b); err == nil {
				n.counters.sent(env.op|replyBit, len(w.e.b))
			}
		}
	}
}

// worker holds serve's scratch buffers.
type worker struct {
	n      *Node
	e      encoder
	idText []byte
	ids    []string
}

// idString views raw's text form, written into the worker's buffer, as a
// string valid until the next call (the relay does not keep IDs it looks
// up).
func (w *worker) idStrings(raws [][relay.IDBytes]byte) []string {
	need := len(raws) * relay.IDLen
	if cap(w.idText) < need {
		w.idText = make([]byte, need)
	}
	text := w.idText[:need]
	ids := w.ids[:0]
	for i := range raws {
		t := text[i*relay.IDLen : (i+1)*relay.IDLen]
		base64.RawURLEncoding.Encode(t, raws[i][:])
		ids = append(ids, unsafe.String(unsafe.SliceData(t), len(t)))
	}
	w.ids = ids
	return ids
}

// answer builds the reply to env in w.e.
func (w *worker) answer(env *envelope) {
	n, e := w.n, &w.e
	local := n.local
	e.begin(env.op|replyBit, n.id)
	switch env.op {
	case opSend:
		one := [1][relay.IDBytes]byte{env.id}
		st := local.Send(w.idStrings(one[:])[0], env.payload)
		var c relay.Counts
		c.Add(st)
		e.counts(st, c)
	case opSendMany:
		c, st := local.SendMany(w.idStrings(env.ids), env.payload)
		clear(w.ids)
		e.counts(st, c)
	case opPublish:
		c, st := local.Publish(env.topic, env.payload)
		e.counts(st, c)
	case opBroadcast:
		c, st := local.Broadcast(env.payload)
		e.counts(st, c)
	case opSubscribe, opUnsubscribe:
		one := [1][relay.IDBytes]byte{env.id}
		id := w.idStrings(one[:])[0]
		var changed int
		var err error
		if env.op == opSubscribe {
			changed, err = local.Subscribe(id, env.topics...)
		} else {
			changed, err = local.Unsubscribe(id, env.topics...)
		}
		if err != nil {
			e.u8(errKindOf(err))
		} else {
			e.u8(errNone)
		}
		e.u32(uint32(changed))
		if err != nil {
			e.str8(err.Error())
		} else {
			e.str8("")
		}
	case opKick:
		one := [1][relay.IDBytes]byte{env.id}
		e.u8(uint8(local.Kick(w.idStrings(one[:])[0])))
	case opInfo:
		one := [1][relay.IDBytes]byte{env.id}
		info, ok := local.Info(w.idStrings(one[:])[0])
		if ok {
			e.u8(1)
			e.u64(uint64(info.Since.UnixNano()))
		} else {
			e.u8(0)
			e.u64(0)
		}
		e.addr(info.Remote)
	case opList:
		ids, next, err := local.List(env.cursor, env.limit)
		if err != nil {
			e.u8(errKindOf(err))
			e.str8(err.Error())
			e.u16(0)
			return
		}
		e.u8(errNone)
		e.str8(next)
		e.u16(uint16(len(ids)))
		for _, id := range ids {
			raw, _ := relay.ParseID(id)
			e.id(&raw)
		}
	case opPresence:
		var ids []string
		var next string
		var count int
		var err error
		if env.limit == 0 {
			count = local.Subscribers(env.topic)
		} else {
			ids, next, count, err = local.Presence(env.topic, env.cursor, env.limit)
		}
		if err != nil {
			e.u8(errKindOf(err))
			e.u32(0)
			e.str8(err.Error())
			e.u16(0)
			return
		}
		e.u8(errNone)
		e.u32(uint32(count))
		e.str8(next)
		e.u16(uint16(len(ids)))
		for _, id := range ids {
			raw, _ := relay.ParseID(id)
			e.id(&raw)
		}
	case opPing:
		e.str8(local.Instance())
	}
}

func timeFromUnixNano(ns int64) time.Time { return time.Unix(0, ns) }

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
