package relay

import (
	"os"
	"runtime/metrics"
	"strconv"
	"strings"
)

// processSamples are the runtime metrics the relay exports about itself.
// runtime/metrics reads them without stopping the world, unlike
// runtime.ReadMemStats, so a scrape never pauses the event loops.
var processSamples = []string{
	"/memory/classes/heap/objects:bytes",
	"/memory/classes/heap/unused:bytes",
	"/memory/classes/heap/stacks:bytes",
	"/gc/cycles/total:gc-cycles",
}

// processMetrics returns the process's resident memory and the Go
// runtime's heap and GC figures.
func processMetrics() []Metric {
	s := make([]metrics.Sample, len(processSamples))
	for i, name := range processSamples {
		s[i].Name = name
	}
	metrics.Read(s)
	val := func(i int) float64 {
		switch s[i].Value.Kind() {
		case metrics.KindUint64:
			return float64(s[i].Value.Uint64())
		case metrics.KindFloat64:
			return s[i].Value.Float64()
		}
		return 0
	}
	ms := []Metric{
		{Name: "pushrelay_go_heap_inuse_bytes", Type: "gauge", Help: "Go heap in use: objects and the unused part of their spans.", Value: val(0) + val(1)},
		{Name: "pushrelay_go_heap_objects_bytes", Type: "gauge", Help: "Go heap occupied by objects, live or not yet swept.", Value: val(0)},
		{Name: "pushrelay_go_stacks_bytes", Type: "gauge", Help: "Goroutine stacks.", Value: val(2)},
		{Name: "pushrelay_go_gc_cycles_total", Type: "counter", Help: "Completed garbage collection cycles.", Value: val(3)},
	}
	if rss := residentBytes(); rss > 0 {
		ms = append(ms, Metric{Name: "pushrelay_process_resident_bytes", Type: "gauge", Help: "Resident memory of the relay process (RSS).", Value: float64(rss)})
	}
	return ms
}

// residentBytes reads the process's RSS from /proc/self/statm.
func residentBytes() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		return 0
	}
	return pages * int64(os.Getpagesize())
}
