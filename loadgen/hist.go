package loadgen

import (
	"math"
	"math/bits"
	"time"
)

// Histogram records durations in log-linear buckets: 16 sub-buckets per
// power of two, so any value is within 6.25% of its bucket's bounds, from
// 1 ns to about 4.6 hours, in a fixed 8 KiB with no allocation per sample.
// Not safe for concurrent use; Merge combines per-worker histograms.
type Histogram struct {
	counts [64 * subBuckets]uint64
	n      uint64
	sum    float64
	min    int64
	max    int64
}

const subBits = 4
const subBuckets = 1 << subBits

func bucketOf(v int64) int {
	if v < subBuckets {
		return int(max(v, 0))
	}
	exp := bits.Len64(uint64(v)) - 1 // v in [2^exp, 2^(exp+1))
	sub := int(uint64(v)>>(exp-subBits)) & (subBuckets - 1)
	return (exp-subBits+1)*subBuckets + sub
}

// lowerBound is the smallest value of bucket b.
func lowerBound(b int) int64 {
	if b < subBuckets {
		return int64(b)
	}
	exp := b/subBuckets + subBits - 1
	sub := b % subBuckets
	return (1 << exp) | int64(sub)<<(exp-subBits)
}

// Record adds one duration.
func (h *Histogram) Record(d time.Duration) {
	v := int64(d)
	if v < 0 {
		v = 0
	}
	b := bucketOf(v)
	if b >= len(h.counts) {
		b = len(h.counts) - 1
	}
	h.counts[b]++
	if h.n == 0 || v < h.min {
		h.min = v
	}
	if v > h.max {
		h.max = v
	}
	h.n++
	h.sum += float64(v)
}

// Merge adds o's samples.
func (h *Histogram) Merge(o *Histogram) {
	if o.n == 0 {
		return
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	if h.n == 0 || o.min < h.min {
		h.min = o.min
	}
	h.max = max(h.max, o.max)
	h.n += o.n
	h.sum += o.sum
}

// Count is the number of samples.
func (h *Histogram) Count() uint64 { return h.n }

// Quantile returns the q-quantile (0 ≤ q ≤ 1): the middle of the bucket
// holding it, clamped to the exact minimum and maximum.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	if q >= 1 {
		return time.Duration(h.max)
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	rank = max(rank, 1)
	var seen uint64
	for b, c := range h.counts {
		seen += c
		if seen >= rank {
			lo, hi := lowerBound(b), lowerBound(b+1)
			mid := lo + (hi-lo)/2
			return time.Duration(min(max(mid, h.min), h.max))
		}
	}
	return time.Duration(h.max)
}

// Mean returns the mean duration.
func (h *Histogram) Mean() time.Duration {
	if h.n == 0 {
		return 0
	}
	return time.Duration(h.sum / float64(h.n))
}

// Max returns the largest duration recorded.
func (h *Histogram) Max() time.Duration { return time.Duration(h.max) }

// Summary is a histogram's usual figures, for reports.
type Summary struct {
	Count uint64        `json:"count"`
	Mean  time.Duration `json:"mean_ns"`
	P50   time.Duration `json:"p50_ns"`
	P90   time.Duration `json:"p90_ns"`
	P99   time.Duration `json:"p99_ns"`
	P999  time.Duration `json:"p999_ns"`
	Max   time.Duration `json:"max_ns"`
}

// Summarize returns the usual figures.
func (h *Histogram) Summarize() Summary {
	return Summary{Count: h.n, Mean: h.Mean(), P50: h.Quantile(0.5), P90: h.Quantile(0.9), P99: h.Quantile(0.99), P999: h.Quantile(0.999), Max: h.Max()}
}

// Sparse returns the non-empty buckets, for sending a histogram compactly
// (a worker's progress line); FromSparse rebuilds it.
func (h *Histogram) Sparse() *SparseHistogram {
	if h.n == 0 {
		return nil
	}
	s := &SparseHistogram{Buckets: map[int]uint64{}, Sum: h.sum, Min: h.min, Max: h.max}
	for b, c := range h.counts {
		if c != 0 {
			s.Buckets[b] = c
		}
	}
	return s
}

// SparseHistogram is a Histogram's non-empty buckets.
type SparseHistogram struct {
	Buckets map[int]uint64 `json:"buckets"`
	Sum     float64        `json:"sum"`
	Min     int64          `json:"min"`
	Max     int64          `json:"max"`
}

// MergeSparse adds a sparse histogram's samples.
func (h *Histogram) MergeSparse(s *SparseHistogram) {
	if s == nil {
		return
	}
	var o Histogram
	for b, c := range s.Buckets {
		if b >= 0 && b < len(o.counts) {
			o.counts[b] = c
			o.n += c
		}
	}
	o.sum, o.min, o.max = s.Sum, s.Min, s.Max
	h.Merge(&o)
}
