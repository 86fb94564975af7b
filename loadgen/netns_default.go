//go:build !linux

package loadgen

import (
	"errors"
	"os"
	"os/exec"
	"time"
)

// Namespace is Linux-only.
type Namespace struct{ Name string }

// NewNamespace fails: network namespaces are Linux's.
func NewNamespace() (*Namespace, error) {
	return nil, errors.New("loadgen: private network namespaces need Linux")
}

func (n *Namespace) Wrap(argv []string) []string                 { return argv }
func (n *Namespace) Start([]string, *os.File) (*exec.Cmd, error) { return nil, errors.ErrUnsupported }
func (n *Namespace) WaitListening(string, time.Duration) error   { return errors.ErrUnsupported }
func (n *Namespace) Close() error                                { return nil }
