package main

import (
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pushrelay/pushrelay/relay"
)

// connectProc runs `pushrelay connect` and hands over its output lines as
// they come.
type connectProc struct {
	cmd    *exec.Cmd
	lines  chan string
	stderr *lockedBuffer
	exited chan error
}

func startConnect(t *testing.T, env []string, args ...string) *connectProc {
	t.Helper()
	cmd := exec.Command(binary, append([]string{"connect"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	c := &connectProc{cmd: cmd, stderr: &lockedBuffer{}, exited: make(chan error, 1)}
	cmd.Stderr = c.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c.lines = scanLines(out, 100, func() { c.exited <- cmd.Wait() })
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-c.exited
		}
	})
	return c
}

// line returns the next line, failing the test if none comes in time.
func (c *connectProc) line(t *testing.T) string {
	t.Helper()
	select {
	case l, ok := <-c.lines:
		if !ok {
			t.Fatalf("connect ended; stderr %q", c.stderr.String())
		}
		return l
	case <-time.After(5 * time.Second):
		t.Fatalf("connect printed no line in 5s; stderr %q", c.stderr.String())
	}
	return ""
}

func (c *connectProc) wait(t *testing.T) int {
	t.Helper()
	for range c.lines {
	}
	select {
	case <-c.exited:
	case <-time.After(10 * time.Second):
		t.Fatalf("connect did not exit; stderr %q", c.stderr.String())
	}
	return c.cmd.ProcessState.ExitCode()
}

// TestConnectPrintsTheIDAndEachMessageAsTheyArrive: the README's first
// command shows the whole ID at once, then each push as its own line while
// the connection stays open, and ends cleanly.
func TestConnectPrintsTheIDAndEachMessageAsTheyArrive(t *testing.T) {
	for _, framing := range []string{"nul", "line", "len32"} {
		t.Run(framing, func(t *testing.T) {
			p := startRelay(t, nil, "--listen", "127.0.0.1:0", "--framing", framing)
			c := startConnect(t, nil, p.addr, "--framing", framing)
			id := c.line(t)
			if code, out, stderr := p.cli(t, "send", id, "-5 degrees"); code != 0 {
				t.Fatalf("send to the ID connect printed (%q): exit %d %s %s", id, code, out, stderr)
			}
			if got := c.line(t); got != "-5 degrees" {
				t.Fatalf("connect printed %q, want %q", got, "-5 degrees")
			}
			if framing != "line" {
				p.cli(t, "send", id, "two\nlines")
				if got := c.line(t); got != `"two\nlines"` {
					t.Fatalf("connect printed %q for a two-line message, want it quoted", got)
				}
			}
			// Ctrl-C ends it with exit 0 and says so.
			c.cmd.Process.Signal(syscall.SIGINT)
			if code := c.wait(t); code != 0 || !strings.Contains(c.stderr.String(), "interrupted after") {
				t.Fatalf("after Ctrl-C: exit %d, stderr %q", code, c.stderr.String())
			}
		})
	}
}

func TestConnectEndsWithAClearReason(t *testing.T) {
	p := startRelay(t, nil, "--listen", "127.0.0.1:0", "--framing", "line")
	// The relay closes the connection: exit 0.
	c := startConnect(t, nil, p.addr, "--framing", "line")
	id := c.line(t)
	p.cli(t, "kick", id)
	if code := c.wait(t); code != 0 || !strings.Contains(c.stderr.String(), "the relay closed the connection") {
		t.Fatalf("after kick: exit %d, stderr %q", code, c.stderr.String())
	}
	// The wrong framing: the ID never completes.
	code, _, stderr := runBinary(t, nil, "connect", "--timeout", "500ms", p.addr)
	if code != 1 || !strings.Contains(stderr, "no ID frame after 500ms: is the relay's --framing nul?") {
		t.Fatalf("connect with the wrong framing: exit %d, %q", code, stderr)
	}
	// The framing from serve's variable.
	c = startConnect(t, []string{"PUSHRELAY_FRAMING=line"}, "--timeout", "500ms", p.addr)
	if id := c.line(t); !relay.ValidID(id) {
		t.Fatalf("connect with PUSHRELAY_FRAMING=line printed %q, want an ID", id)
	}
	c.cmd.Process.Signal(syscall.SIGINT)
	c.wait(t)
	// No relay.
	code, _, stderr = runBinary(t, nil, "connect", "127.0.0.1:1")
	if code != 3 || !strings.Contains(stderr, "no relay at 127.0.0.1:1") {
		t.Fatalf("connect to nothing: exit %d, %q", code, stderr)
	}
}
