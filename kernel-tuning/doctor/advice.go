package doctor

import (
	"fmt"
	"strings"

	"github.com/pushrelay/pushrelay/relay"
)

func (a *analysis) memoryReport() Memory {
	avail, src := a.available()
	return Memory{
		Model:       a.m,
		PerConnIdle: a.m.idle(a.lg),
		PerConnPeak: a.m.peak(a.lg),
		Idle:        a.n * a.m.idle(a.lg),
		Peak:        a.n * a.m.peak(a.lg),
		Available:   avail,
		Source:      src,
	}
}

// slowClients works out the send buffer that keeps a.stalled clients that
// stop reading under tcp_mem's pressure value, beside a small broadcast in
// flight to the whole target. It runs after plan: when the plan raises
// tcp_mem, the raised value is the one to fit under.
func (a *analysis) slowClients(r *Report) *SlowClients {
	h := a.h
	if h.TCPMem[1] == Unknown || h.TCPWmem[2] == Unknown {
		return nil
	}
	page := h.PageSize
	inUse := max(h.TCPMemPages, 0)
	peak := inUse + a.n*a.m.PagesInFlight*a.perConn()
	sc := &SlowClients{
		Stalled:       a.stalled,
		PressurePages: h.TCPMem[1],
		AutotunePages: ceilDiv(h.TCPWmem[2], page),
		RelayBytes:    a.stalled * relay.DefaultMaxOutbound,
	}
	if l := r.limit(LimitTCPMem); l.Binds && l.Fix != nil && l.Fix.Raisable {
		sc.PressurePages = recommendTCPMem(h.TCPMem, peak)[1]
	}
	sc.RoomPages = max(sc.PressurePages-peak, 0)
	sc.PagesPerClient = sc.RoomPages / a.stalled
	if sc.PagesPerClient >= sc.AutotunePages {
		sc.AutotuneFits = true
		return sc
	}
	// The kernel doubles SO_SNDBUF (capped at net.core.wmem_max) and lets a
	// socket's queued bytes, with their overhead, reach that: half the
	// share, rounded down to whole KiB.
	b := sc.PagesPerClient * page / 2 / 1024 * 1024
	if h.WmemMax != Unknown {
		b = min(b, h.WmemMax)
	}
	if b < minSendBuffer {
		b = minSendBuffer
		need := recommendTCPMem(h.TCPMem, peak+a.stalled*ceilDiv(2*b, page))
		sc.TCPMem = fmt.Sprintf("sysctl -w net.ipv4.tcp_mem=\"%d %d %d\"", need[0], need[1], need[2])
	}
	sc.SendBuffer = b
	return sc
}

func (a *analysis) portsReport() *Ports {
	h := a.h
	per, after, ok := a.portCounts()
	if !ok {
		return nil
	}
	return &Ports{
		Range:        fmt.Sprintf("%d-%d", h.PortLow, h.PortHigh),
		PerSource:    per,
		Sources:      ceilDiv(a.n, per),
		RangeAfter:   fmt.Sprintf("%d-%d", portsAfterLow, portsAfterHigh),
		SourcesAfter: ceilDiv(a.n, max(per, after)),
	}
}

// recommendBacklog sizes a listen queue for a reconnect storm: every
// client back within about ten seconds of a restart queues roughly 1% of
// them behind a 100 ms stall of an event loop. At least the kernel's
// default 4096; at most 65535, where gnet truncates the backlog.
func recommendBacklog(n int64) int64 {
	return min(max(nextPow2(n/100), 4096), 65535)
}

func (a *analysis) warnings() []Warning {
	h := a.h
	var w []Warning
	rec := recommendBacklog(a.n)
	if h.Somaxconn != Unknown && h.Somaxconn < rec {
		w = append(w, Warning{
			ID: "somaxconn",
			Text: fmt.Sprintf("net.core.somaxconn %s caps each listener's accept queue (the relay has one listener per event loop and reads the value when it starts). It does not limit how many clients stay connected, but a reconnect storm of %s clients overflows a short queue: ListenOverflows counts the SYNs dropped, and those clients retry after 1 s, 3 s, 7 s. Raise it to %d and restart the relay.",
				count(h.Somaxconn), count(a.n), rec),
			Lines: []string{fmt.Sprintf("sysctl -w net.core.somaxconn=%d", rec)},
		})
	}
	// tcp_max_syn_backlog counts only without SYN cookies: with them, a
	// full SYN queue (sized by the listen backlog) is answered with cookies.
	if h.Syncookies == 0 {
		text := "net.ipv4.tcp_syncookies is off: a storm that fills a listener's SYN queue drops connections instead of answering with cookies."
		lines := []string{"sysctl -w net.ipv4.tcp_syncookies=1"}
		if h.SynBacklog != Unknown && h.SynBacklog < rec {
			text += fmt.Sprintf(" Without cookies, net.ipv4.tcp_max_syn_backlog %s bounds half-open connections too: raise it to %d.", count(h.SynBacklog), rec)
			lines = append(lines, fmt.Sprintf("sysctl -w net.ipv4.tcp_max_syn_backlog=%d", rec))
		}
		w = append(w, Warning{ID: "tcp_syncookies", Text: text, Lines: lines})
	}
	if h.NetdevBacklog != Unknown && h.NetdevBacklog < 16384 && a.n >= 100_000 {
		text := fmt.Sprintf("net.core.netdev_max_backlog %s is each CPU's queue of received packets handed to the stack by RPS, veth (containers) and loopback; the acknowledgements of a broadcast to %s clients arrive in a burst, and packets past it are dropped (second column of /proc/net/softnet_stat).", count(h.NetdevBacklog), count(a.n))
		w = append(w, Warning{ID: "netdev_max_backlog", Text: text, Lines: []string{"sysctl -w net.core.netdev_max_backlog=16384"}})
	}
	if !h.CanWriteSysctls() {
		for i := range w {
			if len(w[i].Lines) > 0 {
				w[i].Text += " Set it on the host: " + a.sysctlWhy() + "."
			}
		}
	}
	counter := func(id string, v int64, what, advice string) {
		if v > 0 {
			w = append(w, Warning{ID: id, Text: fmt.Sprintf("%s %s times since boot: %s", what, count(v), advice)})
		}
	}
	counter("listen_overflows", max(h.ListenOverflows, h.ListenDrops), "Listen queues overflowed (TcpExt ListenOverflows/ListenDrops)",
		"a listener on this host could not keep up with connections at some point; watch it with `nstat -az TcpExtListenOverflows TcpExtListenDrops`.")
	counter("tcp_memory_pressure", h.MemoryPressures, "TCP entered memory pressure (TcpExt TCPMemoryPressures)",
		"tcp_mem's second value was reached and the kernel shrank socket buffers.")
	counter("tcp_abort_on_memory", h.AbortOnMemory, "TCP aborted connections for lack of memory (TcpExt TCPAbortOnMemory)",
		"tcp_mem's third value, or orphan limits, were reached.")
	counter("time_wait_overflow", h.TWOverflow, "The TIME_WAIT table overflowed (TcpExt TCPTimeWaitOverflow)",
		"closed connections skipped TIME_WAIT because tcp_max_tw_buckets was full; harmless for the relay, raise it if a load generator reconnects fast.")
	counter("softnet_dropped", h.SoftnetDropped, "CPUs dropped received packets (softnet_stat)",
		"netdev_max_backlog was full.")
	if a.lg {
		if h.TWReuse != 1 {
			w = append(w, Warning{ID: "tcp_tw_reuse", Text: fmt.Sprintf("net.ipv4.tcp_tw_reuse is %d: a connection the load generator closes keeps its local port in TIME_WAIT for 60 s (the kernel's fixed TCP_TIMEWAIT_LEN; tcp_fin_timeout is FIN-WAIT-2, not this), so churn at R connections a second ties up 60×R ports. 1 lets new outgoing connections reuse them.", h.TWReuse),
				Lines: []string{"sysctl -w net.ipv4.tcp_tw_reuse=1"}})
		}
	}
	return w
}

func (a *analysis) notes() []string {
	h := a.h
	var n []string
	n = append(n, "Capacities count connections on top of what the host uses now (open files, conntrack entries, TCP memory, available memory); a relay already running here has its clients counted as usage.")
	if a.lg {
		n = append(n, "With --loadgen the load generator's sockets, files and epoll watches are counted here as well; its own process memory is not (measure it with its own bench).")
	}
	if len(h.Missing) > 0 {
		n = append(n, "Not read (the limits that depend on them are left out): "+strings.Join(h.Missing, ", ")+".")
	}
	return n
}
