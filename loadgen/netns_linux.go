package loadgen

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Namespace is a private network namespace for a load run: its own
// loopback, ephemeral port range and listen backlog, so other programs'
// ports and the host's settings do not distort the result. It needs root
// and iproute2's ip(8). Close removes it and stops what was started in it.
type Namespace struct {
	Name    string
	started []*exec.Cmd
}

// NamespaceSettings are the sysctls set inside a new namespace: the
// widest port range and a deep accept queue, which a namespace of its own
// can have without touching the host.
var NamespaceSettings = map[string]string{
	"net/core/somaxconn":           "65535",
	"net/ipv4/ip_local_port_range": "1024 65535",
	"net/ipv4/tcp_max_syn_backlog": "65535",
}

// NewNamespace creates a namespace named after this process, brings its
// loopback up and applies NamespaceSettings.
func NewNamespace() (*Namespace, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("loadgen: a private network namespace needs root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return nil, errors.New("loadgen: a private network namespace needs ip(8) from iproute2")
	}
	n := &Namespace{Name: "pushrelay-loadgen-" + strconv.Itoa(os.Getpid())}
	if out, err := exec.Command("ip", "netns", "add", n.Name).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("loadgen: ip netns add %s: %v: %s", n.Name, err, strings.TrimSpace(string(out)))
	}
	if out, err := exec.Command("ip", "-n", n.Name, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		n.Close()
		return nil, fmt.Errorf("loadgen: bring up loopback in %s: %v: %s", n.Name, err, strings.TrimSpace(string(out)))
	}
	for key, value := range NamespaceSettings {
		// /proc/sys/net belongs to the namespace of whoever opens it.
		cmd := exec.Command("ip", "netns", "exec", n.Name, "sh", "-c", `printf '%s\n' "$1" > "/proc/sys/$2"`, "sh", value, key)
		if out, err := cmd.CombinedOutput(); err != nil {
			n.Close()
			return nil, fmt.Errorf("loadgen: set %s in %s: %v: %s", key, n.Name, err, strings.TrimSpace(string(out)))
		}
	}
	return n, nil
}

// Wrap returns argv run inside the namespace.
func (n *Namespace) Wrap(argv []string) []string {
	return append([]string{"ip", "netns", "exec", n.Name}, argv...)
}

// Start runs argv inside the namespace in the background; Close stops it.
// Its standard error goes to stderr.
func (n *Namespace) Start(argv []string, stderr *os.File) (*exec.Cmd, error) {
	w := n.Wrap(argv)
	cmd := exec.Command(w[0], w[1:]...)
	cmd.Stdout, cmd.Stderr = stderr, stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("loadgen: start %v in %s: %w", argv, n.Name, err)
	}
	n.started = append(n.started, cmd)
	return cmd, nil
}

// WaitListening waits until addr accepts TCP connections inside the
// namespace, or the timeout passes.
func (n *Namespace) WaitListening(addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		err := n.dial(addr)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("loadgen: nothing accepts on %s inside %s after %v: %w", addr, n.Name, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// dial connects to addr from inside the namespace. A socket belongs to the
// namespace of the thread that creates it, so it dials from a locked
// thread moved into the namespace; the thread is never unlocked, so Go
// discards it rather than reuse it elsewhere.
func (n *Namespace) dial(addr string) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		f, err := os.Open("/run/netns/" + n.Name)
		if err != nil {
			errc <- err
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns: %w", err)
			return
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		errc <- err
	}()
	return <-errc
}

// Close stops what Start started (by PID) and deletes the namespace.
func (n *Namespace) Close() error {
	for _, cmd := range n.started {
		if cmd.Process != nil {
			_ = cmd.Process.Signal(unix.SIGTERM)
			done := make(chan struct{})
			go func() { cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				_ = cmd.Process.Kill()
				<-done
			}
		}
	}
	n.started = nil
	if out, err := exec.Command("ip", "netns", "del", n.Name).CombinedOutput(); err != nil {
		return fmt.Errorf("loadgen: ip netns del %s: %v: %s", n.Name, err, strings.TrimSpace(string(out)))
	}
	return nil
}
