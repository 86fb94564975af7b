package client

import (
	"context"
	"encoding/binary"
	"sync"
	"time"

	"github.com/pushrelay/pushrelay/ingress/wire"
)

// Event is a client's arrival or departure, or a gap in the stream.
type Event struct {
	Kind   wire.EventKind
	Seq    uint64    // for EventLost: the next event's sequence number
	Time   time.Time // connect and disconnect
	ID     string
	Remote string
	Reason string // disconnect: why the connection closed
	Node   uint16 // the relay node of the client, in a cluster (0 standalone)
	Lost   uint64 // EventLost: how many events were missed
}

// Watch is a stream of connect and disconnect events.
type Watch struct {
	// Instance is the relay process's random ID. If it differs from the
	// one a previous watch saw, the relay restarted: every client
	// reconnected with a new ID, and sequence numbers started over.
	Instance string
	// Last is the sequence number of the relay's latest event when the
	// watch began.
	Last uint64

	events chan Event
	mu     sync.Mutex
	err    error
	once   sync.Once
}

// WatchBuffer is how many events a Watch holds for a slow reader before
// the client's reader goroutine waits (which delays every reply on the
// connection: read events promptly, or use a Client of its own).
const WatchBuffer = 4096

// Watch starts streaming events from sequence number from on (0: only new
// ones). Events arrive on Events until the connection ends; Err then says
// why. To resume after a reconnect, watch again from the last Seq seen
// plus one.
func (c *Client) Watch(ctx context.Context, from uint64) (*Watch, error) {
	w := &Watch{events: make(chan Event, WatchBuffer)}
	cn, cl, req, err := c.start(wire.OpWatch, 0, w, func(b []byte) []byte {
		return binary.BigEndian.AppendUint64(b, from)
	})
	if err != nil {
		return nil, err
	}
	select {
	case <-cl.done:
	case <-ctx.Done():
		cn.mu.Lock()
		delete(cn.pending, req)
		delete(cn.watches, req)
		cn.mu.Unlock()
		return nil, ctx.Err()
	}
	defer callPool.Put(cl)
	if cl.err != nil {
		return nil, cl.err
	}
	r := wire.NewReader(cl.body)
	if cl.status != wire.StatusOK {
		cn.mu.Lock()
		delete(cn.watches, req)
		cn.mu.Unlock()
		return nil, &Error{Op: wire.OpWatch, Status: cl.status, Message: string(r.Str16("message"))}
	}
	w.Instance = string(r.Str8("instance"))
	w.Last = r.U64("last")
	return w, r.Err()
}

// Events returns the stream. It is closed when the watch ends.
func (w *Watch) Events() <-chan Event { return w.events }

// Err returns why the stream ended, once Events is closed.
func (w *Watch) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

func (w *Watch) deliver(kind wire.EventKind, body []byte) {
	r := wire.NewReader(body)
	ev := Event{Kind: kind, Seq: r.U64("seq")}
	if kind == wire.EventLost {
		ev.Lost = r.U64("lost")
	} else {
		ev.Time = time.Unix(0, int64(r.U64("time")))
		ev.ID = string(r.Str8("id"))
		ev.Remote = string(r.Str8("remote"))
		if kind == wire.EventDisconnect {
			ev.Reason = string(r.Str8("reason"))
		}
		if rest := r.Rest(); len(rest) >= 2 {
			ev.Node = binary.BigEndian.Uint16(rest)
		}
	}
	if r.Err() != nil {
		return
	}
	w.events <- ev
}

func (w *Watch) end(err error) {
	w.once.Do(func() {
		w.mu.Lock()
		w.err = err
		w.mu.Unlock()
		close(w.events)
	})
}
