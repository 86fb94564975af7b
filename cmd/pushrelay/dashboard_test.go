package main

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestDashboardAndAlertsQueryRealMetrics: every metric that
// docs/grafana/pushrelay.json and docs/prometheus/alerts.yml query is in a
// real relay's /metrics, along with the standard go_* and process_*
// families; a push through the ingress shows in the latency histogram.
func TestDashboardAndAlertsQueryRealMetrics(t *testing.T) {
	p := startRelay(t, nil, "--listen", "127.0.0.1:0")
	api := p.http
	_, id, _ := p.client(t)
	if code, _, stderr := p.cli(t, "send", id, "hello"); code != 0 {
		t.Fatalf("send: exit %d: %s", code, stderr)
	}

	resp, err := http.Get("http://" + api + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	have := map[string]float64{}
	typed := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(string(body)))
	for sc.Scan() {
		line := sc.Text()
		if f := strings.Fields(line); len(f) >= 4 && f[0] == "#" && f[1] == "TYPE" {
			if typed[f[2]] {
				t.Errorf("/metrics declares %s twice: a scraper refuses that", f[2])
			}
			typed[f[2]] = true
			continue
		}
		if line == "" || line[0] == '#' {
			continue
		}
		end := strings.IndexAny(line, "{ ")
		if end < 0 {
			t.Fatalf("sample line without a value: %q", line)
		}
		v, _ := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		have[line[:end]] += v
	}
	for _, name := range []string{"go_goroutines", "go_gc_duration_seconds_count", "go_memstats_heap_inuse_bytes",
		"process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds", "process_max_fds"} {
		if _, ok := have[name]; !ok {
			t.Errorf("/metrics lacks the standard %s", name)
		}
	}
	if have["process_open_fds"] < 3 || have["process_max_fds"] < have["process_open_fds"] {
		t.Errorf("descriptors: %v open of %v", have["process_open_fds"], have["process_max_fds"])
	}
	if have["pushrelay_ingress_batch_seconds_count"] < 1 {
		t.Errorf("the send is not in pushrelay_ingress_batch_seconds_count (%v)", have["pushrelay_ingress_batch_seconds_count"])
	}

	// The dashboard.
	var dash struct {
		Panels []struct {
			Type, Title string
			Targets     []struct{ Expr string }
		}
		Templating struct {
			List []struct{ Definition string }
		}
	}
	b, err := os.ReadFile("../../docs/grafana/pushrelay.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("docs/grafana/pushrelay.json: %v", err)
	}
	var exprs []string
	for _, p := range dash.Panels {
		if p.Type != "row" && len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, q := range p.Targets {
			exprs = append(exprs, q.Expr)
		}
	}
	for _, v := range dash.Templating.List {
		if m := regexp.MustCompile(`label_values\((\w+),`).FindStringSubmatch(v.Definition); m != nil {
			exprs = append(exprs, m[1])
		}
	}
	// The alert rules: one-line expr fields.
	b, err = os.ReadFile("../../docs/prometheus/alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	alerts := 0
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "- alert: ") {
			alerts++
		}
		if e, ok := strings.CutPrefix(line, "expr: "); ok {
			if e == "|" || e == ">" {
				t.Fatalf("alerts.yml: keep each expr on one line, as this test reads them")
			}
			exprs = append(exprs, e)
		}
	}
	if alerts < 5 || len(exprs) < 20 {
		t.Fatalf("read %d alerts and %d expressions in all: the files lost their content?", alerts, len(exprs))
	}
	checked := map[string]bool{}
	for _, e := range exprs {
		names := promMetricNames(e)
		if len(names) == 0 {
			t.Errorf("no metric in %q", e)
		}
		for _, n := range names {
			checked[n] = true
			if _, ok := have[n]; !ok {
				t.Errorf("%s (in %q) is not in the relay's /metrics", n, e)
			}
		}
	}
	t.Logf("%d expressions query %d metrics, all present", len(exprs), len(checked))
}

// TestPromMetricNames: the expression reader finds the selected metrics
// and nothing else (functions, aggregations, labels, durations, numbers).
func TestPromMetricNames(t *testing.T) {
	for _, c := range []struct {
		expr string
		want []string
	}{
		{`pushrelay_connections_open`, []string{"pushrelay_connections_open"}},
		{`histogram_quantile(0.99, sum by (instance, le) (rate(a_bucket{x="y}",le!="1"}[5m]))) > 0.05`, []string{"a_bucket"}},
		{`sum without (reason) (rate(b_total{reason=~"a|b"}[$__rate_interval])) / clamp_min(sum(c), 1) and d offset 5m`, []string{"b_total", "c", "d"}},
		{`sum(x) / on (instance) group_left (node) y > bool 1e-05`, []string{"x", "y"}},
	} {
		if got := promMetricNames(c.expr); !slices.Equal(got, c.want) {
			t.Errorf("promMetricNames(%q) = %q, want %q", c.expr, got, c.want)
		}
	}
}

// promMetricNames returns the metric names a PromQL expression selects,
// in order: identifiers that are not functions, aggregations, keywords,
// or label names in a by/without/on/ignoring/group list, outside label
// matchers, ranges and strings. Enough PromQL for our own files.
func promMetricNames(expr string) []string {
	aggregations := map[string]bool{"sum": true, "avg": true, "min": true, "max": true, "count": true, "group": true,
		"stddev": true, "stdvar": true, "topk": true, "bottomk": true, "quantile": true, "count_values": true}
	keywords := map[string]bool{"and": true, "or": true, "unless": true, "bool": true, "offset": true}
	lists := map[string]bool{"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true}
	ident := func(c byte, first bool) bool {
		return c == '_' || c == ':' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || !first && '0' <= c && c <= '9'
	}
	skipTo := func(i int, close byte) int { // past the closing byte, quotes respected
		for i++; i < len(expr) && expr[i] != close; i++ {
			if q := expr[i]; q == '"' || q == '\'' {
				for i++; i < len(expr) && expr[i] != q; i++ {
					if expr[i] == '\\' {
						i++
					}
				}
			}
		}
		return i + 1
	}
	var names []string
	for i := 0; i < len(expr); {
		c := expr[i]
		switch {
		case c == '"' || c == '\'':
			i = skipTo(i, c) // a string literal: skipTo stops at the same quote
		case c == '{':
			i = skipTo(i, '}')
		case c == '[':
			i = skipTo(i, ']')
		case '0' <= c && c <= '9' || c == '.':
			for i < len(expr) && (ident(expr[i], false) || expr[i] == '.') {
				i++
			}
		case ident(c, true):
			j := i
			for j < len(expr) && ident(expr[j], false) {
				j++
			}
			word := expr[i:j]
			k := j
			for k < len(expr) && expr[k] == ' ' {
				k++
			}
			switch {
			case lists[word] && k < len(expr) && expr[k] == '(':
				j = skipTo(k, ')')
			case lists[word], keywords[word], aggregations[word]:
			case k < len(expr) && expr[k] == '(':
				// a function
			default:
				names = append(names, word)
			}
			i = j
		default:
			i++
		}
	}
	return names
}
