//go:build !linux

package relay

import (
	"syscall"
	"time"
)

// setUserTimeout is Linux-only; elsewhere keepalive alone finds dead peers.
func setUserTimeout(int, time.Duration) error { return nil }

// probeControl keeps Go's listener options (SO_REUSEADDR on Unix systems).
func probeControl(string, string, syscall.RawConn) error { return nil }
