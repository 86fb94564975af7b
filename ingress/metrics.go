package ingress

import (
	"math"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/pushrelay/pushrelay/relay"
)

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
