package ingress

import (
	"bytes"
	"math"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	vm "github.com/VictoriaMetrics/metrics"

	"github.com/pushrelay/pushrelay/relay"
)

func init() {
	// # HELP and # TYPE lines for the standard families too, as for ours.
	vm.ExposeMetadata(true)
}

// AppendStandardMetrics appends the go_* and process_* families every
// Prometheus user expects (goroutines, GC, heap; CPU, resident memory,
// open and maximum descriptors), in the names and meanings of the
// official Go client, as VictoriaMetrics/metrics writes them. They are
// read when /metrics is scraped (runtime/metrics, one ReadMemStats, and
// /proc/self), never on a push.
func AppendStandardMetrics(dst []byte) []byte {
	b := bytes.NewBuffer(dst)
	vm.WriteGoMetrics(b)
	vm.WriteProcMetrics(b)
	vm.WriteFDMetrics(b)
	return b.Bytes()
}

// Ingress latency: how long the Unix ingress takes over a batch of
// requests, from the first one read in full to the replies handed to the
// kernel. A batch is what one flush answers: one request when they come
// one at a time, many when a client pipelines. Each connection times its
// first batch and one in latencySample after: a timed batch costs two
// clock reads and three atomic adds (about 100 ns), the others a counter
// and a compare, so the cost stays off the per-push path. The histogram's
// _count is therefore a sample, not a count of batches.

// latencySample: one batch in this many is timed, per connection.
const latencySample = 16

// latencyBounds are the histogram's upper bounds (le), in seconds.
var latencyBounds = [...]float64{0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1}

// latencyBoundsNanos are latencyBounds in nanoseconds, for observe.
var latencyBoundsNanos = func() (b [len(latencyBounds)]int64) {
	for i, s := range latencyBounds {
		b[i] = int64(s * 1e9)
	}
	return b
}()

// latencyHistogram is a Prometheus histogram of durations. Atomic: any
// goroutine may observe and read.
type latencyHistogram struct {
	buckets [len(latencyBounds) + 1]atomic.Uint64 // per bucket, not cumulative; the last is +Inf
	sum     atomic.Int64                          // nanoseconds
	count   atomic.Uint64
}

// batchLatency times the Unix ingress's batches, for every UnixServer of
// the process (as Prometheus' default registry would).
var batchLatency latencyHistogram

func (h *latencyHistogram) observe(d time.Duration) {
	n := int64(d)
	i := 0
	for i < len(latencyBoundsNanos) && n > latencyBoundsNanos[i] {
		i++
	}
	h.buckets[i].Add(1)
	h.sum.Add(n)
	h.count.Add(1)
}

// AppendIngressLatency appends the Unix ingress's batch latency histogram,
// pushrelay_ingress_batch_seconds, in the text exposition format.
func AppendIngressLatency(dst []byte) []byte {
	return batchLatency.append(dst, "pushrelay_ingress_batch_seconds",
		"Time the Unix ingress takes over a batch of requests (one flush of replies), from the first request read in full to the replies written; one batch in 16 per connection is timed.")
}

func (h *latencyHistogram) append(dst []byte, name, help string) []byte {
	dst = append(dst, "# HELP "...)
	dst = append(dst, name...)
	dst = append(dst, ' ')
	dst = appendHelp(dst, help)
	dst = append(dst, "\n# TYPE "...)
	dst = append(dst, name...)
	dst = append(dst, " histogram\n"...)
	// Read count first: buckets observed after it may make the +Inf
	// bucket exceed it by a little, never fall short of it.
	count := h.count.Load()
	var cum uint64
	for i := range h.buckets {
		cum += h.buckets[i].Load()
		dst = append(dst, name...)
		dst = append(dst, `_bucket{le="`...)
		if i < len(latencyBounds) {
			dst = strconv.AppendFloat(dst, latencyBounds[i], 'g', -1, 64)
		} else {
			dst = append(dst, "+Inf"...)
			cum = max(cum, count)
		}
		dst = append(dst, `"} `...)
		dst = strconv.AppendUint(dst, cum, 10)
		dst = append(dst, '\n')
	}
	dst = append(dst, name...)
	dst = append(dst, "_sum "...)
	dst = appendPromValue(dst, float64(h.sum.Load())/1e9)
	dst = append(dst, '\n')
	dst = append(dst, name...)
	dst = append(dst, "_count "...)
	dst = strconv.AppendUint(dst, max(cum, count), 10)
	return append(dst, '\n')
}

// PrometheusContentType is the Content-Type of AppendPrometheus's output.
const PrometheusContentType = "text/plain; version=0.0.4; charset=utf-8"

// AppendPrometheus appends ms to dst in the Prometheus text exposition
// format, version 0.0.4: for each metric name, one # HELP and one # TYPE
// line, then its samples, `name{labels} value`. Samples of one name are
// written together even if ms interleaves names (the format requires it);
// names keep the order of their first sample. Help and type are the first
// sample's. Labels are written as given (relay.Metric holds them already
// formatted and escaped).
func AppendPrometheus(dst []byte, ms []relay.Metric) []byte {
	order := make([]string, 0, len(ms))
	samples := make(map[string][]int, len(ms))
	for i := range ms {
		name := ms[i].Name
		if _, seen := samples[name]; !seen {
			order = append(order, name)
		}
		samples[name] = append(samples[name], i)
	}
	for _, name := range order {
		idx := samples[name]
		first := &ms[idx[0]]
		dst = append(dst, "# HELP "...)
		dst = append(dst, name...)
		dst = append(dst, ' ')
		dst = appendHelp(dst, first.Help)
		dst = append(dst, "\n# TYPE "...)
		dst = append(dst, name...)
		dst = append(dst, ' ')
		switch first.Type {
		case "counter", "gauge":
			dst = append(dst, first.Type...)
		default:
			dst = append(dst, "untyped"...)
		}
		dst = append(dst, '\n')
		for _, i := range idx {
			m := &ms[i]
			dst = append(dst, name...)
			if m.Labels != "" {
				dst = append(dst, '{')
				dst = append(dst, m.Labels...)
				dst = append(dst, '}')
			}
			dst = append(dst, ' ')
			dst = appendPromValue(dst, m.Value)
			dst = append(dst, '\n')
		}
	}
	return dst
}

// appendHelp escapes a help text as the format wants: backslash and
// newline only.
func appendHelp(dst []byte, help string) []byte {
	if !strings.ContainsAny(help, "\\\n") {
		return append(dst, help...)
	}
	for i := 0; i < len(help); i++ {
		switch c := help[i]; c {
		case '\\':
			dst = append(dst, `\\`...)
		case '\n':
			dst = append(dst, `\n`...)
		default:
			dst = append(dst, c)
		}
	}
	return dst
}

// appendPromValue writes a sample value: integers without exponent up to
// 2^53, which is what counters almost always are, and Go's shortest float
// otherwise; NaN and infinities as the format spells them.
func appendPromValue(dst []byte, v float64) []byte {
	switch {
	case math.IsNaN(v):
		return append(dst, "NaN"...)
	case math.IsInf(v, 1):
		return append(dst, "+Inf"...)
	case math.IsInf(v, -1):
		return append(dst, "-Inf"...)
	case v == math.Trunc(v) && math.Abs(v) < 1<<53:
		return strconv.AppendInt(dst, int64(v), 10)
	}
	return strconv.AppendFloat(dst, v, 'g', -1, 64)
}

// appendJSONNumber writes v as a JSON number; JSON has no NaN or
// infinity, so those become null.
func appendJSONNumber(dst []byte, v float64) []byte {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return append(dst, "null"...)
	}
	return appendPromValue(dst, v)
}

// metricKey is a metric's key in /v1/stats: its name, and its labels in
// braces if it has any, as in the Prometheus exposition.
func metricKey(m *relay.Metric) string {
	if m.Labels == "" {
		return m.Name
	}
	return m.Name + "{" + m.Labels + "}"
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string. Invalid UTF-8 becomes
// U+FFFD, so the output is always valid JSON.
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			i++
			continue
		}
		if c < utf8.RuneSelf {
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, `\n`...)
			case '\r':
				dst = append(dst, `\r`...)
			case '\t':
				dst = append(dst, `\t`...)
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i++
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
