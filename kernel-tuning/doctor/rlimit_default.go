//go:build !linux

package doctor

import "errors"

// nofileLimit is Linux-only; elsewhere Read falls back to proc/self/limits,
// which a snapshot holds and a non-Linux host does not.
func nofileLimit() (soft, hard int64, err error) {
	return 0, 0, errors.New("doctor: getrlimit is read on Linux only")
}
