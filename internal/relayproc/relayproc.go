// Package relayproc starts a `pushrelay serve` process and waits until it
// is ready: its addresses come from the file serve --ready-file writes
// (internal/readyfile), never from its log. The test harness
// (internal/proctest) and `pushrelay bench` (internal/bench) both start
// relays with it; they differ in where the log goes and in how they stop
// the process, which stays theirs.
package relayproc

import (
	"bufio"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/pushrelay/pushrelay/internal/readyfile"
)

// Proc is a started `pushrelay serve`.
type Proc struct {
	Cmd *exec.Cmd
	// Ready holds the addresses the process listens on.
	Ready readyfile.Info

	done chan struct{} // closed when the process has exited
	err  error         // its exit, once done is closed
}

// Start runs argv (the binary, serve and its flags) with --ready-file
// ready appended and env as its whole environment (nil: this process's),
// hands each line of its stderr to logLine, and waits up to timeout for
// the ready file. On failure the process is gone: if it exited first the
// error wraps readyfile.ErrExited and p.Err says how; if it was not ready
// in time the error wraps readyfile.ErrTimeout and Start has killed it.
// p is non-nil once the process has started.
func Start(argv, env []string, ready string, logLine func(string), timeout time.Duration) (*Proc, error) {
	cmd := exec.Command(argv[0], append(append([]string(nil), argv[1:]...), "--ready-file", ready)...)
	cmd.Env = env
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &Proc{Cmd: cmd, done: make(chan struct{})}
	go func() {
		// The only reader of stderr; Wait must not run before it is done.
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			logLine(sc.Text())
		}
		p.err = cmd.Wait()
		close(p.done)
	}()
	info, err := readyfile.Wait(ready, p.done, timeout)
	if err != nil {
		p.Kill()
		return p, err
	}
	p.Ready = info
	return p, nil
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

// Kill ends the process at once (SIGKILL), as a crash would, and waits for
// it.
func (p *Proc) Kill() {
	p.Signal(syscall.SIGKILL)
	<-p.done
}
