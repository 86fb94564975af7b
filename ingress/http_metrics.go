package ingress

// The HTTP routes about the relay itself: /v1/stats, /healthz, and the
// HTTP server's own counters for /metrics.

import (
	"github.com/valyala/fasthttp"

	"github.com/pushrelay/pushrelay/relay"
)

// GET /v1/stats: every metric as one JSON object.
func (s *HTTPServer) stats(ctx *fasthttp.RequestCtx) {
	ms := s.allMetrics()
	b := make([]byte, 0, 64*len(ms)+4)
	b = append(b, '{')
	for i := range ms {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, metricKey(&ms[i]))
		b = append(b, ':')
		b = appendJSONNumber(b, ms[i].Value)
	}
	replyJSON(ctx, append(b, "}\n"...))
}

// GET /healthz: 200 while the relay accepts pushes, 503 once it drains or
// its event loops have stopped.
func (s *HTTPServer) healthz(ctx *fasthttp.RequestCtx) {
	ctx.SetContentType("text/plain; charset=utf-8")
	if err := s.relayHealth(); err != nil {
		ctx.SetStatusCode(fasthttp.StatusServiceUnavailable)
		ctx.SetBodyString(err.Error() + "\n")
		return
	}
	ctx.SetStatusCode(fasthttp.StatusOK)
	ctx.SetBodyString("ok\n")
}

// relayHealth says why the relay does not serve, or nil.
func (s *HTTPServer) relayHealth() error { return s.relay.Serving() }

// allMetrics is the relay's metrics, then Extra's, then the HTTP server's.
func (s *HTTPServer) allMetrics() []relay.Metric {
	var extra []relay.Metric
	if s.cfg.Extra != nil {
		extra = s.cfg.Extra()
	}
	return opStats(s.relay, extra, s.Metrics())
}

// Metrics returns the HTTP server's own counters. Safe for concurrent use.
func (s *HTTPServer) Metrics() []relay.Metric {
	c := &s.counters
	ms := make([]relay.Metric, 0, int(numRoutes)*numClasses+int(numHTTPErrors)+3)
	for rt := range numRoutes {
		for cl := range numClasses {
			ms = append(ms, relay.Metric{
				Name:   "pushrelay_http_requests_total",
				Labels: `route="` + routeInfo[rt].pattern + `",code="` + classNames[cl] + `"`,
				Type:   "counter", Help: "HTTP requests answered, by route and class of status code.",
				Value: float64(c.requests[rt][cl].Load()),
			})
		}
	}
	for k := range httpError(numHTTPErrors) {
		ms = append(ms, relay.Metric{
			Name: "pushrelay_http_errors_total", Labels: `status="` + httpErrors[k].name + `"`,
			Type: "counter", Help: "HTTP error replies, by status.", Value: float64(c.errors[k].Load()),
		})
	}
	var busy uint64
	if s.srv != nil {
		busy = uint64(s.srv.GetRejectedConnectionsCount())
	}
	return append(ms,
		relay.Metric{Name: "pushrelay_http_connections", Type: "gauge", Help: "HTTP connections open.", Value: float64(c.conns.Load())},
		relay.Metric{Name: "pushrelay_http_refused_total", Type: "counter", Help: "HTTP connections refused over the connection limit, every open one having sent an authorized request.", Value: float64(s.ln.refused.Load())},
		relay.Metric{Name: "pushrelay_http_busy_total", Type: "counter", Help: "HTTP connections refused (503) because every serving goroutine was taken, evicted connections still winding down included.", Value: float64(busy)},
		relay.Metric{Name: "pushrelay_http_evicted_total", Type: "counter", Help: "HTTP connections closed, before they sent an authorized request, to make room for a new one at the connection limit.", Value: float64(s.ln.evicted.Load())},
	)
}
