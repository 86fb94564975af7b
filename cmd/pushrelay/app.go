package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"

	"github.com/pushrelay/pushrelay/cluster"
	"github.com/pushrelay/pushrelay/ingress"
	"github.com/pushrelay/pushrelay/internal/readyfile"
	"github.com/pushrelay/pushrelay/relay"
)

// app is one running `pushrelay serve`: the relay, its cluster node, the
// ingress listeners and the ready file. Start brings them up in order and
// records how to undo each step; Close undoes exactly the steps Start
// took, in reverse order, whether Start finished or failed half-way.
type app struct {
	srv  *relay.Server
	node *cluster.Node
	unix *ingress.UnixServer
	http *ingress.HTTPServer
	// ingressErr receives what an ingress Serve returned.
	ingressErr chan error
	undo       []func() error
}

// exitError carries the exit status of a failed start: 2 for a bad
// configuration, 1 for a failure of the host (a port taken, ...).
type exitError struct {
	status int
	err    error
}

func (e exitError) Error() string { return e.err.Error() }
func (e exitError) Unwrap() error { return e.err }

// exitStatus is the process's exit status after err.
func exitStatus(err error) int {
	var e exitError
	if errors.As(err, &e) {
		return e.status
	}
	return 1
}

// listenError is the exit status of an ingress listener's failure.
func listenError(err error) error {
	if errors.Is(err, ingress.ErrBadConfig) {
		return exitError{2, err}
	}
	return err
}

// onClose records how to undo a step Start took.
func (a *app) onClose(f func() error) { a.undo = append(a.undo, f) }

// Start brings the relay up from c. On an error it has already undone
// what it did.
func (a *app) Start(c *serveConfig) (err error) {
	defer func() {
		if err != nil {
			a.Close()
		}
	}()
	if a.srv, err = relay.New(c.Relay); err != nil {
		return exitError{2, err}
	}
	// The ingress talks to the relay, or, in a cluster, to the node that
	// routes each push to the relay holding its clients.
	var rel ingress.Relay = a.srv
	if c.Cluster.NATS != "" {
		if a.node, err = cluster.New(c.Cluster, a.srv); err != nil {
			return exitError{2, err}
		}
		rel = a.node
	}
	if os.Getenv("GOMAXPROCS") == "" {
		// gnet's event loops wait in epoll_wait as plain system calls and
		// keep their P while they wait. With GOMAXPROCS equal to the loop
		// count (Go's default on a host with one loop per core), the
		// ingress goroutines then wait for sysmon to take a P back, up to
		// 10 ms (measured: a push's p99 of 5 ms at 1,000 pushes/s, 92 us
		// with one P more). The loops' Ps are mostly idle, so one extra
		// P costs nothing when nothing waits.
		loops := c.Relay.Loops
		if loops == 0 {
			loops = runtime.NumCPU()
		}
		runtime.GOMAXPROCS(loops + 1)
	}
	if err := c.finishIngress(); err != nil {
		return exitError{2, err}
	}
	maxMessage := a.srv.Config().MaxMessage
	// Claim the ingress socket before the client port, so a second relay
	// started by mistake fails before it touches anything.
	if c.Ingress.Path != "" {
		if a.unix, err = ingress.ListenUnix(c.Ingress, rel, maxMessage); err != nil {
			return listenError(err)
		}
		a.onClose(func() error { a.unix.Close(); return nil })
		c.HTTP.Extra = a.unix.Metrics
	}
	if c.HTTP.Addr != "" || c.HTTP.UnixPath != "" {
		if a.http, err = ingress.ListenHTTP(c.HTTP, rel, maxMessage); err != nil {
			return listenError(err)
		}
		// Closed after the relay has drained, so health checks answer
		// 503 during the drain.
		a.onClose(func() error { a.http.Close(); return nil })
	}
	if err := a.srv.Start(); err != nil {
		return err
	}
	a.onClose(func() error {
		select {
		case <-a.srv.Done():
			return nil // the event loops stopped on their own: nothing to drain
		default:
			return a.srv.Shutdown(context.Background())
		}
	})
	if a.node != nil {
		if err := a.node.Start(); err != nil {
			return err
		}
		// Leave the cluster before draining: other nodes then answer
		// "unknown" for this node's clients instead of queuing for them.
		a.onClose(func() error { a.node.Close(); return nil })
	}
	a.ingressErr = make(chan error, 2)
	if a.unix != nil {
		go func() { a.ingressErr <- a.unix.Serve() }()
	}
	if a.http != nil {
		go func() {
			if err := a.http.Serve(); err != nil {
				a.ingressErr <- err
			}
		}()
	}
	if c.readyFile != "" {
		info := readyfile.Info{PID: os.Getpid(), Version: versionString(), Node: c.node,
			Listen: addrString(a.srv.Addr()), Web: addrString(a.srv.WebAddr()), Policy: addrString(a.srv.PolicyAddr())}
		if a.http != nil {
			info.HTTP = a.http.Addr()
		}
		if a.unix != nil {
			info.Ingress = a.unix.Path()
		}
		if err := readyfile.Write(c.readyFile, info); err != nil {
			return fmt.Errorf("--ready-file: %w", err)
		}
		a.onClose(func() error { os.Remove(c.readyFile); return nil })
	}
	return nil
}

// Close undoes what Start did, last step first: removes the ready file,
// leaves the cluster, drains and stops the relay, then closes the HTTP and
// Unix listeners. It returns the relay's shutdown error, if any.
func (a *app) Close() error {
	var err error
	for i := len(a.undo) - 1; i >= 0; i-- {
		if e := a.undo[i](); e != nil && err == nil {
			err = e
		}
	}
	a.undo = nil
	return err
}

func addrString(a *net.TCPAddr) string {
	if a == nil {
		return ""
	}
	return a.String()
}
