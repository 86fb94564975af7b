package cluster

import (
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
)

// Requests and their replies. A node has one reply subscription,
// PREFIX.reply.NODE.INSTANCE.>; a request's reply subject appends
// BASE.INDEX, where BASE numbers the call and INDEX the request within it
// (send_many sends one request per node, all in one call). The reply
// subject, not the envelope, carries the numbers, so NATS's own "no
// responders" answer (an empty message with status 503, sent when nobody
// subscribes to the request's subject) finds its call too: a node that is
// gone answers at once, not after the timeout.

// outcome is what became of one request.
type outcome uint8

const (
	outPending      outcome = iota
	outReplied              // data holds the reply envelope
	outNoResponders         // nobody subscribes to the subject: the node is gone
	outTimeout              // no reply within Config.Timeout
	outUnsent               // not published: NATS is down (or the write failed)
)

// reply is one message on the reply subscription.
type reply struct {
	base   uint64
	idx    int
	data   []byte // the reply envelope; nil for no responders
	noResp bool
}

// call is one or more requests waiting for replies. Calls are pooled.
type call struct {
	base  uint64
	ch    chan reply
	timer *time.Timer
}

// callCap is how many replies a call buffers before its waiter reads them;
// more (a cluster of over 64 nodes answering at the same instant) are
// counted as late replies and their nodes as unreachable.
const callCap = 64

// calls matches replies to waiting calls. Safe for concurrent use.
type calls struct {
	prefix string // reply subject up to BASE, ending in '.'; fixed
	next   atomic.Uint64
	mu     sync.Mutex
	m      map[uint64]*call // guarded by mu
	pool   sync.Pool
	late   atomic.Uint64 // replies that found no waiter
}

func newCalls(prefix string) *calls {
	cs := &calls{prefix: prefix, m: map[uint64]*call{}}
	cs.pool.New = func() any {
		t := time.NewTimer(time.Hour)
		t.Stop()
		return &call{ch: make(chan reply, callCap), timer: t}
	}
	return cs
}

// start registers a call and arms its timer.
func (cs *calls) start(timeout time.Duration) *call {
	c := cs.pool.Get().(*call)
	c.base = cs.next.Add(1)
	cs.mu.Lock()
	cs.m[c.base] = c
	cs.mu.Unlock()
	c.timer.Reset(timeout)
	return c
}

// subject returns the reply subject of request idx of c (allocates).
func (cs *calls) subject(c *call, idx int) string {
	var buf [96]byte
	b := append(buf[:0], cs.prefix...)
	b = strconv.AppendUint(b, c.base, 10)
	b = append(b, '.')
	b = strconv.AppendUint(b, uint64(idx), 10)
	return string(b)
}

// finish unregisters c and returns it to the pool. Replies that arrive
// later find no call and are counted as late.
func (cs *calls) finish(c *call) {
	cs.mu.Lock()
	delete(cs.m, c.base)
	cs.mu.Unlock()
	c.timer.Stop()
	for {
		select {
		case <-c.ch: // a reply that raced the unregistering
			cs.late.Add(1)
			continue
		default:
		}
		break
	}
	cs.pool.Put(c)
}

// deliver hands a message of the reply subscription to its call. It runs
// on the subscription's goroutine and never blocks.
func (cs *calls) deliver(m *nats.Msg) {
	rest, ok := strings.CutPrefix(m.Subject, cs.prefix)
	if !ok {
		return
	}
	b, i, ok := strings.Cut(rest, ".")
	base, err1 := strconv.ParseUint(b, 10, 64)
	idx, err2 := strconv.Atoi(i)
	if !ok || err1 != nil || err2 != nil {
		return
	}
	r := reply{base: base, idx: idx, data: m.Data}
	if len(m.Data) == 0 && m.Header.Get("Status") == "503" {
		r.noResp, r.data = true, nil
	}
	cs.mu.Lock()
	c := cs.m[base]
	if c != nil {
		select {
		case c.ch <- r:
		default:
			c = nil
		}
	}
	cs.mu.Unlock()
	if c == nil {
		cs.late.Add(1)
	}
}
