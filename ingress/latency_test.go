package ingress

import (
	"strings"
	"testing"
	"time"
)

// TestLatencyHistogramExposition: observations land in the right buckets,
// cumulated, with +Inf equal to the count, as Prometheus reads them.
func TestLatencyHistogramExposition(t *testing.T) {
	var h latencyHistogram
	for _, d := range []time.Duration{5 * time.Microsecond, 10 * time.Microsecond, 30 * time.Microsecond, 2 * time.Millisecond, 3 * time.Second} {
		h.observe(d)
	}
	got := string(h.append(nil, "x_seconds", "help"))
	for _, want := range []string{
		"# TYPE x_seconds histogram\n",
		`x_seconds_bucket{le="1e-05"} 2` + "\n", // 5 us and exactly 10 us
		`x_seconds_bucket{le="2.5e-05"} 2` + "\n",
		`x_seconds_bucket{le="5e-05"} 3` + "\n",
		`x_seconds_bucket{le="0.0025"} 4` + "\n",
		`x_seconds_bucket{le="1"} 4` + "\n",
		`x_seconds_bucket{le="+Inf"} 5` + "\n",
		"x_seconds_sum 3.002045\n",
		"x_seconds_count 5\n",
	} {
		if !strings.Contains(got, want) {
			t.Fatalf("exposition lacks %q:\n%s", want, got)
		}
	}
}

// BenchmarkBatchLatency is what timing one batch adds to the ingress: two
// clock reads and the observation.
func BenchmarkBatchLatency(b *testing.B) {
	b.ReportAllocs()
	var h latencyHistogram
	for b.Loop() {
		start := time.Now()
		h.observe(time.Since(start))
	}
}
