// Package proctest runs the real pushrelay binary for tests: it builds
// cmd/pushrelay once per test binary (Main, from TestMain) and starts
// `pushrelay serve` processes (Start) whose addresses come from the file
// serve --ready-file writes, not from their logs. A process is stopped
// only through its own PID, and killed by t.Cleanup if the test left it
// running.
package proctest

import (
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
	"github.com/pushrelay/pushrelay/internal/relayproc"
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
	// Cmd, Ready (the addresses it listens on), Done and Err.
	*relayproc.Proc

	mu  sync.Mutex
	log strings.Builder // its stderr so far; guarded by mu
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
	argv := append(append(append([]string(nil), wrapper...), binary, "serve"), flags...)
	p := &Proc{}
	rp, err := relayproc.Start(argv, append(os.Environ(), env...), ready, func(line string) {
		p.mu.Lock()
		p.log.WriteString(line + "\n")
		p.mu.Unlock()
	}, StartTimeout)
	switch {
	case errors.Is(err, readyfile.ErrExited):
		return nil, fmt.Errorf("pushrelay serve exited before it was ready (%v):\n%s", rp.Err(), p.Logs())
	case errors.Is(err, readyfile.ErrTimeout):
		return nil, fmt.Errorf("pushrelay serve was not ready after %v:\n%s", StartTimeout, p.Logs())
	case err != nil:
		return nil, err
	}
	p.Proc = rp
	t.Cleanup(p.Kill)
	return p, nil
}

// Logs returns what the process has written to stderr so far.
func (p *Proc) Logs() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

// Stop sends SIGTERM and waits up to timeout for the exit, which it
// returns; past the timeout it kills the process and says so.
func (p *Proc) Stop(timeout time.Duration) error {
	if err := p.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	select {
	case <-p.Done():
		return p.Err()
	case <-time.After(timeout):
		p.Kill()
		return fmt.Errorf("pushrelay serve did not exit within %v of SIGTERM", timeout)
	}
}
