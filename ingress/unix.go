package ingress

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pushrelay/pushrelay/ingress/wire"
)

// UnixServer serves the ingress protocol on a Unix socket. Each connection
// is served by one goroutine that reads requests, calls the relay and
// appends replies; replies are flushed when no further request is already
// buffered, so a pipelining client gets them in batches, or once
// maxPendingReplies bytes of them wait: the flush blocks while the client
// does not read, so the relay stops reading requests and the client's
// writes block, whatever the client's write boundaries.
type UnixServer struct {
	// Fixed after ListenUnix.
	cfg   Config
	relay Relay
	ln    *net.UnixListener
	log   *slog.Logger

	mu     sync.Mutex
	conns  map[*ingressConn]struct{} // guarded by mu
	closed bool                      // guarded by mu

	wg       sync.WaitGroup
	counters Counters
}

// Counters are the ingress's own counters. Atomic.
type Counters struct {
	Requests  atomic.Uint64 // requests decoded
	Errors    atomic.Uint64 // error replies
	Conns     atomic.Int64  // ingress connections open
	Refused   atomic.Uint64 // connections refused over MaxConns
	BadFrames atomic.Uint64 // connections closed for untrustworthy framing
	// FrameTimeouts counts connections closed because a frame was not
	// completed within Config.FrameTimeout.
	FrameTimeouts atomic.Uint64
}

// ListenUnix creates the socket (replacing a stale file, refusing a live
// relay's) and returns a server ready to Serve. maxMessage is the relay's
// --max-message, which the request limit must hold.
func ListenUnix(cfg Config, r Relay, maxMessage int) (*UnixServer, error) {
	cfg, err := cfg.withDefaults(maxMessage)
	if err != nil {
		return nil, err
	}
	ln, err := listenSocket(cfg.Path, cfg.Mode, "ingress")
	if err != nil {
		return nil, err
	}
	return &UnixServer{cfg: cfg, relay: r, ln: ln, log: cfg.Logger, conns: map[*ingressConn]struct{}{}}, nil
}

// Path returns the socket's path.
func (s *UnixServer) Path() string { return s.cfg.Path }

// Counters returns the ingress counters.
func (s *UnixServer) Counters() *Counters { return &s.counters }

// Serve accepts connections until Close. It returns nil after Close.
func (s *UnixServer) Serve() error {
	s.log.Info("ingress listening", "socket", s.cfg.Path, "mode", fmt.Sprintf("%#o", s.cfg.Mode), "max_conns", s.cfg.MaxConns, "max_request", s.cfg.MaxRequest, "frame_timeout", s.cfg.FrameTimeout.String())
	var delay time.Duration
	for {
		nc, err := s.ln.AcceptUnix()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed {
				return nil
			}
			var retry bool
			if delay, retry = retryAccept(err, delay, s.log, "ingress accept failed; retrying"); retry {
				continue
			}
			return fmt.Errorf("ingress: accept: %w", err)
		}
		delay = 0
		c := newIngressConn(s, nc)
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			nc.Close()
			return nil
		}
		if len(s.conns) >= s.cfg.MaxConns {
			s.mu.Unlock()
			s.counters.Refused.Add(1)
			go refuse(nc, s.cfg.MaxConns)
			continue
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		s.counters.Conns.Add(1)
		go func() {
			defer s.wg.Done()
			c.serve()
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
			s.counters.Conns.Add(-1)
		}()
	}
}

// refuse tells a connection over the limit why, then closes it.
func refuse(nc net.Conn, max int) {
	msg := fmt.Sprintf("too many ingress connections: %d are open, the most allowed (pipeline requests on fewer connections)", max)
	b, start := wire.BeginFrame(nil, 0|wire.ReplyBit, uint8(wire.StatusNotAllowed), 0)
	b = wire.AppendStr16(b, msg)
	wire.PatchLen(b, start)
	nc.SetWriteDeadline(time.Now().Add(time.Second))
	nc.Write(b)
	nc.Close()
}

// Close stops accepting, closes every connection, waits for their
// goroutines, and removes the socket file.
func (s *UnixServer) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	err := s.ln.Close()
	for c := range s.conns {
		c.close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	if rmErr := os.Remove(s.cfg.Path); rmErr != nil && !errors.Is(rmErr, os.ErrNotExist) && err == nil {
		err = rmErr
	}
	return err
}

// ingressConn is one ingress connection.
type ingressConn struct {
	// Fixed after creation.
	srv *UnixServer
	nc  *net.UnixConn
	br  *bufio.Reader

	// Owned by the serving goroutine.
	hdr      [wire.HeaderLen]byte
	body     []byte
	ids      []string
	topics   []string
	watches  int
	deadline bool      // a read deadline is set on nc (a frame is being read)
	batch    time.Time // when the first request of a timed batch was read (metrics.go)
	batches  uint32    // batches flushed, to pick the timed ones

	// wmu serialises flushes (the serving goroutine's and watches').
	wmu sync.Mutex
	// Guarded by mu: the reply buffer, shared with watch goroutines.
	mu      sync.Mutex
	out     []byte
	spare   []byte
	writeEr error
	// pending is len(out), stored under mu and read by the serving
	// goroutine without it, to decide when to flush.
	pending atomic.Int64

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // watch goroutines
}

func newIngressConn(s *UnixServer, nc *net.UnixConn) *ingressConn {
	ctx, cancel := context.WithCancel(context.Background())
	return &ingressConn{
		srv:    s,
		nc:     nc,
		br:     bufio.NewReaderSize(nc, 64<<10),
		out:    make([]byte, 0, 64<<10),
		spare:  make([]byte, 0, 64<<10),
		ctx:    ctx,
		cancel: cancel,
	}
}

func (c *ingressConn) close() {
	c.cancel()
	c.nc.Close()
}

// serve reads and answers requests until the peer closes, the framing
// breaks, or the server closes.
func (c *ingressConn) serve() {
	defer func() {
		c.cancel()
		c.wg.Wait()
		c.flush()
		c.nc.Close()
	}()
	for {
		if !c.startFrame() {
			return
		}
		if _, err := io.ReadFull(c.br, c.hdr[:4]); err != nil {
			c.readFailed(err, "inside a header")
			return
		}
		err := wire.CheckLen(c.hdr[:4], c.srv.cfg.MaxRequest)
		if err == nil {
			if _, err := io.ReadFull(c.br, c.hdr[4:]); err != nil {
				c.readFailed(err, "inside a header")
				return
			}
		}
		h, _ := wire.ParseHeader(c.hdr[:], c.srv.cfg.MaxRequest)
		if err != nil {
			// The next frame cannot be found: say why and hang up.
			c.srv.counters.BadFrames.Add(1)
			st := wire.StatusBadRequest
			if errors.Is(err, wire.ErrFrameTooLarge) {
				st = wire.StatusTooLarge
			}
			c.fail(0, 0, st, err.Error()+"; closing the connection")
			c.hangUp()
			return
		}
		n := h.BodyLen()
		if cap(c.body) < n {
			c.body = make([]byte, n)
		}
		c.body = c.body[:n]
		if _, err := io.ReadFull(c.br, c.body); err != nil {
			c.readFailed(err, "inside a frame")
			return
		}
		c.srv.counters.Requests.Add(1)
		if c.batches%latencySample == 0 && c.batch.IsZero() {
			c.batch = time.Now()
		}
		c.handle(h, c.body)
		// Flush when no request waits, or when the replies pass the bound
		// whatever waits: a client that writes without reading then
		// blocks this goroutine in the write, which stops it reading.
		if c.br.Buffered() == 0 || c.pending.Load() >= maxPendingReplies {
			err := c.flush()
			if !c.batch.IsZero() {
				batchLatency.observe(time.Since(c.batch))
				c.batch = time.Time{}
			}
			c.batches++
			if err != nil {
				return
			}
		}
	}
}

// maxPendingReplies is how many bytes of replies may wait while requests
// are already read behind them: past it the connection writes them before
// it reads on. docs/protocol.md states it.
const maxPendingReplies = 64 << 10

// startFrame waits for the first byte of the next frame, with no deadline:
// a connection may idle between frames for as long as it likes (web apps
// keep pools). Once the frame has begun and is not already read whole, it
// sets a read deadline FrameTimeout ahead, so a partial frame cannot hold
// the connection. The deadline is set after any flush, so a client that is
// slow to read replies does not eat into it. It reports false when the
// connection ended.
func (c *ingressConn) startFrame() bool {
	if c.br.Buffered() == 0 {
		if c.deadline {
			c.nc.SetReadDeadline(time.Time{})
			c.deadline = false
		}
		if _, err := c.br.Peek(1); err != nil {
			c.readFailed(err, "")
			return false
		}
	}
	if c.frameBuffered() {
		return true // no read will wait: no deadline needed
	}
	c.nc.SetReadDeadline(time.Now().Add(c.srv.cfg.FrameTimeout))
	c.deadline = true
	return true
}

// frameBuffered reports whether the whole next frame is already read.
func (c *ingressConn) frameBuffered() bool {
	n := c.br.Buffered()
	if n < 4 {
		return false
	}
	b, _ := c.br.Peek(4)
	return uint64(n) >= uint64(binary.BigEndian.Uint32(b))+4
}

// readFailed ends a connection whose read failed: the peer closed, the
// server closed it, or a frame's deadline passed, which it tells the
// client before hanging up.
func (c *ingressConn) readFailed(err error, where string) {
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		c.srv.counters.FrameTimeouts.Add(1)
		c.fail(0, 0, wire.StatusBadRequest, fmt.Sprintf("a request frame was not completed within %v (--ingress-frame-timeout); closing the connection: write each request whole", c.srv.cfg.FrameTimeout))
		c.hangUp()
	case where == "" && (errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed)):
	default:
		c.srv.log.Debug("ingress connection ended "+where, "err", err)
	}
}

// reply appends a whole frame built by fn to the output buffer.
func (c *ingressConn) reply(kind, flags uint8, request uint32, fn func([]byte) []byte) {
	c.mu.Lock()
	b, start := wire.BeginFrame(c.out, kind, flags, request)
	b = fn(b)
	wire.PatchLen(b, start)
	c.out = b
	c.pending.Store(int64(len(b)))
	c.mu.Unlock()
}

// fail appends an error reply.
func (c *ingressConn) fail(op wire.Op, request uint32, st wire.Status, msg string) {
	c.srv.counters.Errors.Add(1)
	c.mu.Lock()
	b, start := wire.BeginFrame(c.out, uint8(op)|wire.ReplyBit, uint8(st), request)
	b = wire.AppendStr16(b, msg)
	wire.PatchLen(b, start)
	c.out = b
	c.pending.Store(int64(len(b)))
	c.mu.Unlock()
}

// replyWriteTimeout is how long a reply write may block before the relay
// gives up on the connection.
const replyWriteTimeout = 30 * time.Second

// hangUp ends a connection whose framing broke: it sends what is buffered
// (the error reply), stops writing, and reads and discards what the client
// still sends for a while, so closing does not reset the connection and
// destroy the reply before the client reads it.
func (c *ingressConn) hangUp() {
	c.flush()
	c.nc.CloseWrite()
	c.nc.SetReadDeadline(time.Now().Add(time.Second))
	io.CopyN(io.Discard, c.br, 16<<20)
}

// flush writes the output buffer. Swapping buffers lets watch goroutines
// append while the write is in progress.
func (c *ingressConn) flush() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.mu.Lock()
	if c.writeEr != nil || len(c.out) == 0 {
		err := c.writeEr
		c.mu.Unlock()
		return err
	}
	out := c.out
	c.out = c.spare[:0]
	c.pending.Store(0)
	c.mu.Unlock()
	// A client that stops reading would block this goroutine forever.
	c.nc.SetWriteDeadline(time.Now().Add(replyWriteTimeout))
	_, err := c.nc.Write(out)
	c.mu.Lock()
	c.spare = out[:0]
	if err != nil && c.writeEr == nil {
		c.writeEr = err
	}
	c.mu.Unlock()
	return err
}
