package relay

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/panjf2000/gnet/v2"
)

// Flash socket policy: a Flash player that wants to open an XMLSocket first
// connects to the policy port (843), sends "<policy-file-request/>" and a
// 0x00, and expects the cross-domain policy followed by 0x00, after which
// the server closes. The relay writes the policy as soon as the connection
// opens, reads the request so the close is a clean FIN (closing with unread
// bytes would send an RST, and some players then discard the policy), and
// closes connections that stay longer than policyTimeout.
const (
	policyTimeout    = 5 * time.Second
	policyMaxRequest = 256 // a request is 23 bytes; anything longer is not Flash
)

type policyServer struct {
	// Fixed after start.
	addr *net.TCPAddr
	doc  []byte // the policy and its 0x00
	log  *slog.Logger

	engine gnet.Engine
	booted chan struct{}
	done   chan struct{}
	runErr error

	mu    sync.Mutex
	conns map[gnet.Conn]time.Time // guarded by mu: open connections and when they opened
}

// policyConn is a policy connection's loop-owned state.
type policyConn struct{ read int }

func startPolicy(listen string, doc []byte, log *slog.Logger) (*policyServer, error) {
	addr, err := reserveAddr(listen, false)
	if err != nil {
		return nil, err
	}
	p := &policyServer{
		addr:   addr,
		doc:    append(append([]byte(nil), doc...), 0),
		log:    log,
		booted: make(chan struct{}),
		done:   make(chan struct{}),
		conns:  make(map[gnet.Conn]time.Time),
	}
	go func() {
		p.runErr = gnet.Run(p, "tcp://"+addr.String(),
			gnet.WithNumEventLoop(1), gnet.WithReusePort(true), gnet.WithTicker(true),
			gnet.WithLogger(gnetLogger{}))
		close(p.done)
	}()
	select {
	case <-p.booted:
	case <-p.done:
		return nil, fmt.Errorf("start on %s: %w", addr, p.runErr)
	}
	log.Info("flash policy listening", "addr", addr.String())
	return p, nil
}

func (p *policyServer) stop() {
	select {
	case <-p.done:
	default:
		_ = p.engine.Stop(context.Background())
		<-p.done
	}
}

func (p *policyServer) OnBoot(eng gnet.Engine) gnet.Action {
	p.engine = eng
	close(p.booted)
	return gnet.None
}

func (p *policyServer) OnShutdown(gnet.Engine) {}

func (p *policyServer) OnOpen(c gnet.Conn) ([]byte, gnet.Action) {
	c.SetContext(&policyConn{})
	p.mu.Lock()
	p.conns[c] = time.Now()
	p.mu.Unlock()
	return p.doc, gnet.None
}

func (p *policyServer) OnTraffic(c gnet.Conn) gnet.Action {
	pc := c.Context().(*policyConn)
	buf, _ := c.Next(-1)
	pc.read += len(buf)
	if bytes.IndexByte(buf, 0) >= 0 || pc.read > policyMaxRequest {
		return gnet.Close
	}
	return gnet.None
}

func (p *policyServer) OnClose(c gnet.Conn, _ error) gnet.Action {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	return gnet.None
}

// OnTick runs on gnet's ticker goroutine, off the loop: it may only use
// Conn's goroutine-safe methods, here Close.
func (p *policyServer) OnTick() (time.Duration, gnet.Action) {
	cutoff := time.Now().Add(-policyTimeout)
	p.mu.Lock()
	for c, t := range p.conns {
		if t.Before(cutoff) {
			_ = c.Close()
		}
	}
	p.mu.Unlock()
	return time.Second, gnet.None
}
