package bench

import (
	"context"
	"sync"
	"time"

	"github.com/pushrelay/pushrelay/loadgen"
)

// windowCollector merges the latency windows the load generator's runs
// report, so a measurement can take what arrived since it began. The
// capacity ramp and the cluster bench share it.
type windowCollector struct {
	mu       sync.Mutex
	hist     loadgen.Histogram
	cpu      map[int]time.Duration    // latest CPU per run
	failedBy map[int]map[string]int64 // latest failures per run
	progress map[int]loadgen.Progress
}

func newWindowCollector() *windowCollector {
	return &windowCollector{cpu: map[int]time.Duration{}, failedBy: map[int]map[string]int64{}, progress: map[int]loadgen.Progress{}}
}

func (w *windowCollector) callback(run int) func(loadgen.Progress) {
	return func(p loadgen.Progress) {
		w.mu.Lock()
		defer w.mu.Unlock()
		if p.Window != nil {
			w.hist.Merge(p.Window)
		}
		w.cpu[run] = p.CPU
		w.failedBy[run] = p.FailedBy
		w.progress[run] = p
	}
}

// take returns the merged window and starts a new one.
func (w *windowCollector) take() loadgen.Histogram {
	w.mu.Lock()
	defer w.mu.Unlock()
	h := w.hist
	w.hist = loadgen.Histogram{}
	return h
}

func (w *windowCollector) count() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return int64(w.hist.Count())
}

// messages is the frames the runs have read so far, their latest running
// totals summed.
func (w *windowCollector) messages() (n int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, p := range w.progress {
		n += p.Messages
	}
	return n
}

// awaitQuiet is how long a measurement waits for one more frame before it
// counts the rest missing: the load generator's workers report twice a
// second, and their reports reach the collector twice a second.
const awaitQuiet = 3 * time.Second

// await waits until the window holds want frames, or none arrived for
// awaitQuiet, or limit passed, or ctx ended; then it returns the window and
// starts a new one.
func (w *windowCollector) await(ctx context.Context, want int64, limit time.Duration) loadgen.Histogram {
	start := time.Now()
	last, lastGrowth := int64(-1), start
	for ctx.Err() == nil {
		n := w.count()
		if n >= want {
			break
		}
		now := time.Now()
		if n != last {
			last, lastGrowth = n, now
		}
		if now.Sub(lastGrowth) > awaitQuiet || now.Sub(start) > limit {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	return w.take()
}

func (w *windowCollector) totals() (cpu time.Duration, failed map[string]int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	failed = map[string]int64{}
	for _, c := range w.cpu {
		cpu += c
	}
	for _, m := range w.failedBy {
		for k, v := range m {
			failed[k] += v
		}
	}
	return cpu, failed
}

func (w *windowCollector) run(run int) (loadgen.Progress, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	p, ok := w.progress[run]
	return p, ok
}
