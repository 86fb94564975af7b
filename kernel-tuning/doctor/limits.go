package doctor

import (
	"fmt"

	"github.com/pushrelay/pushrelay/relay"
)

// goSoftLimit is the soft RLIMIT_NOFILE a Go program runs with: at start
// the runtime raises a soft limit below hard-1 to hard-1 (syscall's init;
// one below the hard limit so that it can tell a later prlimit apart).
func goSoftLimit(soft, hard int64) int64 {
	if soft == Unknown || soft < hard-1 {
		return hard - 1
	}
	return soft
}

// recommendNofile is the open-file limit to ask for: the target plus the
// relay's reserve, at least the usual 1,048,576 (raising a limit costs
// nothing until descriptors are used).
func (a *analysis) recommendNofile() int64 {
	return max(1<<20, roundUp(a.n+a.reserve, 1<<16))
}

func (a *analysis) nofile() *Limit {
	h := a.h
	if h.NofileHard == Unknown {
		return nil
	}
	soft := goSoftLimit(h.NofileSoft, h.NofileHard)
	l := &Limit{
		ID:       LimitNofile,
		Name:     "open files per process (RLIMIT_NOFILE)",
		Setting:  fmt.Sprintf("soft %s, hard %s", count(h.NofileSoft), count(h.NofileHard)),
		Capacity: soft - a.reserve,
		Scope:    ScopeProcess,
		Basis:    fmt.Sprintf("the relay's soft limit, %s, minus the %d descriptors it keeps for listeners, epoll and ingress (%d, and %d for each of its %d event loops, one per CPU; --max-conns defaults to this); EMFILE beyond", count(soft), a.reserve, relay.FileReserve, relay.LoopFiles, a.loops),
	}
	if soft != h.NofileSoft {
		l.Basis += ". Go raises a lower soft limit to the hard limit less one when a program starts"
	}
	rec := a.recommendNofile()
	// How high one process can go from here: to rec, to fs.nr_open when
	// that cannot be raised, or nowhere without CAP_SYS_RESOURCE.
	ceiling := rec
	var lines []string
	if h.NrOpen != Unknown && rec > h.NrOpen {
		if h.CanWriteSysctls() {
			lines = append(lines, fmt.Sprintf("sysctl -w fs.nr_open=%d", rec))
		} else {
			ceiling = h.NrOpen
		}
	}
	if !h.CanRaiseNofile() {
		ceiling = soft
	}
	if ceiling > soft {
		lines = append(lines,
			fmt.Sprintf("LimitNOFILE=%d   # [Service] of pushrelay.service, or the drop-in kernel-tuning/pushrelay-limits.conf", ceiling),
			fmt.Sprintf("ulimit -n %d   # as root, in the shell that starts pushrelay serve by hand", ceiling),
		)
	}
	perProc := ceiling - a.reserve
	fix := &Fix{Raisable: perProc >= a.n, Lines: lines, CapacityAfter: perProc}
	if !fix.Raisable {
		fix.Processes = ceilDiv(a.n, max(perProc, 1))
		if !h.CanRaiseNofile() {
			fix.Why = fmt.Sprintf("the hard limit is %s and CAP_SYS_RESOURCE is outside this process's bounding set: a container or sandbox set it, and nothing started here (not root, not systemd) can raise it", count(h.NofileHard))
		} else {
			fix.Why = fmt.Sprintf("fs.nr_open (%s) caps it and cannot be raised here: %s", count(h.NrOpen), a.sysctlWhy())
		}
		fix.Around = fmt.Sprintf("set it where the container is started (docker run --ulimit nofile=%d:%d; the runtime's LimitNOFILE under Kubernetes), or run several relay processes: %s of up to %s clients each, the clients spread over them",
			rec, rec, count(fix.Processes), count(perProc))
		if a.lg {
			fix.Around += "; the load generator needs as many worker processes (pushrelay loadgen --procs 0 starts them)"
		}
	}
	l.Fix = fix
	return l
}

func (a *analysis) nrOpen() *Limit {
	h := a.h
	if h.NrOpen == Unknown {
		return nil
	}
	rec := a.recommendNofile()
	l := &Limit{
		ID:       LimitNrOpen,
		Name:     "largest open-file limit (fs.nr_open)",
		Setting:  count(h.NrOpen),
		Capacity: h.NrOpen - a.reserve,
		Scope:    ScopeProcess,
		Basis:    "caps what RLIMIT_NOFILE can be raised to, for every process; setrlimit fails with EPERM above it (systemd: \"Failed at step LIMITS\")",
		Fix:      a.sysctlFix(rec-a.reserve, fmt.Sprintf("sysctl -w fs.nr_open=%d", rec)),
	}
	if !l.Fix.Raisable {
		l.Fix.Processes = ceilDiv(a.n, max(l.Capacity, 1))
		l.Fix.Around = fmt.Sprintf("run several relay processes: %s of up to %s clients each", count(l.Fix.Processes), count(l.Capacity))
		l.Fix.CapacityAfter = 0
	}
	return l
}

func (a *analysis) fileMax() *Limit {
	h := a.h
	if h.FileMax == Unknown || h.FileAllocated == Unknown {
		return nil
	}
	pc := a.perConn()
	rec := max(h.FileMax, roundUp((h.FileAllocated+a.n*pc)*5/4, 1<<20))
	l := &Limit{
		ID:       LimitFileMax,
		Name:     "open files on the host (fs.file-max)",
		Setting:  count(h.FileMax),
		InUse:    count(h.FileAllocated),
		Capacity: (h.FileMax - h.FileAllocated) / pc,
		Scope:    ScopeHost,
		Basis:    fmt.Sprintf("room left under the host-wide count of open files (file-nr), %d per client; ENFILE beyond", pc),
		Fix:      a.sysctlFix((rec-h.FileAllocated)/pc, fmt.Sprintf("sysctl -w fs.file-max=%d", rec)),
	}
	a.hostFix(l)
	return l
}

func (a *analysis) epoll() *Limit {
	h := a.h
	if h.EpollWatches == Unknown {
		return nil
	}
	pc := a.perConn()
	rec := max(h.EpollWatches, roundUp(a.n*pc*5/4, 1<<20))
	l := &Limit{
		ID:       LimitEpoll,
		Name:     "epoll watches per user (fs.epoll.max_user_watches)",
		Setting:  count(h.EpollWatches),
		Capacity: h.EpollWatches / pc,
		Scope:    ScopeUser,
		Basis:    fmt.Sprintf("every socket on an event loop is one epoll watch, %d per client, shared by all processes of one user; epoll_ctl fails with ENOSPC beyond", pc),
		Fix:      a.sysctlFix(rec/pc, fmt.Sprintf("sysctl -w fs.epoll.max_user_watches=%d", rec)),
	}
	a.hostFix(l)
	return l
}

// recommendTCPMem returns tcp_mem's three thresholds (low, pressure, high)
// in pages for pages of socket memory in use at once, with headroom, never
// below the running values.
func recommendTCPMem(cur [3]int64, pages int64) [3]int64 {
	p := roundUp(pages*5/4, 1<<16)
	return [3]int64{max(cur[0], p*3/4), max(cur[1], p), max(cur[2], p*3/2)}
}

func (a *analysis) tcpMem() *Limit {
	h := a.h
	if h.TCPMem[1] == Unknown {
		return nil
	}
	inUse := max(h.TCPMemPages, 0)
	ppc := a.m.PagesInFlight * a.perConn()
	rec := recommendTCPMem(h.TCPMem, inUse+a.n*ppc)
	l := &Limit{
		ID:       LimitTCPMem,
		Name:     "TCP memory (net.ipv4.tcp_mem, pressure threshold)",
		Setting:  fmt.Sprintf("%d %d %d pages", h.TCPMem[0], h.TCPMem[1], h.TCPMem[2]),
		InUse:    fmt.Sprintf("%d pages", inUse),
		Capacity: (h.TCPMem[1] - inUse) / ppc,
		Scope:    ScopeHost,
		Basis:    "idle sockets hold no buffer pages, but a broadcast makes every recipient hold one until the client acknowledges it; past the pressure threshold the kernel shrinks every send buffer (TCPMemoryPressures counts it), past the third value writes stall",
		Fix:      a.sysctlFix((rec[1]-inUse)/ppc, fmt.Sprintf("sysctl -w net.ipv4.tcp_mem=\"%d %d %d\"   # pages of %d bytes", rec[0], rec[1], rec[2], h.PageSize)),
	}
	if a.lg {
		l.Basis += "; the load generator's socket holds another page until it reads the message"
	}
	a.hostFix(l)
	return l
}

// available is the memory new connections can use, and where the figure
// came from: MemAvailable, or the cgroup's room when that is tighter.
func (a *analysis) available() (int64, string) {
	h := a.h
	avail, src := h.MemAvailable, "MemAvailable in /proc/meminfo"
	if h.CgroupAvailable != Unknown && (avail == Unknown || h.CgroupAvailable < avail) {
		avail, src = h.CgroupAvailable, fmt.Sprintf("cgroup memory limit %s minus usage", bytesIEC(h.CgroupLimit))
	}
	return avail, src
}

func (a *analysis) memory() *Limit {
	avail, src := a.available()
	if avail == Unknown {
		return nil
	}
	per := a.m.peak(a.lg)
	l := &Limit{
		ID:       LimitMemory,
		Name:     "memory",
		Setting:  bytesIEC(avail) + " available",
		Capacity: avail / per,
		Scope:    ScopeHost,
		Basis:    fmt.Sprintf("%s, divided by %s per client by the memory model (idle %s, plus %s while a small broadcast is in flight)", src, bytesIEC(per), bytesIEC(a.m.idle(a.lg)), bytesIEC(per-a.m.idle(a.lg))),
	}
	hosts := ceilDiv(a.n, max(l.Capacity, 1))
	l.Fix = &Fix{
		Raisable: false,
		Lines:    []string{},
		Why:      fmt.Sprintf("memory is not a setting: %s clients need %s at a broadcast peak and %s is available", count(a.n), bytesIEC(a.n*per), bytesIEC(avail)),
		Around:   fmt.Sprintf("add memory, or spread the clients over %s hosts of this size", count(hosts)),
		Hosts:    hosts,
	}
	if a.h.CgroupAvailable != Unknown && a.h.CgroupAvailable == avail {
		l.Fix.Around = fmt.Sprintf("raise the container's memory limit to at least %s (docker run --memory, systemd MemoryMax=, Kubernetes resources.limits.memory), or spread the clients over %s containers", bytesIEC(a.n*per+(a.h.CgroupLimit-a.h.CgroupAvailable)), count(hosts))
	}
	return l
}

func (a *analysis) conntrack() *Limit {
	h := a.h
	if !h.ConntrackLoaded || h.ConntrackMax == Unknown {
		return nil
	}
	used := max(h.ConntrackCount, 0)
	rec := max(h.ConntrackMax, roundUp((used+a.n)*5/4, 1<<16))
	l := &Limit{
		ID:       LimitConntrack,
		Name:     "connection tracking (net.netfilter.nf_conntrack_max)",
		Setting:  count(h.ConntrackMax),
		InUse:    count(used),
		Capacity: h.ConntrackMax - used,
		Scope:    ScopeHost,
		Basis:    "one entry per client connection once a firewall rule tracks it (nf_conntrack is loaded); past it the kernel drops new connections' packets (\"nf_conntrack: table full, dropping packet\")",
		Fix: a.sysctlFix(rec-used,
			fmt.Sprintf("sysctl -w net.netfilter.nf_conntrack_max=%d", rec),
			fmt.Sprintf("sysctl -w net.netfilter.nf_conntrack_buckets=%d   # hash buckets, a quarter of the entries", rec/4),
			"# or do not track the relay's port at all: iptables -t raw -A PREROUTING -p tcp --dport 8843 -j NOTRACK; iptables -t raw -A OUTPUT -p tcp --sport 8843 -j NOTRACK",
		),
	}
	a.hostFix(l)
	return l
}

// portsAfter is the ephemeral range the doctor recommends for a load
// generator: wide, and above the relay's ports (843, 8843) and the usual
// service ports.
const (
	portsAfterLow  = 10000
	portsAfterHigh = 65535
)

// portCounts returns the ephemeral ports a load generator here has per
// source address now and after the recommended range, when it counts.
func (a *analysis) portCounts() (per, after int64, ok bool) {
	h := a.h
	if !a.lg || h.PortLow == Unknown || h.PortHigh == Unknown {
		return 0, 0, false
	}
	return h.PortHigh - h.PortLow + 1, portsAfterHigh - portsAfterLow + 1, true
}

func (a *analysis) ports() *Limit {
	h := a.h
	per, after, ok := a.portCounts()
	if !ok {
		return nil
	}
	sources := ceilDiv(a.n, max(after, per))
	l := &Limit{
		ID:       LimitPorts,
		Name:     "load generator's ephemeral ports (net.ipv4.ip_local_port_range)",
		Setting:  fmt.Sprintf("%d-%d", h.PortLow, h.PortHigh),
		Capacity: per,
		Scope:    ScopeSource,
		Basis:    "each (source address, destination address:port) pair has one connection per local port; connect fails with EADDRNOTAVAIL beyond",
		Fix: &Fix{
			Raisable: true,
			Lines: []string{
				fmt.Sprintf("sysctl -w net.ipv4.ip_local_port_range=\"%d %d\"", portsAfterLow, portsAfterHigh),
				fmt.Sprintf("# and connect from %s source addresses: on loopback, pushrelay loadgen --sources 127.0.0.2-%s", count(sources), loopbackAddr(sources+1)),
			},
			CapacityAfter: max(after, per) * sources,
		},
	}
	if !h.CanWriteSysctls() {
		sources = ceilDiv(a.n, per)
		l.Fix.Lines = []string{fmt.Sprintf("# connect from %s source addresses: on loopback, pushrelay loadgen --sources 127.0.0.2-%s", count(sources), loopbackAddr(sources+1))}
		l.Fix.CapacityAfter = per * sources
	}
	return l
}

// hostFix fills in the way around a host-wide limit that cannot be raised
// from here.
func (a *analysis) hostFix(l *Limit) {
	if l.Fix.Raisable {
		return
	}
	l.Fix.Hosts = ceilDiv(a.n, max(l.Capacity, 1))
	l.Fix.CapacityAfter = 0
}
