package relay

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Flash socket policy: a Flash player that wants to open an XMLSocket first
// connects to the policy port (843), sends "<policy-file-request/>" and a
// 0x00, and expects the cross-domain policy followed by 0x00, after which
// the server closes. The relay writes the policy as soon as the connection
// opens, reads the request so the close is a clean FIN (closing with unread
// bytes would send an RST, and some players then discard the policy), and
// closes connections that stay longer than policyTimeout.
//
// The listener is Go's net, one goroutine per connection, not gnet: it
// serves a few players per second at most, and gnet v2.10.0 stops its
// whole engine when accept fails (EMFILE, ENFILE), where this loop backs off
// and keeps serving. At most Config.FlashPolicyMaxConns connections are
// open at once, inside the descriptor budget (Config.MaxConns' reserve);
// more are closed at once and counted.
const (
	policyTimeout    = 5 * time.Second
	policyMaxRequest = 256 // a request is 23 bytes; anything longer is not Flash

	// acceptBackoffMin and acceptBackoffMax bound the pause after accept
	// fails for want of descriptors or memory, doubling while it lasts.
	acceptBackoffMin = 5 * time.Millisecond
	acceptBackoffMax = time.Second
)

type policyServer struct {
	// Fixed after start.
	addr *net.TCPAddr
	doc  []byte // the policy and its 0x00
	log  *slog.Logger
	ln   net.Listener
	slot chan struct{} // one token per connection allowed open

	stopping atomic.Bool
	dead     chan struct{}         // closed when the accept loop ends
	deadErr  atomic.Pointer[error] // why it ended, if not stop
	wg       sync.WaitGroup        // the accept loop and connection goroutines

	// Counters; atomic.
	served       atomic.Uint64 // connections that were written the policy
	rejected     atomic.Uint64 // closed at once: FlashPolicyMaxConns open
	acceptErrors atomic.Uint64 // accept failures backed off from (EMFILE...)

	mu    sync.Mutex
	conns map[net.Conn]struct{} // guarded by mu: open connections, closed by stop
}

func startPolicy(listen string, maxConns int, doc []byte, log *slog.Logger) (*policyServer, error) {
	addr, err := reserveAddr(listen, false)
	if err != nil {
		return nil, err
	}
	lc := net.ListenConfig{Control: probeControl}
	ln, err := lc.Listen(context.Background(), "tcp", addr.String())
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	p := &policyServer{
		addr:  ln.Addr().(*net.TCPAddr),
		doc:   append(append([]byte(nil), doc...), 0),
		log:   log,
		ln:    ln,
		slot:  make(chan struct{}, maxConns),
		dead:  make(chan struct{}),
		conns: make(map[net.Conn]struct{}),
	}
	p.wg.Add(1)
	go p.acceptLoop()
	log.Info("flash policy listening", "addr", p.addr.String(), "max_conns", maxConns)
	return p, nil
}

// err returns why the listener stopped accepting while the relay ran, or
// nil. Safe for concurrent use.
func (p *policyServer) err() error {
	if e := p.deadErr.Load(); e != nil {
		return *e
	}
	return nil
}

// stop closes the listener and every open policy connection and waits for
// their goroutines.
func (p *policyServer) stop() {
	p.stopping.Store(true)
	_ = p.ln.Close()
	p.mu.Lock()
	for c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// acceptLoop accepts until stop. Running out of descriptors or memory is
// a pause, not an end: the relay's clients free descriptors as they leave,
// and the policy port answers again then.
func (p *policyServer) acceptLoop() {
	defer p.wg.Done()
	defer close(p.dead)
	var delay time.Duration
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if p.stopping.Load() {
				return
			}
			if isAcceptPause(err) {
				p.acceptErrors.Add(1)
				if delay == 0 {
					p.log.Warn("flash policy listener: accept failed, backing off until descriptors free up; if this repeats, raise RLIMIT_NOFILE or lower --max-conns",
						"addr", p.addr.String(), "err", err)
					delay = acceptBackoffMin
				} else {
					delay = min(2*delay, acceptBackoffMax)
				}
				time.Sleep(delay)
				continue
			}
			err = fmt.Errorf("the Flash policy listener on %s stopped: %w", p.addr, err)
			p.deadErr.Store(&err)
			p.log.Error("flash policy listener stopped; /healthz now fails: restart the relay", "err", err)
			return
		}
		delay = 0
		select {
		case p.slot <- struct{}{}:
		default:
			p.rejected.Add(1)
			_ = c.Close()
			continue
		}
		p.mu.Lock()
		if p.stopping.Load() {
			p.mu.Unlock()
			_ = c.Close()
			return
		}
		p.conns[c] = struct{}{}
		p.wg.Add(1)
		p.mu.Unlock()
		go p.serve(c)
	}
}

// isAcceptPause reports whether an accept error is a shortage that passes
// (descriptors, socket memory) rather than a broken listener.
func isAcceptPause(err error) bool {
	for _, e := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.ECONNABORTED} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// serve writes the policy, reads the request up to its 0x00 (or
// policyMaxRequest bytes, or policyTimeout) and closes.
func (p *policyServer) serve(c net.Conn) {
	defer func() {
		p.mu.Lock()
		delete(p.conns, c)
		p.mu.Unlock()
		_ = c.Close()
		<-p.slot
		p.wg.Done()
	}()
	_ = c.SetDeadline(time.Now().Add(policyTimeout))
	if _, err := c.Write(p.doc); err != nil {
		return
	}
	p.served.Add(1)
	var buf [policyMaxRequest + 1]byte
	read := 0
	for read <= policyMaxRequest {
		n, err := c.Read(buf[read:])
		if bytes.IndexByte(buf[read:read+n], 0) >= 0 || err != nil {
			return
		}
		read += n
	}
}
