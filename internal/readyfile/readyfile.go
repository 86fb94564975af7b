// Package readyfile is serve's readiness signal (serve --ready-file,
// docs/operations.md): one JSON object with the process's addresses as
// bound, written atomically once every listener serves.
package readyfile

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// Info is the file's content: every address as bound (port 0 resolved),
// "" for a listener that is off.
type Info struct {
	PID     int    `json:"pid"`
	Version string `json:"version"`
	Node    int    `json:"node"`
	Listen  string `json:"listen"`
	Web     string `json:"web"`
	Policy  string `json:"policy"`
	HTTP    string `json:"http"`
	Ingress string `json:"ingress"`
}

// Write writes info to path atomically (a temporary file in the same
// directory, then a rename): a reader sees all of it or no file.
func Write(path string, info Info) error {
	b, err := json.Marshal(info)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	_, err = tmp.Write(append(b, '\n'))
	if e := tmp.Chmod(0o644); err == nil {
		err = e
	}
	if e := tmp.Close(); err == nil {
		err = e
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
	}
	return err
}

// Read reads a ready file. A file that does not exist yet is an error for
// which os.IsNotExist (errors.Is fs.ErrNotExist) holds.
func Read(path string) (Info, error) {
	var info Info
	b, err := os.ReadFile(path)
	if err != nil {
		return info, err
	}
	if err := json.Unmarshal(b, &info); err != nil {
		return info, fmt.Errorf("ready file %s: %v: %q", path, err, b)
	}
	return info, nil
}

// Errors of Wait.
var (
	// ErrExited: the process exited before it wrote its ready file.
	ErrExited = errors.New("process exited before it was ready")
	// ErrTimeout: the ready file did not appear in time.
	ErrTimeout = errors.New("process was not ready in time")
)

// waitPoll is how often Wait looks for the file: start-up takes
// milliseconds, so a finer poll would only burn CPU.
const waitPoll = 10 * time.Millisecond

// Wait waits for the process that writes path (serve --ready-file) to be
// ready and returns what it wrote. It gives up with ErrExited once exited
// is closed, with ErrTimeout after timeout, and at once on a file it
// cannot read.
func Wait(path string, exited <-chan struct{}, timeout time.Duration) (Info, error) {
	deadline := time.Now().Add(timeout)
	for {
		info, err := Read(path)
		if err == nil || !errors.Is(err, fs.ErrNotExist) {
			return info, err
		}
		select {
		case <-exited:
			return info, ErrExited
		case <-time.After(waitPoll):
		}
		if time.Now().After(deadline) {
			return info, ErrTimeout
		}
	}
}
