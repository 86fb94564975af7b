// Package proctest runs the real pushrelay binary for tests: it builds
// cmd/pushrelay once per test binary (Main, from TestMain) and starts
// `pushrelay serve` processes (Start) whose addresses come from the file
// serve --ready-file writes, not from their logs. A process is stopped
// only through its own PID, and killed by t.Cleanup if the test left it
// running.
package proctest

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pushrelay/pushrelay/internal/readyfile"
)

// binary is the pushrelay executable Main built.
var binary string

// Main builds the pushrelay binary, stores its path in *bin (for tests
// that run other commands), runs the tests and exits with their status.
// Call it from TestMain.
func Main(m *testing.M, bin *string) {
	dir, err := os.MkdirTemp("", "pushrelay-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "pushrelay")
	build := exec.Command("go", "build", "-o", binary, "github.com/pushrelay/pushrelay/cmd/pushrelay")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build pushrelay:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	if bin != nil {
		*bin = binary
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// Proc is a running `pushrelay serve`.
type Proc struct {
	Cmd *exec.Cmd
	// Ready holds the addresses the process listens on.
	Ready readyfile.Info

	mu   sync.Mutex
	log  strings.Builder
	done chan struct{} // closed when the process has exited
	err  error         // its exit, once done is closed
}

// StartTimeout bounds the wait for a process's ready file.
const StartTimeout = 10 * time.Second

// Start runs `pushrelay serve` with flags, env added to the test's
// environment, and waits until it has written its ready file. The test
// fails if the process exits first or does not get ready in time.
func Start(t testing.TB, env []string, flags ...string) *Proc {
	t.Helper()
	return StartUnder(t, nil, env, flags...)
}

// StartUnder is Start with the binary run by a wrapper command that execs
// it, such as prlimit --nofile=N.
func StartUnder(t testing.TB, wrapper, env []string, flags ...string) *Proc {
	t.Helper()
	p, err := start(t, wrapper, env, flags...)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func start(t testing.TB, wrapper, env []string, flags ...string) (*Proc, error) {
	if binary == "" {
		t.Fatal("proctest: no binary: call proctest.Main from TestMain")
	}
	ready := filepath.Join(t.TempDir(), "ready.json")
	argv := append(append(append(append([]string(nil), wrapper...), binary, "serve"), flags...), "--ready-file", ready)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &Proc{Cmd: cmd, done: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			p.mu.Lock()
			p.log.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
		}
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(p.Kill)
	info, err := readyfile.Wait(ready, p.done, StartTimeout)
	switch {
	case errors.Is(err, readyfile.ErrExited):
		return nil, fmt.Errorf("pushrelay serve exited before it was ready (%v):\n%s", p.err, p.Logs())
	case errors.Is(err, readyfile.ErrTimeout):
		return nil, fmt.Errorf("pushrelay serve was not ready after %v:\n%s", StartTimeout, p.Logs())
	case err != nil:
		return nil, err
	}
	p.Ready = info
	return p, nil
}

// Logs returns what the process has written to stderr so far.
func (p *Proc) Logs() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

// Done is closed when the process has exited; Err then says how.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Err is the process's exit (nil for status 0), once Done is closed.
func (p *Proc) Err() error {
	<-p.done
	return p.err
}

// Signal sends sig to the process, unless it has exited.
func (p *Proc) Signal(sig os.Signal) error {
	select {
	case <-p.done:
		return nil
	default:
		return p.Cmd.Process.Signal(sig)
	}
}

// Stop sends SIGTERM and waits up to timeout for the exit, which it
// returns; past the timeout it kills the process and says so.
func (p *Proc) Stop(timeout time.Duration) error {
	if err := p.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		p.Kill()
		return fmt.Errorf("pushrelay serve did not exit within %v of SIGTERM", timeout)
	}
}

// Kill ends the process at once (SIGKILL), as a crash would, and waits for
// it.
func (p *Proc) Kill() {
	p.Signal(syscall.SIGKILL)
	<-p.done
}
