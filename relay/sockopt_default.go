//go:build !linux

package relay

import "time"

// setUserTimeout is Linux-only; elsewhere keepalive alone finds dead peers.
func setUserTimeout(int, time.Duration) error { return nil }
