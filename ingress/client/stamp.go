package client

import (
	"time"

	"github.com/pushrelay/pushrelay/pkg/stamp"
)

// AppendStamp appends a send timestamp to dst, to start a payload with:
// "@pr1:<unix nanoseconds>:". A client held by pushrelay loadgen measures
// the push's latency from it (docs/loadgen.md has the format, for pushers
// in other languages).
func AppendStamp(dst []byte, now time.Time) []byte { return stamp.Append(dst, now) }
