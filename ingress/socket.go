package ingress

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"time"
)

// listenSocket creates a Unix socket at path with the given mode,
// replacing a stale socket file and refusing a live one. It listens on a
// temporary name, sets the mode, then renames it into place, so the socket
// is never reachable with the umask's permissions. The file stays when the
// listener closes; the caller removes it.
func listenSocket(path string, mode os.FileMode, what string) (*net.UnixListener, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("%s: %s exists and is not a socket; remove it or choose another path", what, path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("%s: a server already answers on %s; stop it first or choose another path", what, path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("%s: remove stale socket %s: %w", what, path, err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	tmp := path + ".tmp" + strconv.Itoa(os.Getpid())
	if len(tmp) > 107 {
		tmp = path // no room for the suffix: accept the short window
	}
	_ = os.Remove(tmp)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("%s: listen on %s: %w", what, path, err)
	}
	ln.SetUnlinkOnClose(false)
	if err := os.Chmod(tmp, mode); err != nil {
		ln.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("%s: chmod %s: %w", what, path, err)
	}
	if tmp != path {
		if err := os.Rename(tmp, path); err != nil {
			ln.Close()
			os.Remove(tmp)
			return nil, fmt.Errorf("%s: move socket into place at %s: %w", what, path, err)
		}
	}
	return ln, nil
}

// retryAccept reports whether an accept error is one to ride out (EMFILE
// and friends): it then logs it, sleeps the next delay, doubling from 5 ms
// up to 1 s, and returns that delay, for the caller to keep serving.
func retryAccept(err error, delay time.Duration, log *slog.Logger, msg string) (time.Duration, bool) {
	var ne net.Error
	if !errors.As(err, &ne) || errors.Is(err, net.ErrClosed) {
		return delay, false
	}
	delay = min(max(2*delay, 5*time.Millisecond), time.Second)
	log.Warn(msg, "err", err, "delay", delay)
	time.Sleep(delay)
	return delay, true
}
