package bench

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"time"

	"github.com/pushrelay/pushrelay/relay"
)

// Time limits on talking to a child. Generous: a child answers in
// microseconds unless it is swapping or wedged, and then the run is void.
const (
	childStartTimeout = 20 * time.Second
	childReplyTimeout = 20 * time.Second
	childQuitTimeout  = 30 * time.Second
)

// DefaultChildCommand is the command that starts a child: this executable's
// `bench child`. The server flags are appended.
func DefaultChildCommand() ([]string, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("bench: find own executable: %w", err)
	}
	return []string{exe, "bench", "child"}, nil
}

// child is the parent's handle on a child process. Not safe for concurrent
// use: one command at a time.
type child struct {
	name    string
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	lines   chan []byte   // stdout, one line each; closed at EOF
	exited  chan struct{} // closed once Wait has returned
	waitErr error         // valid after exited

	addr netip.AddrPort
	pid  int
}

// startChild starts command plus the flags for server, with env added to
// this process's environment, and waits for its hello line.
func startChild(command []string, server string, framing relay.Framing, env []string, stderr io.Writer) (*child, error) {
	if len(command) == 0 {
		return nil, errors.New("bench: empty child command")
	}
	args := append(append([]string(nil), command[1:]...),
		"--server", server, "--listen", "127.0.0.1:0", "--framing", framing.String())
	cmd := exec.Command(command[0], args...)
	cmd.Stderr = stderr
	if len(env) > 0 {
		cmd.Env = append(os.Environ(), env...)
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("bench: %s child: stdin pipe: %w", server, err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("bench: %s child: stdout pipe: %w", server, err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("bench: start %s child %q: %w", server, command[0], err)
	}
	c := &child{name: server, cmd: cmd, stdin: stdin, lines: make(chan []byte, 1), exited: make(chan struct{})}
	go func() {
		// The only reader of stdout; Wait must not run before it is done.
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			c.lines <- append([]byte(nil), sc.Bytes()...)
		}
		close(c.lines)
		c.waitErr = cmd.Wait()
		close(c.exited)
	}()
	var hello ChildHello
	if err := c.read(&hello, childStartTimeout); err != nil {
		c.kill()
		return nil, fmt.Errorf("bench: %s child did not start: %w", server, err)
	}
	c.addr, err = netip.ParseAddrPort(hello.Addr)
	if err != nil {
		c.kill()
		return nil, fmt.Errorf("bench: %s child listens on %q: %w", server, hello.Addr, err)
	}
	c.pid = hello.Pid
	return c, nil
}

// read decodes the child's next line into v.
func (c *child) read(v any, timeout time.Duration) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case line, ok := <-c.lines:
		if !ok {
			<-c.exited
			return fmt.Errorf("child exited (%v)", c.waitErr)
		}
		if err := json.Unmarshal(line, v); err != nil {
			return fmt.Errorf("child wrote %q: %w", line, err)
		}
		return nil
	case <-t.C:
		return fmt.Errorf("no answer within %v", timeout)
	}
}

// call sends one command and decodes the answer into v.
func (c *child) call(command string, v any) error {
	return c.callTimeout(command, v, childReplyTimeout)
}

// callTimeout is call for a command that takes a while to answer, such as
// a floor write run: the reply may take up to timeout.
func (c *child) callTimeout(command string, v any, timeout time.Duration) error {
	if _, err := io.WriteString(c.stdin, command+"\n"); err != nil {
		return fmt.Errorf("bench: %s child: send %q: %w", c.name, command, err)
	}
	if err := c.read(v, timeout); err != nil {
		return fmt.Errorf("bench: %s child: %q: %w", c.name, command, err)
	}
	return nil
}

// do sends a command answered with okReply.
func (c *child) do(command string) error {
	var r okReply
	if err := c.call(command, &r); err != nil {
		return err
	}
	if !r.OK {
		return fmt.Errorf("bench: %s child: %q: %s", c.name, command, r.Error)
	}
	return nil
}

func (c *child) stats() (ChildStats, error) {
	var st ChildStats
	if err := c.call("stats", &st); err != nil {
		return st, err
	}
	if st.Error != "" {
		return st, fmt.Errorf("bench: %s child: stats: %s", c.name, st.Error)
	}
	return st, nil
}

func (c *child) count() (ChildStats, error) {
	var st ChildStats
	err := c.call("count", &st)
	return st, err
}

// quit asks the child to stop and waits for it, killing it if it does not
// exit in time.
func (c *child) quit() error {
	var r okReply
	err := c.call("quit", &r)
	if err == nil && !r.OK {
		err = fmt.Errorf("bench: %s child: quit: %s", c.name, r.Error)
	}
	_ = c.stdin.Close()
	select {
	case <-c.exited:
	case <-time.After(childQuitTimeout):
		c.kill()
		return fmt.Errorf("bench: %s child (pid %d) did not exit within %v; killed", c.name, c.pid, childQuitTimeout)
	}
	if err == nil && c.waitErr != nil {
		err = fmt.Errorf("bench: %s child: %w", c.name, c.waitErr)
	}
	return err
}

// kill ends the child at once and reaps it.
func (c *child) kill() {
	_ = c.stdin.Close()
	_ = c.cmd.Process.Kill()
	go func() {
		// Unblock the stdout reader so it reaches EOF and Wait.
		for range c.lines {
		}
	}()
	select {
	case <-c.exited:
	case <-time.After(childQuitTimeout):
	}
}
