// Package client is the Go client of the relay's Unix-socket ingress. One
// Client holds one connection and pipelines requests from any number of
// goroutines over it: requests made at the same time go out in one write,
// and each caller waits only for its own reply.
package client

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"sync"
	"time"

	"github.com/pushrelay/pushrelay/ingress/wire"
)

// Counts says what became of a push's recipients.
type Counts = wire.Counts

// Error is a reply with a status other than OK.
type Error struct {
	Op      wire.Op
	Status  wire.Status
	Message string
}

func (e *Error) Error() string { return e.Message }

// StatusOf returns the status of a relay error, StatusOK for nil, and
// StatusUnavailable for errors that never reached the relay.
func StatusOf(err error) wire.Status {
	var e *Error
	switch {
	case err == nil:
		return wire.StatusOK
	case errors.As(err, &e):
		return e.Status
	}
	return wire.StatusUnavailable
}

// ErrConnLost: the connection broke while the request was in flight; the
// relay may or may not have carried it out.
var ErrConnLost = errors.New("connection to the relay lost")

// ErrClosed: the Client was closed.
var ErrClosed = errors.New("client closed")

// Options tune a Client.
type Options struct {
	// DialTimeout bounds each connection attempt. Default 2s.
	DialTimeout time.Duration
	// OnError receives error replies to requests sent without waiting
	// (SendNoReply). Called on the client's reader goroutine; keep it
	// short. Default: ignore.
	OnError func(error)
}

// Client is a connection to the relay's ingress socket. Safe for concurrent
// use. It dials again by itself on the next request after the connection
// breaks (for example, when the relay restarted).
type Client struct {
	path string
	opts Options

	mu      sync.Mutex
	conn    *conn // guarded by mu; nil when not connected
	nextReq uint32
	closed  bool
}

// conn is one connection's state.
type conn struct {
	nc net.Conn

	wmu     sync.Mutex // held while writing to nc: one write at a time
	mu      sync.Mutex // guards out, pending, watches, ended, err
	out     []byte
	spare   []byte
	pending map[uint32]*call
	watches map[uint32]*Watch
	ended   []*Watch // taken from watches by fail; the reader ends them
	err     error    // set once the connection broke
	kick    chan struct{}
	done    chan struct{} // closed when the reader exits
}

type call struct {
	op     wire.Op
	status wire.Status
	body   []byte
	err    error
	done   chan struct{}
}

var callPool = sync.Pool{New: func() any { return &call{done: make(chan struct{}, 1)} }}

// Dial connects to the relay's ingress socket at path.
func Dial(path string, opts Options) (*Client, error) {
	if opts.DialTimeout <= 0 {
		opts.DialTimeout = 2 * time.Second
	}
	c := &Client{path: path, opts: opts}
	c.mu.Lock()
	_, err := c.connLocked()
	c.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return c, nil
}

// connLocked returns the live connection, dialling if there is none.
// c.mu is held on entry.
func (c *Client) connLocked() (*conn, error) {
	if c.closed {
		return nil, ErrClosed
	}
	if c.conn != nil {
		c.conn.mu.Lock()
		broken := c.conn.err != nil
		c.conn.mu.Unlock()
		if !broken {
			return c.conn, nil
		}
		c.conn = nil
	}
	nc, err := net.DialTimeout("unix", c.path, c.opts.DialTimeout)
	if err != nil {
		return nil, fmt.Errorf("relay not reachable at %s (is `pushrelay serve` running with --ingress %s?): %w", c.path, c.path, err)
	}
	cn := &conn{
		nc:      nc,
		pending: map[uint32]*call{},
		watches: map[uint32]*Watch{},
		kick:    make(chan struct{}, 1),
		done:    make(chan struct{}),
	}
	go cn.writer()
	go cn.reader(c.opts.OnError)
	c.conn = cn
	return cn, nil
}

// Close closes the connection. Requests in flight fail with ErrClosed.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	if c.conn != nil {
		c.conn.fail(ErrClosed)
		<-c.conn.done
		c.conn = nil
	}
	return nil
}

// start queues one request frame built by body and returns its call (nil
// for no-reply requests).
func (c *Client) start(op wire.Op, flags uint8, watch *Watch, body func([]byte) []byte) (*conn, *call, uint32, error) {
	c.mu.Lock()
	cn, err := c.connLocked()
	if err != nil {
		c.mu.Unlock()
		return nil, nil, 0, err
	}
	c.nextReq++
	if c.nextReq == 0 {
		c.nextReq = 1 // 0 is the relay's "no request" in connection errors
	}
	req := c.nextReq
	c.mu.Unlock()

	var cl *call
	if flags&wire.FlagNoReply == 0 {
		cl = callPool.Get().(*call)
		cl.op, cl.status, cl.body, cl.err = op, 0, cl.body[:0], nil
	}
	cn.mu.Lock()
	if cn.err != nil {
		err := cn.err
		cn.mu.Unlock()
		if cl != nil {
			callPool.Put(cl)
		}
		return nil, nil, 0, err
	}
	if cl != nil {
		cn.pending[req] = cl
	}
	if watch != nil {
		cn.watches[req] = watch
	}
	b, start := wire.BeginFrame(cn.out, uint8(op), flags, req)
	b = body(b)
	wire.PatchLen(b, start)
	cn.out = b
	cn.mu.Unlock()
	// A request that waits for its reply is written by its caller when no
	// write is under way: a hand-off to the writer goroutine costs a
	// wake-up on every request (tens of microseconds of latency). Requests
	// without a reply are the throughput path: the writer batches them
	// (one write for many), as it does a request that finds a write under
	// way.
	if flags&wire.FlagNoReply == 0 && cn.wmu.TryLock() {
		err := cn.flush(time.Now().Add(directWriteTimeout))
		cn.wmu.Unlock()
		if err != nil {
			cn.fail(fmt.Errorf("%w: write: %v", ErrConnLost, err))
		}
		return cn, cl, req, nil
	}
	select {
	case cn.kick <- struct{}{}:
	default:
	}
	return cn, cl, req, nil
}

// directWriteTimeout bounds a caller's own write: a relay that stops
// reading fails the connection rather than holding the caller.
const directWriteTimeout = 30 * time.Second

// flush writes what is queued, if anything. cn.wmu is held on entry: one
// flush at a time, so the two buffers are never the same array.
func (cn *conn) flush(deadline time.Time) error {
	cn.mu.Lock()
	if len(cn.out) == 0 {
		cn.mu.Unlock()
		return nil
	}
	out := cn.out
	cn.out = cn.spare[:0]
	cn.mu.Unlock()
	cn.nc.SetWriteDeadline(deadline)
	_, err := cn.nc.Write(out)
	cn.mu.Lock()
	cn.spare = out[:0]
	cn.mu.Unlock()
	return err
}

// do sends a request and waits for its reply. The returned body is valid
// until the next call of fn's caller... it is copied for the caller.
func (c *Client) do(ctx context.Context, op wire.Op, body func([]byte) []byte, parse func(wire.Reader) error) error {
	cn, cl, req, err := c.start(op, 0, nil, body)
	if err != nil {
		return err
	}
	select {
	case <-cl.done:
	case <-ctx.Done():
		// The reply, when it comes, is dropped by the reader.
		cn.mu.Lock()
		if _, still := cn.pending[req]; still {
			delete(cn.pending, req)
			cn.mu.Unlock()
			return ctx.Err()
		}
		cn.mu.Unlock()
		<-cl.done // the reader is delivering it right now
	}
	defer callPool.Put(cl)
	if cl.err != nil {
		return cl.err
	}
	if cl.status != wire.StatusOK {
		r := wire.NewReader(cl.body)
		return &Error{Op: op, Status: cl.status, Message: string(r.Str16("message"))}
	}
	if parse == nil {
		return nil
	}
	r := wire.NewReader(cl.body)
	if err := parse(r); err != nil {
		return fmt.Errorf("%s: malformed reply from the relay: %w", op, err)
	}
	return nil
}

// writer sends what requests queued while another write was under way,
// in as few writes as it can.
func (cn *conn) writer() {
	for {
		select {
		case <-cn.kick:
		case <-cn.done:
			return
		}
		cn.wmu.Lock()
		err := cn.flush(time.Time{})
		cn.wmu.Unlock()
		if err != nil {
			cn.fail(fmt.Errorf("%w: write: %v", ErrConnLost, err))
			return
		}
	}
}

// reader delivers replies and events until the connection breaks.
func (cn *conn) reader(onError func(error)) {
	defer func() {
		// Only this goroutine sends on a watch's channel, so only it may
		// close one: fail, which any goroutine may call, leaves that here.
		cn.mu.Lock()
		ended, err := cn.ended, cn.err
		cn.ended = nil
		cn.mu.Unlock()
		for _, w := range ended {
			w.end(err)
		}
		close(cn.done)
	}()
	br := bufio.NewReaderSize(cn.nc, 64<<10)
	var hdr [wire.HeaderLen]byte
	for {
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			cn.fail(fmt.Errorf("%w: %v", ErrConnLost, err))
			return
		}
		h, err := wire.ParseHeader(hdr[:], math.MaxInt32)
		if err != nil {
			cn.fail(fmt.Errorf("%w: %v", ErrConnLost, err))
			return
		}
		body := make([]byte, h.BodyLen())
		if _, err := io.ReadFull(br, body); err != nil {
			cn.fail(fmt.Errorf("%w: %v", ErrConnLost, err))
			return
		}
		if h.Kind == wire.KindEvent {
			cn.mu.Lock()
			w := cn.watches[h.Request]
			cn.mu.Unlock()
			if w != nil {
				w.deliver(wire.EventKind(h.Flags), body)
			}
			continue
		}
		cn.mu.Lock()
		cl := cn.pending[h.Request]
		delete(cn.pending, h.Request)
		cn.mu.Unlock()
		if cl == nil {
			if h.Flags != uint8(wire.StatusOK) {
				r := wire.NewReader(body)
				e := &Error{Op: wire.Op(h.Kind &^ wire.ReplyBit), Status: wire.Status(h.Flags), Message: string(r.Str16("message"))}
				if h.Request == 0 {
					// The relay is closing the connection on us.
					cn.fail(e)
					return
				}
				if onError != nil {
					onError(e)
				}
			}
			continue
		}
		cl.status, cl.body = wire.Status(h.Flags), body
		cl.done <- struct{}{}
	}
}

// fail breaks the connection: every waiting call gets err.
func (cn *conn) fail(err error) {
	cn.mu.Lock()
	if cn.err != nil {
		cn.mu.Unlock()
		return
	}
	cn.err = err
	pending := cn.pending
	for _, w := range cn.watches {
		cn.ended = append(cn.ended, w)
	}
	cn.pending, cn.watches = map[uint32]*call{}, map[uint32]*Watch{}
	cn.mu.Unlock()
	cn.nc.Close() // the reader then stops, and ends the watches
	for _, cl := range pending {
		cl.err = err
		cl.done <- struct{}{}
	}
}

// Send pushes payload to one client. A client whose transport cannot
// carry the payload (an SSE client and bytes that are not UTF-8; a tcp
// client and a byte its framing forbids) is an *Error with status
// wire.StatusUnsupported; pushes to many count such clients in
// Counts.Unsupported instead.
func (c *Client) Send(ctx context.Context, id string, payload []byte) (Counts, error) {
	return c.push(ctx, wire.OpSend, func(b []byte) []byte {
		return append(wire.AppendStr8(b, id), payload...)
	})
}

// SendNoReply pushes without waiting for, or getting, a success reply: the
// fastest way to push. An error reply goes to Options.OnError.
func (c *Client) SendNoReply(id string, payload []byte) error {
	_, _, _, err := c.start(wire.OpSend, wire.FlagNoReply, nil, func(b []byte) []byte {
		return append(wire.AppendStr8(b, id), payload...)
	})
	return err
}

// SendMany pushes one payload to each of ids.
func (c *Client) SendMany(ctx context.Context, ids []string, payload []byte) (Counts, error) {
	if len(ids) > math.MaxUint16 {
		return Counts{}, fmt.Errorf("send_many: %d IDs; one request carries at most %d", len(ids), math.MaxUint16)
	}
	return c.push(ctx, wire.OpSendMany, func(b []byte) []byte {
		b = binary.BigEndian.AppendUint16(b, uint16(len(ids)))
		for _, id := range ids {
			b = wire.AppendStr8(b, id)
		}
		return append(b, payload...)
	})
}

// Publish pushes payload to every client subscribed to topic.
func (c *Client) Publish(ctx context.Context, topic string, payload []byte) (Counts, error) {
	return c.push(ctx, wire.OpPublish, func(b []byte) []byte {
		return append(wire.AppendStr8(b, topic), payload...)
	})
}

// Broadcast pushes payload to every connected client.
func (c *Client) Broadcast(ctx context.Context, payload []byte) (Counts, error) {
	return c.push(ctx, wire.OpBroadcast, func(b []byte) []byte { return append(b, payload...) })
}

func (c *Client) push(ctx context.Context, op wire.Op, body func([]byte) []byte) (Counts, error) {
	var counts Counts
	err := c.do(ctx, op, body, func(r wire.Reader) error {
		counts = r.Counts()
		r.End()
		return r.Err()
	})
	return counts, err
}

// Subscribe adds client id to topics and returns how many subscriptions it
// added.
func (c *Client) Subscribe(ctx context.Context, id string, topics ...string) (int, error) {
	return c.topicOp(ctx, wire.OpSubscribe, id, topics)
}

// Unsubscribe removes client id from topics and returns how many
// subscriptions it removed.
func (c *Client) Unsubscribe(ctx context.Context, id string, topics ...string) (int, error) {
	return c.topicOp(ctx, wire.OpUnsubscribe, id, topics)
}

func (c *Client) topicOp(ctx context.Context, op wire.Op, id string, topics []string) (int, error) {
	for _, t := range topics {
		if len(t) > wire.MaxStr8 {
			return 0, fmt.Errorf("%s: topic of %d bytes; topics are at most %d", op, len(t), wire.MaxStr8)
		}
	}
	var n uint32
	err := c.do(ctx, op, func(b []byte) []byte {
		b = wire.AppendStr8(b, id)
		b = binary.BigEndian.AppendUint16(b, uint16(len(topics)))
		for _, t := range topics {
			b = wire.AppendStr8(b, t)
		}
		return b
	}, func(r wire.Reader) error {
		n = r.U32("count")
		r.End()
		return r.Err()
	})
	return int(n), err
}

// Kick closes client id's connection, after what was queued for it.
func (c *Client) Kick(ctx context.Context, id string) error {
	return c.do(ctx, wire.OpKick, func(b []byte) []byte { return wire.AppendStr8(b, id) }, nil)
}

// Info describes a client.
type Info struct {
	Connected bool
	Since     time.Time
	Remote    string
}

// Info asks whether client id is connected, since when and from where.
func (c *Client) Info(ctx context.Context, id string) (Info, error) {
	var info Info
	err := c.do(ctx, wire.OpInfo, func(b []byte) []byte { return wire.AppendStr8(b, id) }, func(r wire.Reader) error {
		info.Connected = r.U8("connected") == 1
		since := int64(r.U64("since"))
		info.Remote = string(r.Str8("remote"))
		r.End()
		if info.Connected {
			info.Since = time.Unix(0, since)
		}
		return r.Err()
	})
	return info, err
}

// List returns up to limit connected IDs after cursor ("" to start) and
// the next cursor ("" after the last page).
func (c *Client) List(ctx context.Context, cursor string, limit int) ([]string, string, error) {
	var ids []string
	var next string
	err := c.do(ctx, wire.OpList, func(b []byte) []byte {
		b = wire.AppendStr8(b, cursor)
		return binary.BigEndian.AppendUint16(b, uint16(min(limit, math.MaxUint16)))
	}, func(r wire.Reader) error {
		ids, next = readIDPage(&r)
		return r.Err()
	})
	return ids, next, err
}

// readIDPage reads the rest of a reply that is a page of IDs: str8 next
// cursor, u16 n, n × str8 id, and nothing after them.
func readIDPage(r *wire.Reader) (ids []string, next string) {
	next = string(r.Str8("next cursor"))
	n := int(r.U16("count"))
	ids = make([]string, 0, n)
	for i := 0; i < n && r.Err() == nil; i++ {
		ids = append(ids, string(r.Str8("id")))
	}
	r.End()
	return ids, next
}

// Presence returns up to limit IDs (0: the most, 10,000) of the clients
// subscribed to topic after cursor ("" to start), the next cursor ("" after
// the last page) and the topic's subscriber count. A page may be empty
// while the next cursor is not: keep paging until it is "".
func (c *Client) Presence(ctx context.Context, topic, cursor string, limit int) (ids []string, next string, count int, err error) {
	if len(topic) > wire.MaxStr8 || len(cursor) > wire.MaxStr8 {
		return nil, "", 0, fmt.Errorf("presence: topic and cursor are at most %d bytes", wire.MaxStr8)
	}
	err = c.do(ctx, wire.OpPresence, func(b []byte) []byte {
		b = wire.AppendStr8(b, topic)
		b = wire.AppendStr8(b, cursor)
		return binary.BigEndian.AppendUint16(b, uint16(min(max(limit, 0), math.MaxUint16)))
	}, func(r wire.Reader) error {
		count = int(r.U32("subscribers"))
		ids, next = readIDPage(&r)
		return r.Err()
	})
	return ids, next, count, err
}

// Stat is one counter or gauge of the relay.
type Stat struct {
	Name, Labels string
	Value        float64
}

// Stats returns every counter and gauge of the relay.
func (c *Client) Stats(ctx context.Context) ([]Stat, error) {
	var stats []Stat
	err := c.do(ctx, wire.OpStats, func(b []byte) []byte { return b }, func(r wire.Reader) error {
		n := int(r.U16("count"))
		for i := 0; i < n && r.Err() == nil; i++ {
			s := Stat{Name: string(r.Str8("name")), Labels: string(r.Str8("labels"))}
			s.Value = math.Float64frombits(r.U64("value"))
			stats = append(stats, s)
		}
		r.End()
		return r.Err()
	})
	return stats, err
}

// Ping round-trips an empty request.
func (c *Client) Ping(ctx context.Context) error {
	return c.do(ctx, wire.OpPing, func(b []byte) []byte { return b }, nil)
}
