//go:build linux

package doctor

import (
	"math"
	"syscall"
)

// nofileLimit returns this process's RLIMIT_NOFILE. Go raised the soft
// limit to the hard one at start, as it does in the relay.
func nofileLimit() (soft, hard int64, err error) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, 0, err
	}
	clamp := func(v uint64) int64 {
		if v > math.MaxInt64 {
			return math.MaxInt64
		}
		return int64(v)
	}
	return clamp(rl.Cur), clamp(rl.Max), nil
}
